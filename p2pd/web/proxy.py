# -*- test-case-name: tests.unit.test_proxy -*-
"""
The viewer's proxy: players set C{http_proxy=http://localhost:1111} and play
SPP content as if it were plain HTTP.

An absolute-URI request for a p2pd node (its playlist URL, its C{/.direct/}
fallback URL, or an C{spp://} URL) is served from the download engine: the
bytes come over SPP from the origin, caches and other viewers, verified. Any
other http URL is forwarded as an ordinary proxy does (L{p2pd.web.forward}),
so setting C{http_proxy} for a player breaks nothing else.

An C{https://} URL (asked for as an absolute URI, not through CONNECT) is
taken for a p2pd origin's over TLS: fetched over SPP over TLS
(C{spps://}), the origin's certificate verified, and never forwarded.

A node is known to be a p2pd node from its C{/.direct/} URLs, from
opening the file over SPP, or from the C{Server: p2pd/...} header of a
forwarded answer. The first request for a file of a C{host:port} not known
either way is a first contact (L{p2pd.web.firstcontact}): opened over SPP
and, unless that succeeds within a short grace, forwarded too. What is
learned is remembered for an hour, so an ordinary site sees one SPP attempt
an hour.
"""

from collections import OrderedDict
from typing import Any
from urllib.parse import SplitResult, quote, unquote, urlsplit

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IResponse
from twisted.web.proxy import ProxyRequest

from p2pd.core.errors import SelfConnection
from p2pd.core.net import DEFAULT_PORT
from p2pd.core.url import DIRECT_PREFIX
from p2pd.engine.download import Download
from p2pd.engine.interfaces import IWebNode
from p2pd.twistedinternals import requestGone
from p2pd.web import forward, stream
from p2pd.web.access import Access, Verdict
from p2pd.web.channel import MAX_FORWARDED_BODY, TOO_LARGE
from p2pd.web.firstcontact import (
    Answered,
    FirstContact,
    ForwardFailed,
    Opened,
    OpenFailed,
    Outcome,
)
from p2pd.web.root import SERVER

KNOWN_FOR = 3600.0
MAX_KNOWN = 1024


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
        self.agent = Agent.usingEndpointFactory(
            reactor, forward.Endpoints(reactor), self._pool
        )

    def pinnedAgent(self, address: str) -> Agent:
        """
        An agent that connects to C{address} whatever host a URI names (the
        address that host was judged by).
        """
        agent: Agent = Agent.usingEndpointFactory(
            self.reactor, forward.Endpoints(self.reactor, address), self._pool
        )
        return agent

    def learn(self, host: str, port: int, isNode: bool) -> None:
        """
        Remember whether C{host:port} is a p2pd node.
        """
        (self.known if isNode else self.notNodes).add(host, port)


class NodeRequest(ProxyRequest, server.Request):
    """
    Every HTTP request to a node. As a L{ProxyRequest}, its C{process}
    bridges absolute URIs to SPP downloads, or forwards them; a request for
    a path goes to the node's own resources.

    Twisted's C{ProxyRequest.process} relays over raw TCP with no access
    rules, backpressure or SPP: this one keeps its C{ports} and C{reactor}
    and replaces the rest.
    """

    ports = {b"http": 80, b"spp": DEFAULT_PORT, b"https": 443, b"spps": DEFAULT_PORT}
    _log = Logger()
    _bodyLength = 0

    def __init__(self, channel: Any, queued: Any = None) -> None:
        if queued is None:
            server.Request.__init__(self, channel)
        else:
            server.Request.__init__(self, channel, queued)
        self.reactor = channel.site.reactor

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
        """
        Check an absolute URI, judge whether the client may have the node
        fetch it, then route it: SPP content, a first contact, or plain
        forwarding.
        """
        proxy = self.proxy
        if proxy is None or not self.uri.lower().startswith(_PROXIED):
            server.Request.process(self)
            return
        self.site = self.channel.site  # type: ignore[attr-defined]
        self.setHeader(b"Server", SERVER)
        self.setHeader(b"Date", http.datetimeToString())
        try:
            target = urlsplit(self.uri.decode("ascii"))
            host = (target.hostname or "").lower()
            port = target.port or self.ports[target.scheme.encode("ascii")]
        except (UnicodeDecodeError, ValueError):
            stream.answerError(self, http.BAD_REQUEST, "malformed request URI")
            return
        if not host:
            stream.answerError(self, http.BAD_REQUEST, "no host in the request URI")
            return
        if self.method not in (b"GET", b"HEAD") and target.scheme != "http":
            stream.answerError(
                self, http.NOT_ALLOWED, f"only GET and HEAD for {target.scheme}:// URLs"
            )
            return
        client = getattr(self.getClientAddress(), "host", "")
        own = getattr(self.getHost(), "host", "")
        proxy.access.judge(client, own, host, port).addCallback(
            self._route, proxy, target, host, port
        )

    def _route(
        self,
        verdict: Verdict,
        proxy: ProxyConfig,
        target: SplitResult,
        host: str,
        port: int,
    ) -> None:
        if requestGone(self):
            return
        if verdict.refusal is not None:
            self._log.info(
                "proxy refused {uri}: {why}",
                uri=self.uri.decode("ascii", "backslashreplace"),
                why=verdict.refusal,
            )
            stream.answerError(self, http.FORBIDDEN, verdict.refusal)
            return
        path = target.path or "/"
        reading = self.method in (b"GET", b"HEAD")
        if target.scheme in ("https", "spps"):
            self._serveSPP(proxy, _sppURL(host, port, _directPath(path), True))
            return
        sppURL = _contentURL(target.scheme, host, port, path, proxy.known)
        if sppURL is not None and reading:
            self._serveSPP(proxy, sppURL)
            return
        agent = proxy.agent
        if verdict.addresses:
            agent = proxy.pinnedAgent(verdict.addresses[0])
        if reading and _isContent(path) and (host, port) not in proxy.notNodes:
            self._firstContact(proxy, agent, _sppURL(host, port, path), host, port)
        else:
            self._forward(proxy, agent, host, port, path)

    def _serveSPP(self, proxy: ProxyConfig, url: str) -> None:
        proxy.node.download(url).addCallbacks(
            self._stream, self._sppFailed, callbackArgs=(url,), errbackArgs=(url,)
        )

    def _stream(self, download: Download, url: str) -> None:
        if requestGone(self):
            return
        body = stream.respond(self, download, unquote(url.rsplit("/", 1)[-1]))
        if body is not server.NOT_DONE_YET:
            self.write(body)
            self.finish()

    def _sppFailed(self, reason: Failure, url: str) -> None:
        if requestGone(self):
            return
        if reason.check(SelfConnection):
            self._serveLocally(url)
            return
        code, message = stream.failureStatus(reason)
        self._log.info("{url}: {code} {why}", url=url, code=code, why=message)
        stream.answerError(self, code, message)

    def _serveLocally(self, url: str) -> None:
        """
        The URL names this very node: serve the published file itself.
        """
        path = urlsplit(url).path
        self.uri = self.path = f"/{DIRECT_PREFIX}{path}".encode("utf-8")
        server.Request.process(self)

    def _firstContact(
        self, proxy: ProxyConfig, agent: Agent, url: str, host: str, port: int
    ) -> None:
        """
        Race an SPP open of C{url} against forwarding the request, and act
        on the outcome.
        """
        race = FirstContact(
            self.reactor,
            lambda: proxy.node.download(url),
            lambda: forward.send(agent, self),
            lambda isNode: proxy.learn(host, port, isNode),
        )
        race.decided.addCallback(self._raced, url)

    def _raced(self, outcome: Outcome, url: str) -> object:
        match outcome:
            case Opened(download):
                self._stream(download, url)
            case OpenFailed(reason):
                self._sppFailed(reason, url)
            case Answered(response):
                return forward.relay(self, response)
            case ForwardFailed(reason):
                self._forwardFailed(reason)
        return None

    def _forward(
        self, proxy: ProxyConfig, agent: Agent, host: str, port: int, path: str
    ) -> None:
        """
        Pass the request on to the origin server with C{agent}, as any HTTP
        proxy would; switch to SPP if the answer comes from a p2pd node, or
        if the origin cannot be reached and the cache holds the file.
        """
        url = _sppURL(host, port, path)

        def answered(response: IResponse) -> object:
            if forward.fromP2pd(response) and _isContent(path):
                proxy.known.add(host, port)
                if self.method in (b"GET", b"HEAD") and response.code < 400:
                    forward.discard(response)
                    self._serveSPP(proxy, url)
                    return None
            return forward.relay(self, response)

        def failed(reason: Failure) -> None:
            if proxy.node.hasCached(url):
                self._serveSPP(proxy, url)
                return
            self._forwardFailed(reason)

        forward.send(agent, self).addCallbacks(answered, failed)

    def _forwardFailed(self, reason: Failure) -> None:
        code, message = stream.failureStatus(reason)
        self._log.info(
            "forwarding {uri}: {why}",
            uri=self.uri.decode("ascii", "backslashreplace"),
            why=reason.getErrorMessage(),
        )
        if not requestGone(self):
            stream.answerError(self, code, message)


# The schemes of absolute URIs the proxy takes.
_PROXIED = (b"http://", b"spp://", b"https://", b"spps://")


def _sppURL(host: str, port: int, path: str, secure: bool = False) -> str:
    if ":" in host:
        host = f"[{host}]"
    scheme = "spps" if secure else "spp"
    return f"{scheme}://{host}:{port}{quote(unquote(path), safe='/')}"


def _directPath(path: str) -> str:
    """
    The file's path in C{path}, a fallback URL's (C{/.direct/NAME}) or not.
    """
    direct = f"/{DIRECT_PREFIX}/"
    return "/" + path[len(direct) :] if path.startswith(direct) else path


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
