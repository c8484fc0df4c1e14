# -*- test-case-name: tests.unit.test_files -*-
"""
Serving one published file over HTTP: conditional requests, byte ranges and
a streaming body.

The body is written by a pull producer, so however slowly a client reads,
the server holds at most one read buffer of the file in memory.
"""

from twisted.internet.interfaces import IPullProducer
from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import SingleRangeStaticProducer
from zope.interface import implementer

from p2pd.mediatypes import contentType
from p2pd.store.published import NotPublished, PublishedFile
from p2pd.twistedinternals import sendWholeWrites
from p2pd.web import ranges


@implementer(IPullProducer)
class FileProducer(SingleRangeStaticProducer):
    """
    Writes bytes C{offset} to C{offset + size} of a file to a request, one
    buffer each time the transport asks for more.

    Twisted's default buffer (64 KiB) costs a reactor turn per 64 KiB; a
    larger one moves bulk data with fewer turns while staying small, once
    the transport sends it whole (measured on published files: 1.27-1.36x
    static.File).
    """

    bufferSize = 256 * 1024
    _log = Logger()

    def start(self) -> None:
        sendWholeWrites(self.request, self.bufferSize)
        super().start()

    def resumeProducing(self) -> None:
        request = self.request
        if request is None:
            return
        data = self.fileObject.read(min(self.bufferSize, self.size - self.bytesWritten))
        if not data:
            # The file shrank after it was opened. The promised length can
            # never be sent; waiting would only spin: cut the response short.
            self._log.warn(
                "{name} ended after {count} of {size} bytes: closing the connection",
                name=getattr(self.fileObject, "name", "?"),
                count=self.bytesWritten,
                size=self.size,
            )
            request.unregisterProducer()
            self.stopProducing()
            request.loseConnection()
            return
        self.bytesWritten += len(data)
        request.write(data)
        if self.request is not None and self.bytesWritten == self.size:
            request.unregisterProducer()
            request.finish()
            self.stopProducing()


def _parseHttpDate(value: bytes) -> int | None:
    try:
        return int(http.stringToDatetime(value))
    except (ValueError, IndexError, KeyError, OverflowError):
        return None


def _entityTags(header: bytes) -> list[bytes]:
    """
    The entity tags in an C{If-None-Match} or C{If-Match} value, weak
    markers removed (the comparison these headers use is weak).
    """
    tags = []
    for item in header.split(b","):
        item = item.strip()
        if item.startswith(b"W/"):
            item = item[2:]
        if item:
            tags.append(item)
    return tags


class PublishedFileResource(Resource):
    """
    One published file as an HTTP resource (GET and HEAD).

    Multiple ranges in one request are answered with the whole file (200),
    which RFC 9110 allows; players never send them.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, published: PublishedFile) -> None:
        super().__init__()
        self.published = published
        self.etag = b'"' + published.version.encode("ascii") + b'"'
        # HTTP dates have one-second resolution.
        self.lastModified = int(published.mtime)

    def _setEntityHeaders(self, request: IRequest) -> None:
        request.setHeader(b"ETag", self.etag)
        request.setHeader(b"Last-Modified", http.datetimeToString(self.lastModified))
        request.setHeader(b"Accept-Ranges", b"bytes")

    def _notModified(self, request: IRequest) -> bool:
        """
        Whether the client's cached copy is current (RFC 9110 section 13.2.2:
        If-None-Match wins over If-Modified-Since).
        """
        noneMatch = request.getHeader(b"If-None-Match")
        if noneMatch is not None:
            tags = _entityTags(noneMatch)
            return b"*" in tags or self.etag in tags
        since = request.getHeader(b"If-Modified-Since")
        if since is not None:
            date = _parseHttpDate(since)
            return date is not None and self.lastModified <= date
        return False

    def _preconditionFailed(self, request: IRequest) -> bool:
        match = request.getHeader(b"If-Match")
        if match is None:
            return False
        tags = [t for t in match.split(b",") if t.strip()]
        return not any(t.strip() in (b"*", self.etag) for t in tags)

    def _rangeApplies(self, request: IRequest) -> bool:
        """
        Whether a Range header may be honoured: If-Range must name this
        version exactly (strong comparison), by entity tag or date.
        """
        ifRange = request.getHeader(b"If-Range")
        if ifRange is None:
            return True
        ifRange = ifRange.strip()
        if ifRange.startswith((b'"', b"W/")):
            return bool(ifRange == self.etag)
        date = _parseHttpDate(ifRange)
        return date is not None and int(date) == self.lastModified

    def render_GET(self, request: IRequest) -> bytes | int:
        self._setEntityHeaders(request)
        if self._preconditionFailed(request):
            request.setResponseCode(http.PRECONDITION_FAILED)
            return b""
        if self._notModified(request):
            request.setResponseCode(http.NOT_MODIFIED)
            # Finished here: returning b"" would make Twisted add
            # Content-Length: 0, which a 304 must not carry (RFC 9110 8.6).
            request.finish()
            return NOT_DONE_YET
        span, partial = self._span(request)
        if span is None:
            request.setResponseCode(http.REQUESTED_RANGE_NOT_SATISFIABLE)
            request.setHeader(b"Content-Range", b"bytes */%d" % self.published.size)
            return b""
        body = None
        if request.method != b"HEAD" and span.length:
            try:
                body = self.published.open()
            except (OSError, NotPublished) as e:
                self._log.warn(
                    "cannot open {name}: {error}", name=self.published.name, error=e
                )
                request.setResponseCode(http.NOT_FOUND)
                # No validators: a cache must not keep this 404 as the file.
                for name in (b"ETag", b"Last-Modified", b"Accept-Ranges"):
                    request.responseHeaders.removeHeader(name)
                return b""
        if partial:
            request.setResponseCode(http.PARTIAL_CONTENT)
            request.setHeader(b"Content-Range", span.contentRange(self.published.size))
        request.setHeader(b"Content-Type", contentType(self.published.name).encode())
        request.setHeader(b"Content-Length", b"%d" % span.length)
        if body is None:
            return b""
        FileProducer(request, body, span.start, span.length).start()
        return NOT_DONE_YET

    render_HEAD = render_GET

    def _span(self, request: IRequest) -> tuple[ranges.Span | None, bool]:
        """
        The part of the file to send, and whether it is a partial (206)
        answer: all of it unless one Range applies; None when the Range
        cannot be satisfied.
        """
        whole = ranges.Span(0, self.published.size)
        header = request.getHeader(b"Range")
        if header is None or not self._rangeApplies(request):
            return whole, False
        parsed = ranges.parseRange(header)
        if parsed is None:
            return whole, False
        try:
            spans = ranges.resolve(parsed, self.published.size)
        except ranges.Unsatisfiable:
            return None, False
        if len(spans) > 1:
            return whole, False
        return spans[0], True
