# -*- test-case-name: tests.unit.test_control -*-
"""
The node's control listener: C{p2pd cache} asks the running node to change
its cache, so that the node never serves or announces what was removed.

It listens on a loopback address and a port of its own, both written in
the cache's lock file with a random token (L{p2pd.store.cachelock}), and
answers only loopback clients that send the token in L{TOKEN_HEADER}:

    POST /.cache/rm?url=URL          remove every version of URL
    POST /.cache/purge               empty the cache
    POST /.cache/recheck?url=URL&version=V&blocks=I,J,...
                                     check these blocks again on disk
                                     and drop the bad ones

Answers are JSON objects: C{{"removed": true}} (404 with C{false} when the
URL is not cached), C{{"removed": N}}, C{{"dropped": [I, ...]}}; errors
C{{"error": "..."}}. Commands have no body: a request with one is answered
413 before a byte of it is read, and its headers must arrive within the
node's header deadline (L{p2pd.web.channel}). The token keeps out the host's other users and the
web pages a local browser opens (a page may POST to a loopback port, but
cannot send that header).
"""

import hmac
import json
from collections.abc import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.web import http
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from twisted.web.server import Site

from p2pd.engine.interfaces import ICacheControl
from p2pd.web.access import isLocalHost
from p2pd.web.channel import NodeChannel

PREFIX = b".cache"
TOKEN_HEADER = b"X-P2pd-Token"
# The most blocks one recheck names; C{p2pd cache verify} sends more in
# several requests.
MAX_RECHECK = 256


class ControlResource(Resource):
    """
    Every request to the control listener: checked, then handed to the
    node's L{ICacheControl}.
    """

    isLeaf = True

    def __init__(self, node: ICacheControl, token: str) -> None:
        super().__init__()
        self.node = node
        self.token = token.encode("ascii")

    def render(self, request: IRequest) -> bytes:
        client = getattr(request.getClientAddress(), "host", "")
        if not isLocalHost(client):
            return _answer(request, http.FORBIDDEN, error="only the local host")
        token = request.getHeader(TOKEN_HEADER) or b""
        if not hmac.compare_digest(token, self.token):
            return _answer(request, http.FORBIDDEN, error="no valid token")
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return _answer(request, http.NOT_ALLOWED, error="only POST")
        command = request.postpath[1:] if request.postpath[:1] == [PREFIX] else []
        try:
            if command == [b"rm"]:
                url = _text(request, b"url")
            elif command == [b"recheck"]:
                url, version = _text(request, b"url"), _text(request, b"version")
                blocks = parseBlocks(_text(request, b"blocks"))
        except ValueError as e:
            return _answer(request, http.BAD_REQUEST, error=str(e))
        if command == [b"rm"]:
            removed = self.node.removeCached(url)
            code = http.OK if removed else http.NOT_FOUND
            return _answer(request, code, removed=removed)
        if command == [b"purge"]:
            return _answer(request, http.OK, removed=self.node.purgeCache())
        if command == [b"recheck"]:
            dropped = self.node.recheckCached(url, version, blocks)
            return _answer(request, http.OK, dropped=dropped)
        return _answer(request, http.NOT_FOUND, error="no such command")


class ControlChannel(NodeChannel):
    """
    The control listener's HTTP channel: the node's header deadline, and no
    request body read.
    """

    def _bodyRefusal(self) -> tuple[int, str] | None:
        return http.REQUEST_ENTITY_TOO_LARGE, "cache commands have no body"


def controlSite(node: ICacheControl, token: str, reactor: IReactorTime) -> Site:
    """
    The control listener's site: quiet, and no traceback in an answer.
    """
    site = Site(ControlResource(node, token), reactor=reactor)
    site.protocol = ControlChannel  # type: ignore[assignment]
    site.displayTracebacks = False
    site.noisy = False
    return site


def _text(request: IRequest, name: bytes) -> str:
    """
    The one value of query argument C{name}, as text.

    @raise ValueError: it is missing, repeated, or not UTF-8.
    """
    values = (request.args or {}).get(name, [])
    if len(values) != 1:
        raise ValueError(f"give one {name.decode()}")
    try:
        return str(values[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{name.decode()} is not UTF-8") from None


def formatBlocks(blocks: Sequence[int]) -> str:
    """
    Block numbers as a recheck names them: C{I,J,...}.
    """
    return ",".join(str(index) for index in blocks)


def parseBlocks(value: str) -> list[int]:
    """
    Block numbers written C{I,J,...} (L{formatBlocks}): at most
    L{MAX_RECHECK} of them, each of at most ten digits.

    @raise ValueError: they are not that.
    """
    parts = value.split(",")
    if len(parts) > MAX_RECHECK:
        raise ValueError(f"more than {MAX_RECHECK} blocks")
    if not all(part.isdigit() and part.isascii() and len(part) <= 10 for part in parts):
        raise ValueError("blocks are numbers separated by commas")
    return [int(part) for part in parts]


def _answer(request: IRequest, code: int, **fields: object) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(fields).encode("utf-8") + b"\n"
