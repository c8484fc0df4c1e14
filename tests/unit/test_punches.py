"""
Tests for L{p2pd.store.freeing}'s L{Punches}: holes of evicted blocks
punched in a thread while the node runs (a L{QueuedThreads} here, whose
jobs run when the test says), their bytes charged until they are.
"""

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import LogLevel, capturedLogs
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.meta import FileMeta
from p2pd.engine.node import Node
from p2pd.services import INodeReactor, NodeService
from p2pd.store.cache import BlockCache
from p2pd.store.cachedfile import CachedFile, CacheFull
from p2pd.store.cachelayout import directoryName
from p2pd.store.eviction import SEGMENT_BLOCKS
from p2pd.store.freeing import MOST_WAITING, Punches
from tests.fakes import QueuedThreads
from tests.unit.test_cachelimit import (
    BLOCK,
    FILES,
    SEGMENT,
    allDigests,
    blockData,
    fileMeta,
    onDisk,
)


def running(threads: QueuedThreads) -> IReactorThreads:
    """
    C{threads} as the reactor whose thread pool punches holes.
    """
    return cast(IReactorThreads, threads)


def openDescriptors() -> int:
    """
    How many file descriptors this process has open.
    """
    return len(os.listdir("/proc/self/fd"))


class PunchesTests(SynchronousTestCase):
    """
    L{Punches} on its own, on a file of its own.
    """

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        with open(self.path, "wb") as f:
            f.write(b"x" * 64 * BLOCK)
            os.fsync(f.fileno())
        self.fd = os.open(self.path, os.O_RDWR)
        self.addCleanup(os.close, self.fd)
        self.freed: list[int] = []

    def hole(self, punches: Punches, number: int) -> None:
        """
        Punch block C{number} of the file, through a descriptor of its own.
        """
        punches.punch(
            os.dup(self.fd),
            number * BLOCK,
            BLOCK,
            "spp://origin.example:1111/f",
            lambda: self.freed.append(number),
        )

    def allocated(self) -> int:
        return os.fstat(self.fd).st_blocks * 512

    def test_atOnceUntilStarted(self) -> None:
        """
        Until started, and after it stops, a hole is punched at once, its
        descriptor closed, and C{freed} called before C{punch} returns.
        """
        punches = Punches()
        before, descriptors = self.allocated(), openDescriptors()
        self.hole(punches, 0)
        self.assertEqual(self.freed, [0])
        self.assertEqual(self.allocated(), before - BLOCK)
        self.assertEqual(openDescriptors(), descriptors)
        punches.start(running(QueuedThreads()))
        punches.stop()
        self.hole(punches, 1)
        self.assertEqual((self.freed, punches.pending), ([0, 1], 0))

    def test_oneAtATimeInOrder(self) -> None:
        """
        Started, holes are punched in the thread pool one at a time, the
        oldest first, each freed (its descriptor closed) when its job has
        run and not before.
        """
        threads = QueuedThreads()
        punches = Punches()
        punches.start(running(threads))
        before, descriptors = self.allocated(), openDescriptors()
        for number in range(3):
            self.hole(punches, number)
        self.assertEqual((len(threads.jobs), punches.pending), (1, 3))
        self.assertEqual((self.freed, self.allocated()), ([], before))
        threads.runOne()
        self.assertEqual((self.freed, len(threads.jobs)), ([0], 1))
        self.assertEqual(self.allocated(), before - BLOCK)
        threads.runAll()
        self.assertEqual((self.freed, punches.pending), ([0, 1, 2], 0))
        self.assertEqual(self.allocated(), before - 3 * BLOCK)
        self.assertEqual(openDescriptors(), descriptors)

    def test_boundedWaiting(self) -> None:
        """
        With L{MOST_WAITING} holes waiting (and one in the thread), the
        next is punched at once.
        """
        threads = QueuedThreads()
        punches = Punches()
        punches.start(running(threads))
        for number in range(MOST_WAITING + 1):
            self.hole(punches, number % 64)
        self.assertEqual((self.freed, punches.pending), ([], MOST_WAITING + 1))
        self.hole(punches, 63)
        self.assertEqual((self.freed, punches.pending), ([63], MOST_WAITING + 1))

    def test_stopPunchesTheWaiting(self) -> None:
        """
        Stopped, the holes waiting are punched at once; the one in the
        thread is freed when its job has run.
        """
        threads = QueuedThreads()
        punches = Punches()
        punches.start(running(threads))
        before, descriptors = self.allocated(), openDescriptors()
        for number in range(4):
            self.hole(punches, number)
        punches.stop()
        self.assertEqual((self.freed, punches.pending), ([1, 2, 3], 1))
        threads.runAll()
        self.assertEqual((self.freed, punches.pending), ([1, 2, 3, 0], 0))
        self.assertEqual(self.allocated(), before - 4 * BLOCK)
        self.assertEqual(openDescriptors(), descriptors)

    def test_refusedLogged(self) -> None:
        """
        A hole the file system refuses is freed as far as the charges go
        (as when punched at once), and the log says why, on the reactor.
        """
        threads = QueuedThreads()
        punches = Punches()
        punches.start(running(threads))
        readOnly = os.open(self.path, os.O_RDONLY)
        with capturedLogs() as events:
            punches.punch(
                readOnly,
                0,
                BLOCK,
                "spp://o.example:1111/f",
                lambda: self.freed.append(0),
            )
            self.assertEqual(events, [])
            threads.runAll()
        self.assertEqual((self.freed, punches.pending), ([0], 0))
        self.assertEqual(
            [(e["log_level"], e["url"]) for e in events],
            [(LogLevel.warn, "spp://o.example:1111/f")],
        )


class ThreadedCacheTests(SynchronousTestCase):
    """
    A cache whose holes are punched in a thread: the charges, the disk and
    the blocks held, whenever the punches are done.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.threads = QueuedThreads()

    def makeCache(self, capacity: int) -> BlockCache:
        """
        A cache started as the node starts it: within its limit, then its
        holes punched in the (queued) thread.
        """
        cache = BlockCache(self.root, capacity=capacity)
        cache.enforceLimit()
        cache.punches.start(running(self.threads))
        self.addCleanup(cache.punches.stop)
        return cache

    def open(self, cache: BlockCache, meta: FileMeta) -> CachedFile:
        cached = cache.open(meta)
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(meta))
        return cached

    def assertWithin(self, cache: BlockCache) -> None:
        """
        Charged within the limit, and the disk taking no more than charged.
        """
        capacity = cache.limit.capacity
        assert capacity is not None
        self.assertLessEqual(cache.limit.used, capacity)
        self.assertLessEqual(onDisk(self.root), cache.limit.used)

    def dataFile(self, meta: FileMeta) -> str:
        return os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version), "data"
        )

    def assertOnDisk(self, cached: CachedFile) -> None:
        """
        Every block C{cached} holds is in its data file as stored (read
        from the disk, not from what this process trusts).
        """
        with open(self.dataFile(cached.meta), "rb") as f:
            for first, count in cached.held():
                for index in range(first, first + count):
                    f.seek(cached.meta.blockStart(index))
                    data = f.read(cached.meta.blockLength(index))
                    self.assertTrue(data == blockData(cached.meta, index), index)

    def test_limitHeldWithPunchesPending(self) -> None:
        """
        Files stored while the thread punches holes when it may, late or
        not at all for a while: after every store the cache is within its
        limit, charged and on disk; a store is refused only while holes are
        pending; what is held is on disk as stored.
        """
        capacity = 6 * SEGMENT
        cache = self.makeCache(capacity)
        rng = random.Random(5)
        files = [self.open(cache, fileMeta(f"film{n}", 70)) for n in range(4)]
        refused = stored = 0
        for cached in files:
            for index in range(cached.meta.blocks):
                try:
                    cached.write(index, blockData(cached.meta, index))
                    stored += 1
                except CacheFull:
                    self.assertGreater(cache.punches.pending, 0)
                    refused += 1
                self.assertWithin(cache)
                if self.threads.jobs and rng.random() < 0.05:
                    self.threads.runOne()
        self.assertGreater(refused, 0)
        self.assertGreater(stored, 200)
        self.threads.runAll()
        self.assertEqual((cache.limit.freeing, cache.punches.pending), (0, 0))
        self.assertWithin(cache)
        for cached in files:
            self.assertOnDisk(cached)

    def test_roomMadeAhead(self) -> None:
        """
        With the thread keeping up (its job run after each store), no store
        is refused: each eviction makes room for the stores after it.
        """
        cache = self.makeCache(6 * SEGMENT)
        for n in range(3):
            cached = self.open(cache, fileMeta(f"film{n}", 70))
            for index in range(cached.meta.blocks):
                cached.write(index, blockData(cached.meta, index))
                self.assertWithin(cache)
                self.threads.runAll()

    def evictPending(
        self, cache: BlockCache, meta: FileMeta
    ) -> tuple[CachedFile, CachedFile]:
        """
        Store C{meta} whole, then another file until a segment of C{meta}
        is evicted, its hole not punched yet; both files.
        """
        cached = self.open(cache, meta)
        for index in range(meta.blocks):
            cached.write(index, blockData(meta, index))
            self.threads.runAll()
        other = self.open(cache, fileMeta("other", 100))
        index = 0
        while cached.heldCount == meta.blocks:
            other.write(index, blockData(other.meta, index))
            index += 1
        self.assertGreater(cache.punches.pending, 0)
        return cached, other

    def test_recreatedVersionKeepsItsBlocks(self) -> None:
        """
        A version removed and stored again at the same path while a hole
        in the removed one is pending: the hole, punched after, takes
        nothing of the new version, whose blocks are on disk as stored.
        """
        cache = self.makeCache(10 * SEGMENT)
        meta = fileMeta("film", 4 * SEGMENT_BLOCKS)
        old, other = self.evictPending(cache, meta)
        gone = old.held()
        for cached in (old, other):
            self.assertTrue(cache.remove(cached.meta.url))
            cached.close()
        again = self.open(cache, meta)
        for index in range(meta.blocks):
            again.write(index, blockData(meta, index))
        self.assertNotEqual(gone, again.held())
        self.threads.runAll()
        self.assertEqual(again.held(), [(0, meta.blocks)])
        self.assertOnDisk(again)
        self.assertEqual(cache.recheck(meta.url, meta.version, range(meta.blocks)), [])
        self.assertWithin(cache)

    def test_blockNotStoredWhereAHoleIsPending(self) -> None:
        """
        A block evicted whose hole is not punched yet is not stored again
        (L{CacheFull}) until it is; then it is, and stays on disk.
        """
        cache = self.makeCache(8 * SEGMENT)
        meta = fileMeta("film", 4 * SEGMENT_BLOCKS)
        cached, _ = self.evictPending(cache, meta)
        index = next(i for i in range(meta.blocks) if not cached.has(i))
        self.assertRaises(CacheFull, cached.write, index, blockData(meta, index))
        self.assertFalse(cached.has(index))
        self.threads.runAll()
        cached.write(index, blockData(meta, index))
        self.assertOnDisk(cached)
        self.assertWithin(cache)

    def test_removedWhilePunching(self) -> None:
        """
        A version removed while a hole in it is pending stays charged (the
        punch holds its file open) until the hole is punched.
        """
        cache = self.makeCache(8 * SEGMENT)
        meta = fileMeta("film", 4 * SEGMENT_BLOCKS)
        cached, _ = self.evictPending(cache, meta)
        cached.close()
        used = cache.limit.used
        other = fileMeta("other", 100).url
        self.assertTrue(cache.remove(meta.url))
        self.assertTrue(cache.remove(other))
        self.assertGreater(cache.limit.used, 0)
        self.assertLess(cache.limit.used, used)
        self.threads.runAll()
        self.assertEqual((cache.limit.used, cache.limit.freeing), (0, 0))

    def test_stopWithPunchesPending(self) -> None:
        """
        A cache stopped with holes pending punches those waiting at once
        and the last when the thread is done: charges and disk agree, and
        a restart finds the same.
        """
        cache = self.makeCache(8 * SEGMENT)
        meta = fileMeta("film", 4 * SEGMENT_BLOCKS)
        cached, other = self.evictPending(cache, meta)
        cached.close()
        other.close()
        cache.punches.stop()
        self.assertLessEqual(cache.punches.pending, 1)
        self.assertWithin(cache)
        self.threads.runAll()
        self.assertEqual(cache.limit.freeing, 0)
        self.assertWithin(cache)
        used = cache.limit.used
        restarted = BlockCache(self.root, capacity=8 * SEGMENT)
        restarted.enforceLimit()
        self.assertEqual(restarted.limit.used, used)

    def test_killedWithPunchesPending(self) -> None:
        """
        A node killed with holes journaled and not punched: a restart
        frees their bytes (as after any crash between the two) and holds
        the rest intact.
        """
        cache = self.makeCache(8 * SEGMENT)
        meta = fileMeta("film", 4 * SEGMENT_BLOCKS)
        cached, _ = self.evictPending(cache, meta)
        held = cached.held()
        self.assertGreater(cache.limit.freeing, 0)
        restarted = BlockCache(self.root, capacity=8 * SEGMENT)
        restarted.enforceLimit()
        self.assertLessEqual(onDisk(self.root), restarted.limit.used)
        again = restarted.find(meta.url)
        assert again is not None
        self.addCleanup(again.close)
        self.assertEqual(again.held(), held)
        self.assertOnDisk(again)


_file = st.integers(0, len(FILES) - 1)
_block = st.integers(0, 69)
_operations = st.lists(
    st.one_of(
        st.tuples(st.just("write"), _file, _block),
        st.tuples(st.just("fill"), _file, _block),
        st.tuples(st.just("punch"), st.just(0), st.just(0)),
        st.tuples(st.just("close"), _file, st.just(0)),
        st.tuples(st.just("remove"), _file, st.just(0)),
        st.tuples(st.just("restart"), st.integers(1, 6), st.just(0)),
    ),
    max_size=50,
)


class RandomPunchesTests(SynchronousTestCase):
    """
    Whatever is stored, closed and removed, whenever the thread punches
    the holes (and across stops and restarts): the cache stays within its
    limit, the disk takes no more than charged, and every block held is on
    disk as stored.
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
        threads = QueuedThreads()

        def start(capacity: int) -> BlockCache:
            cache = BlockCache(root, capacity=capacity)
            cache.enforceLimit()
            cache.punches.start(running(threads))
            return cache

        capacity = segments * SEGMENT
        cache = start(capacity)
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
            elif operation == "punch" and threads.jobs:
                threads.runOne()
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
                cache.punches.stop()
                threads.runAll()
                capacity = n * SEGMENT
                cache = start(capacity)
            self.assertLessEqual(cache.limit.used, capacity)
            self.assertLessEqual(onDisk(root), cache.limit.used)
        threads.runAll()
        self.assertEqual(cache.limit.freeing, 0)
        for cached in handles.values():
            if not cached.held():
                # Nothing stored: it may have no directory.
                cached.close()
                continue
            with open(
                os.path.join(
                    root,
                    directoryName(cached.meta.url),
                    directoryName(cached.meta.version),
                    "data",
                ),
                "rb",
            ) as f:
                for first, count in cached.held():
                    for index in range(first, first + count):
                        f.seek(cached.meta.blockStart(index))
                        data = f.read(cached.meta.blockLength(index))
                        self.assertTrue(data == blockData(cached.meta, index))
            cached.close()
        cache.punches.stop()


class _StoppedNode:
    """
    Just enough node for L{NodeService}: it is stopped, and says so.
    """

    stopped = False

    def stop(self) -> None:
        self.stopped = True


class _Reactor(QueuedThreads):
    """
    A L{QueuedThreads} that is also running, for L{NodeService}.
    """

    def callWhenRunning(self, f: Callable[..., Any], *args: Any) -> None:
        pass


class NodeServiceTests(SynchronousTestCase):
    """
    The node's service enforces the limit with holes punched at once, then
    punches them in a thread until it stops.
    """

    def test_startAndStop(self) -> None:
        """
        Started on a cache over its (lowered) limit, the service brings it
        within the limit on disk before anything else; then evictions
        punch their holes in the reactor's thread pool; stopped, it stops
        the node and the hole in the thread is freed when done.
        """
        root = os.path.abspath(self.mktemp())
        meta = fileMeta("film", 6 * SEGMENT_BLOCKS)
        unlimited = BlockCache(root)
        cached = unlimited.open(meta)
        cached.setDigests(0, allDigests(meta))
        for index in range(meta.blocks):
            cached.write(index, blockData(meta, index))
        cached.close()
        reactor = _Reactor()
        cache = BlockCache(root, capacity=4 * SEGMENT)
        node = _StoppedNode()
        service = NodeService(
            cast(Node, node),
            ThreadPool(minthreads=0, maxthreads=1),
            None,
            cast(INodeReactor, reactor),
            cache,
        )
        service.startService()
        self.assertLessEqual(onDisk(root), 4 * SEGMENT)
        self.assertEqual(reactor.jobs, [])
        other = cache.open(fileMeta("other", 4 * SEGMENT_BLOCKS))
        other.setDigests(0, allDigests(other.meta))
        for index in range(other.meta.blocks):
            try:
                other.write(index, blockData(other.meta, index))
            except CacheFull:
                pass
        other.close()
        self.assertEqual((len(reactor.jobs), cache.punches.pending), (1, 1))
        self.assertGreater(cache.limit.freeing, 0)
        service.stopService()
        self.assertTrue(node.stopped)
        reactor.runAll()
        self.assertEqual((cache.punches.pending, cache.limit.freeing), (0, 0))
        self.assertLessEqual(onDisk(root), cache.limit.used)
