"""
Who a node believes about a file (docs/security.md, "Trust model"): only a
connection it dialed to the URL's origin, or to a mirror that origin named.

A L{Liar} is a peer that claims authority in every Opened and hands out a
forged copy of the file, with digests of its forged bytes, and announces
every block. It is put in every position: listed by the origin, opening the
file back on a downloading node, left alone with the node once the origin's
connection drops, with the origin down from the start, and before a
restart. Each test checks that no forged byte reaches a reader or the cache,
and that the real bytes still come whenever the origin can give them.

These tests run real nodes speaking real SPP in memory
(L{tests.unit.test_node.Pair}); L{tests.integration.test_authority} puts the
liar against C{twistd p2pd} nodes over TCP on loopback.
"""

import os
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.peers import Peer
from p2pd.engine import backoff, swarm
from p2pd.engine.download import Download, DownloadFailed
from p2pd.engine.interfaces import IServedFile, ISPPNode
from p2pd.engine.node import Node
from p2pd.engine.tracker import Tracker
from p2pd.store.digests import DigestIndex
from p2pd.store.interfaces import IBlockCache
from p2pd.store.published import PublicDirectory
from tests import CHECKOUT
from tests.unit import test_node
from tests.unit.test_node import BLOCK, ORIGIN, PORT, URL, versionOf

FORGED = b"\xee"
LIAR_HOST = "10.0.0.66"
LIAR_PORT = 6666
CLIENT_HOST = "10.0.0.2"
CLIENT_PORT = 2222
MIRROR_HOST = "10.0.0.9"


def forgedBlock(meta: FileMeta, index: int) -> bytes:
    return FORGED * meta.blockLength(index)


def holdsForged(data: bytes) -> bool:
    """
    Whether C{data} holds a run of forged bytes no random content has.
    """
    return FORGED * 64 in data


@implementer(IServedFile)
class ForgedFile:
    """
    A forged copy of a file: the real size, block size, digest name and
    version (so that it passes for the version a node wants), other bytes in
    every block, and the digests of those bytes.
    """

    def __init__(self, meta: FileMeta, liar: "Liar") -> None:
        self.meta = meta
        self.liar = liar
        self.size = meta.size
        self.blockSize = meta.blockSize
        self.digestName = meta.digestName
        self.version = meta.version
        self._looked = 0

    @property
    def authoritative(self) -> bool:
        # Claimed in the Opened (the protocol's first look); denied when it
        # looks again right after, so that it also announces every block.
        self._looked += 1
        return self._looked == 1

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        self.liar.digestsAsked += 1
        count = min(count, self.meta.blocks - first)
        return defer.succeed(
            b"".join(
                self.meta.digest(forgedBlock(self.meta, i))
                for i in range(first, first + count)
            )
        )

    def readBlock(self, index: int) -> "defer.Deferred[bytes]":
        self.liar.blocksAsked.append(index)
        return defer.succeed(forgedBlock(self.meta, index))

    def held(self) -> Sequence[tuple[int, int]]:
        return [(0, self.meta.blocks)]

    def watch(self, callback: Any) -> None:
        pass

    def peers(self, host: str, port: int) -> Sequence[Peer]:
        return []

    def close(self) -> None:
        pass


@implementer(ISPPNode)
class Liar:
    """
    A hostile peer: it answers an Open of any file whose metadata it has
    learnt (L{learn}) with a L{ForgedFile}, claiming authority.

    @ivar opened: the URLs opened on it.
    @ivar whenOpened: Deferreds fired at the next Open.
    """

    def __init__(self, listenPort: int = LIAR_PORT) -> None:
        self.nodeId = os.urandom(16)
        self.listenPort = listenPort
        self.metas: dict[str, FileMeta] = {}
        self.opened: list[tuple[str, str]] = []
        self.digestsAsked = 0
        self.blocksAsked: list[int] = []
        self.connections: list[Any] = []
        self.whenOpened: list[defer.Deferred[None]] = []

    def learn(self, meta: FileMeta) -> None:
        self.metas[meta.url] = meta

    def open(self, url: str, version: str, connection: object) -> IServedFile:
        self.opened.append((url, version))
        waiting, self.whenOpened = self.whenOpened, []
        for d in waiting:
            d.callback(None)
        meta = self.metas.get(url)
        if meta is None:
            raise SPPError(ErrorCode.NOT_FOUND, "not here")
        return ForgedFile(meta, self)

    def nextOpen(self) -> "defer.Deferred[None]":
        d: defer.Deferred[None] = defer.Deferred()
        self.whenOpened.append(d)
        return d

    def connectionReady(self, connection: object) -> None:
        self.connections.append(connection)

    def connectionGone(self, connection: object) -> None:
        if connection in self.connections:
            self.connections.remove(connection)


class InMemoryFixture(test_node.NodeFixture):
    """
    The origin node of L{test_node.NodeFixture} at C{ORIGIN:PORT}, clients
    and a L{Liar} at C{LIAR_HOST:LIAR_PORT}, all speaking SPP in memory.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pair.nodes[(ORIGIN, PORT)] = self.node
        self.liar = Liar()
        self.pair.nodes[(LIAR_HOST, LIAR_PORT)] = self.liar  # type: ignore[assignment]
        self.liarConnector = self.pair.connector(self.liar, LIAR_HOST)  # type: ignore[arg-type]
        self.meta = FileMeta(
            URL, len(self.movie), BLOCK, "sha256", versionOf(self.movie)
        )
        self.liar.learn(self.meta)

    def originConnector(self, node: Node) -> Any:
        """
        The publishing node's connector reaches the others through pumps.
        """
        self.pair = test_node.Pair(self.clock, self.threads)
        return self.pair.connector(node, ORIGIN)

    def addClient(self, cacheName: str = "client-cache") -> Node:
        client = Node(
            self.clock,
            lambda node: self.pair.connector(node, CLIENT_HOST),  # type: ignore[arg-type,return-value]
            self.makeCache(cacheName),
        )
        client.listenPort = CLIENT_PORT
        self.pair.nodes[(CLIENT_HOST, CLIENT_PORT)] = client
        self.addCleanup(client.stop)
        return client

    def liarConnects(self, host: str, port: int) -> Any:
        """
        The liar's connection to the node at C{host}:C{port}.
        """
        d = self.liarConnector.connect(host, port)
        self.pair.flush()
        return self.successResultOf(d)

    def liarJoins(self) -> None:
        """
        The liar fetches the file from the origin as any node would, so the
        origin lists it as a peer.
        """
        connection = self.liarConnects(ORIGIN, PORT)
        opening = connection.open(URL, "", peers=True)
        self.pair.flush()
        remote = self.successResultOf(opening)
        self.successResultOf(remote.getPeers())
        self.assertEqual(self.tracker.nodes("movie.ts"), [(LIAR_HOST, LIAR_PORT)])

    def liarOpensOn(self, host: str, port: int) -> None:
        """
        The liar opens the file, at its real version, on the node at
        C{host}:C{port}, which then opens it back on the liar.
        """
        connection = self.liarConnects(host, port)
        opening = connection.open(URL, self.meta.version)
        self.pair.flush()
        self.successResultOf(opening)

    def originGone(self, client: Node) -> None:
        """
        The origin stops: C{client}'s connection to it drops, and it can no
        longer be reached.
        """
        del self.pair.nodes[(ORIGIN, PORT)]
        for dialing, _ in self.pair.connections:
            if dialing.node is client and dialing.transport.getPeer().host == ORIGIN:
                dialing.transport.loseConnection()
        self.pair.flush()

    def download(self, client: Node) -> Download:
        d = client.download(URL)
        self.pair.flush()
        download: Download = self.successResultOf(d)
        return download

    def readUntilFailure(self, download: Download) -> tuple[bytes, Failure | None]:
        """
        Everything a reader of the whole file gets, and how it stopped.
        """
        reader = download.read(0)
        self.addCleanup(reader.close)
        parts: list[bytes] = []
        while True:
            d = reader.read()
            self.pair.flush()
            self.clock.advance(0.1)
            self.pair.flush()
            result: list[Any] = []
            d.addBoth(result.append)
            if not result:
                d.cancel()
                return b"".join(parts), None
            if isinstance(result[0], Failure):
                return b"".join(parts), result[0]
            if not result[0]:
                return b"".join(parts), None
            parts.append(result[0])

    def assertCacheClean(self, cache: IBlockCache | None) -> None:
        """
        Every block C{cache} holds of the file is the real one.
        """
        assert cache is not None
        cached = cache.find(URL)
        if cached is None:
            return
        self.addCleanup(cached.close)
        for first, count in cached.held():
            for index in range(first, first + count):
                start = self.meta.blockStart(index)
                self.assertEqual(
                    cached.read(index),
                    self.movie[start : start + self.meta.blockLength(index)],
                    f"block {index}",
                )

    def assertNotBelieved(self, download: Download) -> None:
        """
        The liar's file, if still a source, claimed authority and is not
        believed, and the liar was never asked for a digest.
        """
        for source in download.sources:
            if source.name.startswith(LIAR_HOST):
                self.assertTrue(source.claimsAuthority)  # type: ignore[attr-defined]
                self.assertFalse(source.authoritative)
        self.assertEqual(self.liar.digestsAsked, 0)


class LyingPeerTests(InMemoryFixture):
    """
    A peer claiming authority, in every position, in memory.
    """

    def test_listedByOrigin(self) -> None:
        """
        A liar the origin lists is used as a peer, never believed: its
        blocks fail the origin's digests, and the reader and the cache get
        the real bytes.
        """
        self.liarJoins()
        client = self.addClient()
        download = self.download(client)
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        got, failure = self.readUntilFailure(download)
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertNotBelieved(download)
        self.assertCacheClean(client.cache)

    def test_opensBack(self) -> None:
        """
        A liar that opens the file on a downloading node is opened back, as
        a peer, and never believed.
        """
        client = self.addClient()
        download = self.download(client)
        self.liarOpensOn(CLIENT_HOST, CLIENT_PORT)
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        got, failure = self.readUntilFailure(download)
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertNotBelieved(download)
        self.assertCacheClean(client.cache)

    def test_otherVersion(self) -> None:
        """
        A liar answering with another version than the node asked for is
        not used at all: blocks of two versions never mix.
        """
        self.liar.learn(
            FileMeta(URL, len(self.movie), BLOCK, "sha256", "1-1700000000000000000")
        )
        client = self.addClient()
        download = self.download(client)
        self.liarOpensOn(CLIENT_HOST, CLIENT_PORT)
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        self.assertFalse([s for s in download.sources if LIAR_HOST in s.name])
        got, failure = self.readUntilFailure(download)
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertEqual(self.liar.blocksAsked, [])

    def test_originDrops(self) -> None:
        """
        Once the origin's connection drops, the liar is the only source
        left; it is still not believed: the reader gets the real blocks it
        could verify, then fails, and the cache holds no forged block.
        """
        client = self.addClient()
        download = self.download(client)
        self.liarOpensOn(CLIENT_HOST, CLIENT_PORT)
        self.originGone(client)
        got, failure = self.readUntilFailure(download)
        self.assertTrue(self.movie.startswith(got), "not the real bytes")
        self.assertFalse(holdsForged(got))
        self.assertLess(len(got), len(self.movie))
        self.assertNotBelieved(download)
        self.assertCacheClean(client.cache)

    def cachePartly(self, cacheName: str, blocks: range, digests: range) -> None:
        """
        Cache C{blocks} of the file with the digests of C{digests}, as an
        interrupted download leaves them.
        """
        cached = self.makeCache(cacheName).open(self.meta)
        for index in digests:
            start = self.meta.blockStart(index)
            data = self.movie[start : start + self.meta.blockLength(index)]
            cached.setDigests(index, self.meta.digest(data))
        for index in blocks:
            start = self.meta.blockStart(index)
            cached.write(
                index, self.movie[start : start + self.meta.blockLength(index)]
            )
        cached.close()

    def test_originDownFromTheStart(self) -> None:
        """
        With the origin unreachable, a node playing a partly cached file
        opens it back on a liar that opens it on the node, and believes only
        the digests it kept from the origin: the liar's block with a kept
        digest fails it, and blocks without one are never stored or read.
        """
        self.cachePartly("partial", range(2), range(3))
        del self.pair.nodes[(ORIGIN, PORT)]
        client = self.addClient("partial")
        download = self.download(client)
        self.liarOpensOn(CLIENT_HOST, CLIENT_PORT)
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        got, failure = self.readUntilFailure(download)
        self.assertSameBytes(got, self.movie[: 2 * BLOCK])
        self.assertIsNotNone(failure)
        assert failure is not None
        failure.trap(DownloadFailed)
        self.assertNotBelieved(download)
        client.stop()
        self.assertCacheClean(client.cache)
        cached = client.cache.find(URL)  # type: ignore[union-attr]
        assert cached is not None
        self.addCleanup(cached.close)
        self.assertEqual(cached.held(), [(0, 2)])
        self.assertIsNone(cached.digest(3))

    def test_afterRestart(self) -> None:
        """
        A liar met with the origin down left nothing behind: restarted on
        the same cache, with the origin back, the node reads the real file,
        and takes the origin's blocks for the ones the liar offered.
        """
        self.cachePartly("partial", range(2), range(3))
        origin = self.pair.nodes.pop((ORIGIN, PORT))
        client = self.addClient("partial")
        self.readUntilFailure(self.download(client))
        self.liarOpensOn(CLIENT_HOST, CLIENT_PORT)
        self.readUntilFailure(self.download(client))
        client.stop()
        del self.pair.nodes[(CLIENT_HOST, CLIENT_PORT)]
        self.pair.nodes[(ORIGIN, PORT)] = origin
        again = self.addClient("partial")
        got, failure = self.readUntilFailure(self.download(again))
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertCacheClean(again.cache)

    def test_acceptedNotTakenForOrigin(self) -> None:
        """
        A peer on the origin's host that connects to a node claiming the
        origin's port is not taken for the origin: the node dials the origin
        itself, and never opens "the current version" on that peer.
        """
        client = self.addClient()
        impostor = Liar(listenPort=PORT)
        impostor.learn(self.meta)
        connector = self.pair.connector(impostor, ORIGIN)  # type: ignore[arg-type]
        d = connector.connect(CLIENT_HOST, CLIENT_PORT)
        self.pair.flush()
        self.successResultOf(d)
        download = self.download(client)
        self.assertEqual(impostor.opened, [])
        got, failure = self.readUntilFailure(download)
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertEqual(impostor.digestsAsked, 0)


class MirrorTests(InMemoryFixture):
    """
    Mirrors are believed when the origin names them, and only then.
    """

    def setUp(self) -> None:
        super().setUp()
        self.mirrorIndex = DigestIndex(
            os.path.join(self.base, "mirror-digests"), BLOCK, "sha256", self.threads  # type: ignore[arg-type]
        )
        self.addCleanup(self.mirrorIndex.close)
        mirror = self.makeNode(
            self.makeCache("mirror-cache"),
            PublicDirectory(self.publicDir),
            self.mirrorIndex,
            Tracker(mirrors=[Peer(LIAR_HOST, LIAR_PORT, True)]),
            connectorFor=lambda node: self.pair.connector(node, MIRROR_HOST),
        )
        mirror.listenPort = PORT
        self.pair.nodes[(MIRROR_HOST, PORT)] = mirror

    def test_namedByOrigin(self) -> None:
        """
        A mirror in the origin's peer list is believed: an authoritative
        source.
        """
        self.tracker.mirrors = [Peer(MIRROR_HOST, PORT, True)]
        download = self.download(self.addClient())
        self.clock.advance(test_node.PEER_INTERVAL)
        self.pair.flush()
        byName = {s.name.split(":")[0]: s for s in download.sources}
        self.assertTrue(byName[MIRROR_HOST].authoritative)
        self.assertTrue(byName[ORIGIN].authoritative)

    def test_mirrorNamesLiar(self) -> None:
        """
        A mirror's own peer list names no mirror to believe: with the origin
        gone, the liar a mirror lists as a mirror is used as a peer only.
        """
        self.tracker.mirrors = [Peer(MIRROR_HOST, PORT, True)]
        client = self.addClient()
        download = self.download(client)
        self.clock.advance(test_node.PEER_INTERVAL)
        self.pair.flush()
        self.originGone(client)
        self.clock.advance(test_node.PEER_INTERVAL)
        self.pair.flush()
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        got, failure = self.readUntilFailure(download)
        self.assertIsNone(failure)
        self.assertSameBytes(got, self.movie)
        self.assertNotBelieved(download)
        self.assertCacheClean(client.cache)


class IntroductionTests(InMemoryFixture):
    """
    The origin introduces a node at the address its connection comes from.
    """

    def test_connectionAddress(self) -> None:
        """
        A node is recorded, and listed to the next, at its connection's
        address and the listen port of its Hello.
        """
        self.liarConnector = self.pair.connector(self.liar, "10.0.0.67")  # type: ignore[arg-type]
        self.pair.nodes[("10.0.0.67", LIAR_PORT)] = self.liar  # type: ignore[assignment]
        connection = self.liarConnects(ORIGIN, PORT)
        opening = connection.open(URL, "", peers=True)
        self.pair.flush()
        self.successResultOf(self.successResultOf(opening).getPeers())
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.67", LIAR_PORT)])
        client = self.addClient()
        download = self.download(client)
        self.assertEqual(self.liar.opened, [(URL, self.meta.version)])
        self.assertIn(f"10.0.0.67:{LIAR_PORT}", [s.name for s in download.sources])


class DocsTests(SynchronousTestCase):
    """
    docs/security.md gives the limits the node keeps to.
    """

    def test_peerAddressLimits(self) -> None:
        """
        Each peer-address limit is in the table, with its constant's name.
        """
        path = os.path.join(CHECKOUT, "docs", "security.md")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        for value, name in [
            (f"{backoff.PEER_RETRY:g} s", "PEER_RETRY"),
            (f"{backoff.PEER_RETRY_MAX:g} s", "PEER_RETRY_MAX"),
            (f"{backoff.NOT_SPP_RETRY:g} s", "NOT_SPP_RETRY"),
            (f"{backoff.MAX_PEER_ADDRESSES}", "MAX_PEER_ADDRESSES"),
            (f"{swarm.PRIVILEGED_PORTS}", "PRIVILEGED_PORTS"),
        ]:
            self.assertIn(f"{value} (`{name}`)", text)
