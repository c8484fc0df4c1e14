"""
Who a node believes about a file (docs/security.md, "Trust model"), against
real C{twistd p2pd} nodes: the L{Liar} of L{tests.unit.test_authority} speaks
SPP over TCP on loopback, and curl is the player.
"""

import os
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from p2pd.core.meta import FileMeta
from p2pd.spp.connector import TCPConnector
from p2pd.spp.protocol import SPPFactory
from p2pd.store.cache import BlockCache
from tests import clients
from tests.fakes import makeFile
from tests.nodes import Nodes
from tests.unit.test_authority import Liar, holdsForged

LIAR_ADDRESS = "127.0.0.20"
SERVICE_ADDRESS = "127.0.0.21"
NAME = "clip.bin"
REAL_BLOCK = 64 * 1024
REAL_SIZE = 32 * REAL_BLOCK
WAIT = 30.0


class PlainService(Protocol):
    """
    Some other TCP service: it answers anything with an HTTP error and
    closes.
    """

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class RealSocketFixture(TestCase):
    """
    An origin and a viewer, real C{twistd p2pd} nodes, and a L{Liar} in this
    process, all on loopback; curl plays through the viewer's gateway.
    """

    timeout = 180

    def setUp(self) -> Any:
        clients.require("curl")
        self.nodes = Nodes(self)
        self.public = os.path.abspath(self.mktemp())
        self.content = makeFile(self.public, NAME, REAL_SIZE)
        self.viewerCache = os.path.abspath(self.mktemp())
        return self.startOrigin()

    @defer.inlineCallbacks
    def startOrigin(self) -> Any:
        self.origin = yield self.nodes.start(
            "-p", self.public, "-c", os.path.abspath(self.mktemp()),
            "-b", f"{REAL_BLOCK // 1024}K",
        )  # fmt: skip
        self.url = self.origin.sppURLFor(NAME)

    def startViewer(self, address: str = "127.0.0.2") -> Any:
        return self.nodes.start("-c", self.viewerCache, address=address)

    @defer.inlineCallbacks
    def startLiar(self, listen: bool = True, origin: Liar | None = None) -> Any:
        """
        A L{Liar} (or C{origin}) listening on L{LIAR_ADDRESS}; its
        connections are closed, and their ends awaited, when the test ends.
        """
        liar = Liar(listenPort=0) if origin is None else origin
        if listen:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface=LIAR_ADDRESS)
            port = yield endpoint.listen(SPPFactory(liar, reactor, initiator=False))
            self.addCleanup(port.stopListening)
            liar.listenPort = port.getHost().port
        self.addCleanup(closeAll, liar)
        return liar

    @defer.inlineCallbacks
    def join(self, liar: Liar, address: str = LIAR_ADDRESS) -> Any:
        """
        C{liar} fetches the file's metadata from the origin from
        C{address}, and asks for peers: the origin lists it from then on.
        """
        connector = TCPConnector(reactor, liar, bindHost=address)
        connection = yield connector.connect(self.origin.host, self.origin.port)
        remote = yield connection.open(self.url, "", peers=True)
        liar.learn(remote.meta)
        yield remote.getPeers()

    @defer.inlineCallbacks
    def play(self, viewer: Any, *extra: str) -> Any:
        """
        curl the file through C{viewer}'s gateway: the media bytes it got,
        which may be cut short (none when the answer is an HTTP error, as
        when no source is left before the first byte).
        """
        output = os.path.abspath(self.mktemp())
        url = f"http://{viewer.authority}/.spp/{self.origin.authority}/{NAME}"
        result = yield clients.run(
            ["curl", "-sS", "--max-time", "60", "-o", output, "-w", "%{http_code}"]
            + [*extra, url],
            timeout=90,
        )
        if not os.path.exists(output) or not result.out.startswith(b"2"):
            return b""
        with open(output, "rb") as f:
            return f.read()

    def assertReal(self, got: bytes, start: int = 0) -> None:
        """
        C{got} is the file's bytes from C{start}, maybe cut short.
        """
        self.assertFalse(holdsForged(got), "forged bytes reached the player")
        self.assertTrue(
            self.content[start:].startswith(got), "other bytes reached the player"
        )

    def assertCacheClean(self) -> None:
        """
        No file in the viewer's cache holds forged bytes.
        """
        for directory, _, names in os.walk(self.viewerCache):
            for name in names:
                with open(os.path.join(directory, name), "rb") as f:
                    self.assertFalse(holdsForged(f.read()), f"forged bytes in {name}")

    def assertHealthy(self, viewer: Any) -> None:
        """
        C{viewer} still runs, and has logged no traceback and nothing at
        error or critical level (an unhandled failure in a Deferred is
        logged at critical level).
        """
        self.assertTrue(viewer.running, viewer.log)
        for loud in ("Traceback", "Unhandled", "#error]", "#critical]"):
            self.assertNotIn(loud, viewer.log)


class RealSocketTests(RealSocketFixture):
    """
    The liar in every position against real nodes.
    """

    @defer.inlineCallbacks
    def test_listedByOrigin(self) -> Any:
        """
        A liar the origin lists is opened by the viewer as a peer, never
        asked for a digest, and the player gets the real file.
        """
        liar = yield self.startLiar()
        yield self.join(liar)
        viewer = yield self.startViewer()
        opened = liar.nextOpen()
        got = yield self.play(viewer, "--limit-rate", "1M")
        yield opened.addTimeout(WAIT, reactor)
        self.assertEqual(len(got), REAL_SIZE)
        self.assertReal(got)
        self.assertEqual(liar.digestsAsked, 0)
        self.assertCacheClean()
        self.assertHealthy(viewer)

    @defer.inlineCallbacks
    def test_originDrops(self) -> Any:
        """
        When the origin stops in the middle of a play, the liar is left: the
        player gets real bytes only, and the cache holds no forged ones.
        """
        liar = yield self.startLiar()
        yield self.join(liar)
        viewer = yield self.startViewer()
        opened = liar.nextOpen()
        playing = self.play(viewer, "--limit-rate", "256K")
        yield opened.addTimeout(WAIT, reactor)
        yield self.origin.stop()
        got = yield playing
        self.assertReal(got)
        self.assertEqual(liar.digestsAsked, 0)
        self.assertCacheClean()
        self.assertHealthy(viewer)

    def cachePartly(self, meta: FileMeta, blocks: int, digests: int) -> None:
        """
        Leave in the viewer's cache the first C{blocks} blocks of the file
        and the digests of the first C{digests}, as a download stopped
        before it had them all leaves them.
        """
        cached = BlockCache(os.path.join(self.viewerCache, "blocks")).open(meta)
        for index in range(digests):
            start = meta.blockStart(index)
            data = self.content[start : start + meta.blockLength(index)]
            cached.setDigests(index, meta.digest(data))
            if index < blocks:
                cached.write(index, data)
        cached.close()

    @defer.inlineCallbacks
    def test_originDownFromTheStart(self) -> Any:
        """
        A viewer started with the origin down plays its partial cache; the
        liar opens the file on it and is opened back: the player gets the
        real cached bytes only, and after a restart the cache holds just
        those.
        """
        liar = yield self.startLiar()
        yield self.join(liar)
        meta = liar.metas[self.url]
        yield self.origin.stop()
        self.cachePartly(meta, 2, 4)
        viewer = yield self.startViewer()
        got = yield self.play(viewer, "-r", "0-999")
        self.assertEqual(got, self.content[:1000])
        connector = TCPConnector(reactor, liar, bindHost=LIAR_ADDRESS)
        connection = yield connector.connect(viewer.host, viewer.port)
        opened = liar.nextOpen()
        yield connection.open(self.url, meta.version)
        yield opened.addTimeout(WAIT, reactor)
        got = yield self.play(viewer)
        self.assertReal(got)
        self.assertLessEqual(len(got), 2 * REAL_BLOCK)
        self.assertEqual(liar.digestsAsked, 0)
        self.assertCacheClean()
        self.assertHealthy(viewer)
        yield viewer.stop()
        viewer = yield self.startViewer(viewer.address)
        got = yield self.play(viewer, "-r", f"0-{2 * REAL_BLOCK - 1}")
        self.assertEqual(got, self.content[: 2 * REAL_BLOCK])

    @defer.inlineCallbacks
    def test_peerListNamesPlainService(self) -> Any:
        """
        A peer list naming a plain TCP service: the viewer knocks there
        once, logs at info that it does not speak SPP, and plays the file
        from the origin meanwhile.
        """
        factory = Factory.forProtocol(PlainService)
        factory.connections = 0  # type: ignore[attr-defined]
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=SERVICE_ADDRESS)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        registrar = yield self.startLiar(listen=False)
        registrar.listenPort = port.getHost().port
        yield self.join(registrar, SERVICE_ADDRESS)
        viewer = yield self.startViewer()
        got = yield self.play(viewer)
        self.assertEqual(got, self.content)
        yield viewer.waitForLine("does not speak SPP", WAIT)
        got = yield self.play(viewer)
        self.assertEqual(got, self.content)
        self.assertEqual(factory.connections, 1)  # type: ignore[attr-defined]
        self.assertHealthy(viewer)


class HTTPReader(Protocol):
    """
    A raw HTTP/1.0 request; C{done} fires with every byte of the answer.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(self.received)


class RoutineFailureTests(RealSocketFixture):
    """
    Routine failures against a real viewer are logged at info or warn,
    never as errors, unhandled or critical.
    """

    @defer.inlineCallbacks
    def test_gatewayToPlainService(self) -> Any:
        """
        A gateway request naming a port that does not speak SPP gets an
        error answer; the viewer logs it at info and keeps serving.
        """
        factory = Factory.forProtocol(PlainService)
        factory.connections = 0  # type: ignore[attr-defined]
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=SERVICE_ADDRESS)
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        viewer = yield self.startViewer()
        url = (
            f"http://{viewer.authority}/.spp/{SERVICE_ADDRESS}:{port.getHost().port}/x"
        )
        result = yield clients.run(
            ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url]
        )
        self.assertTrue(result.stdout.startswith("5"), result.describe())
        yield viewer.waitForLine("does not speak SPP", WAIT)
        got = yield self.play(viewer)
        self.assertEqual(got, self.content)
        self.assertHealthy(viewer)

    @defer.inlineCallbacks
    def test_fiftyReadersAtOnce(self) -> Any:
        """
        Fifty players starting at once on one file all get it; the viewer
        logs no error, then or when the origin stops.
        """
        viewer = yield self.startViewer()
        request = (
            f"GET /.spp/{self.origin.authority}/{NAME} HTTP/1.0\r\n"
            f"Host: {viewer.authority}\r\n\r\n"
        ).encode("ascii")
        readers = []
        for _ in range(50):
            endpoint = TCP4ClientEndpoint(reactor, viewer.host, viewer.port)
            reader = HTTPReader(request)
            yield connectProtocol(endpoint, reader)
            readers.append(reader.done)
        answers = yield defer.gatherResults(readers)
        for answer in answers:
            self.assertTrue(answer.endswith(self.content), answer[:200])
        yield self.origin.stop()
        self.assertHealthy(viewer)


def closeAll(liar: Liar) -> "defer.Deferred[None]":
    """
    Close C{liar}'s connections; fires once they are all gone.
    """
    gone = []
    for connection in list(liar.connections):
        lost: defer.Deferred[None] = defer.Deferred()
        connection.connectionLost = _then(connection.connectionLost, lost)
        connection.transport.loseConnection()
        gone.append(lost)
    return defer.gatherResults(gone).addCallback(lambda _: None)


def _then(method: Any, lost: "defer.Deferred[None]") -> Any:
    def connectionLost(reason: Any) -> None:
        method(reason)
        lost.callback(None)

    return connectionLost
