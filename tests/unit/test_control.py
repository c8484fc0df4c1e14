"""
Tests for the cache commands a running node takes: its control resource
(L{p2pd.web.control}), the service holding its lock and listening for them
(L{p2pd.controlservice}), and what the node does for each
(L{p2pd.engine.node.Node}'s L{ICacheControl}).
"""

import json
import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.server import Site

from p2pd import controlservice
from p2pd.controlservice import CacheControlService
from p2pd.core.errors import ErrorCode, SPPError
from p2pd.engine.download import DownloadFailed
from p2pd.store.cachelayout import directoryName
from p2pd.store.cachelock import CacheLock, Holder, holder
from p2pd.web.control import (
    MAX_RECHECK,
    ControlResource,
    controlSite,
    formatBlocks,
    parseBlocks,
)
from tests.fakes import FakeCacheControl
from tests.helpers import InMemoryHTTP, parseResponse
from tests.unit.test_node import (
    BLOCK,
    ORIGIN,
    PORT,
    URL,
    NodeFixture,
    fakeConnection,
    readAll,
    versionOf,
)

TOKEN = "0123456789abcdef"
LOCAL = IPv4Address("TCP", "127.0.0.1", 40000)


class ControlResourceTests(SynchronousTestCase):
    """
    L{ControlResource}: who may send commands, and how they are read.
    """

    def setUp(self) -> None:
        self.node = FakeCacheControl({URL}, {URL: {3, 7}})
        self.http = InMemoryHTTP(self, ControlResource(self.node, TOKEN))

    def send(
        self,
        target: str,
        method: str = "POST",
        token: str | None = TOKEN,
        peer: Any = LOCAL,
    ) -> tuple[int, Any]:
        """
        One request from C{peer}; the answer's status and JSON.
        """
        head = f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
        if token is not None:
            head += f"X-P2pd-Token: {token}\r\n"
        raw = self.http.raw((head + "\r\n").encode("latin-1"), peer=peer)
        code, headers, body = parseResponse(raw)
        self.assertEqual(headers[b"content-type"], b"application/json")
        return code, json.loads(body)

    def test_remove(self) -> None:
        """
        C{rm} removes a URL: 200 when it was cached, 404 when not.
        """
        self.assertEqual(
            self.send(f"/.cache/rm?url={URL}"), (http.OK, {"removed": True})
        )
        self.assertEqual(
            self.send(f"/.cache/rm?url={URL}"), (http.NOT_FOUND, {"removed": False})
        )
        self.assertEqual(self.node.calls, [("removeCached", URL)] * 2)

    def test_purge(self) -> None:
        """
        C{purge} empties the cache and says how much it removed.
        """
        self.assertEqual(self.send("/.cache/purge"), (http.OK, {"removed": 1}))

    def test_recheck(self) -> None:
        """
        C{recheck} hands the blocks over and answers those dropped.
        """
        code, answer = self.send(f"/.cache/recheck?url={URL}&version=v1&blocks=1,3,7")
        self.assertEqual((code, answer), (http.OK, {"dropped": [3, 7]}))
        self.assertEqual(self.node.calls, [("recheckCached", URL, "v1", [1, 3, 7])])

    def test_recheckBound(self) -> None:
        """
        One recheck names at most L{MAX_RECHECK} blocks: one more is refused
        with 400, and the node is not asked.
        """
        most = ",".join(str(i) for i in range(MAX_RECHECK))
        target = f"/.cache/recheck?url={URL}&version=v1&blocks="
        self.assertEqual(self.send(target + most)[0], http.OK)
        code, answer = self.send(target + most + f",{MAX_RECHECK}")
        self.assertEqual(code, http.BAD_REQUEST)
        self.assertEqual(answer, {"error": f"more than {MAX_RECHECK} blocks"})
        self.assertEqual(len(self.node.calls), 1)

    def test_badArguments(self) -> None:
        """
        Missing, repeated or malformed arguments get 400 and an error, and
        the node is not asked.
        """
        for target in [
            "/.cache/rm",
            f"/.cache/rm?url={URL}&url={URL}",
            "/.cache/rm?url=%ff",
            f"/.cache/recheck?url={URL}&version=v1&blocks=1,-2",
            f"/.cache/recheck?url={URL}&version=v1&blocks=",
            f"/.cache/recheck?url={URL}&version=v1&blocks=12345678901",
            f"/.cache/recheck?url={URL}&blocks=1",
        ]:
            code, answer = self.send(target)
            self.assertEqual(code, http.BAD_REQUEST, target)
            self.assertIn("error", answer)
        self.assertEqual(self.node.calls, [])

    def test_unknownCommand(self) -> None:
        """
        A path that is no command gets 404.
        """
        for target in ["/.cache/format", "/", "/.cache/rm/x?url=u", "/.status"]:
            self.assertEqual(
                self.send(target), (http.NOT_FOUND, {"error": "no such command"})
            )

    def test_onlyPost(self) -> None:
        """
        Commands come as POST only: a GET (as from a link) gets 405.
        """
        code, answer = self.send("/.cache/purge", method="GET")
        self.assertEqual(code, http.NOT_ALLOWED)
        self.assertEqual(self.node.calls, [])

    def test_token(self) -> None:
        """
        A request without the token, or with another, gets 403.
        """
        for token in [None, "", "wrong", TOKEN + "0", "é"]:
            code, answer = self.send("/.cache/purge", token=token)
            self.assertEqual(
                (code, answer), (http.FORBIDDEN, {"error": "no valid token"})
            )
        self.assertEqual(self.node.calls, [])

    def test_onlyLocalHost(self) -> None:
        """
        A client that is not on a loopback address gets 403, even with the
        token; IPv6's loopback is the local host too.
        """
        for peer in [
            IPv4Address("TCP", "10.0.0.2", 40000),
            IPv4Address("TCP", "192.0.2.1", 40000),
            IPv6Address("TCP", "2001:db8::1", 40000),
        ]:
            code, answer = self.send("/.cache/purge", peer=peer)
            self.assertEqual(
                (code, answer), (http.FORBIDDEN, {"error": "only the local host"})
            )
        self.assertEqual(self.node.calls, [])
        self.assertEqual(
            self.send("/.cache/purge", peer=IPv6Address("TCP", "::1", 1))[0], http.OK
        )


class ControlChannelTests(SynchronousTestCase):
    """
    The control listener's site and channel (L{controlSite}).
    """

    def exchange(self, data: bytes) -> tuple[bytes, FakeCacheControl]:
        """
        Feed C{data} to a fresh connection from the local host; what the
        site wrote back, and the node it asked.
        """
        node = FakeCacheControl(set(), {})
        site = controlSite(node, TOKEN, MemoryReactorClock())
        channel = site.buildProtocol(LOCAL)
        transport = StringTransport(peerAddress=LOCAL)
        channel.makeConnection(transport)
        channel.dataReceived(data)
        channel.connectionLost(Failure(ConnectionDone()))
        return transport.value(), node

    def test_command(self) -> None:
        """
        A command without a body, as C{p2pd cache} sends it, is carried
        out.
        """
        written, node = self.exchange(
            b"POST /.cache/purge HTTP/1.1\r\nHost: x\r\n"
            b"X-P2pd-Token: " + TOKEN.encode() + b"\r\nContent-Length: 0\r\n\r\n"
        )
        self.assertEqual(parseResponse(written)[0], http.OK)
        self.assertEqual(node.calls, [("purgeCache",)])

    def test_bodyRefused(self) -> None:
        """
        A request with a body gets 413 before the body is read, and the node
        is not asked.
        """
        written, node = self.exchange(
            b"POST /.cache/purge HTTP/1.1\r\nHost: x\r\n"
            b"X-P2pd-Token: " + TOKEN.encode() + b"\r\n"
            b"Content-Length: 100000000\r\n\r\n" + b"x" * 1000
        )
        code, _, body = parseResponse(written)
        self.assertEqual(code, http.REQUEST_ENTITY_TOO_LARGE)
        self.assertEqual(body, b"cache commands have no body\n")
        self.assertEqual(node.calls, [])


class BlocksTests(SynchronousTestCase):
    """
    L{parseBlocks} and L{formatBlocks}: the block numbers of a recheck.
    """

    @given(st.lists(st.integers(0, 10**10 - 1), min_size=1, max_size=MAX_RECHECK))
    def test_roundTrip(self, blocks: list[int]) -> None:
        """
        Any list of up to L{MAX_RECHECK} block numbers reads back as it was
        written.
        """
        self.assertEqual(parseBlocks(formatBlocks(blocks)), blocks)

    @given(st.text())
    def test_anyText(self, value: str) -> None:
        """
        Any text reads as at most L{MAX_RECHECK} non-negative numbers, or
        raises L{ValueError}: nothing else.
        """
        try:
            blocks = parseBlocks(value)
        except ValueError:
            return
        self.assertLessEqual(len(blocks), MAX_RECHECK)
        self.assertTrue(all(0 <= index < 10**10 for index in blocks))

    def test_pastBound(self) -> None:
        """
        One block more than L{MAX_RECHECK}, or a number of eleven digits, is
        refused.
        """
        self.assertRaises(ValueError, parseBlocks, formatBlocks(range(MAX_RECHECK + 1)))
        self.assertRaises(ValueError, parseBlocks, "12345678901")
        self.assertRaises(ValueError, parseBlocks, "\u0663")


class NodeCacheControlTests(NodeFixture):
    """
    What a node does for each cache command, on a real cache.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.makeNode(self.makeCache("client-cache"))
        self.origin = fakeConnection({URL: self.movie})
        self.version = versionOf(self.movie)

    def fetched(self) -> Any:
        """
        The client's download of the whole movie.
        """
        d = self.client.download(URL)
        self.connector.succeed(self.origin)
        download = self.successResultOf(d)
        readAll(self, download, self.origin)
        return download

    def test_removeDuringDownload(self) -> None:
        """
        Removing a URL being read closes its download (its readers fail,
        its file on the origin is closed, so the origin stops naming this
        node as a peer) and removes it from the cache: a peer asking for it
        is told it is not here.
        """
        download = self.fetched()
        reader = download.read(0)
        self.assertTrue(self.client.removeCached(URL))
        self.failureResultOf(reader.read(), DownloadFailed)
        self.assertTrue(all(f.closed for f in self.origin.remoteFiles))
        self.assertEqual(self.client.downloads(), [])
        self.assertIsNone(self.client.cache.find(URL))  # type: ignore[union-attr]
        with self.assertRaises(SPPError) as caught:
            self.client.open(URL, self.version, fakeConnection({}))
        self.assertEqual(caught.exception.code, ErrorCode.NOT_FOUND)
        self.assertFalse(self.client.removeCached(URL))

    def test_servedHandleAfterRemove(self) -> None:
        """
        A peer that opened the file before it was removed is answered
        UNAVAILABLE for every block afterwards, and announced none.
        """
        self.fetched()
        served = self.client.open(
            URL, self.version, fakeConnection({}, "10.0.0.9", 2222, False)
        )
        self.addCleanup(served.close)
        self.assertEqual(served.held(), [(0, 6)])
        self.client.removeCached(URL)
        self.assertEqual(served.held(), [])
        with self.assertRaises(SPPError) as caught:
            served.readBlock(0)
        self.assertEqual(caught.exception.code, ErrorCode.UNAVAILABLE)

    def test_purge(self) -> None:
        """
        Purging closes every download and empties the cache.
        """
        self.fetched()
        self.assertEqual(self.client.purgeCache(), 1)
        self.assertEqual(self.client.downloads(), [])
        self.assertEqual(os.listdir(os.path.join(self.base, "client-cache")), [])
        self.assertEqual(self.client.purgeCache(), 0)

    def test_recheck(self) -> None:
        """
        Rechecking drops a block corrupted on disk, even one this node
        wrote and trusts, and keeps the good ones; a version not cached has
        nothing to drop.
        """
        self.fetched()
        data = os.path.join(
            self.base,
            "client-cache",
            directoryName(URL),
            directoryName(self.version),
            "data",
        )
        with open(data, "r+b") as f:
            f.seek(2 * BLOCK)
            f.write(bytes(b ^ 1 for b in self.movie[2 * BLOCK : 2 * BLOCK + 4]))
        with capturedLogs():
            self.assertEqual(self.client.recheckCached(URL, self.version, [1, 2]), [2])
        cached = self.client.cache.find(URL)  # type: ignore[union-attr]
        assert cached is not None
        self.addCleanup(cached.close)
        self.assertEqual(cached.held(), [(0, 2), (3, 3)])
        self.assertEqual(self.client.recheckCached(URL, "other", [1]), [])
        other = f"spp://{ORIGIN}:{PORT}/other.ts"
        self.assertEqual(self.client.recheckCached(other, self.version, [1]), [])


class _RefusingEndpoint:
    """
    An endpoint whose port cannot be had.
    """

    def listen(self, factory: object) -> "Deferred[object]":
        return fail(CannotListenError("127.0.0.1", 0, OSError(99, "no address")))


class CacheControlServiceTests(SynchronousTestCase):
    """
    L{CacheControlService} holds the cache's lock and says where the node
    takes commands.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        self.reactor = MemoryReactorClock()

    def service(self) -> CacheControlService:
        return CacheControlService(
            self.directory, FakeCacheControl(set(), {}), self.reactor
        )

    def start(self, service: CacheControlService) -> None:
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)

    def test_lockAndAddress(self) -> None:
        """
        Started, it holds the lock, listens on a loopback port and writes
        its address and token in the lock file; stopped, it lets the lock
        go.
        """
        service = self.service()
        self.start(service)
        [(port, site, _, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        assert isinstance(site, Site)
        self.assertIsInstance(site.resource, ControlResource)
        self.assertEqual(site.resource.token, service.token.encode())
        self.assertEqual(
            holder(self.directory), Holder(os.getpid(), service.address, service.token)
        )
        self.successResultOf(service.stopService())
        self.assertIsNone(holder(self.directory))

    def test_tokensDiffer(self) -> None:
        """
        Each node has its own token.
        """
        self.assertNotEqual(self.service().token, self.service().token)

    def test_secondNode(self) -> None:
        """
        A second node on the same directory ends start-up with one line
        naming the directory and the first node's pid.
        """
        self.start(self.service())
        exc = self.assertRaises(SystemExit, self.service().privilegedStartService)
        self.assertEqual(
            exc.code,
            f"p2pd: the cache directory {self.directory} is in use by another "
            f"p2pd (pid {os.getpid()}); give each node its own --cache-dir",
        )

    def test_busyWithCacheCommand(self) -> None:
        """
        A node does not start while C{p2pd cache} holds the lock.
        """
        lock = CacheLock.take(self.directory)
        self.addCleanup(lock.release)
        self.assertRaises(SystemExit, self.service().startService)

    def test_cannotLock(self) -> None:
        """
        A directory where the lock file cannot be made ends start-up with
        one line.
        """
        service = CacheControlService(
            os.path.join(self.directory, "missing"),
            FakeCacheControl(set(), {}),
            self.reactor,
        )
        exc = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn("cannot lock the cache directory", str(exc.code))
        self.assertNotIn("\n", str(exc.code))

    def test_cannotListen(self) -> None:
        """
        Without its control port the node still runs, holding the lock,
        with a warning; the lock file then names no control address.
        """
        service = self.service()
        self.patch(
            controlservice,
            "serverFromString",
            lambda reactor, description: _RefusingEndpoint(),
        )
        with capturedLogs() as events:
            self.start(service)
        [warning] = [e for e in events if "endpoint" in e]
        self.assertIn("no address", warning["why"])
        self.assertEqual(holder(self.directory), Holder(os.getpid(), None, None))
