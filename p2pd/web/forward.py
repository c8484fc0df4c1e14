# -*- test-case-name: tests.unit.test_proxy -*-
"""
Plain forwarding: a request sent on to its origin server as any HTTP proxy
sends it, and the answer relayed to the client with backpressure.

Nothing here knows SPP: the proxy (L{p2pd.web.proxy}) decides what is
forwarded, and what a p2pd node's answer means.
"""

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTCP, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.client import URI, FileBodyProducer, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IAgentEndpointFactory, IResponse
from zope.interface import implementer

from p2pd.core.net import endpointFor
from p2pd.twistedinternals import requestGone

FORWARD_TIMEOUT = 30
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
}


@implementer(IAgentEndpointFactory)
class Endpoints:
    """
    Where forwarded requests connect: plain TCP (only http URLs are
    forwarded), with no resolver round trip for IP addresses; to C{address}
    if given, whatever the URI's host.
    """

    def __init__(self, reactor: IReactorTCP, address: str | None = None) -> None:
        self.reactor = reactor
        self.address = address

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = self.address or uri.host.decode("ascii").strip("[]")
        return endpointFor(self.reactor, host, uri.port, FORWARD_TIMEOUT)


def send(agent: IAgent, request: http.Request) -> "defer.Deferred[IResponse]":
    """
    Send C{request} on with C{agent}: its method and URI, its end-to-end
    headers and C{Via}, and its body if it has one.
    """
    # The agent writes Host from the URI and Content-Length from the body:
    # the client's would be sent twice.
    headers = endToEnd(request.requestHeaders, {b"host", b"content-length"})
    # As every proxy must (RFC 9110, 7.6.3); a p2pd origin then answers
    # with a playlist instead of the file, since a p2pd proxy switches to
    # SPP on its answer anyway.
    headers.addRawHeader(b"Via", b"1.1 p2pd")
    content = request.content
    assert content is not None
    content.seek(0, 0)
    body = None
    if request.method not in (b"GET", b"HEAD") or content.read(1):
        content.seek(0, 0)
        body = FileBodyProducer(content)
    return agent.request(request.method, request.uri, headers, body)


def relay(
    request: server.Request, response: IResponse
) -> "defer.Deferred[None] | None":
    """
    Answer C{request} with C{response}: its status, end-to-end headers and
    body.

    @return: fires when the body has been relayed; None if the client is
        gone (the body is dropped).
    """
    if requestGone(request):
        discard(response)
        return None
    request.setResponseCode(response.code, response.phrase)
    # The origin's Server header or none: a p2pd one would make the next
    # proxy take an ordinary server for a p2pd node.
    request.responseHeaders.removeHeader(b"server")
    if not response.headers.hasHeader(b"content-type"):
        request.defaultContentType = None  # add none the origin did not send
    for name, values in endToEnd(response.headers).getAllRawHeaders():
        request.responseHeaders.setRawHeaders(name, values)
    if response.length is not UNKNOWN_LENGTH and request.method != b"HEAD":
        request.setHeader(b"Content-Length", b"%d" % response.length)
    copy = _Relay(request)
    response.deliverBody(copy)
    return copy.finished


def discard(response: IResponse) -> None:
    """
    Drop C{response}'s body, closing its connection.
    """
    response.deliverBody(_Discard())


def fromP2pd(response: IResponse) -> bool:
    """
    Whether C{response} comes from a p2pd node (C{Server: p2pd/...}).
    """
    name: bytes = (response.headers.getRawHeaders(b"server") or [b""])[0]
    return name.startswith(b"p2pd")


class _Relay(protocol.Protocol):
    """
    Copies a forwarded answer's body to the client, pausing the origin when
    the client reads slowly.
    """

    def __init__(self, request: server.Request) -> None:
        self.request = request
        self.finished: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)
        self.request.notifyFinish().addErrback(self._stop)

    def _stop(self, reason: Failure) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if not requestGone(self.request):
            self.request.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if not requestGone(self.request):
            self.request.unregisterProducer()
            if reason.check(ResponseDone, PotentialDataLoss):
                self.request.finish()
            else:
                # Cut short: finishing would pass a short body off as whole.
                self.request.channel.transport.abortConnection()  # type: ignore[union-attr]
        self.finished.callback(None)


class _Discard(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        pass


def endToEnd(headers: Headers, drop: set[bytes] | None = None) -> Headers:
    """
    C{headers} without the hop-by-hop ones (RFC 9110, 7.6.1): the standard
    set, those the C{Connection} (or C{Proxy-Connection}) header names, and
    C{drop}.
    """
    hop = HOP_BY_HOP | (drop or set())
    for name in (b"connection", b"proxy-connection"):
        for value in headers.getRawHeaders(name) or []:
            hop |= {token.strip().lower() for token in value.split(b",")}
    kept = Headers()
    for name, values in headers.getAllRawHeaders():
        if name.lower() not in hop:
            kept.setRawHeaders(name, values)
    return kept
