"""
Tests for full or failing disks and for absurd announced sizes: a
L{p2pd.engine.download.Download} on a real L{p2pd.store.cache.BlockCache}
whose writes fail, and the memory a download of a huge file takes. (A real
node whose cache is on a full tmpfs: L{tests.integration.test_disk}.)
"""

import errno
import gc
import hashlib
import os
import random
import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.meta import FileMeta
from p2pd.engine import scheduling
from p2pd.engine.download import Download
from p2pd.engine.reading import Reader
from p2pd.engine.verification import DIGEST_CHUNK
from p2pd.spp import codec
from p2pd.store import fileio
from p2pd.store.cache import BlockCache
from p2pd.store.digestpages import DIGEST_MEMORY, DIGEST_PAGE
from p2pd.store.diskfailures import STORE_RETRY
from p2pd.web import stream
from tests.fakes import FakeSource, MemoryStore
from tests.unit.test_download import readAll
from tests.unit.test_protocol import URL, ready

BLOCK = 16 * 1024
BLOCKS = 40
REFUSALS = {
    "ENOSPC": errno.ENOSPC,
    "EDQUOT": errno.EDQUOT,
    "EIO": errno.EIO,
    "EROFS": errno.EROFS,
}


class FailingDisk:
    """
    Makes the cache's low-level writes fail with C{code} while L{full}.

    @ivar half: whether a failing write first writes half of its bytes (as a
        disk that fills up mid-write does).
    @ivar appendsOnly: whether only appends (to the journal) fail.
    """

    def __init__(self, testCase: SynchronousTestCase, code: int) -> None:
        self.code = code
        self.full = False
        self.half = False
        self.appendsOnly = False
        self.refused = 0
        realWrite, realAppend = fileio.writeAll, fileio.appendAll

        def writeAll(fd: int, data: bytes, offset: int) -> None:
            if self.full and not self.appendsOnly:
                self._refuse(lambda part: realWrite(fd, part, offset), data)
            realWrite(fd, data, offset)

        def appendAll(fd: int, data: bytes) -> None:
            if self.full:
                self._refuse(lambda part: realAppend(fd, part), data)
            realAppend(fd, data)

        testCase.patch(fileio, "writeAll", writeAll)
        testCase.patch(fileio, "appendAll", appendAll)

    def _refuse(self, write: Callable[[bytes], None], data: bytes) -> None:
        self.refused += 1
        if self.half:
            write(bytes(data[: len(data) // 2]))
        raise OSError(self.code, os.strerror(self.code))


def warnings(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["log_level"] >= LogLevel.warn]


class _DiskTestCase(SynchronousTestCase):
    """
    A download of a 40-block file from one origin, on a real cache whose
    disk the test fills and frees.
    """

    code = errno.ENOSPC

    def setUp(self) -> None:
        self.root = self.mktemp()
        self.clock = task.Clock()
        self.disk = FailingDisk(self, self.code)
        self.content = random.Random(3).randbytes(BLOCKS * BLOCK - 100)
        self.meta = FileMeta("spp://o:1/f", len(self.content), BLOCK, "sha256", "v1")
        self.cache = BlockCache(self.root, now=self.clock.seconds)
        self.stored = self.cache.open(self.meta)
        self.download = Download(
            self.meta,
            self.stored,
            self.clock,
            random.Random(2),
            memoryBytes=4 * BLOCK,
        )
        self.addCleanup(self.download.close)
        self.origin = FakeSource(
            "origin", self.content, self.meta, authoritative=True, auto=True
        )

    def play(self, start: int = 0, stop: int | None = None) -> bytes:
        """
        Read bytes C{start} to C{stop} as a player would, every read
        answered before the next.
        """
        reader = self.download.read(start, stop)
        data: bytes = self.successResultOf(readAll(reader))
        reader.close()
        return data

    def assertFetchedOnce(self) -> None:
        """
        No block was asked of the origin twice.
        """
        requested = self.origin.requested
        self.assertEqual(len(requested), len(set(requested)), requested)

    def heldAfterRestart(self) -> list[tuple[int, int]]:
        """
        The blocks a new cache on the same directory holds and can read.
        """
        found = BlockCache(self.root).find(self.meta.url, self.meta.version)
        if found is None:
            return []
        self.addCleanup(found.close)
        for first, count in found.held():
            for index in range(first, first + count):
                found.read(index)
        return found.held()


class CacheOnFailingDiskTests(_DiskTestCase):
    """
    The cache itself, when writes fail part way.
    """

    def digests(self) -> bytes:
        return b"".join(self.meta.digest(self.origin.block(i)) for i in range(BLOCKS))

    def test_tornJournalRecordCut(self) -> None:
        """
        A journal record half appended when the disk filled up is cut off:
        once the disk is freed, later blocks are journaled where a restart
        finds them, and the refused block is not held.
        """
        self.stored.setDigests(0, self.digests())
        self.stored.write(0, self.origin.block(0))
        self.disk.full = self.disk.half = self.disk.appendsOnly = True
        self.assertRaises(OSError, self.stored.write, 1, self.origin.block(1))
        journal = os.path.join(
            self.root,
            hashlib.sha256(self.meta.url.encode()).hexdigest(),
            hashlib.sha256(self.meta.version.encode()).hexdigest(),
            "journal",
        )
        self.assertEqual(os.path.getsize(journal), 16)
        self.disk.full = False
        self.clock.advance(STORE_RETRY)
        self.stored.write(2, self.origin.block(2))
        self.assertEqual(self.stored.held(), [(0, 1), (2, 1)])
        self.stored.close()
        self.assertEqual(self.heldAfterRestart(), [(0, 1), (2, 1)])

    def test_noWriteTriedWhilePaused(self) -> None:
        """
        After a refusal, writes fail at once without touching the disk until
        L{STORE_RETRY} seconds have passed.
        """
        self.stored.setDigests(0, self.digests())
        self.disk.full = True
        self.assertRaises(OSError, self.stored.write, 0, self.origin.block(0))
        self.assertRaises(OSError, self.stored.write, 1, self.origin.block(1))
        self.stored.setDigests(0, self.digests())
        self.assertEqual(self.disk.refused, 1)
        self.clock.advance(STORE_RETRY)
        self.assertRaises(OSError, self.stored.write, 1, self.origin.block(1))
        self.assertEqual(self.disk.refused, 2)

    def test_digestsKeptUntilStored(self) -> None:
        """
        Digests the disk refused stay in memory, and are written with the
        next block stored: a restart finds them.
        """
        self.stored.setDigests(0, self.digests()[:32])
        self.stored.write(0, self.origin.block(0))
        self.disk.full = True
        with capturedLogs() as events:
            self.stored.setDigests(1, self.digests()[32:])
        self.assertEqual(len(warnings(events)), 1)
        self.assertEqual(self.stored.digest(5), self.digests()[160:192])
        self.disk.full = False
        self.clock.advance(STORE_RETRY)
        self.stored.write(5, self.origin.block(5))
        self.stored.close()
        found = BlockCache(self.root).find(self.meta.url)
        assert found is not None
        self.addCleanup(found.close)
        self.assertEqual(found.digest(39), self.digests()[39 * 32 :])
        self.assertEqual(found.read(5), self.origin.block(5))

    def test_emptyFileOnFullDisk(self) -> None:
        """
        An empty file opens (and is complete) on a full disk; it is not
        cached.
        """
        self.disk.full = True
        empty = FileMeta("spp://o:1/empty", 0, BLOCK, "sha256", "v1")
        with capturedLogs() as events:
            cached = self.cache.open(empty)
        self.addCleanup(cached.close)
        self.assertTrue(cached.complete)
        self.assertEqual(len(warnings(events)), 1)
        self.assertIsNone(BlockCache(self.root).find(empty.url))

    def test_readOnlyDisk(self) -> None:
        """
        On a file system remounted read-only, a cached file still opens and
        plays, and storing fails like on a full disk.
        """
        self.stored.setDigests(0, self.digests())
        for index in range(3):
            self.stored.write(index, self.origin.block(index))
        self.stored.close()
        realOpen = os.open

        def readOnly(path: str, flags: int, *args: Any) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
            return realOpen(path, flags, *args)

        self.patch(os, "open", readOnly)
        cache = BlockCache(self.root, now=self.clock.seconds)
        cached = cache.open(self.meta)
        self.addCleanup(cached.close)
        self.assertEqual(cached.read(2), self.origin.block(2))
        with capturedLogs() as events:
            self.assertRaises(OSError, cached.write, 3, self.origin.block(3))
        self.assertEqual(len(warnings(events)), 1)
        self.assertEqual(cached.held(), [(0, 3)])

    def test_newVersionOnFullDisk(self) -> None:
        """
        A version whose directory cannot be made is played from memory and
        leaves nothing a restart would take for a cached file.
        """
        self.disk.full = self.disk.half = True
        self.download.addSource(self.origin)
        self.assertEqual(self.play(0, 3 * BLOCK), self.content[: 3 * BLOCK])
        self.assertIsNone(BlockCache(self.root).find(self.meta.url))


class DigestPagingTests(SynchronousTestCase):
    """
    A cached file keeps at most L{DIGEST_MEMORY} bytes of digests in memory.
    """

    def setUp(self) -> None:
        # Pages of sha512 digests: 64 KiB each, 16 in memory.
        blocks = 4 * DIGEST_MEMORY // HUGE.digestSize
        self.meta = FileMeta("spp://o:1/d", blocks * BLOCK, BLOCK, "sha512", "v")
        self.digests = b"".join(
            hashlib.sha512(b"%d" % i).digest() for i in range(blocks)
        )
        self.cached = BlockCache(self.mktemp()).open(self.meta)
        self.addCleanup(self.cached.close)

    def setAll(self) -> int:
        """
        Give the cache every digest, a page at a time; the memory that took.
        """
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        step = DIGEST_PAGE * self.meta.digestSize
        for offset in range(0, len(self.digests), step):
            self.cached.setDigests(
                offset // self.meta.digestSize, self.digests[offset : offset + step]
            )
        return int(tracemalloc.get_traced_memory()[0] - before)

    def test_pagedToDisk(self) -> None:
        """
        Four times L{DIGEST_MEMORY} of digests, given once the file is on
        disk, take less than that in memory, and all read back.
        """
        # The version's directory is made with its first block.
        self.cached.setDigests(0, self.digests[:64])
        self.cached.write(0, bytes(BLOCK))
        self.assertLess(self.setAll(), DIGEST_MEMORY + DIGEST_PAGE * 80)
        for index in (0, self.meta.blocks // 2, self.meta.blocks - 1):
            self.assertEqual(
                self.cached.digest(index), self.digests[index * 64 : index * 64 + 64]
            )

    def test_forgottenBeforeOnDisk(self) -> None:
        """
        Before a version's first block is stored, only the last
        L{DIGEST_MEMORY} of digests given are kept: the first ones are
        forgotten (an authority gives them again), the last are known.
        """
        self.assertLess(self.setAll(), DIGEST_MEMORY + DIGEST_PAGE * 80)
        self.assertIsNone(self.cached.digest(0))
        last = self.meta.blocks - 1
        self.assertEqual(self.cached.digest(last), self.digests[-64:])


class ForgettingStore(MemoryStore):
    """
    A store that forgets the digest of block L{FORGOTTEN} the first time it
    is given, as a cache does when its disk refuses digests beyond its
    memory.
    """

    FORGOTTEN = 5

    def setDigests(self, first: int, digests: bytes) -> None:
        super().setDigests(first, digests)
        if not getattr(self, "forgot", False):
            self.forgot = self.digests.pop(self.FORGOTTEN, None) is not None


class ForgottenDigestTests(SynchronousTestCase):
    """
    A download whose store forgets a digest asks for it again.
    """

    def test_askedAgain(self) -> None:
        """
        The block whose digest was forgotten is verified with the digest
        asked for again, and the reader gets every byte.
        """
        content = random.Random(4).randbytes(BLOCKS * BLOCK)
        meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
        store = ForgettingStore(meta)
        download = Download(meta, store, task.Clock(), random.Random(2))
        self.addCleanup(download.close)
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        asked: list[tuple[int, int]] = []
        getDigests = origin.getDigests
        origin.getDigests = lambda first, count: (  # type: ignore[method-assign]
            asked.append((first, count)) or getDigests(first, count)  # type: ignore[func-returns-value]
        )
        download.addSource(origin)
        self.assertEqual(self.successResultOf(readAll(download.read(0))), content)
        self.assertTrue(store.forgot)
        self.assertEqual(len([a for a in asked if a[0] <= 5 < a[0] + a[1]]), 2, asked)


if TYPE_CHECKING:
    _Refused = _DiskTestCase
else:
    _Refused = object


class RefusedWritesMixin(_Refused):
    """
    What a download does when the disk refuses its writes with C{code}
    (mixed into a L{_DiskTestCase}).
    """

    def test_streamGoesOnFromMemory(self) -> None:
        """
        With the disk refusing every write from the start, a player still
        gets every byte, each block is fetched once, nothing is stored, and
        the log has one line.
        """
        self.disk.full = True
        with capturedLogs() as events:
            self.download.addSource(self.origin)
            self.assertEqual(self.play(), self.content)
        self.assertFetchedOnce()
        self.assertEqual(sorted(self.origin.requested), list(range(BLOCKS)))
        self.assertEqual(self.stored.held(), [])
        lines = warnings(events)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(os.strerror(self.code), lines[0]["why"])
        self.assertEqual(self.heldAfterRestart(), [])

    def test_failingMidStream(self) -> None:
        """
        A disk that fills up mid-stream, half writing the block it refuses:
        the player gets every byte once, and after a restart the cache holds
        exactly the blocks stored before, intact.
        """
        self.download.addSource(self.origin)
        self.assertEqual(self.play(0, 10 * BLOCK), self.content[: 10 * BLOCK])
        held = self.stored.held()
        self.disk.full = self.disk.half = True
        with capturedLogs() as events:
            self.assertEqual(self.play(10 * BLOCK), self.content[10 * BLOCK :])
        self.assertEqual(len(warnings(events)), 1)
        self.assertFetchedOnce()
        self.assertEqual(self.stored.held(), held)
        self.download.close()
        self.assertEqual(self.heldAfterRestart(), held)

    def test_noFetchingWithoutReaders(self) -> None:
        """
        Once the player has gone, a download that cannot store fetches
        nothing more, however long it stays open.
        """
        self.disk.full = True
        self.download.addSource(self.origin)
        self.play(0, 3 * BLOCK)
        asked = list(self.origin.requested)
        for _ in range(10):
            self.clock.advance(STORE_RETRY)
            self.download.schedule()
        self.assertEqual(self.origin.requested, asked)
        self.assertEqual(self.disk.refused, 1)

    def test_storingResumes(self) -> None:
        """
        Writes are not tried again for L{STORE_RETRY} seconds; the first block
        after that is stored, and the ones after it, with one more log line.
        """
        self.disk.full = True
        self.download.addSource(self.origin)
        with capturedLogs() as events:
            self.play(0, 5 * BLOCK)
            self.disk.full = False
            self.clock.advance(STORE_RETRY - 1)
            self.play(5 * BLOCK, 8 * BLOCK)
            self.assertEqual(self.stored.held(), [])
            self.clock.advance(1)
            self.assertEqual(self.play(8 * BLOCK), self.content[8 * BLOCK :])
        self.assertEqual(self.disk.refused, 1)
        self.assertEqual(self.stored.held()[-1], (8, BLOCKS - 8))
        self.assertEqual(len(warnings(events)), 1)
        self.assertEqual(
            [e["log_format"] for e in events if e["log_level"] == LogLevel.info],
            ["storing in the cache {root} again"],
        )
        self.assertFetchedOnce()
        self.download.close()
        self.assertEqual(self.heldAfterRestart()[-1], (8, BLOCKS - 8))

    def test_twoReadersApart(self) -> None:
        """
        Two players reading 20 blocks apart in turns, on a disk that stores
        nothing, each get their bytes, and no block is fetched twice: what
        the one ahead has fetched is kept for the other, as it is within
        L{scheduling.READAHEAD_BYTES} of it.
        """
        self.disk.full = True
        self.download.addSource(self.origin)
        first = self.download.read(0)
        second = self.download.read(20 * BLOCK)
        got: dict[Reader, list[bytes]] = {first: [], second: []}
        while any(r.position < r.stop for r in got):
            for reader in got:
                if reader.position < reader.stop:
                    got[reader].append(self.successResultOf(reader.read()))
        self.assertEqual(b"".join(got[first]), self.content)
        self.assertEqual(b"".join(got[second]), self.content[20 * BLOCK :])
        self.assertFetchedOnce()

    def test_farApartReaders(self) -> None:
        """
        Two players further apart than L{scheduling.READAHEAD_BYTES}: each
        block is fetched once for each player that reads it, and memory holds
        only what is ahead of each, not all that lies between them.
        """
        self.disk.full = True
        self.patch(scheduling, "READAHEAD_BYTES", 8 * BLOCK)
        self.download.addSource(self.origin)
        first = self.download.read(0)
        second = self.download.read(20 * BLOCK)
        got: dict[Reader, list[bytes]] = {first: [], second: []}
        while any(r.position < r.stop for r in got):
            for reader in got:
                if reader.position < reader.stop:
                    got[reader].append(self.successResultOf(reader.read()))
                self.assertLessEqual(len(self.download._recent), 2 * 8)
        self.assertEqual(b"".join(got[first]), self.content)
        self.assertEqual(b"".join(got[second]), self.content[20 * BLOCK :])
        self.assertEqual(
            Counter(self.origin.requested),
            Counter(list(range(BLOCKS)) + list(range(20, BLOCKS))),
        )


class NoSpaceTests(RefusedWritesMixin, _DiskTestCase):
    """
    ENOSPC: the file system is full.
    """

    code = errno.ENOSPC


class QuotaTests(RefusedWritesMixin, _DiskTestCase):
    """
    EDQUOT: the user's quota is used up.
    """

    code = errno.EDQUOT


class IOErrorTests(RefusedWritesMixin, _DiskTestCase):
    """
    EIO: the disk fails.
    """

    code = errno.EIO


class ReadOnlyTests(RefusedWritesMixin, _DiskTestCase):
    """
    EROFS: the file system went read-only (as ext4 does on errors).
    """

    code = errno.EROFS


HUGE_BLOCK = 4 * 1024 * 1024
HUGE = FileMeta("spp://o:1/huge", 2**44, HUGE_BLOCK, "sha512", "v1")


class HugeOrigin(FakeSource):
    """
    An origin of L{HUGE}, 16 TiB of zeros, answering at once: every block
    is the same bytes object, so that memory measured is the download's own.
    Digest requests beyond the first L{background} large ones never answer,
    as from an origin that is slow to hash.
    """

    def __init__(self, background: int) -> None:
        super().__init__("origin", b"", HUGE, authoritative=True)
        self.zeros = bytes(HUGE_BLOCK)
        self.digest = HUGE.digest(self.zeros)
        self.background = background
        self.digestsAsked = 0

    def getBlock(self, index: int) -> "defer.Deferred[bytes]":
        self.requested.append(index)
        return defer.succeed(self.zeros)

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        self.digestsAsked += count
        if count > DIGEST_CHUNK:
            if not self.background:
                return defer.Deferred()
            self.background -= 1
        return defer.succeed(self.digest * count)


class AnnouncedSizeTests(SynchronousTestCase):
    """
    A download's memory follows what is read, not what the origin announces.
    """

    def test_hugeAnnouncement(self) -> None:
        """
        A download of a 16 TiB file of 4 MiB blocks with SHA-512 digests
        (the largest SPP allows), read at its head and its tail while 32768
        digests come in, takes under 4 MiB of memory besides its blocks,
        and gives it all back once closed. The data file holds only what
        was written.
        """
        root = self.mktemp()
        origin = HugeOrigin(background=8)
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.get_traced_memory()[0]
        clock = task.Clock()
        cache = BlockCache(root, now=clock.seconds)
        stored = cache.open(HUGE)
        download = Download(HUGE, stored, clock)
        download.addSource(origin)
        for start in (0, HUGE.size - 10):
            reader = download.read(start, start + 10)
            self.assertEqual(self.successResultOf(readAll(reader)), bytes(10))
            reader.close()
        clock.advance(2 * STORE_RETRY)
        download.schedule()
        self.assertEqual(origin.digestsAsked, 2 * DIGEST_CHUNK + 8 * 4096 + 4096)
        peak = tracemalloc.get_traced_memory()[1]
        # ext4 refuses the last block of a 16 TiB file (EFBIG): it is then
        # played from memory.
        self.assertIn(stored.held(), ([(0, 1)], [(0, 1), (HUGE.blocks - 1, 1)]))
        self.assertEqual(sorted(origin.requested), [0, HUGE.blocks - 1])
        download.close()
        del download, stored, cache, reader
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        self.assertLess(peak - before, 4 * 1024 * 1024)
        self.assertLess(after - before, 64 * 1024)

    def openedAnswer(self, size: int, blockSize: int) -> tuple[int, str]:
        """
        The HTTP status and message a player gets when the origin answers
        its Open with C{size} and C{blockSize}.
        """
        wire = ready(initiator=True)
        opening = wire.protocol.open(URL)
        wire.sent()
        wire.feed(codec.Opened(1, size, blockSize, True, "sha512", "v1"))
        self.assertTrue(wire.closed)
        wire.lose()
        return stream.failureStatus(self.failureResultOf(opening))

    def test_blockSizeJustOverLimit(self) -> None:
        """
        A block size just over L{codec.MAX_BLOCK_SIZE} closes the connection
        to the origin, and the player gets a 502 saying why.
        """
        code, message = self.openedAnswer(HUGE.size, 2 * codec.MAX_BLOCK_SIZE)
        self.assertEqual(code, 502)
        self.assertIn(
            f"block size {2 * codec.MAX_BLOCK_SIZE} is not a power of two", message
        )

    def test_sizeJustOverLimit(self) -> None:
        """
        A size of one byte more than L{codec.MAX_BLOCKS} blocks closes the
        connection to the origin, and the player gets a 502 saying why;
        exactly that many blocks is a file like any other.
        """
        code, message = self.openedAnswer(HUGE.size + 1, HUGE_BLOCK)
        self.assertEqual(code, 502)
        self.assertIn(f"over {codec.MAX_BLOCKS} blocks of {HUGE_BLOCK}", message)
        wire = ready(initiator=True)
        opening = wire.protocol.open(URL)
        wire.feed(codec.Opened(1, HUGE.size, HUGE_BLOCK, True, "sha512", "v1"))
        self.assertEqual(self.successResultOf(opening).meta.blocks, codec.MAX_BLOCKS)

    @given(
        st.integers(0, 2**64 - 1),
        st.one_of(
            st.integers(0, 2**32 - 1), st.sampled_from([2**n for n in range(32)])
        ),
    )
    def test_announcedSizesBounded(self, size: int, blockSize: int) -> None:
        """
        Whatever size and block size an Opened frame carries, it decodes only
        to a power-of-two block size from 16 KiB to 4 MiB and at most
        L{codec.MAX_BLOCKS} blocks.
        """
        frame = codec.encode(codec.Opened(1, size, blockSize, True, "sha256", "v"))
        try:
            opened = codec.decode(frame)
        except codec.DecodeError:
            return
        assert isinstance(opened, codec.Opened)
        self.assertIn(opened.blockSize, [2**n for n in range(14, 23)])
        self.assertLessEqual(-(-opened.size // opened.blockSize), codec.MAX_BLOCKS)
