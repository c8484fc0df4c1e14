"""
Tests for L{p2pd.store.digests}: origin-side block digests, computed on
demand in threads and kept on disk.

Most tests run the thread jobs by hand (L{QueuedThreads}), so they can look
at what is queued and choose the order work finishes in; one class uses the
real reactor's thread pool.
"""

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from p2pd.store import hashing as digestsModule
from p2pd.store.digests import BlocksOutOfRange, DigestIndex
from p2pd.store.hashing import FileChanged
from p2pd.store.published import PublishedFile
from p2pd.store.records import DigestRecords
from tests.fakes import QueuedThreads

BLOCK = 1024
CHUNK = 4 * BLOCK  # four blocks per thread job


class ImmediateReactor:
    """
    Just enough reactor for L{DigestIndex}: results from "threads" are
    delivered at once, and its thread pool is a L{QueuedThreads}.
    """

    def __init__(self, pool: QueuedThreads) -> None:
        self.pool = pool

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)

    def getThreadPool(self) -> QueuedThreads:
        return self.pool


def blockDigests(data: bytes, blockSize: int = BLOCK, name: str = "sha256") -> bytes:
    """
    The reference: every block's digest, concatenated.
    """
    return b"".join(
        hashlib.new(name, data[i : i + blockSize]).digest()
        for i in range(0, len(data), blockSize)
    )


def publish(path: str) -> PublishedFile:
    """
    The file at C{path} as it is now.
    """
    st = os.stat(path)
    return PublishedFile(
        os.path.basename(path), path, st.st_size, st.st_mtime_ns, st.st_ino
    )


def writeFile(path: str, data: bytes, mtimeNs: int = 1_700_000_000 * 10**9) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(mtimeNs, mtimeNs))


def fileData(blocks: float, seed: int = 0) -> bytes:
    """
    C{blocks} blocks (a fraction makes a short last block) of bytes that
    differ from block to block.
    """
    length = int(blocks * BLOCK)
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha512(b"%d-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:length])


class _IndexTestCase(SynchronousTestCase):
    """
    A published directory with C{movie.mp4} (10.5 blocks) and an index
    directory; thread jobs wait in C{self.pool}; every block hashed is
    counted in C{self.hashed}.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.mkdir(self.base)
        self.indexDir = os.path.join(self.base, "index")
        self.path = os.path.join(self.base, "movie.mp4")
        self.data = fileData(10.5)
        writeFile(self.path, self.data)
        self.published = publish(self.path)
        self.pool = QueuedThreads()
        self.reactor = ImmediateReactor(self.pool)
        self.hashed: list[int] = []
        realHash = digestsModule._hashBlock

        def countingHash(name: str, data: memoryview) -> bytes:
            self.hashed.append(len(data))
            return realHash(name, data)

        self.patch(digestsModule, "_hashBlock", countingHash)

    def index(
        self, blockSize: int = BLOCK, digestName: str = "sha256", **kw: Any
    ) -> DigestIndex:
        """
        A new L{DigestIndex} on C{self.indexDir}, closed at the end of the test.
        """
        kw.setdefault("chunkBytes", CHUNK)
        index = DigestIndex(
            self.indexDir, blockSize, digestName, self.reactor, self.pool, **kw  # type: ignore[arg-type]
        )
        self.addCleanup(index.close)
        return index

    def digests(
        self,
        index: DigestIndex,
        first: int,
        count: int,
        published: PublishedFile | None = None,
    ) -> bytes:
        """
        Ask C{index} for digests, run the thread jobs, and return the result.
        """
        d = index.digests(published or self.published, first, count)
        self.pool.runAll()
        return self.successResultOf(d)

    def failure(
        self,
        index: DigestIndex,
        first: int,
        count: int,
        published: PublishedFile | None = None,
    ) -> Failure:
        """
        Ask C{index} for digests, run the thread jobs, and return the
        failure: the file changed.
        """
        d = index.digests(published or self.published, first, count)
        self.pool.runAll()
        return self.failureResultOf(d, FileChanged)

    def indexFile(self, path: str | None = None) -> str:
        """
        Where the index keeps the digests of C{path} (default: the movie).
        """
        key = hashlib.sha256(os.fsencode(path or self.path)).hexdigest()
        return os.path.join(self.indexDir, key)


class DigestsTests(_IndexTestCase):
    """
    L{DigestIndex.digests} returns the right digests and hashes only what
    it must.
    """

    def test_wholeFile(self) -> None:
        """
        The digests of every block, the short last block included, are the
        block digests concatenated.
        """
        index = self.index()
        self.assertEqual(self.digests(index, 0, 11), blockDigests(self.data))

    def test_ranges(self) -> None:
        """
        Any range, inside one chunk or across several, gets exactly its own
        digests.
        """
        expected = blockDigests(self.data)
        index = self.index()
        for first, count in [(0, 1), (3, 2), (5, 1), (2, 7), (10, 1), (7, 4)]:
            self.assertEqual(
                self.digests(index, first, count),
                expected[first * 32 : (first + count) * 32],
                (first, count),
            )

    def test_attributes(self) -> None:
        """
        The index exposes its block size, digest algorithm and digest size.
        """
        index = self.index(4096, "sha1")
        self.assertEqual(
            (index.blockSize, index.digestName, index.digestSize), (4096, "sha1", 20)
        )

    def test_otherAlgorithm(self) -> None:
        """
        The digests are those of the configured algorithm.
        """
        index = self.index(digestName="blake2b")
        self.assertEqual(
            self.digests(index, 0, 11), blockDigests(self.data, name="blake2b")
        )

    def test_unknownAlgorithm(self) -> None:
        """
        An algorithm C{hashlib} does not know is refused at once.
        """
        self.assertRaises(ValueError, self.index, digestName="no-such-hash")

    def test_onlyTheRequestedChunkIsHashed(self) -> None:
        """
        The first digests of a 10 GB file need only the first chunk read and
        hashed, and so does the last digest.
        """
        big = os.path.join(self.base, "big.bin")
        with open(big, "wb") as f:
            f.truncate(10 * 2**30)
        published = publish(big)
        blockSize = 256 * 1024
        index = self.index(blockSize, chunkBytes=2**20)
        self.assertEqual(index.chunkBlocks, 4)
        zero = hashlib.sha256(bytes(blockSize)).digest()
        self.assertEqual(self.digests(index, 0, 2, published), zero * 2)
        self.assertEqual(self.hashed, [blockSize] * 4)
        self.assertEqual(self.digests(index, 40959, 1, published), zero)
        self.assertEqual(len(self.hashed), 8)

    def test_readsAreBatched(self) -> None:
        """
        A chunk's missing blocks are read in one read per run of missing
        blocks.
        """
        reads: list[int] = []
        realPread = os.pread

        def countingPread(fd: int, length: int, offset: int) -> bytes:
            if os.fstat(fd).st_ino == self.published.inode:
                reads.append(length)
            return realPread(fd, length, offset)

        self.patch(digestsModule.os, "pread", countingPread)  # type: ignore[attr-defined]
        index = self.index(chunkBytes=8 * BLOCK)
        self.digests(index, 0, 11)
        self.assertEqual(reads, [8 * BLOCK, int(2.5 * BLOCK)])

    def test_emptyRange(self) -> None:
        """
        Zero digests are the empty string, even for an empty file.
        """
        empty = os.path.join(self.base, "empty")
        writeFile(empty, b"")
        index = self.index()
        self.assertEqual(self.successResultOf(index.digests(self.published, 3, 0)), b"")
        self.assertEqual(self.successResultOf(index.digests(publish(empty), 0, 0)), b"")
        self.assertEqual(self.pool.jobs, [])

    def test_outOfRange(self) -> None:
        """
        A range outside the file fails with BAD_REQUEST.
        """
        index = self.index()
        for first, count in [(-1, 1), (0, 12), (11, 1), (5, -1)]:
            self.failureResultOf(
                index.digests(self.published, first, count), BlocksOutOfRange
            )
        self.assertEqual(self.pool.jobs, [])

    def test_repeatedRequestsFromMemory(self) -> None:
        """
        Digests asked for again are answered at once, from memory, without
        a thread job.
        """
        index = self.index()
        first = self.digests(index, 0, 11)
        started = self.pool.started
        self.assertEqual(
            self.successResultOf(index.digests(self.published, 2, 5)), first[64:224]
        )
        self.assertEqual(self.pool.started, started)

    def test_memoryBounded(self) -> None:
        """
        At most C{memoryBytes} of digests stay in memory; older chunks are
        read back from the index file when asked for again.
        """
        index = self.index(memoryBytes=2 * 4 * 32)
        expected = blockDigests(self.data)
        for first in range(11):
            self.assertEqual(
                self.digests(index, first, 1), expected[first * 32 : first * 32 + 32]
            )
            self.assertLessEqual(index._memory.size, 2 * 4 * 32)
        hashed = len(self.hashed)
        self.assertEqual(self.digests(index, 0, 11), expected)
        self.assertEqual(len(self.hashed), hashed)

    def test_defaultThreadPool(self) -> None:
        """
        Without a thread pool of its own, the index uses the reactor's.
        """
        index = DigestIndex(self.indexDir, BLOCK, "sha256", self.reactor)  # type: ignore[arg-type]
        self.addCleanup(index.close)
        d = index.digests(self.published, 0, 1)
        self.assertNoResult(d)
        self.assertTrue(self.pool.jobs)
        self.pool.runAll()
        self.assertEqual(self.successResultOf(d), blockDigests(self.data)[:32])

    def test_createsIndexDirectory(self) -> None:
        """
        The index directory is created, private to the user, with its parents.
        """
        self.indexDir = os.path.join(self.base, "a", "b")
        self.index()
        self.assertEqual(os.stat(self.indexDir).st_mode & 0o777, 0o700)

    def test_blockSizeMustBePositive(self) -> None:
        """
        A block size of zero is refused.
        """
        self.assertRaises(ValueError, self.index, 0)


class PersistenceTests(_IndexTestCase):
    """
    Digests are kept on disk, safely, and only for the version they are of.
    """

    def test_survivesRestart(self) -> None:
        """
        A new index on the same directory serves the digests computed before
        without hashing again.
        """
        self.digests(self.index(), 0, 11)
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(self.hashed, [])

    def test_onlyMissingDigestsHashed(self) -> None:
        """
        After a restart, only the blocks whose digests were never computed
        are hashed.
        """
        self.digests(self.index(), 0, 4)
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 7)

    def test_fileLayout(self) -> None:
        """
        The index file is named by the SHA-256 of the path, starts with a
        header naming the path, version, block size and algorithm, and holds
        the digests (with checks) after the header's 4096 bytes.
        """
        self.digests(self.index(), 0, 11)
        with open(self.indexFile(), "rb") as f:
            raw = f.read()
        self.assertTrue(raw.startswith(b"P2PDIDX1"))
        self.assertIn(self.published.version.encode(), raw[:4096])
        self.assertIn(b'"blockSize":1024', raw[:4096])
        self.assertIn(b'"digestName":"sha256"', raw[:4096])
        self.assertEqual(len(raw), 4096 + 11 * 40)
        self.assertEqual(raw[4096 : 4096 + 32], blockDigests(self.data)[:32])
        self.assertEqual(
            os.listdir(self.indexDir), [os.path.basename(self.indexFile())]
        )

    def test_newVersionRebuilds(self) -> None:
        """
        When the file changes, the digests of the new version are computed
        and replace the old ones; the old version's digests are never
        returned for it.
        """
        index = self.index()
        self.digests(index, 0, 11)
        newData = fileData(10.5, seed=1)
        writeFile(self.path, newData, mtimeNs=1_800_000_000 * 10**9)
        newPublished = publish(self.path)
        self.assertEqual(
            self.digests(index, 0, 11, newPublished), blockDigests(newData)
        )
        index.close()
        self.hashed.clear()
        self.assertEqual(
            self.digests(self.index(), 0, 11, newPublished), blockDigests(newData)
        )
        self.assertEqual(self.hashed, [])

    def test_oldVersionIsChanged(self) -> None:
        """
        Asking for the digests of a version the file no longer is fails with
        CHANGED, even for digests that were computed for it.
        """
        index = self.index()
        self.digests(index, 0, 4)
        writeFile(self.path, fileData(10.5, seed=1), mtimeNs=1_800_000_000 * 10**9)
        newIndex = self.index()
        self.failure(newIndex, 0, 11)

    def test_otherBlockSizeDiscards(self) -> None:
        """
        An index file written for another block size is discarded and
        rebuilt, so going back to the first block size hashes again.
        """
        self.digests(self.index(), 0, 11)
        self.assertEqual(
            self.digests(self.index(2048), 0, 6), blockDigests(self.data, 2048)
        )
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 11)

    def test_otherAlgorithmDiscards(self) -> None:
        """
        An index file written for another digest algorithm is discarded and
        rebuilt.
        """
        self.digests(self.index(), 0, 11)
        self.hashed.clear()
        self.assertEqual(
            self.digests(self.index(digestName="sha1"), 0, 11),
            blockDigests(self.data, name="sha1"),
        )
        self.assertEqual(len(self.hashed), 11)

    def test_otherPathNotTrusted(self) -> None:
        """
        An index file copied from another path is not trusted, even when the
        other file has the same version stamp.
        """
        other = os.path.join(self.base, "other.mp4")
        otherData = fileData(10.5, seed=2)
        writeFile(other, otherData)
        self.digests(self.index(), 0, 11)
        with open(self.indexFile(), "rb") as f:
            raw = f.read()
        with open(self.indexFile(other), "wb") as f:
            f.write(raw)
        published = publish(other)
        self.assertEqual(
            self.digests(self.index(), 0, 11, published), blockDigests(otherData)
        )

    def test_corruptRecordRecomputed(self) -> None:
        """
        A record whose bytes changed on disk fails its check: only that
        block is hashed again, and the right digest is returned.
        """
        self.digests(self.index(), 0, 11)
        with open(self.indexFile(), "r+b") as f:
            f.seek(4096 + 2 * 40 + 5)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x40]))
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 1)

    def test_tornRecordsRecomputed(self) -> None:
        """
        An index file cut in the middle of a record (a torn write) keeps the
        whole records before the cut; the rest are hashed again.
        """
        self.digests(self.index(), 0, 11)
        os.truncate(self.indexFile(), 4096 + 5 * 40 + 17)
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 6)

    def test_zeroedRecordsRecomputed(self) -> None:
        """
        Records that read as zeros (a hole left by a crash) are unknown, not
        digests of zero.
        """
        self.digests(self.index(), 0, 11)
        with open(self.indexFile(), "r+b") as f:
            f.seek(4096 + 3 * 40)
            f.write(bytes(2 * 40))
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 2)

    def test_tornHeaderRebuilds(self) -> None:
        """
        An index file whose header is cut short is rebuilt.
        """
        self.digests(self.index(), 0, 11)
        os.truncate(self.indexFile(), 20)
        self.hashed.clear()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertEqual(len(self.hashed), 11)
        self.assertEqual(os.path.getsize(self.indexFile()), 4096 + 11 * 40)

    def test_staleTemporaryFilesRemoved(self) -> None:
        """
        Temporary files left by a crash while replacing an index file are
        removed when an index starts.
        """
        os.makedirs(self.indexDir)
        stale = os.path.join(self.indexDir, "abc.x1y2z3.tmp")
        writeFile(stale, b"P2PD")
        self.index()
        self.assertFalse(os.path.exists(stale))

    def test_unwritableIndex(self) -> None:
        """
        When the index file cannot be created, digests are still computed
        (and the problem logged), just not kept.
        """
        os.makedirs(self.indexFile())
        with capturedLogs() as events:
            self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(self.data))
        self.assertTrue(
            any("cannot keep digests" in e.get("log_format", "") for e in events),
            events,
        )

    def test_fullDiskLoggedOnce(self) -> None:
        """
        When the disk refuses digest records, digests are still given, the
        log gets one line for all the chunks refused, and one more once the
        disk takes records again.
        """
        index = self.index()
        self.digests(index, 0, 1)
        full = [True]
        realWrite = digestsModule.writeAll  # type: ignore[attr-defined]

        def writeFull(fd: int, data: bytes, offset: int) -> None:
            if full[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            realWrite(fd, data, offset)

        self.patch(digestsModule, "writeAll", writeFull)
        with capturedLogs() as events:
            self.assertEqual(
                self.digests(index, 4, 7), blockDigests(self.data)[4 * 32 :]
            )
            full[0] = False
            index.close()  # forgets the digests in memory
            self.digests(index, 0, 11)
        self.assertEqual(
            [e["log_format"] for e in events],
            [
                "cannot record digests of {path}: {why}",
                "recording digests in {index} again",
            ],
        )

    def test_newVersionWhileOpening(self) -> None:
        """
        When the file changes while the old version's index file is still
        being opened, the new version's file is set up only afterwards, so
        the index file ends up describing the new version.
        """
        index = self.index()
        old = index.digests(self.published, 0, 1)
        newData = fileData(10.5, seed=1)
        writeFile(self.path, newData, mtimeNs=1_800_000_000 * 10**9)
        newPublished = publish(self.path)
        new = index.digests(newPublished, 0, 11)
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.runAll()
        self.failureResultOf(old, FileChanged)
        self.assertEqual(self.successResultOf(new), blockDigests(newData))
        with open(self.indexFile(), "rb") as f:
            self.assertIn(newPublished.version.encode(), f.read(4096))
        index.close()
        self.hashed.clear()
        self.assertEqual(
            self.digests(self.index(), 0, 11, newPublished), blockDigests(newData)
        )
        self.assertEqual(self.hashed, [])


class ChangedTests(_IndexTestCase):
    """
    Digests are never given or recorded for a version the file is not.
    """

    def test_missing(self) -> None:
        """
        A file that disappeared fails with CHANGED.
        """
        os.unlink(self.path)
        self.failure(self.index(), 0, 1)

    def test_changedBeforeHashing(self) -> None:
        """
        A file modified after it was looked up fails with CHANGED and nothing
        is hashed.
        """
        writeFile(self.path, fileData(10.5, seed=1), mtimeNs=1_800_000_000 * 10**9)
        self.failure(self.index(), 0, 11)
        self.assertEqual(self.hashed, [])

    def modifyWhileHashing(self, change: Callable[[], None]) -> None:
        """
        Make C{change} happen once, right after the first block is hashed.
        """
        hashing = digestsModule._hashBlock
        done: list[bool] = []

        def hashThenChange(name: str, data: memoryview) -> bytes:
            result = hashing(name, data)
            if not done:
                done.append(True)
                change()
            return result

        self.patch(digestsModule, "_hashBlock", hashThenChange)

    def test_modifiedWhileHashing(self) -> None:
        """
        A file modified in place while its blocks are hashed fails with
        CHANGED, and none of the digests are recorded for the old version:
        if the file later looks like that version again, its digests are
        computed from what it holds then.
        """
        newData = fileData(10.5, seed=3)
        later = self.published.mtimeNs + 10**9

        def change() -> None:
            with open(self.path, "r+b") as f:
                f.write(newData)
            os.utime(self.path, ns=(later, later))

        self.modifyWhileHashing(change)
        index = self.index()
        reason = self.failure(index, 0, 11)
        self.assertIn("changed while hashing", str(reason.value))
        self.patch(digestsModule, "_hashBlock", lambda n, d: hashlib.new(n, d).digest())
        mtime = self.published.mtimeNs
        os.utime(self.path, ns=(mtime, mtime))
        self.assertEqual(publish(self.path), self.published)
        self.assertEqual(self.digests(index, 0, 11), blockDigests(newData))
        index.close()
        self.assertEqual(self.digests(self.index(), 0, 11), blockDigests(newData))

    def test_shrunkWhileHashing(self) -> None:
        """
        A file cut short while its blocks are hashed fails with CHANGED.
        """
        self.modifyWhileHashing(lambda: os.truncate(self.path, 3 * BLOCK))
        self.failure(self.index(chunkBytes=11 * BLOCK), 0, 11)

    def test_replacedWhileHashing(self) -> None:
        """
        A file replaced by another (renamed over) while hashing does not
        disturb the hashing of the old one, whose digests are right.
        """
        other = os.path.join(self.base, "new.mp4")
        writeFile(other, fileData(10.5, seed=4), mtimeNs=1_800_000_000 * 10**9)
        self.modifyWhileHashing(lambda: os.replace(other, self.path))
        index = self.index(chunkBytes=11 * BLOCK)
        self.assertEqual(self.digests(index, 0, 11), blockDigests(self.data))


class ConcurrencyTests(_IndexTestCase):
    """
    Overlapping requests share work; open files and memory stay bounded.
    """

    def test_overlappingRequestsShareChunks(self) -> None:
        """
        Two overlapping requests made before any work finishes hash every
        block once, one thread job per chunk, and both get their digests.
        """
        index = self.index()
        first = index.digests(self.published, 0, 6)
        second = index.digests(self.published, 3, 8)
        self.pool.runAll()
        expected = blockDigests(self.data)
        self.assertEqual(self.successResultOf(first), expected[: 6 * 32])
        self.assertEqual(self.successResultOf(second), expected[3 * 32 :])
        self.assertEqual(len(self.hashed), 11)
        self.assertEqual(self.pool.started, 1 + 3)

    def test_cancelOneRequest(self) -> None:
        """
        Cancelling one of two requests waiting for the same chunk fails it
        with L{CancelledError}; the other still gets its digests, and the
        work is kept.
        """
        index = self.index()
        first = index.digests(self.published, 0, 2)
        second = index.digests(self.published, 1, 2)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.pool.runAll()
        self.assertEqual(self.successResultOf(second), blockDigests(self.data)[32:96])
        self.hashed.clear()
        self.assertEqual(self.digests(index, 0, 4), blockDigests(self.data)[:128])
        self.assertEqual(self.hashed, [])

    def test_cancelAcrossChunks(self) -> None:
        """
        Cancelling a request spanning several chunks fails it with
        L{CancelledError} and leaves the index working.
        """
        index = self.index()
        d = index.digests(self.published, 0, 11)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.pool.runAll()
        self.assertEqual(self.digests(index, 0, 11), blockDigests(self.data))

    def test_failureReachesEveryWaiter(self) -> None:
        """
        When hashing fails, every request waiting for the chunk fails with
        the same error (not wrapped).
        """
        index = self.index()
        d1 = index.digests(self.published, 0, 11)
        d2 = index.digests(self.published, 2, 1)
        os.unlink(self.path)
        self.pool.runAll()
        for d in (d1, d2):
            self.failureResultOf(d, FileChanged)

    def test_openFilesBounded(self) -> None:
        """
        At most C{maxOpen} index files stay open; the least recently used
        idle ones are closed, and reopened when needed.
        """
        index = self.index(maxOpen=2)
        files = []
        for i in range(5):
            path = os.path.join(self.base, f"f{i}")
            data = fileData(3, seed=i)
            writeFile(path, data)
            files.append((publish(path), data))
        for published, data in files:
            self.assertEqual(self.digests(index, 0, 3, published), blockDigests(data))
            self.assertLessEqual(len(index._entries), 2)
        index.close()
        self.hashed.clear()
        for published, data in files:
            self.assertEqual(self.digests(index, 0, 3, published), blockDigests(data))
        self.assertEqual(self.hashed, [])

    def test_closeReleasesDescriptors(self) -> None:
        """
        L{DigestIndex.close} closes the index files not in use at once, and
        the others when their work is done.
        """
        index = self.index()
        self.digests(index, 0, 1)
        (entry,) = index._entries.values()
        fd = entry.index.fd  # type: ignore[union-attr]
        os.fstat(fd)
        pending = index.digests(self.published, 4, 1)
        index.close()
        os.fstat(fd)
        self.pool.runAll()
        self.assertEqual(
            self.successResultOf(pending), blockDigests(self.data)[128:160]
        )
        self.assertRaises(OSError, os.fstat, fd)

    @settings(deadline=None, max_examples=60)
    @given(
        st.integers(0, 40),
        st.sampled_from([1, 2, 3, 5]),
        st.lists(
            st.tuples(st.integers(0, 40), st.integers(1, 12)), min_size=1, max_size=6
        ),
        st.lists(st.integers(0, 10**6), max_size=30),
        st.sampled_from([None, 1, 3]),
    )
    def test_anyOrder(
        self,
        blocks: int,
        chunkBlocks: int,
        requests: list[tuple[int, int]],
        order: list[int],
        restartAfter: int | None,
    ) -> None:
        """
        Whatever requests are made and in whatever order their thread jobs
        finish, across restarts, every request gets exactly the right
        digests, and each block is hashed at most once per restart.
        """
        base = tempfile.mkdtemp(dir=self.base)
        path = os.path.join(base, "f")
        data = fileData(blocks + 0.25, seed=blocks)[
            : blocks * BLOCK + (blocks % 3) * 100
        ]
        writeFile(path, data)
        published = publish(path)
        nblocks = -(-len(data) // BLOCK)
        expected = blockDigests(data)
        pool = QueuedThreads()
        reactor = ImmediateReactor(pool)

        def newIndex() -> DigestIndex:
            index = DigestIndex(
                os.path.join(base, "index"),
                BLOCK,
                "sha256",
                reactor,  # type: ignore[arg-type]
                pool,  # type: ignore[arg-type]
                chunkBytes=chunkBlocks * BLOCK,
            )
            self.addCleanup(index.close)
            return index

        index = newIndex()
        pending: list[tuple[Deferred[bytes], int, int]] = []
        choices = iter(order)
        for n, (first, count) in enumerate(requests):
            if nblocks == 0:
                first, count = 0, 0
            else:
                first = first % nblocks
                count = min(count, nblocks - first)
            pending.append((index.digests(published, first, count), first, count))
            if pool.jobs:
                pool.runOne(next(choices, 0) % len(pool.jobs))
            if restartAfter == n:
                pool.runAll()
                index.close()
                index = newIndex()
                self.hashed.clear()
        while pool.jobs:
            pool.runOne(next(choices, 0) % len(pool.jobs))
        for d, first, count in pending:
            self.assertEqual(
                self.successResultOf(d), expected[first * 32 : (first + count) * 32]
            )
        self.assertLessEqual(len(self.hashed), nblocks)
        self.hashed.clear()


class DigestRecordsTests(SynchronousTestCase):
    """
    L{DigestRecords} tells kept digests from anything else.
    """

    digests = bytes(range(32)) + bytes(range(32, 64)) + bytes(32)

    def setUp(self) -> None:
        self.records = DigestRecords(32, b"identity", b"test")

    def test_roundTrip(self) -> None:
        """
        Packed records unpack to the same digests (an all-zero digest too),
        at the same position.
        """
        raw = self.records.pack(7, self.digests)
        self.assertEqual(len(raw), 3 * 40)
        self.assertEqual(
            self.records.unpack(7, raw, 3),
            [self.digests[:32], self.digests[32:64], self.digests[64:]],
        )

    def test_notWholeDigests(self) -> None:
        """
        Packing bytes that are not whole digests is refused.
        """
        self.assertRaises(ValueError, self.records.pack, 0, bytes(33))

    def test_zeros(self) -> None:
        """
        Records never written (zeros) are unknown.
        """
        self.assertEqual(self.records.unpack(0, bytes(80), 2), [None, None])

    def test_short(self) -> None:
        """
        Records missing or cut short are unknown.
        """
        raw = self.records.pack(0, self.digests)
        self.assertEqual(
            self.records.unpack(0, raw[:79], 3), [self.digests[:32], None, None]
        )

    def test_otherIndex(self) -> None:
        """
        A record moved to another position is unknown.
        """
        raw = self.records.pack(3, self.digests[:32])
        self.assertEqual(self.records.unpack(4, raw, 1), [None])

    def test_otherIdentity(self) -> None:
        """
        A record written for another identity (file version, block size,
        algorithm) is unknown.
        """
        raw = self.records.pack(0, self.digests)
        other = DigestRecords(32, b"identity2", b"test")
        self.assertEqual(other.unpack(0, raw, 3), [None, None, None])

    @given(st.integers(0, 3 * 40 - 1), st.integers(1, 255))
    def test_anyFlippedByte(self, position: int, mask: int) -> None:
        """
        Any damaged byte makes its record unknown, and only that record.
        """
        raw = bytearray(self.records.pack(0, self.digests))
        raw[position] ^= mask
        result = self.records.unpack(0, bytes(raw), 3)
        damaged = position // 40
        for i in range(3):
            if i == damaged:
                self.assertIsNone(result[i])
            else:
                self.assertEqual(result[i], self.digests[i * 32 : (i + 1) * 32])


class RealThreadsTests(TestCase):
    """
    L{DigestIndex} with the running reactor's own thread pool.
    """

    def test_threads(self) -> Deferred[Any]:
        """
        Concurrent requests, hashed in real threads, all get the right
        digests, and the digests survive a restart.
        """
        base = self.mktemp()
        os.mkdir(base)
        path = os.path.join(base, "movie.mp4")
        data = fileData(200.5)
        writeFile(path, data)
        published = publish(path)
        indexDir = os.path.join(base, "index")
        expected = blockDigests(data)
        index = DigestIndex(indexDir, BLOCK, "sha256", globalReactor, chunkBytes=CHUNK)  # type: ignore[arg-type]
        ranges = [(0, 201), (10, 50), (100, 101), (0, 1), (200, 1), (37, 90)]
        d = gatherResults([index.digests(published, f, c) for f, c in ranges])

        def check(results: list[bytes]) -> Deferred[bytes]:
            for (f, c), result in zip(ranges, results, strict=True):
                self.assertEqual(result, expected[f * 32 : (f + c) * 32])
            index.close()
            again = DigestIndex(indexDir, BLOCK, "sha256", globalReactor)  # type: ignore[arg-type]
            self.addCleanup(again.close)
            return again.digests(published, 0, 201)

        d.addCallback(check)
        d.addCallback(self.assertEqual, expected)
        return d
