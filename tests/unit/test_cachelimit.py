"""
Tests for L{p2pd.store.limit} and L{p2pd.store.memoryblocks}: the cache
within its limit on disk (C{-C}) and in memory (C{-M}), its pins, a restart
with a lower limit, and evictions cut short by a crash.
"""

import hashlib
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterator

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.engine.download import Download
from p2pd.engine.holding import PIN_AHEAD_BYTES
from p2pd.engine.node import Node
from p2pd.engine.reading import Reader
from p2pd.engine.serving import CachedServedFile, Counters, ServedFiles
from p2pd.store.cache import BlockCache
from p2pd.store.cachedfile import CachedFile, CacheFull
from p2pd.store.cachelayout import directoryName, identity, markUsed
from p2pd.store.eviction import SEGMENT_BLOCKS, Segment
from p2pd.store.journal import RECORD_SIZE, Journal
from p2pd.store.limit import ALLOCATION, EDGE_PASSES, VERSION_OVERHEAD
from p2pd.store.memoryblocks import MemoryBlocks
from tests.fakes import FakeConnection, FakeConnector, FakeSource

BLOCK = 16 * 1024
SEGMENT = SEGMENT_BLOCKS * BLOCK


def fileMeta(name: str, blocks: int) -> FileMeta:
    """
    A file of C{blocks} blocks, its last one short.
    """
    url = f"spp://origin.example:1111/films/{name}.mp4"
    return FileMeta(url, max(0, blocks * BLOCK - 100), BLOCK, "sha256", f"v-{name}")


def blockData(meta: FileMeta, index: int) -> bytes:
    seed = hashlib.sha256(f"{meta.url} {index}".encode()).digest()
    return (seed * (BLOCK // 32))[: meta.blockLength(index)]


def allDigests(meta: FileMeta) -> bytes:
    return b"".join(meta.digest(blockData(meta, i)) for i in range(meta.blocks))


def onDisk(root: str) -> int:
    """
    The bytes the disk allocates to everything below C{root} (not to
    C{root} itself), as C{du} counts them.
    """
    total = 0
    for parent, directories, files in os.walk(root):
        for name in directories + files:
            total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


class _LimitTestCase(SynchronousTestCase):
    """
    A cache with a limit in a fresh directory.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())

    def makeCache(self, capacity: int | None, memory: int = 0) -> BlockCache:
        """
        A cache on the test's directory, started as a node starts it.
        """
        cache = BlockCache(self.root, capacity=capacity, memory=memory)
        cache.enforceLimit()
        return cache

    def open(self, cache: BlockCache, meta: FileMeta) -> CachedFile:
        cached = cache.open(meta)
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(meta))
        return cached

    def store(self, cache: BlockCache, cached: CachedFile, index: int) -> None:
        """
        Store a block, and check that neither the charges nor the disk
        pass the limit.
        """
        cached.write(index, blockData(cached.meta, index))
        capacity = cache.limit.capacity
        assert capacity is not None
        self.assertLessEqual(cache.limit.used, capacity)
        self.assertLessEqual(onDisk(self.root), capacity)

    def storeOthers(self, cache: BlockCache) -> None:
        """
        Store six files of two segments each (a head and a tail, nothing
        else): whatever was stored before them goes first.
        """
        for n in range(6):
            other = self.open(cache, fileMeta(f"other{n}", 2 * SEGMENT_BLOCKS))
            for index in range(other.meta.blocks):
                self.store(cache, other, index)
            other.close()

    def assertHeldIntact(self, cached: CachedFile) -> None:
        """
        Every block C{cached} holds reads back as stored.
        """
        for first, count in cached.held():
            for index in range(first, first + count):
                self.assertEqual(cached.read(index), blockData(cached.meta, index))


class LimitTests(_LimitTestCase):
    """
    The disk cache never holds more than its limit.
    """

    def test_concurrentDownloads(self) -> None:
        """
        Blocks of several files stored in a random interleaving (as several
        downloads store them) never take more than the limit, charged or on
        disk, after any store; evicted blocks are not held, held ones read
        back intact.
        """
        cache = self.makeCache(10 * SEGMENT)
        files = [self.open(cache, fileMeta(f"film{n}", 70)) for n in range(4)]
        order = [(f, i) for f in files for i in range(f.meta.blocks)]
        random.Random(11).shuffle(order)
        for cached, index in order:
            self.store(cache, cached, index)
        held = sum(cached.heldCount for cached in files)
        self.assertGreater(held, 0)
        self.assertLess(held, sum(cached.meta.blocks for cached in files))
        for cached in files:
            self.assertHeldIntact(cached)

    def test_chargedAsTheDiskAllocates(self) -> None:
        """
        The charges are never below what the disk allocates below the
        cache's root.
        """
        cache = self.makeCache(100 * SEGMENT)
        cached = self.open(cache, fileMeta("film", 40))
        for index in range(0, 40, 3):
            cached.write(index, blockData(cached.meta, index))
            self.assertGreaterEqual(cache.limit.used, onDisk(self.root))

    def test_fragmentedFile(self) -> None:
        """
        A file of many runs of blocks, whose map on disk needs blocks of its
        own, is charged no less than the disk takes.
        """
        cache = self.makeCache(1000 * SEGMENT)
        cached = self.open(cache, fileMeta("film", 2000))
        for index in range(0, 2000, 2):
            cached.write(index, blockData(cached.meta, index))
        # Written out: the map's blocks are allocated then.
        meta = cached.meta
        data = os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version), "data"
        )
        fd = os.open(data, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertGreaterEqual(cache.limit.used, onDisk(self.root))

    def test_blockLargerThanTheLimit(self) -> None:
        """
        A store that cannot fit even in an empty cache raises L{CacheFull},
        and nothing of it is on disk.
        """
        cache = self.makeCache(VERSION_OVERHEAD + BLOCK)
        cached = self.open(cache, fileMeta("film", 4))
        self.assertRaises(CacheFull, cached.write, 0, blockData(cached.meta, 0))
        self.assertFalse(cached.has(0))
        self.assertLessEqual(onDisk(self.root), VERSION_OVERHEAD + BLOCK)

    def test_emptyFiles(self) -> None:
        """
        Empty files, cached as soon as opened, are charged too: however
        many, the cache stays within its limit.
        """
        cache = self.makeCache(4 * SEGMENT)
        for n in range(100):
            cache.open(fileMeta(f"empty{n}", 0)).close()
            self.assertLessEqual(cache.limit.used, 4 * SEGMENT)
            self.assertLessEqual(onDisk(self.root), 4 * SEGMENT)

    def test_fileWhollyEvictedIsRemoved(self) -> None:
        """
        A file whose blocks are all evicted, and that nobody has open, is
        gone from the cache: not found, its directory removed.
        """
        cache = self.makeCache(6 * SEGMENT)
        old = self.open(cache, fileMeta("old", 20))
        for index in range(20):
            self.store(cache, old, index)
        old.close()
        self.storeOthers(cache)
        self.assertIsNone(cache.find(old.meta.url))
        self.assertFalse(cache.hasAnyVersion(old.meta.url))

    def test_openFileEmptiedRemovedWhenClosed(self) -> None:
        """
        A file whose blocks were all evicted while it was open is removed
        when its last handle closes.
        """
        cache = self.makeCache(6 * SEGMENT)
        old = cache.open(fileMeta("old", 10))
        old.setDigests(0, allDigests(old.meta))
        for index in range(10):
            self.store(cache, old, index)
        self.storeOthers(cache)
        self.assertEqual(old.heldCount, 0)
        old.close()
        self.assertFalse(cache.hasAnyVersion(old.meta.url))

    def test_removedNotCharged(self) -> None:
        """
        A URL removed from the cache (C{p2pd cache rm}, C{purge}) is charged
        no more, nor are its blocks kept in memory.
        """
        cache = self.makeCache(10 * SEGMENT, memory=SEGMENT)
        for name in ("a", "b"):
            cached = self.open(cache, fileMeta(name, 10))
            for index in range(10):
                self.store(cache, cached, index)
            cached.read(0)
        self.assertTrue(cache.remove(fileMeta("a", 10).url))
        self.assertEqual(cache.memory.size, BLOCK)
        cache.purge()
        self.assertEqual((cache.limit.used, cache.memory.size), (0, 0))

    def test_nothingStoredNothingKept(self) -> None:
        """
        Files opened and closed with nothing stored leave nothing in the
        limit's accounts, however many.
        """
        cache = self.makeCache(4 * SEGMENT)
        for n in range(50):
            cached = cache.open(fileMeta(f"film{n}", 10))
            cached.setDigests(0, allDigests(cached.meta))
            cached.close()
        self.assertEqual((cache.limit.used, len(cache.limit.accounts)), (0, 0))

    def test_noLimit(self) -> None:
        """
        Without a limit nothing is evicted, whatever is stored.
        """
        cache = self.makeCache(None)
        cached = self.open(cache, fileMeta("film", 200))
        for index in range(200):
            cached.write(index, blockData(cached.meta, index))
        self.assertEqual(cached.heldCount, 200)


class _Play:
    """
    A player reading a download to the end, one read at a time, its origin
    answering one request per step.
    """

    def __init__(self, origin: FakeSource, reader: Reader, content: bytes) -> None:
        self.origin = origin
        self.reader = reader
        self.content = content
        self.chunks: list[bytes] = []
        self.done = False
        self._reading: "defer.Deferred[bytes] | None" = None

    def received(self) -> bytes:
        return b"".join(self.chunks)

    def _got(self, data: bytes) -> None:
        self._reading = None
        self.chunks.append(data)
        self.done = not data

    def step(self) -> None:
        if self._reading is None and not self.done:
            self._reading = self.reader.read()
            self._reading.addCallback(self._got)
        if self.origin.requests:
            self.origin.answer(min(self.origin.requests))


class DownloadsTests(_LimitTestCase):
    """
    Downloads storing into one cache with a small limit.
    """

    def test_concurrentDownloadsWithinTheLimit(self) -> None:
        """
        Three downloads, each read by a player from the start, their
        sources answering in turn: after every block stored the cache is
        within its limit, charged and on disk, and every player gets its
        file byte for byte (what was evicted is fetched again if needed).
        """
        capacity = 6 * SEGMENT
        cache = self.makeCache(capacity)
        clock = task.Clock()
        stores = []

        def stored(ranges: object) -> None:
            stores.append(ranges)
            self.assertLessEqual(cache.limit.used, capacity)
            self.assertLessEqual(onDisk(self.root), capacity)

        plays = []
        handles: list[CachedFile] = []
        for n in range(3):
            meta = fileMeta(f"film{n}", 100)
            content = b"".join(blockData(meta, i) for i in range(meta.blocks))
            cached = cache.open(meta)
            handles.append(cached)
            download = Download(meta, cached, clock)
            cached.pin(download.pinned)
            self.addCleanup(download.close)
            download.watch(stored)
            origin = FakeSource("origin", content, meta, authoritative=True)
            download.addSource(origin)
            plays.append(_Play(origin, download.read(0), content))
        for _ in range(10000):
            if all(play.done for play in plays):
                break
            for play in plays:
                play.step()
            clock.advance(0)
        for play in plays:
            self.assertTrue(play.received() == play.content)
        # Every block was stored, and most were evicted since.
        self.assertGreaterEqual(len(stores), 300)
        held = sum(cached.heldCount for cached in handles)
        self.assertLess(held, 100)


class PinTests(_LimitTestCase):
    """
    Pinned blocks are never evicted; heads and tails go last.
    """

    def test_pinnedNeverEvicted(self) -> None:
        """
        Blocks a pin holds stay, however much else is stored.
        """
        cache = self.makeCache(8 * SEGMENT)
        played = self.open(cache, fileMeta("played", 80))
        played.pin(lambda first, end: first < 3 * SEGMENT_BLOCKS and end > 16)
        for index in range(80):
            self.store(cache, played, index)
        other = self.open(cache, fileMeta("other", 200))
        for index in range(200):
            self.store(cache, other, index)
        for index in range(16, 48):
            self.assertTrue(played.has(index), index)
        self.assertHeldIntact(played)

    def test_allPinnedRefuses(self) -> None:
        """
        When everything held is pinned, a store raises L{CacheFull} and
        nothing pinned goes; the node says so once, and once again when
        there is room.
        """
        cache = self.makeCache(4 * SEGMENT)
        meta = fileMeta("played", 80)
        played = cache.open(meta)
        played.setDigests(0, allDigests(meta))
        played.pin(lambda first, end: True)
        stored = 0
        with capturedLogs() as events:
            with self.assertRaises(CacheFull):
                for index in range(80):
                    self.store(cache, played, index)
                    stored += 1
            self.assertRaises(CacheFull, played.write, 79, blockData(meta, 79))
            self.assertEqual(played.heldCount, stored)
            played.close()
            again = self.open(cache, meta)
            self.store(cache, again, 79)
        self.assertEqual(
            [e["log_level"] for e in events if "disk cache" in e["log_format"]],
            [LogLevel.warn, LogLevel.info],
        )

    def test_pinGoneWithItsHandle(self) -> None:
        """
        A handle's pins end when it is closed.
        """
        cache = self.makeCache(4 * SEGMENT)
        meta = fileMeta("played", 80)
        pinning = cache.open(meta)
        pinning.pin(lambda first, end: True)
        pinning.close()
        cached = self.open(cache, meta)
        for index in range(80):
            self.store(cache, cached, index)

    def test_headAndTailLast(self) -> None:
        """
        The first and last segment of a file are evicted after its middle.
        """
        cache = self.makeCache(9 * SEGMENT)
        film = self.open(cache, fileMeta("film", 5 * SEGMENT_BLOCKS))
        for index in range(film.meta.blocks):
            self.store(cache, film, index)
        other = self.open(cache, fileMeta("other", 4 * SEGMENT_BLOCKS))
        for index in range(other.meta.blocks):
            self.store(cache, other, index)
        last = film.meta.blocks - 1
        self.assertTrue(film.has(0) and film.has(last))
        self.assertFalse(film.has(SEGMENT_BLOCKS))

    def test_roomAheadSparesHeadsAndTails(self) -> None:
        """
        The room a store makes ahead of the next ones never takes a file's
        head or tail: while what the store needs fits, files of a head and
        a tail alone keep them.
        """
        cache = self.makeCache(9 * SEGMENT)
        films = []
        for n in range(4):
            film = self.open(cache, fileMeta(f"film{n}", 2 * SEGMENT_BLOCKS))
            for index in range(film.meta.blocks):
                self.store(cache, film, index)
            films.append(film)
        new = self.open(cache, fileMeta("new", SEGMENT_BLOCKS))
        self.store(cache, new, 0)
        index = 1
        while cache.limit.fits(BLOCK + ALLOCATION):
            self.store(cache, new, index)
            index += 1
            for film in films:
                self.assertTrue(film.complete, film.meta.url)
        self.assertLess(index, SEGMENT_BLOCKS)

    def test_edgesPassedOverBoundedly(self) -> None:
        """
        However many files the cache holds, one eviction passes over at most
        L{EDGE_PASSES} heads and tails before it evicts one.
        """
        cache = self.makeCache(100 * (BLOCK + 6 * ALLOCATION))
        for n in range(150):
            cached = cache.open(fileMeta(f"clip{n}", 1))
            cached.setDigests(0, allDigests(cached.meta))
            self.store(cache, cached, 0)
            cached.close()
        policy = cache.limit.policy
        assert policy is not None
        victims = policy.victims
        asked = []

        def counted(pinned: Callable[[Segment], bool]) -> Iterator[Segment]:
            def asking(segment: Segment) -> bool:
                asked.append(segment)
                return pinned(segment)

            return victims(asking)

        policy.victims = counted  # type: ignore[method-assign]
        last = cache.open(fileMeta("last", 1))
        last.setDigests(0, allDigests(last.meta))
        self.store(cache, last, 0)
        last.close()
        self.assertGreater(len(asked), 0)
        self.assertLessEqual(len(asked), EDGE_PASSES + 2)

    def test_downloadPinsItsReaders(self) -> None:
        """
        A download pins the block of each reader and
        L{PIN_AHEAD_BYTES} after it, and nothing once its readers close.
        """
        cache = self.makeCache(100 * SEGMENT)
        meta = fileMeta("film", 1000)
        cached = self.open(cache, meta)
        download = Download(meta, cached, task.Clock())
        self.addCleanup(download.close)
        reader = download.read(200 * BLOCK + 5)
        ahead = PIN_AHEAD_BYTES // BLOCK
        self.assertTrue(download.pinned(200, 201))
        self.assertTrue(download.pinned(190, 201))
        self.assertTrue(download.pinned(200 + ahead, 300))
        self.assertFalse(download.pinned(201 + ahead, 300))
        self.assertFalse(download.pinned(0, 200))
        reader.close()
        self.assertFalse(download.pinned(200, 201))


class RestartTests(_LimitTestCase):
    """
    A restart finds the cache within its limit, and evictions a crash cut
    short leave each block held and intact, or not held.
    """

    def fill(self, capacity: int | None, blocks: int = 100) -> FileMeta:
        cache = self.makeCache(capacity)
        meta = fileMeta("film", blocks)
        cached = cache.open(meta)
        cached.setDigests(0, allDigests(meta))
        for index in range(blocks):
            cached.write(index, blockData(meta, index))
        cached.close()
        return meta

    def test_lowerLimit(self) -> None:
        """
        A cache opened with a limit lower than what it holds evicts down to
        it at once; what it keeps reads back intact.
        """
        meta = self.fill(None)
        self.assertGreater(onDisk(self.root), 3 * SEGMENT)
        cache = self.makeCache(3 * SEGMENT)
        self.assertLessEqual(cache.limit.used, 3 * SEGMENT)
        self.assertLessEqual(onDisk(self.root), 3 * SEGMENT)
        cached = self.open(cache, meta)
        self.assertGreater(cached.heldCount, 0)
        self.assertHeldIntact(cached)

    def test_leastRecentlyUsedFirst(self) -> None:
        """
        A file opened again counts as used then: a restart with a lower
        limit evicts the files used longer ago first.
        """
        cache = self.makeCache(None)
        films = [fileMeta("old", 32), fileMeta("new", 32)]
        for when, meta in enumerate(films):
            cached = cache.open(meta)
            cached.setDigests(0, allDigests(meta))
            for index in range(meta.blocks):
                cached.write(index, blockData(meta, index))
            cached.close()
            directory = os.path.join(
                self.root, directoryName(meta.url), directoryName(meta.version)
            )
            markUsed(directory, 1000 + when)
        cache.open(films[0]).close()
        cache = self.makeCache(3 * SEGMENT)
        self.assertIsNotNone(cache.find(films[0].url))
        self.assertIsNone(cache.find(films[1].url))

    def test_sameCharges(self) -> None:
        """
        A restart charges what the running cache charged.
        """
        cache = self.makeCache(20 * SEGMENT)
        cached = cache.open(fileMeta("film", 100))
        cached.setDigests(0, allDigests(cached.meta))
        for index in range(100):
            cached.write(index, blockData(cached.meta, index))
        cached.close()
        self.assertEqual(self.makeCache(20 * SEGMENT).limit.used, cache.limit.used)

    def journal(self, meta: FileMeta) -> Journal:
        directory = os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version)
        )
        journal = Journal(identity(meta))
        journal.attach(os.path.join(directory, "journal"))
        self.addCleanup(journal.close)
        return journal

    def test_killedBeforeFreeing(self) -> None:
        """
        Blocks journaled as evicted whose bytes were not freed yet (a crash
        between the two) are not held after a restart, and their bytes are
        freed then; the others are intact.
        """
        meta = self.fill(None, 40)
        self.journal(meta).forgetAll(range(16, 32))
        cache = self.makeCache(100 * SEGMENT)
        self.assertLessEqual(onDisk(self.root), cache.limit.used)
        cached = self.open(cache, meta)
        self.assertEqual(cached.held(), [(0, 16), (32, 8)])
        self.assertHeldIntact(cached)

    def test_tornDropRecords(self) -> None:
        """
        A crash in the middle of journaling an eviction: the blocks whose
        records are whole are not held, the one torn and those after it
        are, and read back intact, their bytes never freed.
        """
        meta = self.fill(None, 40)
        journal = self.journal(meta)
        path = os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version), "journal"
        )
        size = os.path.getsize(path)
        journal.forgetAll(range(16, 32))
        os.truncate(path, size + 5 * RECORD_SIZE + RECORD_SIZE // 2)
        cache = self.makeCache(100 * SEGMENT)
        cached = self.open(cache, meta)
        self.assertEqual(cached.held(), [(0, 16), (21, 19)])
        self.assertHeldIntact(cached)
        self.assertLessEqual(onDisk(self.root), cache.limit.used)

    def test_unjournaledBytesFreed(self) -> None:
        """
        Bytes written but never journaled (a crash before the record) are
        freed at the restart, so the disk holds no more than is charged.
        """
        meta = self.fill(None, 40)
        directory = os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version)
        )
        with open(os.path.join(directory, "data"), "r+b") as f:
            f.seek(60 * BLOCK)
            f.write(b"x" * 20 * BLOCK)
        cache = self.makeCache(100 * SEGMENT)
        self.assertLessEqual(onDisk(self.root), cache.limit.used)
        self.assertEqual(self.open(cache, meta).held(), [(0, 40)])

    def test_debrisRemoved(self) -> None:
        """
        A directory without a valid C{meta.json} is removed at start-up.
        """
        debris = os.path.join(self.root, "a" * 64, "b" * 64)
        os.makedirs(debris)
        with open(os.path.join(debris, "data"), "wb") as f:
            f.write(b"x" * BLOCK)
        self.makeCache(SEGMENT)
        self.assertFalse(os.path.exists(debris))


class ServingTests(_LimitTestCase):
    """
    Evicted blocks are never served to other nodes.
    """

    def test_evictedBlockUnavailable(self) -> None:
        """
        A peer asking for a block evicted since it opened the file is
        answered UNAVAILABLE, and the file's held ranges no longer name it.
        """
        cache = self.makeCache(6 * SEGMENT, memory=4 * SEGMENT)
        film = self.open(cache, fileMeta("film", 40))
        for index in range(40):
            self.store(cache, film, index)
        served = CachedServedFile(
            cache.open(film.meta), None, Counters(), ServedFiles(100)
        )
        self.addCleanup(served.close)
        # Served, and so in memory too.
        self.assertEqual(
            self.successResultOf(served.readBlock(20)), blockData(film.meta, 20)
        )
        other = self.open(cache, fileMeta("other", 300))
        for index in range(300):
            # Read too: worth as much as block 20.
            self.store(cache, other, index)
            other.read(index)
        self.assertFalse(film.has(20))
        self.assertNotIn(20, [i for f, c in served.held() for i in range(f, f + c)])
        with self.assertRaises(SPPError) as raised:
            served.readBlock(20)
        self.assertEqual(raised.exception.code, ErrorCode.UNAVAILABLE)

    def test_fileWhollyEvictedNotFound(self) -> None:
        """
        A node whose cached file was wholly evicted answers a peer's Open
        of it NOT_FOUND.
        """
        cache = self.makeCache(6 * SEGMENT)
        film = cache.open(fileMeta("film", 20))
        film.setDigests(0, allDigests(film.meta))
        for index in range(20):
            self.store(cache, film, index)
        film.pin(lambda first, end: False)
        self.storeOthers(cache)
        self.assertEqual(film.heldCount, 0)
        node = Node(task.Clock(), lambda node: FakeConnector(), cache)
        self.addCleanup(node.stop)
        with self.assertRaises(SPPError) as raised:
            node.open(
                film.meta.url, film.meta.version, FakeConnection({}, "10.0.0.9", 7)
            )
        self.assertEqual(raised.exception.code, ErrorCode.NOT_FOUND)
        film.close()


class UsageTests(_LimitTestCase):
    """
    What a node says its cache holds (C{/.status}).
    """

    def test_cacheUsage(self) -> None:
        """
        A node reports its cache's bytes on disk and in memory, and their
        limits.
        """
        cache = self.makeCache(6 * SEGMENT, memory=SEGMENT)
        film = self.open(cache, fileMeta("film", 4))
        for index in range(4):
            self.store(cache, film, index)
        film.read(0)
        node = Node(task.Clock(), lambda node: FakeConnector(), cache)
        self.addCleanup(node.stop)
        self.assertEqual(
            node.cacheUsage(),
            {
                "diskUsed": cache.limit.used,
                "diskLimit": 6 * SEGMENT,
                "memoryUsed": BLOCK,
                "memoryLimit": SEGMENT,
            },
        )
        self.assertGreater(cache.limit.used, 4 * BLOCK)
        self.assertEqual(
            Node(task.Clock(), lambda node: FakeConnector(), None).cacheUsage(), {}
        )


class MemoryBlocksTests(SynchronousTestCase):
    """
    L{MemoryBlocks}: least recently used first out, never above its
    capacity.
    """

    def test_neverAboveCapacity(self) -> None:
        """
        The bytes held never pass the capacity, the least recently used
        going first.
        """
        memory = MemoryBlocks(3 * BLOCK)
        for index in range(3):
            memory.put("v", index, bytes(BLOCK))
        self.assertIsNotNone(memory.get("v", 0))
        memory.put("v", 3, bytes(BLOCK))
        self.assertEqual(memory.size, 3 * BLOCK)
        self.assertIsNone(memory.get("v", 1))
        self.assertIsNotNone(memory.get("v", 0))

    def test_tooLarge(self) -> None:
        """
        A block larger than the capacity is not kept (nor is any with 0).
        """
        memory = MemoryBlocks(BLOCK - 1)
        memory.put("v", 0, bytes(BLOCK))
        self.assertEqual((memory.size, memory.get("v", 0)), (0, None))

    def test_discard(self) -> None:
        """
        Blocks discarded, by range or by version, are gone.
        """
        memory = MemoryBlocks(10 * BLOCK)
        for index in range(4):
            memory.put("v", index, bytes(BLOCK))
            memory.put("w", index, bytes(BLOCK))
        memory.discard("v", 1, 3)
        self.assertEqual(
            [memory.get("v", i) is None for i in range(4)], [False, True, True, False]
        )
        memory.discardVersion("w")
        self.assertEqual(memory.size, 2 * BLOCK)

    def test_recheckReadsTheDisk(self) -> None:
        """
        Checking a block again reads it from the disk, not from memory: a
        block corrupt on disk fails, though its copy in memory is good.
        """
        root = os.path.abspath(self.mktemp())
        cache = BlockCache(root, capacity=4 * SEGMENT, memory=SEGMENT)
        cached = cache.open(fileMeta("film", 4))
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(cached.meta))
        cached.write(1, blockData(cached.meta, 1))
        self.assertEqual(cached.read(1), blockData(cached.meta, 1))
        meta = cached.meta
        data = os.path.join(
            root, directoryName(meta.url), directoryName(meta.version), "data"
        )
        with open(data, "r+b") as f:
            f.seek(BLOCK)
            f.write(b"x")
        self.assertFalse(cached.recheck(1))
        self.assertIsNone(cached.read(1))

    def test_cacheServesFromMemory(self) -> None:
        """
        A block read once is served from memory after, and not once it is
        evicted, though it was in memory.
        """
        root = os.path.abspath(self.mktemp())
        cache = BlockCache(root, capacity=4 * SEGMENT, memory=SEGMENT)
        cached = cache.open(fileMeta("film", 40))
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(cached.meta))
        cached.write(17, blockData(cached.meta, 17))
        self.assertEqual(cached.read(17), blockData(cached.meta, 17))
        self.assertEqual(cache.memory.size, BLOCK)
        other = cache.open(fileMeta("other", 300))
        self.addCleanup(other.close)
        other.setDigests(0, allDigests(other.meta))
        for index in range(300):
            # Read too: worth as much as block 17.
            other.write(index, blockData(other.meta, index))
            other.read(index)
        self.assertFalse(cached.has(17))
        self.assertIsNone(cached.read(17))
        self.assertLessEqual(cache.memory.size, SEGMENT)


FILES = [fileMeta(f"random{n}", blocks) for n, blocks in enumerate((5, 20, 40, 70))]
_file = st.integers(0, len(FILES) - 1)
_block = st.integers(0, 69)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _file, _block),
        st.tuples(st.just("fill"), _file, _block),
        st.tuples(st.just("read"), _file, _block),
        st.tuples(st.just("pin"), _file, _block),
        st.tuples(st.just("close"), _file, st.just(0)),
        st.tuples(st.just("remove"), _file, st.just(0)),
        st.tuples(st.just("restart"), st.integers(1, 6), st.just(0)),
    ),
    max_size=40,
)


def pinBlock(block: int) -> Callable[[int, int], bool]:
    """
    A pin of block C{block} alone.
    """
    return lambda first, end: first <= block < end


class RandomUseTests(SynchronousTestCase):
    """
    Whatever is done to the cache (blocks stored, a run at a time or one;
    read; pinned; files closed and removed), in whatever order, with
    restarts at any limit between: it stays within its limit, charges no less than the disk
    holds, and every block it holds reads back intact.
    """

    @settings(deadline=None, max_examples=150)
    @given(st.integers(1, 6), _operations)
    def test_randomUse(
        self, segments: int, operations: list[tuple[str, int, int]]
    ) -> None:
        """
        The cache's invariants hold after every operation.
        """
        root = os.path.abspath(tempfile.mkdtemp(dir=os.getcwd()))
        self.addCleanup(shutil.rmtree, root, True)
        capacity = segments * SEGMENT
        cache = BlockCache(root, capacity=capacity, memory=SEGMENT)
        cache.enforceLimit()
        handles: dict[int, CachedFile] = {}

        def handle(n: int) -> CachedFile:
            if n not in handles:
                handles[n] = cache.open(FILES[n])
                handles[n].setDigests(0, allDigests(FILES[n]))
            return handles[n]

        for operation, n, number in operations:
            if operation in ("write", "fill"):
                last = number + (24 if operation == "fill" else 1)
                for index in range(number, min(last, FILES[n].blocks)):
                    try:
                        handle(n).write(index, blockData(FILES[n], index))
                    except CacheFull:
                        pass
            elif operation == "read" and number < FILES[n].blocks:
                data = handle(n).read(number)
                self.assertIn(data, (None, blockData(FILES[n], number)))
            elif operation == "pin":
                handle(n).pin(pinBlock(number))
            elif operation == "close" and n in handles:
                handles.pop(n).close()
            elif operation == "remove":
                cache.remove(FILES[n].url)
                if n in handles:
                    handles.pop(n).close()
            elif operation == "restart":
                for cached in handles.values():
                    cached.close()
                handles.clear()
                capacity = n * SEGMENT
                cache = BlockCache(root, capacity=capacity, memory=SEGMENT)
                cache.enforceLimit()
            self.assertLessEqual(cache.limit.used, capacity)
            self.assertLessEqual(onDisk(root), cache.limit.used)
            self.assertLessEqual(cache.memory.size, SEGMENT)
        for cached in handles.values():
            for first, count in cached.held():
                for index in range(first, first + count):
                    self.assertEqual(cached.read(index), blockData(cached.meta, index))
            cached.close()
