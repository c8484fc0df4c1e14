# -*- test-case-name: tests.test_proxy -*-
"""
The viewer's proxy: players set C{http_proxy=http://localhost:1111} and play
SPP content as if it were plain HTTP.

An absolute-URI request for a p2pd node (its playlist URL, its C{/.direct/}
fallback URL, or an C{spp://} URL) is served from the download engine: the
bytes come over SPP from the origin, caches and other viewers, verified. Any
other http URL is forwarded as an ordinary proxy does, so setting
C{http_proxy} for a player breaks nothing else.

A node is known to be a p2pd node from its C{/.direct/} URLs, from
opening the file over SPP, or from the C{Server: p2pd/...} header of a
forwarded answer. The first request for a file of a C{host:port} not known
either way is opened over SPP and, unless that has succeeded within
FIRST_CONTACT_GRACE or failed before, forwarded: whichever answers first
decides. A p2pd node nearby then starts its content as fast as if it were
known, without a forwarded request competing for the first block, and an
ordinary site's first request in an hour waits at most 20 ms. What is
learned is remembered for an hour, so an ordinary site sees one SPP attempt
an hour.
"""

from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.client import (
    URI,
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from twisted.web.proxy import ProxyRequest
from zope.interface import implementer

from p2pd.core.errors import SelfConnection
from p2pd.core.net import DEFAULT_PORT, endpointFor
from p2pd.core.url import DIRECT_PREFIX
from p2pd.engine.download import Download
from p2pd.engine.interfaces import IWebNode
from p2pd.web import stream
from p2pd.web.access import Access, Verdict
from p2pd.web.channel import MAX_FORWARDED_BODY, TOO_LARGE

FORWARD_TIMEOUT = 30
# How long a first contact waits for SPP before forwarding the request too:
# a node on the same network opens a file in a few milliseconds.
FIRST_CONTACT_GRACE = 0.02
KNOWN_FOR = 3600.0
MAX_KNOWN = 1024
_HOP_BY_HOP = {
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


class KnownNodes:
    """
    C{host:port}s recently seen to be p2pd nodes (or not to be), bounded
    and expiring.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._until: OrderedDict[tuple[str, int], float] = OrderedDict()

    def add(self, host: str, port: int) -> None:
        self._until[(host, port)] = self.clock.seconds() + KNOWN_FOR
        self._until.move_to_end((host, port))
        while len(self._until) > MAX_KNOWN:
            self._until.popitem(last=False)

    def __contains__(self, address: tuple[str, int]) -> bool:
        until = self._until.get(address)
        if until is None:
            return False
        if until < self.clock.seconds():
            del self._until[address]
            return False
        return True


class ProxyConfig:
    """
    What the proxy needs: the node, who may make it fetch from where, and
    what it has learned.
    """

    def __init__(self, node: IWebNode, reactor: Any, access: Access) -> None:
        self.node = node
        self.reactor = reactor
        self.access = access
        self.known = KnownNodes(reactor)
        self.notNodes = KnownNodes(reactor)
        self._pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor), self._pool)

    def pinnedAgent(self, address: str) -> Agent:
        """
        An agent that connects to C{address} whatever host a URI names (the
        address that host was judged by).
        """
        agent: Agent = Agent.usingEndpointFactory(
            self.reactor, _Endpoints(self.reactor, address), self._pool
        )
        return agent


@implementer(IAgentEndpointFactory)
class _Endpoints:
    """
    Where forwarded requests connect: plain TCP (only http URLs are
    forwarded), with no resolver round trip for IP addresses; to C{address}
    if given, whatever the URI's host.
    """

    def __init__(self, reactor: Any, address: str | None = None) -> None:
        self.reactor = reactor
        self.address = address

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = self.address or uri.host.decode("ascii").strip("[]")
        return endpointFor(self.reactor, host, uri.port, FORWARD_TIMEOUT)


class _Relay(protocol.Protocol):
    """
    Copies a forwarded answer's body to the player, pausing the origin when
    the player reads slowly.
    """

    def __init__(self, request: "NodeRequest") -> None:
        self.request = request
        self.finished: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.request.registerProducer(self.transport, True)
        self.request.notifyFinish().addErrback(self._stop)

    def _stop(self, reason: Failure) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if not self.request.finished and not self.request._disconnected:
            self.request.write(data)

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        if not self.request._disconnected and not self.request.finished:
            self.request.unregisterProducer()
            if reason.check(ResponseDone, PotentialDataLoss):
                self.request.finish()
            else:
                # Cut short: finishing would pass a short body off as whole.
                self.request.channel.transport.abortConnection()  # type: ignore[union-attr]
        self.finished.callback(None)


class NodeRequest(ProxyRequest, server.Request):
    """
    Every HTTP request to a node: absolute URIs are proxied (to SPP or
    forwarded), paths go to the node's own resources.
    """

    _log = Logger()
    _bodyLength = 0

    def __init__(self, channel: Any, queued: Any = None) -> None:
        if queued is None:
            server.Request.__init__(self, channel)
        else:
            server.Request.__init__(self, channel, queued)
        self.reactor = getattr(channel.site, "reactor", None)

    def handleContentChunk(self, data: bytes) -> None:
        """
        Store a chunk of a forwarded body, up to L{MAX_FORWARDED_BODY} bytes
        (a body of announced length was judged by its headers).
        """
        if self._bodyLength > MAX_FORWARDED_BODY:
            return
        self._bodyLength += len(data)
        if self._bodyLength > MAX_FORWARDED_BODY:
            self.channel.refuse(http.REQUEST_ENTITY_TOO_LARGE, TOO_LARGE)  # type: ignore[attr-defined]
            return
        super().handleContentChunk(data)

    @property
    def proxy(self) -> ProxyConfig | None:
        return getattr(self.channel.site, "proxy", None)  # type: ignore[attr-defined]

    def process(self) -> None:
        proxy = self.proxy
        if proxy is None or not self.uri.lower().startswith((b"http://", b"spp://")):
            server.Request.process(self)
            return
        self.site = self.channel.site  # type: ignore[attr-defined]
        self.setHeader(b"Server", b"p2pd")
        self.setHeader(b"Date", http.datetimeToString())
        try:
            target = urlsplit(self.uri.decode("ascii"))
            host = (target.hostname or "").lower()
            port = target.port or (80 if target.scheme == "http" else DEFAULT_PORT)
        except (UnicodeDecodeError, ValueError):
            self._refuse(http.BAD_REQUEST, "malformed request URI")
            return
        if not host:
            self._refuse(http.BAD_REQUEST, "no host in the request URI")
            return
        if self.method not in (b"GET", b"HEAD") and target.scheme == "spp":
            self._refuse(http.NOT_ALLOWED, "only GET and HEAD for spp:// URLs")
            return
        client = getattr(self.getClientAddress(), "host", "")
        own = getattr(self.getHost(), "host", "")
        path = target.path or "/"

        def judged(verdict: Verdict) -> None:
            refusal = verdict.refusal
            if self._disconnected or self.finished:
                return
            if refusal is not None:
                self._log.info(
                    "proxy refused {uri}: {why}",
                    uri=self.uri.decode("ascii", "backslashreplace"),
                    why=refusal,
                )
                self._refuse(http.FORBIDDEN, refusal)
                return
            sppURL = _contentURL(target.scheme, host, port, path, proxy.known)
            if sppURL is not None and self.method in (b"GET", b"HEAD"):
                self._serveSPP(proxy, sppURL)
            else:
                agent = proxy.agent
                if verdict.addresses:
                    agent = proxy.pinnedAgent(verdict.addresses[0])
                self._forward(proxy, agent, host, port, path)

        proxy.access.judge(client, own, host, port).addCallback(judged)

    def _refuse(self, code: int, message: str) -> None:
        body = (message + "\n").encode("utf-8")
        self.setResponseCode(code)
        self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        self.setHeader(b"Content-Length", b"%d" % len(body))
        if self.method != b"HEAD":
            self.write(body)
        self.finish()

    def _serveSPP(self, proxy: ProxyConfig, url: str) -> None:
        proxy.node.download(url).addCallbacks(
            self._stream, self._sppFailed, callbackArgs=(url,), errbackArgs=(url,)
        )

    def _stream(self, download: Download, url: str) -> None:
        if self._disconnected or self.finished:
            return
        body = stream.respond(self, download, unquote(url.rsplit("/", 1)[-1]))
        if body is not server.NOT_DONE_YET:
            self.write(body)
            self.finish()

    def _sppFailed(self, reason: Failure, url: str) -> None:
        if self._disconnected or self.finished:
            return
        if reason.check(SelfConnection):
            self._serveLocally(url)
            return
        code, message = stream.failureStatus(reason)
        self._log.info("{url}: {code} {why}", url=url, code=code, why=message)
        self._refuse(code, message)

    def _serveLocally(self, url: str) -> None:
        """
        The URL names this very node: serve the published file itself.
        """
        path = urlsplit(url).path
        self.uri = self.path = f"/{DIRECT_PREFIX}{path}".encode("utf-8")
        server.Request.process(self)

    def _forward(
        self, proxy: ProxyConfig, agent: Agent, host: str, port: int, path: str
    ) -> None:
        """
        Pass the request on to the origin server with C{agent}, as any HTTP
        proxy would; switch to SPP if the answer comes from a p2pd node.
        """
        # The agent writes Host from the URI and Content-Length from the
        # body: the client's would be sent twice.
        headers = _endToEnd(self.requestHeaders, {b"host", b"content-length"})
        # As every proxy must (RFC 9110, 7.6.3); a p2pd origin then answers
        # with a playlist instead of the file, since this proxy switches to
        # SPP on its answer anyway.
        headers.addRawHeader(b"Via", b"1.1 p2pd")
        content = self.content
        assert content is not None
        content.seek(0, 0)
        body = None
        if self.method not in (b"GET", b"HEAD") or content.read(1):
            content.seek(0, 0)
            body = FileBodyProducer(content)
        if (
            self.method in (b"GET", b"HEAD")
            and _isContent(path)
            and (host, port) not in proxy.notNodes
        ):
            _FirstContact(
                self,
                proxy,
                host,
                port,
                path,
                lambda: agent.request(self.method, self.uri, headers, body),
            )
            return
        d = agent.request(self.method, self.uri, headers, body)

        def answered(response: Any) -> Any:
            server_ = (response.headers.getRawHeaders(b"server") or [b""])[0]
            if server_.startswith(b"p2pd") and _isContent(path):
                proxy.known.add(host, port)
                if self.method in (b"GET", b"HEAD") and response.code < 400:
                    response.deliverBody(_Discard())
                    self._serveSPP(proxy, _sppURL(host, port, path))
                    return None
            return self._relay(response)

        def failed(reason: Failure) -> None:
            url = _sppURL(host, port, path)
            if proxy.node.hasCached(url):
                self._serveSPP(proxy, url)
                return
            self._forwardFailed(reason)

        d.addCallbacks(answered, failed)

    def _forwardFailed(self, reason: Failure) -> None:
        code, message = stream.failureStatus(reason)
        self._log.info(
            "forwarding {uri}: {why}",
            uri=self.uri.decode("ascii", "backslashreplace"),
            why=reason.getErrorMessage(),
        )
        if not self._disconnected and not self.finished:
            self._refuse(code, message)

    def _relay(self, response: Any) -> "defer.Deferred[None] | None":
        if self._disconnected or self.finished:
            response.deliverBody(_Discard())
            return None
        self.setResponseCode(response.code, response.phrase)
        if not response.headers.hasHeader(b"content-type"):
            self.defaultContentType = None  # add none the origin did not send
        for name, values in _endToEnd(response.headers).getAllRawHeaders():
            self.responseHeaders.setRawHeaders(name, values)
        if response.length is not UNKNOWN_LENGTH and self.method != b"HEAD":
            self.setHeader(b"Content-Length", b"%d" % response.length)
        relay = _Relay(self)
        response.deliverBody(relay)
        return relay.finished


class _FirstContact:
    """
    A request for a file of a C{host:port} not known to be a p2pd node or
    not: opened over SPP and, after L{FIRST_CONTACT_GRACE} or as soon as
    that fails, forwarded. Whichever tells first decides: an SPP open that
    succeeds serves the content (the forwarded request is dropped, or not
    sent); an answer from an ordinary server is relayed; an answer from a
    p2pd node waits for the SPP open.
    """

    def __init__(
        self,
        request: NodeRequest,
        proxy: ProxyConfig,
        host: str,
        port: int,
        path: str,
        forward: Callable[[], "defer.Deferred[Any]"],
    ) -> None:
        self.request = request
        self.proxy = proxy
        self.address = (host, port)
        self.url = _sppURL(host, port, path)
        self.forwarded: defer.Deferred[Any] | None = None
        self.decided = False
        self.p2pdAnswered = False
        self.sppFailure: Failure | None = None
        self.forwardFailure: Failure | None = None
        self._send = forward
        self._grace = proxy.reactor.callLater(FIRST_CONTACT_GRACE, self._forward)
        proxy.node.download(self.url).addCallbacks(self._opened, self._sppFailed)

    def _forward(self) -> None:
        if self.decided or self.forwarded is not None:
            return
        if self._grace.active():
            self._grace.cancel()
        self.forwarded = self._send()
        self.forwarded.addCallbacks(self._answered, self._forwardFailed)

    def _dropForwarded(self) -> None:
        if self._grace.active():
            self._grace.cancel()
        if self.forwarded is not None:
            self.forwarded.cancel()

    def _decide(self) -> bool:
        """
        Take the decision, unless it was taken already.
        """
        decided, self.decided = self.decided, True
        return not decided

    def _opened(self, download: Download) -> None:
        if not self._decide():
            return
        self.proxy.known.add(*self.address)
        self._dropForwarded()
        self.request._stream(download, self.url)

    def _sppFailed(self, reason: Failure) -> None:
        self.sppFailure = reason
        if self.decided:
            return
        if reason.check(SelfConnection) or self.p2pdAnswered:
            self._decide()
            self._dropForwarded()
            self.request._sppFailed(reason, self.url)
        elif self.forwardFailure is not None:
            self._decide()
            self.request._forwardFailed(self.forwardFailure)
        else:
            self._forward()

    def _answered(self, response: Any) -> Any:
        if self.decided:
            response.deliverBody(_Discard())
            return None
        server_ = (response.headers.getRawHeaders(b"server") or [b""])[0]
        if not server_.startswith(b"p2pd"):
            self._decide()
            self.proxy.notNodes.add(*self.address)
            return self.request._relay(response)
        self.proxy.known.add(*self.address)
        if response.code >= 400:
            self._decide()
            return self.request._relay(response)
        response.deliverBody(_Discard())
        self.p2pdAnswered = True
        if self.sppFailure is not None:
            self._sppFailed(self.sppFailure)
        return None

    def _forwardFailed(self, reason: Failure) -> None:
        if self.decided:
            return
        self.forwardFailure = reason
        if self.sppFailure is not None:
            self._decide()
            self.request._forwardFailed(reason)


class _Discard(protocol.Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        pass


def _endToEnd(headers: Headers, drop: set[bytes] | None = None) -> Headers:
    """
    C{headers} without the hop-by-hop ones (RFC 9110, 7.6.1): the standard
    set, those the C{Connection} (or C{Proxy-Connection}) header names, and
    C{drop}.
    """
    hop = _HOP_BY_HOP | (drop or set())
    for name in (b"connection", b"proxy-connection"):
        for value in headers.getRawHeaders(name) or []:
            hop |= {token.strip().lower() for token in value.split(b",")}
    kept = Headers()
    for name, values in headers.getAllRawHeaders():
        if name.lower() not in hop:
            kept.setRawHeaders(name, values)
    return kept


def _sppURL(host: str, port: int, path: str) -> str:
    if ":" in host:
        host = f"[{host}]"
    return f"spp://{host}:{port}{quote(unquote(path), safe='/')}"


def _contentURL(
    scheme: str, host: str, port: int, path: str, known: KnownNodes
) -> str | None:
    """
    The C{spp://} URL an absolute URI stands for, if its content comes over
    SPP: C{spp://} URLs, C{/.direct/} fallback URLs, and any file of a
    known p2pd node.
    """
    if scheme == "spp":
        return _sppURL(host, port, path)
    direct = f"/{DIRECT_PREFIX}/"
    if path.startswith(direct):
        known.add(host, port)
        return _sppURL(host, port, "/" + path[len(direct) :])
    if (host, port) in known and _isContent(path):
        return _sppURL(host, port, path)
    return None


def _isContent(path: str) -> bool:
    """
    Whether C{path}, on a p2pd node, names a published file (not the node's
    own pages such as C{/.status}).
    """
    return not path.startswith("/.") and path != "/"
