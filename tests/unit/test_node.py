"""
Tests for L{p2pd.engine.node}: what a node answers to other nodes (its
published files, its downloads, its cache) and how it runs its own
downloads.

Everything runs in memory on a L{task.Clock}: a real L{PublicDirectory},
L{DigestIndex} and L{BlockCache} in temporary directories, a fake connector
and fake connections, or two real nodes talking real SPP through an in-memory
pump (L{tests.helpers.connectedServerAndClient}).
"""

import errno
import gc
import hashlib
import os
import random
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.protocol import Protocol
from twisted.logger import LogLevel, capturedLogs, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.net import PLAIN, Security
from p2pd.core.peers import Peer
from p2pd.engine.backoff import (
    MAX_PEER_ADDRESSES,
    NOT_SPP_RETRY,
    PEER_RETRY,
    PEER_RETRY_MAX,
    PeerBackoff,
)
from p2pd.engine.download import Download, DownloadFailed
from p2pd.engine.interfaces import IServedFile
from p2pd.engine.node import HANDLES_PER_CONNECTION, Node
from p2pd.engine.swarm import IDLE_DOWNLOAD, PEER_INTERVAL
from p2pd.engine.tracker import Tracker
from p2pd.engine.verification import DIGEST_CHUNK
from p2pd.spp import answering
from p2pd.spp.asking import ConnectionGone
from p2pd.spp.protocol import SPPFactory, SPPProtocol
from p2pd.store.cache import BlockCache
from p2pd.store.digests import DigestIndex
from p2pd.store.published import PublicDirectory
from tests.fakes import FakeConnection, FakeConnector, QueuedThreads
from tests.helpers import FakeTransport, connectedServerAndClient

BLOCK = 16 * 1024
PORT = 1111
ORIGIN = "10.0.0.1"
URL = f"spp://{ORIGIN}:{PORT}/movie.ts"
MTIME_NS = 1_700_000_000_123_456_789


def content(blocks: float, seed: int = 0) -> bytes:
    """
    C{blocks} blocks (a fraction: a short last block) of random bytes.
    """
    return random.Random(seed).randbytes(int(blocks * BLOCK))


def writeFile(path: str, data: bytes, mtimeNs: int = MTIME_NS) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(mtimeNs, mtimeNs))


def versionOf(data: bytes, mtimeNs: int = MTIME_NS) -> str:
    return f"{len(data):x}-{mtimeNs:x}"


def fakeConnection(
    files: dict[str, bytes],
    host: str = ORIGIN,
    port: int = PORT,
    initiator: bool = True,
) -> FakeConnection:
    """
    A fake connection to a node publishing C{files} (URL: data) as this
    module's files are published.
    """
    described = {
        url: (FileMeta(url, len(data), BLOCK, "sha256", versionOf(data)), data)
        for url, data in files.items()
    }
    return FakeConnection(described, host, port, initiator)


def readAll(testCase: SynchronousTestCase, download: Download, *flushes: Any) -> bytes:
    """
    Read C{download} from start to end, flushing the fake connections
    whenever a read waits.
    """
    reader = download.read(0)
    parts = []
    while True:
        d = reader.read()
        for connection in flushes:
            connection.flush()
        data = testCase.successResultOf(d)
        if not data:
            break
        parts.append(data)
    reader.close()
    return b"".join(parts)


class NodeFixture(SynchronousTestCase):
    """
    A node publishing a directory, with a cache and a digest index, in the
    test's temporary directory: C{TMP/public} is published, C{TMP/secret}
    lies next to it and must never be served.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.publicDir = os.path.join(self.base, "public")
        self.movie = content(5.5)
        writeFile(os.path.join(self.publicDir, "movie.ts"), self.movie)
        writeFile(os.path.join(self.publicDir, "sub", "inner.bin"), content(1, 1))
        writeFile(os.path.join(self.publicDir, ".hidden"), b"hidden")
        writeFile(os.path.join(self.base, "secret"), b"secret")
        writeFile(os.path.join(self.base, "public.secret"), b"secret")
        self.clock = task.Clock()
        self.connector = FakeConnector()
        self.cache = self.makeCache("cache")
        self.threads = QueuedThreads()
        self.digestIndex = DigestIndex(
            os.path.join(self.base, "digests"),
            BLOCK,
            "sha256",
            self.threads,  # type: ignore[arg-type]
        )
        self.addCleanup(self.digestIndex.close)
        self.tracker = Tracker()
        self.node = self.makeNode(
            self.cache,
            PublicDirectory(self.publicDir),
            self.digestIndex,
            self.tracker,
            connectorFor=self.originConnector,
        )
        self.node.listenPort = PORT

    def originConnector(self, node: Node) -> Any:
        """
        The connector of the fixture's publishing node: the fake one.
        """
        return self.connector

    def assertSameBytes(self, got: bytes, expected: bytes) -> None:
        """
        C{got} is C{expected} (compared by length and digest, so a failure
        does not print megabytes).
        """
        self.assertEqual(
            (len(got), hashlib.sha256(got).hexdigest()),
            (len(expected), hashlib.sha256(expected).hexdigest()),
        )

    def ran(self, d: "defer.Deferred[Any]") -> "defer.Deferred[Any]":
        """
        C{d}, after the digest index's thread jobs have run.
        """
        self.threads.runAll()
        return d

    def makeCache(self, name: str) -> BlockCache:
        return BlockCache(os.path.join(self.base, name))

    def makeNode(
        self,
        cache: Any,
        *args: Any,
        connectorFor: Callable[[Node], Any] | None = None,
        **kwargs: Any,
    ) -> Node:
        """
        A node on the test's clock, its connector made by C{connectorFor}
        (by default, the fixture's fake connector).
        """
        node = Node(
            self.clock,
            connectorFor or (lambda node: self.connector),  # type: ignore[arg-type]
            cache,
            *args,
            **kwargs,
        )
        self.addCleanup(node.stop)
        return node

    def openServed(self, url: str, version: str = "", node: Node | None = None) -> Any:
        served = (node or self.node).open(url, version, fakeConnection({}))
        self.addCleanup(served.close)
        return served

    def openCode(self, url: str, version: str = "") -> Any:
        """
        The error code C{open} raises, or C{"opened"}.
        """
        try:
            served = self.node.open(url, version, fakeConnection({}))
        except SPPError as e:
            return ErrorCode(e.code)
        served.close()
        return "opened"


class OpenPublishedTests(NodeFixture):
    """
    L{Node.open} of the node's own published files.
    """

    def test_uploaded(self) -> None:
        """
        A published file knows which blocks it has read for any handle of
        it, on any connection, while one is open.
        """
        first = self.openServed(URL)
        second = self.openServed(URL)
        self.assertFalse(second.uploaded(2))
        self.successResultOf(first.readBlock(2))
        self.assertEqual([second.uploaded(i) for i in range(4)], [0, 0, 1, 0])
        first.close()
        second.close()
        self.assertFalse(self.openServed(URL).uploaded(2))

    def test_published(self) -> None:
        """
        A published file opens as an authoritative served file with its size,
        version, block size and digest algorithm; its blocks and digests are
        the file's.
        """
        served = self.openServed(URL)
        verifyObject(IServedFile, served)
        self.assertTrue(served.authoritative)
        self.assertEqual(served.size, len(self.movie))
        self.assertEqual(served.version, versionOf(self.movie))
        self.assertEqual((served.blockSize, served.digestName), (BLOCK, "sha256"))
        self.assertEqual(served.held(), [(0, 6)])
        self.assertSameBytes(
            self.successResultOf(served.readBlock(5)), self.movie[5 * BLOCK :]
        )
        self.assertEqual(
            self.successResultOf(self.ran(served.digests(4, 2))),
            hashlib.sha256(self.movie[4 * BLOCK : 5 * BLOCK]).digest()
            + hashlib.sha256(self.movie[5 * BLOCK :]).digest(),
        )

    def test_currentVersion(self) -> None:
        """
        Asking for the current version by name opens the file too.
        """
        served = self.openServed(URL, versionOf(self.movie))
        self.assertTrue(served.authoritative)

    def test_subdirectory(self) -> None:
        """
        Files in subdirectories are published under their relative path.
        """
        served = self.openServed(f"spp://{ORIGIN}:{PORT}/sub/inner.bin")
        self.assertSameBytes(self.successResultOf(served.readBlock(0)), content(1, 1))

    def test_percentEncodedName(self) -> None:
        """
        The URL's path is percent-decoded once: a name with a space and
        non-ASCII letters is found from its encoded form.
        """
        writeFile(os.path.join(self.publicDir, "my fïlm.ts"), b"film")
        served = self.openServed(f"spp://{ORIGIN}:{PORT}/my%20f%C3%AFlm.ts")
        self.assertSameBytes(self.successResultOf(served.readBlock(0)), b"film")

    def test_anyHostAndPort(self) -> None:
        """
        The URL's host does not matter to a publishing node: it looks the
        path up in its own directory (so names and addresses of one origin
        all work).
        """
        served = self.openServed("spp://origin.example:1111/movie.ts")
        self.assertEqual(served.version, versionOf(self.movie))

    def test_outsideThePublishedDirectory(self) -> None:
        """
        No spelling of a path leaving the published directory, or naming a
        hidden file, opens anything: every one is NOT_FOUND (and no error
        says why).
        """
        os.symlink(
            os.path.join(self.base, "secret"), os.path.join(self.publicDir, "link")
        )
        paths = [
            "/../secret",
            "/sub/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/%2e%2e%2fsecret",
            "/..%2Fsecret",
            "/sub%2F..%2F..%2Fsecret",
            "/%2F" + "%2F".join(self.base.strip("/").split("/")) + "%2Fsecret",
            "/..%5Csecret",
            "/..\\secret",
            "/sub\\..\\..\\secret",
            "/%5C..%5C..%5Csecret",
            "/movie.ts%00",
            "/movie.ts%00.txt",
            "/movie.ts\x00",
            "/.hidden",
            "/%2Ehidden",
            "/sub/../.hidden",
            "/.",
            "/%2e",
            "/./movie.ts",
            "//movie.ts",
            "/sub//inner.bin",
            "/sub/",
            "/sub",
            "/link",
            "/%252e%252e/secret",
            "/..%c0%afsecret",
            "/%ff",
            "/no-such-file",
        ]
        results = {
            path: self.openCode(f"spp://{ORIGIN}:{PORT}{path}") for path in paths
        }
        self.assertEqual(
            results,
            {path: ErrorCode.NOT_FOUND for path in paths},
        )

    def test_outsideWithVersion(self) -> None:
        """
        Naming the version of a file outside the directory does not open it
        either.
        """
        with open(os.path.join(self.base, "secret"), "rb"):
            pass
        st = os.stat(os.path.join(self.base, "secret"))
        version = f"{st.st_size:x}-{st.st_mtime_ns:x}"
        for path in ("/../secret", "/%2e%2e/secret", "/..%2Fsecret"):
            self.assertEqual(
                self.openCode(f"spp://{ORIGIN}:{PORT}{path}", version),
                ErrorCode.NOT_FOUND,
            )

    def test_badURL(self) -> None:
        """
        A URL that is not an SPP URL is BAD_REQUEST.
        """
        urls = [
            "http://10.0.0.1:1111/movie.ts",
            "spp://10.0.0.1:1111/",
            "spp://10.0.0.1:1111",
            "spp:///movie.ts",
            "spp://10.0.0.1:99999/movie.ts",
            "spp://10.0.0.1:port/movie.ts",
            "spp://user@10.0.0.1/movie.ts",
            "spp://10.0.0.1/movie.ts?x=1",
            "spp://10.0.0.1/movie.ts#t=10",
            "spp://bad host/movie.ts",
            "movie.ts",
            "",
            "spp://10.0.0.1/" + "a" * 2048,
        ]
        self.assertEqual(
            {url: self.openCode(url) for url in urls},
            {url: ErrorCode.BAD_REQUEST for url in urls},
        )

    def test_staleVersion(self) -> None:
        """
        The origin answers an older version of its file with CHANGED.
        """
        self.assertEqual(self.openCode(URL, "1000-1"), ErrorCode.CHANGED)

    def test_hostAndPortIgnored(self) -> None:
        """
        A node publishing a path answers for it whatever host and port the
        URL names (a mirror answers for its origin's URLs): the current
        version authoritatively, another one with CHANGED.
        """
        for url in (f"spp://{ORIGIN}:2222/movie.ts", "spp://elsewhere.example/movie.ts"):
            served = self.node.open(url, "", fakeConnection({}))
            self.addCleanup(served.close)
            self.assertTrue(served.authoritative)
            self.assertEqual(self.openCode(url, "1000-1"), ErrorCode.CHANGED)

    def test_noPublicDirectory(self) -> None:
        """
        A node publishing nothing answers an open of the current version with
        NOT_FOUND.
        """
        node = self.makeNode(self.makeCache("other"))
        self.assertRaises(SPPError, node.open, URL, "", fakeConnection({}))
        try:
            node.open(URL, "", fakeConnection({}))
        except SPPError as e:
            self.assertEqual(e.code, ErrorCode.NOT_FOUND)


class ServedPublishedTests(NodeFixture):
    """
    Digests, blocks and peers of a published file opened by another node.
    """

    def assertCode(self, code: ErrorCode, f: Callable[..., Any], *args: Any) -> None:
        """
        C{f(*args)} raises, or fails with, SPPError C{code}.
        """
        try:
            d = f(*args)
        except SPPError as e:
            self.assertEqual(ErrorCode(e.code), code)
            return
        failure = self.failureResultOf(self.ran(d), SPPError)
        self.assertEqual(ErrorCode(failure.value.code), code)

    def test_digestsPastTheEnd(self) -> None:
        """
        Digests outside the file are BAD_REQUEST; none from the end are none.
        """
        served = self.openServed(URL)
        self.assertEqual(self.successResultOf(self.ran(served.digests(6, 0))), b"")
        self.assertCode(ErrorCode.BAD_REQUEST, served.digests, 6, 1)
        self.assertCode(ErrorCode.BAD_REQUEST, served.digests, 5, 2)
        self.assertCode(ErrorCode.BAD_REQUEST, served.digests, 0, 0)
        self.assertCode(ErrorCode.BAD_REQUEST, served.digests, 2**32 - 1, 1)

    def test_blockPastTheEnd(self) -> None:
        """
        A block outside the file is BAD_REQUEST.
        """
        served = self.openServed(URL)
        self.assertCode(ErrorCode.BAD_REQUEST, served.readBlock, 6)
        self.assertCode(ErrorCode.BAD_REQUEST, served.readBlock, 2**32 - 1)

    def test_digestsOfRemovedFile(self) -> None:
        """
        Digests of a file removed after it was opened fail with an SPP error
        code (CHANGED), not an internal error.
        """
        served = self.openServed(URL)
        os.unlink(os.path.join(self.publicDir, "movie.ts"))
        self.assertCode(ErrorCode.CHANGED, served.digests, 0, 1)

    def test_blockOfRemovedFile(self) -> None:
        """
        A block of a file removed after it was opened (and before any block
        was read) fails with an SPP error code.
        """
        served = self.openServed(URL)
        os.unlink(os.path.join(self.publicDir, "movie.ts"))
        try:
            served.readBlock(0)
        except SPPError as e:
            self.assertIn(e.code, (ErrorCode.CHANGED, ErrorCode.NOT_FOUND))
        else:
            self.fail("readBlock of a removed file did not raise")

    def test_modifiedAfterOpen(self) -> None:
        """
        A published file modified in place after it was opened (and after
        blocks were served) gives CHANGED for every later block and digest:
        blocks of two versions never mix.
        """
        served = self.openServed(URL)
        self.assertSameBytes(
            self.successResultOf(served.readBlock(0)), self.movie[:BLOCK]
        )
        path = os.path.join(self.publicDir, "movie.ts")
        with open(path, "r+b") as f:
            f.seek(BLOCK)
            f.write(b"new" * 100)
        self.assertCode(ErrorCode.CHANGED, served.readBlock, 1)
        self.assertCode(ErrorCode.CHANGED, served.readBlock, 0)
        self.assertCode(ErrorCode.CHANGED, served.digests, 1, 1)

    def test_replacedAfterOpen(self) -> None:
        """
        A published file replaced (a new file renamed over it) after it was
        opened gives CHANGED, never the new file's bytes.
        """
        served = self.openServed(URL)
        path = os.path.join(self.publicDir, "movie.ts")
        writeFile(path + ".new", content(5.5, 9), MTIME_NS + 10**9)
        os.rename(path + ".new", path)
        self.assertCode(ErrorCode.CHANGED, served.readBlock, 1)
        self.assertCode(ErrorCode.CHANGED, served.digests, 1, 1)

    def test_newVersionAfterChange(self) -> None:
        """
        After a change, opening the current version gives the new file, and
        the old version is CHANGED.
        """
        old = versionOf(self.movie)
        new = content(3, 4)
        writeFile(os.path.join(self.publicDir, "movie.ts"), new, MTIME_NS + 1)
        served = self.openServed(URL)
        self.assertEqual(served.version, versionOf(new, MTIME_NS + 1))
        self.assertSameBytes(
            self.successResultOf(served.readBlock(2)), new[2 * BLOCK :]
        )
        self.assertEqual(self.openCode(URL, old), ErrorCode.CHANGED)

    def test_peersRecordsAsker(self) -> None:
        """
        Asking for peers records the asker (at its listen port) as fetching
        the file, and later askers are offered it; closing the served file
        forgets it.
        """
        first = self.openServed(URL)
        self.assertEqual(list(first.peers("10.0.0.2", 2222)), [])
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.2", 2222)])
        second = self.openServed(URL)
        self.assertEqual(
            [(p.host, p.port) for p in second.peers("10.0.0.3", 3333)],
            [("10.0.0.2", 2222)],
        )
        first.close()
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.3", 3333)])
        second.close()
        self.assertEqual(self.tracker.nodes("movie.ts"), [])

    def test_peersRecordsOnce(self) -> None:
        """
        Asking again on the same handle does not record the asker twice: one
        close forgets it.
        """
        served = self.openServed(URL)
        served.peers("10.0.0.2", 2222)
        served.peers("10.0.0.2", 2222)
        served.close()
        self.assertEqual(self.tracker.nodes("movie.ts"), [])

    def test_peersNotListening(self) -> None:
        """
        An asker that does not listen (port 0) is not recorded: nobody could
        reach it.
        """
        served = self.openServed(URL)
        served.peers("10.0.0.2", 0)
        self.assertEqual(self.tracker.nodes("movie.ts"), [])

    def test_closeTwice(self) -> None:
        """
        Closing a served file twice forgets its asker once.
        """
        a = self.openServed(URL)
        b = self.openServed(URL)
        a.peers("10.0.0.2", 2222)
        b.peers("10.0.0.2", 2222)
        a.close()
        a.close()
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.2", 2222)])


class DownloadTests(NodeFixture):
    """
    L{Node.download}: one download per file, from the origin or, when the
    origin cannot be reached, from the cache.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.makeNode(self.makeCache("client-cache"))
        self.origin = fakeConnection({URL: self.movie})

    def test_shared(self) -> None:
        """
        Callers asking for the same file while it opens, and after, share
        one download and one connection; spellings of one URL are one file.
        """
        first = self.client.download(URL)
        second = self.client.download(f"spp://{ORIGIN}/movie.ts")
        self.assertEqual(len(self.connector.attempts), 1)
        self.assertEqual(self.connector.attempts[0][:2], (ORIGIN, PORT))
        self.assertNoResult(first)
        self.connector.succeed(self.origin)
        download = self.successResultOf(first)
        self.assertIs(self.successResultOf(second), download)
        self.assertIs(self.successResultOf(self.client.download(URL)), download)
        self.assertEqual(self.origin.opened, [(URL, "")])
        self.assertEqual(self.connector.attempts, [])
        self.assertEqual(self.client.downloads(), [download])

    def test_downloads(self) -> None:
        """
        A download reads the origin's file byte for byte, verified, into the
        cache.
        """
        d = self.client.download(URL)
        self.connector.succeed(self.origin)
        download = self.successResultOf(d)
        self.assertSameBytes(readAll(self, download, self.origin), self.movie)
        self.assertTrue(download.complete)

    def test_handlesGivenBack(self) -> None:
        """
        With as many files open on the origin's connection as a node
        answers, opening one more closes the download nobody has read for
        longest: a player fetching one short file after another never meets
        the limit, and a download being read stays open.
        """
        urls = [
            f"spp://{ORIGIN}:{PORT}/f{i}.ts" for i in range(HANDLES_PER_CONNECTION + 5)
        ]
        origin = fakeConnection({url: self.movie[:BLOCK] for url in urls})
        d = self.client.download(urls[0])
        self.connector.succeed(origin)
        playing = self.successResultOf(d).read(0)
        for url in urls[1:]:
            download = self.successResultOf(self.client.download(url))
            readAll(self, download, origin)
            still = [f for f in origin.remoteFiles if not f.closed]
            self.assertLessEqual(len(still), HANDLES_PER_CONNECTION)
        self.assertEqual(len(origin.opened), len(urls))
        self.assertFalse(origin.remoteFiles[0].closed)
        self.assertTrue(origin.remoteFiles[1].closed)
        self.assertFalse(playing.closed)

    def test_unreadGivenBackWhenWanted(self) -> None:
        """
        A download nobody reads gives its handle back at the next check,
        not after L{IDLE_DOWNLOAD}, when an Open waits for a handle on its
        connection; without one waiting it stays open.
        """
        d = self.client.download(URL)
        self.connector.succeed(self.origin)
        download = self.successResultOf(d)
        for _ in range(2):
            self.clock.advance(PEER_INTERVAL)
        self.assertEqual(self.client.downloads(), [download])
        self.origin.waitingOpens = 1
        for _ in range(2):
            self.clock.advance(PEER_INTERVAL)
        self.assertEqual(self.client.downloads(), [])
        self.assertTrue(self.origin.remoteFiles[0].closed)

    def test_handlesPerConnection(self) -> None:
        """
        A node keeps at most as many files open on one connection as the
        other node answers (docs/protocol.md).
        """
        self.assertEqual(HANDLES_PER_CONNECTION, answering.MAX_OPEN_FILES)

    def test_firstBlockWithOpen(self) -> None:
        """
        The origin is asked for the first digests and the first block with
        the Open, so a player's first bytes need no more round trips.
        """
        self.client.download(URL)
        self.connector.succeed(self.origin)
        self.assertEqual(self.origin.early, [(DIGEST_CHUNK, (0,), True)])

    def test_noEarlyBlockWhenCached(self) -> None:
        """
        When a version of the file is cached, its first block may be too:
        the Open asks early for digests only.
        """
        meta = FileMeta(URL, len(self.movie), BLOCK, "sha256", "old")
        cached = self.client.cache.open(meta)  # type: ignore[union-attr]
        block = self.movie[3 * BLOCK : 4 * BLOCK]
        cached.setDigests(3, meta.digest(block))
        cached.write(3, block)
        cached.close()
        self.client.download(URL)
        self.connector.succeed(self.origin)
        self.assertEqual(self.origin.early, [(DIGEST_CHUNK, (), True)])

    def test_badURL(self) -> None:
        """
        A URL that is not an SPP URL fails at once, without connecting.
        """
        self.failureResultOf(self.client.download("http://x/movie.ts"), ValueError)
        self.assertEqual(self.connector.attempts, [])

    def test_unreachableWithoutCache(self) -> None:
        """
        When the origin cannot be reached and nothing is cached, every caller
        gets the connection error.
        """
        first = self.client.download(URL)
        second = self.client.download(URL)
        self.connector.fail(ConnectionRefusedError())
        self.failureResultOf(first, ConnectionRefusedError)
        self.failureResultOf(second, ConnectionRefusedError)
        self.assertEqual(self.client.downloads(), [])

    def test_retryAfterFailure(self) -> None:
        """
        After a failed attempt, the next call tries to connect again.
        """
        d = self.client.download(URL)
        self.connector.fail(ConnectionRefusedError())
        self.failureResultOf(d, ConnectionRefusedError)
        d = self.client.download(URL)
        self.assertEqual(len(self.connector.attempts), 1)
        self.connector.succeed(self.origin)
        self.assertIsInstance(self.successResultOf(d), Download)

    def test_refusedByOrigin(self) -> None:
        """
        The origin's refusal (NOT_FOUND) reaches the caller.
        """
        d = self.client.download(f"spp://{ORIGIN}:{PORT}/nothing.ts")
        self.connector.succeed(self.origin)
        failure = self.failureResultOf(d, SPPError)
        self.assertEqual(failure.value.code, ErrorCode.NOT_FOUND)

    def test_cacheFails(self) -> None:
        """
        When the cache cannot take the file (disk full), the callers get the
        error, the file is closed on the origin, and a later call starts
        afresh instead of waiting forever.
        """

        class FullCache(BlockCache):
            def open(self, meta: FileMeta) -> Any:
                raise OSError(errno.ENOSPC, "No space left on device")

        node = self.makeNode(FullCache(os.path.join(self.base, "full")))
        first = node.download(URL)
        second = node.download(URL)
        self.connector.succeed(self.origin)
        self.assertEqual(self.failureResultOf(first, OSError).value.errno, errno.ENOSPC)
        self.failureResultOf(second, OSError)
        self.assertTrue(self.origin.remoteFiles[0].closed)
        self.assertEqual(node.downloads(), [])
        third = node.download(URL)
        self.assertEqual(len(self.connector.attempts), 0)  # the connection is kept
        self.failureResultOf(third, OSError)
        self.assertEqual(len(self.origin.opened), 2)

    def fillCache(self, cacheName: str) -> None:
        """
        Download the whole file into cache C{cacheName} with a throwaway
        node, which is then stopped.
        """
        node = self.makeNode(self.makeCache(cacheName))
        origin = fakeConnection({URL: self.movie})
        d = node.download(URL)
        self.connector.succeed(origin)
        self.assertSameBytes(readAll(self, self.successResultOf(d), origin), self.movie)
        node.stop()

    def cacheBlocks(self, cacheName: str, blocks: range) -> None:
        """
        Put C{blocks} of the file, with all its digests, in cache
        C{cacheName}, as an interrupted download leaves them.
        """
        meta = FileMeta(URL, len(self.movie), BLOCK, "sha256", versionOf(self.movie))
        cached = self.makeCache(cacheName).open(meta)
        cached.setDigests(
            0,
            b"".join(
                meta.digest(self.movie[meta.blockStart(i) :][:BLOCK])
                for i in range(meta.blocks)
            ),
        )
        for index in blocks:
            cached.write(index, self.movie[meta.blockStart(index) :][:BLOCK])
        cached.close()

    def test_offlineFromCache(self) -> None:
        """
        When the origin cannot be reached (refused, unknown host) but the
        file is cached, the download plays from the cache, byte for byte.
        """
        for n, reason in enumerate([ConnectionRefusedError(), DNSLookupError()]):
            name = f"offline{n}"
            self.fillCache(name)
            node = self.makeNode(self.makeCache(name))
            d = node.download(URL)
            self.connector.fail(reason)
            download = self.successResultOf(d)
            self.assertEqual(download.meta.version, versionOf(self.movie))
            self.assertSameBytes(readAll(self, download), self.movie)

    def offline(self, cacheName: str) -> tuple[Node, Download]:
        """
        A node with cache C{cacheName} whose download of the file found the
        origin unreachable.
        """
        node = self.makeNode(self.makeCache(cacheName))
        d = node.download(URL)
        self.connector.fail(ConnectionRefusedError())
        return node, self.successResultOf(d)

    def test_offlinePartialCache(self) -> None:
        """
        Offline, the cached part of a partly cached file plays, and a read
        past it fails with L{DownloadFailed} at once, instead of waiting
        forever.
        """
        self.cacheBlocks("partial", range(2))
        node, download = self.offline("partial")
        reader = download.read(0)
        self.addCleanup(reader.close)
        got = b""
        while len(got) < 2 * BLOCK:
            got += self.successResultOf(reader.read())
        self.assertSameBytes(got, self.movie[: 2 * BLOCK])
        self.failureResultOf(reader.read(), DownloadFailed)

    def test_offlineOriginReturns(self) -> None:
        """
        A download playing from a partial cache keeps trying the origin: when
        it is back, the rest of the file comes from it (same version).
        """
        self.cacheBlocks("back", range(2))
        node, download = self.offline("back")
        self.assertEqual(self.connector.attempts, [])
        self.clock.advance(PEER_INTERVAL)
        self.assertEqual(len(self.connector.attempts), 1)
        self.connector.succeed(self.origin)
        self.assertEqual(self.origin.opened, [(URL, versionOf(self.movie))])
        self.assertSameBytes(readAll(self, download, self.origin), self.movie)
        self.assertEqual(sorted(self.origin.blocksAsked), [2, 3, 4, 5])

    def test_offlineDownloadCloses(self) -> None:
        """
        An offline download nobody reads is closed like any idle download,
        so the next caller asks the origin again.
        """
        self.fillCache("idle")
        node, download = self.offline("idle")
        self.assertSameBytes(readAll(self, download), self.movie)
        for _ in range(int(IDLE_DOWNLOAD / PEER_INTERVAL) + 2):
            self.clock.advance(PEER_INTERVAL)
            self.connector.fail(ConnectionRefusedError())
        self.assertEqual(node.downloads(), [])
        d = node.download(URL)
        self.connector.succeed(self.origin)
        self.assertIsNot(self.successResultOf(d), download)
        self.assertEqual(self.origin.opened, [(URL, "")])

    def test_refusedWithCache(self) -> None:
        """
        A cached copy does not hide the origin's refusal: the file may have
        been withdrawn.
        """
        self.fillCache("withdrawn")
        node = self.makeNode(self.makeCache("withdrawn"))
        d = node.download(URL)
        self.connector.succeed(fakeConnection({}))
        failure = self.failureResultOf(d, SPPError)
        self.assertEqual(failure.value.code, ErrorCode.NOT_FOUND)

    def test_resumesFromCache(self) -> None:
        """
        With the origin reachable, a partly cached file is fetched from its
        first missing block on: cached blocks are not asked for again.
        """
        self.cacheBlocks("resume", range(3))
        node = self.makeNode(self.makeCache("resume"))
        origin = fakeConnection({URL: self.movie})
        d = node.download(URL)
        self.connector.succeed(origin)
        download = self.successResultOf(d)
        self.assertEqual(download.store.held(), [(0, 3)])
        self.assertSameBytes(readAll(self, download, origin), self.movie)
        self.assertEqual(sorted(origin.blocksAsked), [3, 4, 5])


def _flushed(d: "defer.Deferred[Any]", *connections: FakeConnection) -> Any:
    for connection in connections:
        connection.flush()
    return d


class ServingDownloadTests(NodeFixture):
    """
    L{Node.open} of a file this node is downloading or has cached: it
    answers as a peer.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.makeNode(self.makeCache("client-cache"))
        self.origin = fakeConnection({URL: self.movie})
        d = self.client.download(URL)
        self.connector.succeed(self.origin)
        self.download = self.successResultOf(d)
        self.version = versionOf(self.movie)

    def test_peerOpensDownload(self) -> None:
        """
        Another node opening the downloading file's version gets a
        non-authoritative file with the blocks held so far, and the node
        opens the same file on that connection, as a source.
        """
        reader = self.download.read(0, BLOCK)
        self.successResultOf(_flushed(reader.read(), self.origin))
        reader.close()
        peer = fakeConnection({URL: self.movie}, "10.0.0.7", 7777)
        served = self.client.open(URL, self.version, peer)
        self.addCleanup(served.close)
        self.assertFalse(served.authoritative)
        self.assertIn(
            0, [i for first, n in served.held() for i in range(first, first + n)]
        )
        self.assertSameBytes(
            self.successResultOf(served.readBlock(0)), self.movie[:BLOCK]
        )
        error = self.assertRaises(SPPError, served.digests, 0, 1)
        self.assertEqual(error.code, ErrorCode.NOT_FOUND)
        self.assertEqual(peer.opened, [(URL, self.version)])
        self.assertIn("10.0.0.7:7777", [s.name for s in self.download.sources])
        again = self.client.open(URL, self.version, peer)
        self.addCleanup(again.close)
        self.assertEqual(peer.opened, [(URL, self.version)])

    def test_badSourceDropped(self) -> None:
        """
        A peer whose block failed its digest has its connection dropped.
        """
        peer = fakeConnection({URL: self.movie}, "10.0.0.7", 7777)
        served = self.client.open(URL, self.version, peer)
        self.addCleanup(served.close)
        (remote,) = peer.remoteFiles
        assert self.download.onBadSource is not None
        self.download.onBadSource(remote)
        self.assertTrue(peer.dropped)
        self.assertFalse(self.origin.dropped)

    def test_peerOpensOtherVersion(self) -> None:
        """
        A version the node neither downloads nor caches is NOT_FOUND.
        """
        try:
            self.client.open(URL, "1-1", fakeConnection({}))
        except SPPError as e:
            self.assertEqual(e.code, ErrorCode.NOT_FOUND)
        else:
            self.fail("opened a version the node does not hold")

    def test_currentVersionOnlyFromAuthorities(self) -> None:
        """
        A node that only downloads a file does not answer an open of "the
        current version": only the origin knows it.
        """
        try:
            self.client.open(URL, "", fakeConnection({}))
        except SPPError as e:
            self.assertEqual(e.code, ErrorCode.NOT_FOUND)
        else:
            self.fail("a downloader answered for the current version")

    def test_blockNotHeld(self) -> None:
        """
        A block the node does not hold yet is UNAVAILABLE.
        """
        served = self.client.open(URL, self.version, fakeConnection({}))
        self.addCleanup(served.close)
        try:
            served.readBlock(5)
        except SPPError as e:
            self.assertEqual(e.code, ErrorCode.UNAVAILABLE)
        else:
            self.fail("served a block it does not hold")

    def test_cachedAfterStop(self) -> None:
        """
        After its download closed, a node still serves the cached blocks of
        that version.
        """
        self.assertSameBytes(readAll(self, self.download, self.origin), self.movie)
        self.client.stop()
        served = self.client.open(URL, self.version, fakeConnection({}))
        self.addCleanup(served.close)
        self.assertEqual(served.held(), [(0, 6)])
        self.assertSameBytes(
            self.successResultOf(served.readBlock(5)), self.movie[5 * BLOCK :]
        )


class EvictedDownloadTests(NodeFixture):
    """
    A download whose blocks the cache's limit evicted.
    """

    def test_closedOnceEmptied(self) -> None:
        """
        A download nobody reads whose blocks were all evicted is closed at
        the next check, not after L{IDLE_DOWNLOAD}: it leaves the node's
        downloads, and its handle on the origin is closed.
        """
        cache = BlockCache(os.path.join(self.base, "small"), capacity=80 * BLOCK)
        cache.enforceLimit()
        node = self.makeNode(cache)
        origin = fakeConnection({URL: self.movie})
        d = node.download(URL)
        self.connector.succeed(origin)
        download = self.successResultOf(d)
        self.assertSameBytes(readAll(self, download, origin), self.movie)
        self.clock.advance(PEER_INTERVAL)
        self.assertEqual(node.downloads(), [download])
        # Files of a head and a tail alone, more than the cache holds.
        block = bytes(BLOCK)
        for n in range(4):
            other = FileMeta(
                f"spp://10.0.0.2:1/{n}.ts", 32 * BLOCK, BLOCK, "sha256", "1"
            )
            cached = cache.open(other)
            cached.setDigests(0, other.digest(block) * other.blocks)
            for index in range(other.blocks):
                cached.write(index, block)
            cached.close()
        self.clock.advance(PEER_INTERVAL)
        self.assertEqual(node.downloads(), [])
        self.assertTrue(all(remote.closed for remote in origin.remoteFiles))
        self.assertFalse(cache.hasAnyVersion(URL))


class CachedServingTests(NodeFixture):
    """
    L{Node.open} of a version only the cache holds (no download running).
    """

    def test_closeReleasesTheCache(self) -> None:
        """
        Closing a file served from the cache releases it: the cache's files
        are closed again, however many times peers opened it.
        """
        node = self.makeNode(self.makeCache("client-cache"))
        origin = fakeConnection({URL: self.movie})
        d = node.download(URL)
        self.connector.succeed(origin)
        self.assertSameBytes(readAll(self, self.successResultOf(d), origin), self.movie)
        node.stop()
        before = sorted(os.listdir("/proc/self/fd"))
        for _ in range(3):
            served = node.open(URL, versionOf(self.movie), fakeConnection({}))
            self.assertSameBytes(
                self.successResultOf(served.readBlock(1)), self.movie[BLOCK:][:BLOCK]
            )
            served.close()
        self.assertEqual(sorted(os.listdir("/proc/self/fd")), before)

    def test_hasCached(self) -> None:
        """
        L{Node.hasCached} tells whether the cache holds some version of a
        URL, and leaves none of the cache's files open.
        """
        node = self.makeNode(self.makeCache("client-cache"))
        self.assertFalse(node.hasCached(URL))
        origin = fakeConnection({URL: self.movie})
        d = node.download(URL)
        self.connector.succeed(origin)
        readAll(self, self.successResultOf(d), origin)
        node.stop()
        before = sorted(os.listdir("/proc/self/fd"))
        self.assertTrue(node.hasCached(URL))
        self.assertFalse(node.hasCached(URL.replace("movie", "other")))
        self.assertEqual(sorted(os.listdir("/proc/self/fd")), before)
        self.assertFalse(self.makeNode(None).hasCached(URL))


class Pair:
    """
    Real SPP connections between real nodes, through in-memory pumps: a
    connector for one node that reaches the others by address.
    """

    def __init__(self, clock: task.Clock, threads: QueuedThreads) -> None:
        self.clock = clock
        self.threads = threads
        self.nodes: dict[tuple[str, int], Node] = {}
        self.pumps: list[Any] = []
        self.connections: list[tuple[SPPProtocol, SPPProtocol]] = []

    def connector(self, node: Node, host: str) -> "PairConnector":
        return PairConnector(self, node, host)

    def flush(self) -> None:
        """
        Move bytes (and run digest jobs) until everything is quiet.
        """
        while True:
            self.threads.runAll()
            if not any([pump.flush() for pump in self.pumps]):
                return


class PairConnector:
    def __init__(self, pair: Pair, node: Node, host: str) -> None:
        self.pair = pair
        self.node = node
        self.host = host

    def connect(
        self, host: str, port: int, security: Security = PLAIN
    ) -> "defer.Deferred[Any]":
        target = self.pair.nodes.get((host, port))
        if target is None:
            return defer.fail(ConnectionRefusedError())
        here = IPv4Address("TCP", self.host, 40000 + len(self.pair.pumps))
        there = IPv4Address("TCP", host, port)
        client, server, pump = connectedServerAndClient(
            lambda: SPPFactory(target, self.pair.clock, False).buildProtocol(here),
            lambda: SPPFactory(self.node, self.pair.clock, True).buildProtocol(there),
            clientTransportFactory=lambda p: FakeTransport(p, False, here, there),
            serverTransportFactory=lambda p: FakeTransport(p, True, there, here),
        )
        self.pair.pumps.append(pump)
        self.pair.connections.append((client, server))
        return client.ready


class InMemorySPPTests(NodeFixture):
    """
    An origin node and client nodes speaking real SPP in memory.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pair.nodes[(ORIGIN, PORT)] = self.node

    def originConnector(self, node: Node) -> Any:
        """
        The publishing node's connector reaches the others through pumps.
        """
        self.pair = Pair(self.clock, self.threads)
        return self.pair.connector(node, ORIGIN)

    def addClient(self, host: str, port: int) -> Node:
        client = Node(
            self.clock,
            lambda node: self.pair.connector(node, host),  # type: ignore[arg-type,return-value]
            self.makeCache(f"cache-{host}"),
        )
        client.listenPort = port
        self.pair.nodes[(host, port)] = client
        self.addCleanup(client.stop)
        return client

    def readAll(self, download: Download) -> bytes:
        reader = download.read(0)
        parts = []
        while True:
            d = reader.read()
            self.pair.flush()
            data = self.successResultOf(d)
            if not data:
                break
            parts.append(data)
        reader.close()
        return b"".join(parts)

    def test_download(self) -> None:
        """
        A client node downloads a published file from the origin node over
        SPP, byte for byte, and the origin records it for the next client.
        """
        client = self.addClient("10.0.0.2", 2222)
        d = client.download(URL)
        self.pair.flush()
        download = self.successResultOf(d)
        self.assertSameBytes(self.readAll(download), self.movie)
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.2", 2222)])
        self.assertEqual(self.node.counters.bytesByFile["movie.ts"], len(self.movie))

    def test_openWaitsForHandle(self) -> None:
        """
        With 64 files being read through one connection, a 65th download
        waits for a handle instead of failing with the origin's BUSY; once
        a reader of one of them is gone, that download gives its handle
        back at the next check and the 65th opens.
        """
        count = HANDLES_PER_CONNECTION + 1
        urls = [f"spp://{ORIGIN}:{PORT}/f{i}.ts" for i in range(count)]
        for i in range(count):
            writeFile(os.path.join(self.publicDir, f"f{i}.ts"), content(0.5, i))
        client = self.addClient("10.0.0.2", 2222)
        readers = []
        for url in urls[:-1]:
            d = client.download(url)
            self.pair.flush()
            readers.append(self.successResultOf(d).read(0))
        last = client.download(urls[-1])
        self.pair.flush()
        self.assertNoResult(last)
        readers[0].close()
        for _ in range(2):
            self.clock.advance(PEER_INTERVAL)
            self.pair.flush()
        self.assertSameBytes(self.readAll(self.successResultOf(last)), content(0.5, 64))

    def test_forgottenWhenConnectionEnds(self) -> None:
        """
        When the client's connection ends, the origin forgets it: a later
        client is not offered it.
        """
        client = self.addClient("10.0.0.2", 2222)
        d = client.download(URL)
        self.pair.flush()
        self.successResultOf(d)
        self.assertEqual(self.tracker.nodes("movie.ts"), [("10.0.0.2", 2222)])
        clientSide, serverSide = self.pair.connections[0]
        clientSide.transport.loseConnection()
        self.pair.flush()
        self.assertEqual(self.tracker.nodes("movie.ts"), [])

    def test_forgottenWhenDownloadCloses(self) -> None:
        """
        When the client node closes its download (it stops), it closes the
        file on the origin, which forgets it although the connection stays.
        """
        client = self.addClient("10.0.0.2", 2222)
        d = client.download(URL)
        self.pair.flush()
        self.successResultOf(d)
        client.stop()
        self.pair.flush()
        self.assertEqual(self.tracker.nodes("movie.ts"), [])
        clientSide, serverSide = self.pair.connections[0]
        self.assertFalse(clientSide.transport.disconnecting)

    def test_secondClientUsesFirst(self) -> None:
        """
        A second client is told about the first and uses it as a source.
        """
        first = self.addClient("10.0.0.2", 2222)
        d = first.download(URL)
        self.pair.flush()
        self.assertSameBytes(self.readAll(self.successResultOf(d)), self.movie)
        second = self.addClient("10.0.0.3", 3333)
        d = second.download(URL)
        self.pair.flush()
        download = self.successResultOf(d)
        self.assertIn("10.0.0.2:2222", [s.name for s in download.sources])
        self.assertSameBytes(self.readAll(download), self.movie)


PEER = ("10.0.0.7", 7777)


class PeerAddressTests(NodeFixture):
    """
    How often a node dials the addresses of a peer list.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.makeNode(self.makeCache("client-cache"))
        self.origin = fakeConnection({URL: self.movie})

    def start(self, url: str = URL) -> None:
        """
        Download C{url}, with a reader that keeps the download going.
        """
        d = self.client.download(url)
        self.connector.succeed(self.origin)
        reader = self.successResultOf(d).read(0)
        self.addCleanup(reader.close)
        self.origin.flush()

    def attemptTimes(
        self, seconds: float, outcome: Any, address: tuple[str, int] = PEER
    ) -> list[float]:
        """
        When, over C{seconds}, the node dials C{address}; C{outcome(d)}
        ends each attempt.
        """
        times = []
        for _ in range(int(seconds / PEER_INTERVAL) + 1):
            attempts, self.connector.attempts = self.connector.attempts, []
            for host, port, d in attempts:
                if (host, port) == address:
                    times.append(self.clock.seconds())
                outcome(d)
            self.clock.advance(PEER_INTERVAL)
            self.origin.flush()
        return times

    def test_backoff(self) -> None:
        """
        An address that refuses connections is dialed once per period, the
        period doubling with each failure.
        """
        self.origin.peers = [Peer(*PEER)]
        self.start()
        times = self.attemptTimes(80, lambda d: d.errback(ConnectionRefusedError()))
        self.assertEqual(times, [0, 2 * PEER_RETRY, 6 * PEER_RETRY, 14 * PEER_RETRY])

    def test_backoffBounded(self) -> None:
        """
        The period stops growing at L{PEER_RETRY_MAX}.
        """
        backoff = PeerBackoff(self.clock)
        for _ in range(40):
            backoff.failed(PEER)
        self.clock.advance(PEER_RETRY_MAX - 1)
        self.assertFalse(backoff.mayTry(PEER))
        self.clock.advance(1)
        self.assertTrue(backoff.mayTry(PEER))

    def test_addressesBounded(self) -> None:
        """
        Only the latest L{MAX_PEER_ADDRESSES} addresses are remembered.
        """
        backoff = PeerBackoff(self.clock)
        for port in range(1, MAX_PEER_ADDRESSES + 2):
            backoff.tried(("10.0.0.7", port))
        self.assertEqual(len(backoff), MAX_PEER_ADDRESSES)
        self.assertTrue(backoff.mayTry(("10.0.0.7", 1)))
        self.assertFalse(backoff.mayTry(("10.0.0.7", 2)))

    def test_privilegedPort(self) -> None:
        """
        A peer on a port below 1024 is not dialed when the origin's port is
        not below 1024.
        """
        self.origin.peers = [Peer("10.0.0.7", 1023), Peer("10.0.0.8", 1024)]
        self.start()
        self.assertEqual(
            [(h, p) for h, p, _ in self.connector.attempts], [("10.0.0.8", 1024)]
        )

    def test_privilegedOrigin(self) -> None:
        """
        When the origin's own port is below 1024, so may its peers' be.
        """
        url = f"spp://{ORIGIN}:80/movie.ts"
        self.origin = fakeConnection({url: self.movie}, port=80)
        self.origin.peers = [Peer("10.0.0.7", 80)]
        self.start(url)
        self.assertEqual(
            [(h, p) for h, p, _ in self.connector.attempts], [("10.0.0.7", 80)]
        )

    def test_notSPP(self) -> None:
        """
        An address that accepts the connection but does not speak SPP is
        logged once, at info, and left alone for L{NOT_SPP_RETRY}.
        """
        self.origin.peers = [Peer(*PEER)]
        self.start()

        def garbage(d: "defer.Deferred[Any]") -> None:
            connection = fakeConnection({}, *PEER)
            connection.ready = defer.Deferred()
            d.callback(connection)
            connection.ready.errback(ConnectionGone("bad magic"))
            self.client.connectionGone(connection)

        with capturedLogs() as events:
            times = self.attemptTimes(NOT_SPP_RETRY + PEER_INTERVAL, garbage)
        self.assertEqual(times, [0, NOT_SPP_RETRY])
        said = [e for e in events if "does not speak SPP" in e["log_format"]]
        self.assertEqual([e["log_level"] for e in said], [LogLevel.info] * 2)

    def test_busyIsNotGarbage(self) -> None:
        """
        A node that refuses with Error BUSY in place of its Hello speaks
        SPP: it is tried again after the usual back-off, not left alone for
        L{NOT_SPP_RETRY}.
        """
        self.origin.peers = [Peer(*PEER)]
        self.start()

        def busy(d: "defer.Deferred[Any]") -> None:
            connection = fakeConnection({}, *PEER)
            connection.ready = defer.Deferred()
            d.callback(connection)
            connection.ready.errback(SPPError(ErrorCode.BUSY, "too many"))
            self.client.connectionGone(connection)

        times = self.attemptTimes(300, busy)
        self.assertGreaterEqual(len(times), 3)
        gaps = [b - a for a, b in zip(times, times[1:])]
        self.assertLessEqual(max(gaps), PEER_RETRY_MAX)


class GarbageServer(Protocol):
    """
    A plain TCP service: it answers anything with an HTTP error and closes.
    """

    def connectionMade(self) -> None:
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


class RoutineFailureTests(NodeFixture):
    """
    Routine connection failures are logged at info or warn, never as
    errors or unhandled ones.
    """

    def levels(self) -> list[tuple[LogLevel, str]]:
        """
        The level and format of every event logged from now on. Not the
        events: they hold their sources, which would then never be
        collected, nor any Deferred of theirs that failed unhandled.
        """
        seen: list[tuple[LogLevel, str]] = []

        def observe(event: dict[str, Any]) -> None:
            seen.append((event["log_level"], event.get("log_format") or ""))

        globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, observe)  # type: ignore[arg-type]
        return seen

    def assertQuiet(self, seen: list[tuple[LogLevel, str]]) -> None:
        """
        Once garbage is collected, nothing in C{seen} is an error (an
        unhandled failure in a Deferred is logged as critical).
        """
        gc.collect()
        loud = [(lv, f) for lv, f in seen if lv in (LogLevel.error, LogLevel.critical)]
        self.assertEqual(loud, [])

    def test_notSPPOrigin(self) -> None:
        """
        An origin that does not speak SPP (a gateway request to some other
        service's port) fails the download, quietly.
        """
        here = IPv4Address("TCP", "127.0.0.1", 40000)
        there = IPv4Address("TCP", ORIGIN, PORT)
        pumps = []

        class Connector:
            def __init__(self, node: Node) -> None:
                self.node = node

            def connect(
                connector, host: str, port: int, security: Security = PLAIN
            ) -> "defer.Deferred[Any]":
                client, server, pump = connectedServerAndClient(
                    GarbageServer,
                    lambda: SPPFactory(connector.node, self.clock, True).buildProtocol(
                        there
                    ),
                    clientTransportFactory=lambda p: FakeTransport(
                        p, False, here, there
                    ),
                    serverTransportFactory=lambda p: FakeTransport(
                        p, True, there, here
                    ),
                    greet=False,
                )
                pumps.append(pump)
                return defer.succeed(client)

        node = self.makeNode(self.makeCache("client-cache"), connectorFor=Connector)
        seen = self.levels()
        d = node.download(URL)
        pumps[0].flush()
        self.failureResultOf(d, ConnectionGone)
        del d, pumps[:]
        self.assertQuiet(seen)
        self.assertIn((LogLevel.info, "{host}:{port} does not speak SPP: {why}"), seen)

    def test_manyReadersConnectionFails(self) -> None:
        """
        Fifty downloads starting at once, of one file and of another on the
        same origin, all fail with the connection's failure.
        """
        seen = self.levels()
        same = [self.node.download(URL) for _ in range(50)]
        other = self.node.download(URL.replace("movie.ts", "other.ts"))
        self.assertEqual(len(self.connector.attempts), 1)
        self.connector.fail(ConnectionRefusedError())
        for d in same + [other]:
            self.failureResultOf(d, ConnectionRefusedError)
        del same, other, d
        self.assertQuiet(seen)

    def test_lostWithRequestsOutstanding(self) -> None:
        """
        A connection lost while fifty readers wait for blocks fails them,
        quietly.
        """
        pair = Pair(self.clock, self.threads)
        pair.nodes[(ORIGIN, PORT)] = self.node
        client = self.makeNode(
            self.makeCache("client-cache"),
            connectorFor=lambda node: pair.connector(node, "10.0.0.2"),
        )
        seen = self.levels()
        d = client.download(URL)
        pair.flush()
        download = self.successResultOf(d)
        readers = [download.read(BLOCK * (i % 5)) for i in range(50)]
        reads = [r.read() for r in readers]
        dialing, _ = pair.connections[0]
        dialing.transport.loseConnection()
        del pair.nodes[(ORIGIN, PORT)]
        pair.flush()
        self.clock.advance(PEER_INTERVAL)
        pair.flush()
        for reader in readers:
            reader.close()
            reads.pop(0).addErrback(lambda _: None)
        del d, reads, readers, reader, download, dialing
        self.assertQuiet(seen)
