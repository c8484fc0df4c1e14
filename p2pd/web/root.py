# -*- test-case-name: tests.unit.test_root -*-
"""
The root of a node's HTTP side: which answer a request path gets.

    /NAME           the file NAME, or its playlist with --redirect
    /.direct/NAME   the file NAME itself, never a playlist (the fallback URL)
    /.status        what the node serves and fetches, as JSON
    /.spp/HOST:PORT/PATH   spp://HOST:PORT/PATH streamed (the gateway)
    /.spps/HOST:PORT/PATH  spps://HOST:PORT/PATH streamed

Names starting with a dot are never published, so p2pd's own paths cannot
shadow a published file.
"""

import re
from urllib.parse import quote

from twisted.logger import Logger
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from p2pd import __version__, playlist
from p2pd.core.url import DIRECT_PREFIX
from p2pd.engine.interfaces import IWebNode
from p2pd.store.published import NotPublished, PublicDirectory
from p2pd.web import gateway, status
from p2pd.web.access import Access, granted
from p2pd.web.files import PublishedFileResource

# Proxies recognise p2pd nodes by this header (p2pd.web.proxy).
SERVER = f"p2pd/{__version__}".encode("ascii")

# host, IPv4 or [IPv6], then an optional port: anything else in a Host
# header is not trusted into a playlist.
_AUTHORITY = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$")


class NodeRoot(Resource):
    """
    Dispatches every HTTP request to the node by its path.

    @ivar public: the published directory, or None when this node publishes
        nothing.
    @ivar redirect: answer GET of a published name with a playlist.
    @ivar direct: serve file bytes over plain HTTP at all.
    @ivar access: who may use the gateway and C{/.status}; without it, only
        the local host may see C{/.status}.
    @ivar secure: the node has a certificate for its name: playlists name
        C{spps://} and C{https://} URLs.

    C{spp://} URLs name the port the request arrived on: HTTP and SPP share
    it.
    """

    isLeaf = True
    _log = Logger()

    def __init__(
        self,
        public: PublicDirectory | None,
        redirect: bool = False,
        direct: bool = True,
        node: IWebNode | None = None,
        access: Access | None = None,
        secure: bool = False,
    ) -> None:
        super().__init__()
        self.secure = secure
        self.node = node
        self.access = access
        self.public = public
        self.redirect = redirect
        self.direct = direct

    def render(self, request: IRequest) -> bytes | int:
        request.setHeader(b"Server", SERVER)
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(http.NOT_ALLOWED)
            request.setHeader(b"Allow", b"GET, HEAD")
            return self._message(request, "only GET and HEAD are supported")
        segments = list(request.postpath)
        if segments == [b".status"] and self.node is not None:
            client = getattr(request.getClientAddress(), "host", "")
            if not granted(client, self.access.grants if self.access else []):
                request.setResponseCode(http.FORBIDDEN)
                return self._message(
                    request, "only this host and granted subnets (-n) may see it"
                )
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-cache")
            return self._body(request, status.render(self.node))
        scheme = gateway.SCHEMES.get(segments[0]) if segments else None
        if scheme is not None and self.node and self.access:
            url = gateway.gatewayURL(segments[1:], scheme)
            if url is None:
                return self._notFound(request, "gateway path names no file")
            return gateway.serve(request, self.node, url, self.access)  # type: ignore[arg-type]
        wantsBytes = bool(segments) and segments[0] == DIRECT_PREFIX.encode()
        if wantsBytes:
            segments = segments[1:]
        if self.public is None:
            return self._notFound(request, "this node publishes no directory")
        try:
            published = self.public.lookup(segments)
        except NotPublished as e:
            return self._notFound(request, e.reason)
        if (self.redirect or _fromP2pdProxy(request)) and not wantsBytes:
            # A p2pd proxy switches to SPP on this answer and drops its
            # body: the small playlist spares sending it the file.
            return self._playlist(request, published.name, published.size)
        if not self.direct:
            request.setResponseCode(http.FORBIDDEN)
            return self._message(
                request,
                "direct HTTP serving is off on this node: play the spp:// URL "
                "or use a p2pd proxy",
            )
        body: bytes | int = PublishedFileResource(published).render(request)
        return body

    def _playlist(self, request: IRequest, name: str, size: int) -> bytes:
        httpAuthority = self._authority(request)
        match = _AUTHORITY.match(httpAuthority.encode("ascii"))
        assert match is not None
        host = match.group(1).decode("ascii")
        port = request.getHost().port
        body = playlist.forFile(
            f"{host}:{port}", httpAuthority, name, size, self.secure
        )
        request.setHeader(b"Content-Type", playlist.CONTENT_TYPE)
        request.setHeader(b"Content-Disposition", _playlistDisposition(name))
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._body(request, body)

    def _authority(self, request: IRequest) -> str:
        """
        C{host[:port]} as the client addressed this node, so playlists work
        behind DNS names; the local address when the Host header is absent
        or not a plain authority.
        """
        host = request.getHeader(b"Host")
        if host is not None and _AUTHORITY.match(host):
            return str(host.decode("ascii"))
        local = request.getHost()
        address = local.host.split("%", 1)[0]  # a zone has no place in a URL
        if ":" in address:
            address = f"[{address}]"
        return f"{address}:{local.port}"

    def _notFound(self, request: IRequest, reason: str) -> bytes:
        self._log.info(
            "{client} {path}: not published ({reason})",
            client=request.getClientAddress(),
            path=request.path.decode("ascii", "backslashreplace"),
            reason=reason,
        )
        request.setResponseCode(http.NOT_FOUND)
        return self._message(request, "no such file")

    def _message(self, request: IRequest, text: str) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return self._body(request, (text + "\n").encode("utf-8"))

    def _body(self, request: IRequest, body: bytes) -> bytes:
        if request.method == b"HEAD":
            request.setHeader(b"Content-Length", b"%d" % len(body))
            return b""
        return body


def _fromP2pdProxy(request: IRequest) -> bool:
    """
    Whether the request came through a p2pd proxy, which names itself in
    C{Via} (C{1.1 p2pd}).
    """
    for value in request.requestHeaders.getRawHeaders(b"via") or []:
        for hop in value.split(b","):
            fields = hop.split()
            if len(fields) >= 2 and fields[1].lower() == b"p2pd":
                return True
    return False


def _playlistDisposition(name: str) -> bytes:
    """
    C{Content-Disposition} for a playlist: saved as C{NAME.spp}, the name the
    desktop integration registers for p2pd playlists (a C{.pls} name would
    open an ordinary player instead of the helper).
    """
    base = name.rsplit("/", 1)[-1] + ".spp"
    ascii = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in base)
    return (
        f"inline; filename=\"{ascii}\"; filename*=UTF-8''{quote(base, safe='')}"
    ).encode("ascii")
