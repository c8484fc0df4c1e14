# -*- test-case-name: tests.unit.test_http_abuse,tests.integration.test_http_abuse -*-
"""
The HTTP channel of a node: Twisted's, with what a port open to anyone
needs on top.

A request's line and headers must all arrive within L{HEADER_DEADLINE}
seconds of the connection opening, or of the previous answer ending on a
kept-alive connection; trickling bytes does not extend it (slowloris). A
connection that misses it is closed, with 408 if part of a request had
arrived.

A request body is read only when the proxy forwards it: an absolute
C{http://} URI from a client that may use the proxy (the local host or a
granted subnet) to an allowed origin (-A), of at most
L{MAX_FORWARDED_BODY} bytes (413 past it). Any other request with a body
is answered at once (405 for a method other than GET and HEAD, 403 for a
client or origin the proxy refuses, 400 for GET or HEAD) and the
connection closed, before a byte of the body is read or stored.

Twisted's channel stores a body (in a temporary file past 100 KB) before
the request is processed; the decision is taken in C{allHeadersReceived},
the last step before the body, from the request line the channel keeps
privately (read through L{p2pd.twistedinternals}).
"""

from urllib.parse import urlsplit

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http

from p2pd import __version__
from p2pd.twistedinternals import bytesWaiting, requestLine

# Seconds for a request's line and headers to arrive, whatever the pace.
HEADER_DEADLINE = 20.0
# Bytes of request body the proxy forwards (a form, a small upload).
MAX_FORWARDED_BODY = 8 * 1024 * 1024
TOO_LARGE = f"a forwarded request body may hold at most {MAX_FORWARDED_BODY} bytes"

_CLEAN = Failure(ConnectionDone())


class NodeChannel(http.HTTPChannel):
    """
    L{http.HTTPChannel} with a deadline for request headers, and request
    bodies read only when forwarded.
    """

    _log = Logger()
    _deadline: IDelayedCall | None = None
    _partial = False
    _refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self._startDeadline()

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._deadline is not None and data:
            self._partial = True
        super().dataReceived(data)

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def allHeadersReceived(self) -> None:
        self._stopDeadline()
        if self.length != 0:
            refusal = self._bodyRefusal()
            if refusal is not None:
                self.refuse(*refusal)
                return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if not self._refused:
            super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        # Before the parent's, which may parse a pipelined request's
        # headers at once (and so stop this deadline again).
        if self.persistent:
            self._startDeadline()
        super().requestDone(request)

    def connectionLost(self, reason: Failure = _CLEAN) -> None:
        self._stopDeadline()
        super().connectionLost(reason)

    def _startDeadline(self) -> None:
        self._stopDeadline()
        self._partial = False
        self._deadline = self.callLater(HEADER_DEADLINE, self._headersLate)

    def _stopDeadline(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _headersLate(self) -> None:
        self._deadline = None
        peer = getattr(self.transport, "getPeer", lambda: None)()
        self._log.info(
            "{peer}: no complete request headers within {seconds} s",
            peer=getattr(peer, "host", peer),
            seconds=HEADER_DEADLINE,
        )
        # Bytes of a pipelined request wait in the line buffer unseen.
        if self._partial or bytesWaiting(self):
            self._write(http.REQUEST_TIMEOUT, "request headers too slow", head=False)
        self._refused = True
        self.timeoutConnection()

    def _bodyRefusal(self) -> tuple[int, str] | None:
        """
        Why the body of the request whose headers just arrived must not be
        read, as an HTTP status and message; None to read it.
        """
        method, target = requestLine(self)
        proxy = getattr(self.site, "proxy", None)  # type: ignore[attr-defined]
        if proxy is None or not target.lower().startswith(b"http://"):
            if method in (b"GET", b"HEAD"):
                return http.BAD_REQUEST, "GET and HEAD requests have no body here"
            return http.NOT_ALLOWED, "only GET and HEAD are supported"
        try:
            host = urlsplit(target.decode("ascii")).hostname or ""
        except (UnicodeDecodeError, ValueError):
            return http.BAD_REQUEST, "malformed request URI"
        client = getattr(self.transport.getPeer(), "host", "")  # type: ignore[union-attr]
        refusal = proxy.access.policyRefusal(client, host)
        if refusal is not None:
            return http.FORBIDDEN, refusal
        if self.length is not None and self.length > MAX_FORWARDED_BODY:
            return http.REQUEST_ENTITY_TOO_LARGE, TOO_LARGE
        return None

    def refuse(self, code: int, message: str) -> None:
        """
        Answer the request being received with C{code} and C{message}
        without reading the rest of it, and close the connection.
        """
        client = getattr(self.transport.getPeer(), "host", "")  # type: ignore[union-attr]
        self._log.info(
            "{client}: {code} before the request body: {why}",
            client=client,
            code=code,
            why=message,
        )
        self._write(code, message, head=requestLine(self)[0] == b"HEAD")
        self._refused = True
        self.persistent = False
        self.loseConnection()

    def _write(self, code: int, message: str, head: bool) -> None:
        body = (message + "\n").encode("utf-8")
        lines = [
            b"HTTP/1.1 %d %s" % (code, http.RESPONSES[code]),
            b"Server: p2pd/" + __version__.encode("ascii"),
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Length: %d" % len(body),
            b"Connection: close",
        ]
        if code == http.NOT_ALLOWED:
            lines.append(b"Allow: GET, HEAD")
        assert self.transport is not None
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else body))
