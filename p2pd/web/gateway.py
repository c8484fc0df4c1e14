# -*- test-case-name: tests.unit.test_gateway,tests.integration.test_gateway -*-
"""
The gateway: SPP content at plain URLs on the local node, for players that
cannot use a proxy (a browser's <video>, a media centre).

    http://NODE/.spp/HOST:PORT/PATH    streams spp://HOST:PORT/PATH
    http://NODE/.spps/HOST:PORT/PATH   streams spps://HOST:PORT/PATH

Only the local host and granted subnets (-n) may use it: anyone else would
make this node fetch on their behalf. The rules are the proxy's
(L{p2pd.web.access}): -A applies, and a granted host cannot reach the
node's own loopback and link-local addresses through it.
"""

from collections.abc import Sequence
from urllib.parse import quote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET, Request

from p2pd.core.errors import SelfConnection
from p2pd.core.url import DIRECT_PREFIX, BadURL, parse
from p2pd.engine.download import Download
from p2pd.engine.interfaces import IWebNode
from p2pd.twistedinternals import requestGone
from p2pd.web import stream
from p2pd.web.access import Access

PREFIX = b".spp"
# The gateway's path prefixes, and the scheme of the URLs they stand for.
SCHEMES = {PREFIX: "spp", b".spps": "spps"}
_log = Logger()

def gatewayURL(segments: Sequence[bytes], scheme: str = "spp") -> str | None:
    """
    The C{spp://} (or C{scheme}) URL for the gateway path segments after
    the prefix, or None if they name no file.
    """
    if len(segments) < 2 or not all(segments[1:]):
        return None
    try:
        authority = segments[0].decode("ascii")
        path = "/".join(quote(s.decode("utf-8"), safe="") for s in segments[1:])
    except UnicodeDecodeError:
        return None
    return f"{scheme}://{authority}/{path}"


def serve(request: Request, node: IWebNode, url: str, access: Access) -> bytes | int:
    """
    Stream C{url}'s content to C{request}, if the client may ask for it.
    """
    try:
        target = parse(url)
    except BadURL:
        stream.answerError(request, http.BAD_REQUEST, "malformed gateway URL")
        return NOT_DONE_YET
    client = getattr(request.getClientAddress(), "host", "")
    own = getattr(request.getHost(), "host", "")

    def judged(refusal: str | None) -> None:
        if requestGone(request):
            return
        if refusal is not None:
            _log.info("gateway refused {url}: {why}", url=url, why=refusal)
            stream.answerError(request, http.FORBIDDEN, refusal)
            return
        _fetch(request, node, url)

    access.refusal(client, own, target.host, target.port).addCallback(judged)
    return NOT_DONE_YET


def _fetch(request: Request, node: IWebNode, url: str) -> None:
    name = url.rsplit("/", 1)[-1]

    def started(download: Download) -> None:
        if requestGone(request):
            return
        body = stream.respond(request, download, name)
        if body is not NOT_DONE_YET:
            request.write(body)
            request.finish()

    def failed(reason: Failure) -> None:
        if reason.check(SelfConnection) and not request.finished:
            # The URL names this very node: its published file is right here.
            path = url.split("/", 3)[3]
            request.redirect(f"/{DIRECT_PREFIX}/{path}".encode("utf-8"))
            request.finish()
            return
        code, message = stream.failureStatus(reason)
        _log.info("{url}: {code} {message}", url=url, code=code, message=message)
        if requestGone(request):
            return
        stream.answerError(request, code, message)

    node.download(url).addCallbacks(started, failed)

