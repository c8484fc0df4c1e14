# -*- test-case-name: tests.test_gateway -*-
"""
The gateway: SPP content at plain URLs on the local node, for players that
cannot use a proxy (a browser's <video>, a media centre).

    http://NODE/.spp/HOST:PORT/PATH   streams spp://HOST:PORT/PATH

Only the local host and granted subnets (-n) may use it: anyone else would
make this node fetch on their behalf.
"""

import ipaddress
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET, Request

from p2pd.engine.download import Download
from p2pd.engine.interfaces import SelfConnection
from p2pd.playlist import DIRECT_PREFIX
from p2pd.web import stream

PREFIX = b".spp"
_log = Logger()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def granted(host: str, grants: Sequence[Network]) -> bool:
    """
    Whether the client at C{host} may make this node fetch for it: the local
    host always, others when inside a granted subnet.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return True
    return any(address.version == n.version and address in n for n in grants)


def gatewayURL(segments: Sequence[bytes]) -> str | None:
    """
    The C{spp://} URL for the gateway path segments after the prefix, or
    None if they name no file.
    """
    if len(segments) < 2 or not all(segments[1:]):
        return None
    try:
        authority = segments[0].decode("ascii")
        path = "/".join(quote(s.decode("utf-8"), safe="") for s in segments[1:])
    except UnicodeDecodeError:
        return None
    return f"spp://{authority}/{path}"


def serve(
    request: Request, node: Any, url: str, grants: Sequence[Network]
) -> bytes | int:
    """
    Stream C{url}'s content to C{request}, if the client may ask for it.
    """
    client = request.getClientAddress()
    host = getattr(client, "host", "")
    if not granted(host, grants):
        _log.info("refused {client}: not granted to fetch {url}", client=host, url=url)
        request.setResponseCode(http.FORBIDDEN)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"this node fetches only for its own host and granted subnets (-n)\n"
    name = url.rsplit("/", 1)[-1]

    def started(download: Download) -> None:
        if request.finished or getattr(request, "_disconnected", False):
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
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        body = (message + "\n").encode("utf-8")
        request.setHeader(b"Content-Length", b"%d" % len(body))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    node.download(url).addCallbacks(started, failed)
    return NOT_DONE_YET
