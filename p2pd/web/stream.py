# -*- test-case-name: tests.unit.test_gateway,tests.integration.test_gateway -*-
"""
Answering an HTTP request with SPP content: status, headers and a body
streamed from a download's reader.

Shared by everything that serves SPP content over HTTP (the gateway and the
proxy), so players see the same Range behaviour everywhere.
"""

from twisted.internet import defer, error
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import Request
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.url import BadURL
from p2pd.engine.download import Download
from p2pd.engine.reading import Reader
from p2pd.mediatypes import contentType
from p2pd.twistedinternals import sendNow, sendWholeWrites
from p2pd.web import ranges

_log = Logger()


@implementer(IPushProducer)
class ReaderProducer:
    """
    Writes a reader's bytes to a request as they are verified, and only
    while the client keeps up: the engine's read-ahead is bounded, so memory
    is too. If the download fails before the first byte, the player gets an
    HTTP error saying why; mid-stream, the connection is closed, so the
    player sees a short body and retries with a Range.
    """

    def __init__(self, request: Request, reader: Reader) -> None:
        self.request = request
        self.reader = reader
        self.paused = False
        self.done = False
        self.started = False
        self._reading: defer.Deferred[bytes] | None = None

    def start(self) -> None:
        sendWholeWrites(self.request, self.reader.download.meta.blockSize)
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addErrback(lambda _: self.stopProducing())
        self._next()

    def _next(self) -> None:
        if self.paused or self.done or self._reading is not None:
            return
        self._reading = self.reader.read()
        self._reading.addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self._reading = None
        if self.done:
            return
        if not data:
            self._finish()
            return
        first = not self.started
        self.started = True
        if first:
            # The head in a send of its own, then the block: neither waits
            # for the reactor's next turn (0.4 ms on a cold start, when the
            # download's own traffic arrives at the same moment), and the
            # block is not copied into one buffer behind the head.
            self.request.write(b"")
            sendNow(self.request)
        self.request.write(data)
        self._next()
        if first:
            sendNow(self.request)

    def _failed(self, reason: Failure) -> None:
        self._reading = None
        if self.done or reason.check(defer.CancelledError):
            return
        _log.warn(
            "{url}: stream stopped at byte {position}: {why}",
            url=self.reader.download.meta.url,
            position=self.reader.position,
            why=reason.getErrorMessage(),
        )
        self.done = True
        self.reader.close()
        self.request.unregisterProducer()
        if not self.started:
            answerError(self.request, *failureStatus(reason))
            return
        transport = self.request.channel.transport if self.request.channel else None
        if transport is not None:
            transport.abortConnection()  # type: ignore[attr-defined]

    def _finish(self) -> None:
        self.done = True
        self.reader.close()
        self.request.unregisterProducer()
        self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._next()

    def stopProducing(self) -> None:
        if not self.done:
            self.done = True
            if self._reading is not None:
                self._reading.cancel()
            self.reader.close()


def respond(request: Request, download: Download, name: str) -> bytes | int:
    """
    Answer C{request} (GET or HEAD) with C{download}'s content: 200, 206 or
    416 as for a file, the body streamed from a reader.
    """
    from twisted.web.server import NOT_DONE_YET

    size = download.meta.size
    request.setHeader(b"Accept-Ranges", b"bytes")
    request.setHeader(b"ETag", b'"%s"' % download.meta.version.encode("ascii"))
    span = ranges.Span(0, size)
    partial = False
    header = request.getHeader(b"Range")
    parsed = ranges.parseRange(header) if header is not None else None
    if parsed is not None:
        try:
            spans = ranges.resolve(parsed, size)
        except ranges.Unsatisfiable:
            request.setResponseCode(http.REQUESTED_RANGE_NOT_SATISFIABLE)
            request.setHeader(b"Content-Range", b"bytes */%d" % size)
            request.setHeader(b"Content-Length", b"0")
            return b""
        if len(spans) == 1:
            span, partial = spans[0], True
    if partial:
        request.setResponseCode(http.PARTIAL_CONTENT)
        request.setHeader(b"Content-Range", span.contentRange(size))
    request.setHeader(b"Content-Type", contentType(name).encode("ascii"))
    request.setHeader(b"Content-Length", b"%d" % span.length)
    if request.method == b"HEAD" or span.length == 0:
        return b""
    ReaderProducer(request, download.read(span.start, span.stop)).start()
    return NOT_DONE_YET


def answerError(request: Request, code: int, message: str) -> None:
    """
    Finish C{request} with C{code} and a one-line C{message}, in place of
    whatever headers were set for content.
    """
    body = (message + "\n").encode("utf-8")
    request.setResponseCode(code)
    request.responseHeaders.removeHeader(b"Content-Range")
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


def failureStatus(reason: Failure) -> tuple[int, str]:
    """
    The HTTP status and a one-line reason for a download that could not
    start.
    """
    value = reason.value
    if isinstance(value, BadURL):
        return http.BAD_REQUEST, str(value)
    if isinstance(value, SPPError):
        if value.code == ErrorCode.NOT_FOUND:
            return http.NOT_FOUND, f"the origin has no such file ({value.message})"
        if value.code == ErrorCode.FORBIDDEN:
            return http.FORBIDDEN, f"the origin refuses: {value.message}"
        if value.code == ErrorCode.BUSY:
            # A player may try again: e.g. more files opened at once than
            # may wait for a handle (docs/protocol.md, Handles).
            return http.SERVICE_UNAVAILABLE, f"the origin is busy: {value.message}"
        return http.BAD_GATEWAY, f"the origin failed: {value}"
    if isinstance(value, error.DNSLookupError):
        return http.BAD_GATEWAY, "unknown host"
    if isinstance(value, error.ConnectionRefusedError):
        return http.BAD_GATEWAY, "the origin refused the connection"
    if isinstance(value, error.ConnectError):
        return http.BAD_GATEWAY, f"cannot reach the origin: {value}"
    return http.BAD_GATEWAY, f"cannot fetch: {reason.getErrorMessage()}"
