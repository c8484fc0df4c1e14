"""
Tests for L{p2pd.store.cache}: the node's cache of fetched, verified blocks,
its files on disk, and what survives a restart (and a crash, with a real
process: L{tests.integration.test_cache}).
"""

import hashlib
import json
import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.store import cachelayout
from p2pd.store.cache import BlockCache
from p2pd.store.cachedfile import CachedFile

BLOCK = 1024
URL = "spp://origin.example:1111/films/movie.mp4"
META = FileMeta(URL, 10 * BLOCK + 500, BLOCK, "sha256", "1a-2b-3c")


def blockData(meta: FileMeta, index: int) -> bytes:
    """
    The content of block C{index} of C{meta}'s file.
    """
    length = meta.blockLength(index)
    seed = hashlib.sha256(f"{meta.url} {meta.version} {index}".encode()).digest()
    return (seed * (length // 32 + 1))[:length]


def allDigests(meta: FileMeta) -> bytes:
    return b"".join(meta.digest(blockData(meta, i)) for i in range(meta.blocks))


def hexName(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _CacheTestCase(SynchronousTestCase):
    """
    A L{BlockCache} in a fresh directory.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.cache = BlockCache(self.root)

    def open(
        self, meta: FileMeta = META, cache: BlockCache | None = None
    ) -> CachedFile:
        """
        Open C{meta} in the cache; the handle is closed after the test.
        """
        cached = (cache or self.cache).open(meta)
        self.addCleanup(cached.close)
        return cached

    def find(self, url: str = URL, version: str = "") -> CachedFile | None:
        """
        Find C{url} in a new cache on the same directory (as after a
        restart); the handle is closed after the test.
        """
        cached = BlockCache(self.root).find(url, version)
        if cached is not None:
            self.addCleanup(cached.close)
        return cached

    def fill(self, cached: CachedFile, indices: list[int]) -> None:
        """
        Store every digest of C{cached}'s file and the blocks C{indices}.
        """
        cached.setDigests(0, allDigests(cached.meta))
        for index in indices:
            cached.write(index, blockData(cached.meta, index))

    def reopen(self, meta: FileMeta = META) -> CachedFile:
        """
        Open C{meta} in a new cache on the same directory (as after a
        restart).
        """
        return self.open(meta, BlockCache(self.root))

    def directory(self, meta: FileMeta = META) -> str:
        return os.path.join(self.root, hexName(meta.url), hexName(meta.version))

    def assertVerified(self, cached: CachedFile) -> None:
        """
        Every block C{cached} says it has reads back as its right content.
        """
        for index in range(cached.meta.blocks):
            if cached.has(index):
                self.assertEqual(
                    cached.read(index), blockData(cached.meta, index), index
                )


class BlockCacheTests(_CacheTestCase):
    """
    Storing, reading and describing cached blocks.
    """

    def test_rootCreated(self) -> None:
        """
        The cache directory is created, with its parents, private to the
        user; an existing one is used as it is.
        """
        root = os.path.join(self.root, "a", "b")
        BlockCache(root)
        self.assertEqual(os.stat(root).st_mode & 0o777, 0o700)
        BlockCache(root)

    def test_empty(self) -> None:
        """
        A newly opened file holds nothing and knows no digest.
        """
        cached = self.open()
        self.assertEqual(cached.meta, META)
        self.assertEqual((cached.held(), cached.heldCount), ([], 0))
        self.assertFalse(cached.complete)
        self.assertFalse(cached.has(0))
        self.assertIsNone(cached.read(0))
        self.assertIsNone(cached.digest(0))

    def test_writeRead(self) -> None:
        """
        A written block is held and reads back.
        """
        cached = self.open()
        self.fill(cached, [3])
        self.assertTrue(cached.has(3))
        self.assertFalse(cached.has(2))
        self.assertEqual(cached.read(3), blockData(META, 3))
        self.assertIsNone(cached.read(2))
        self.assertEqual((cached.held(), cached.heldCount), ([(3, 1)], 1))

    def test_lastShortBlock(self) -> None:
        """
        The last block is as short as the file makes it, and the data file
        is exactly as long as the file.
        """
        cached = self.open()
        self.fill(cached, [10])
        self.assertEqual(cached.read(10), blockData(META, 10))
        self.assertEqual(len(blockData(META, 10)), 500)
        self.assertEqual(
            os.path.getsize(os.path.join(self.directory(), "data")), META.size
        )
        self.assertRaises(ValueError, cached.write, 10, blockData(META, 9))

    def test_complete(self) -> None:
        """
        A file is complete once every block is held.
        """
        cached = self.open()
        self.fill(cached, list(range(10)))
        self.assertFalse(cached.complete)
        cached.write(10, blockData(META, 10))
        self.assertTrue(cached.complete)
        self.assertEqual(cached.held(), [(0, 11)])

    def test_emptyFile(self) -> None:
        """
        A file of size 0 has no blocks, is complete, and is cached like any
        other.
        """
        meta = FileMeta(URL, 0, BLOCK, "sha256", "empty")
        cached = self.open(meta)
        self.assertTrue(cached.complete)
        self.assertEqual((cached.held(), cached.heldCount), ([], 0))
        self.assertFalse(cached.has(0))
        self.assertIsNone(cached.read(0))
        self.assertIsNone(cached.digest(0))
        cached.setDigests(0, b"")
        self.assertRaises(ValueError, cached.write, 0, b"")
        found = self.find(URL, "empty")
        assert found is not None
        self.assertEqual(found.meta, meta)
        self.assertTrue(found.complete)

    def test_writeNeedsDigest(self) -> None:
        """
        A block whose digest is unknown cannot have been verified, and is
        refused.
        """
        cached = self.open()
        self.assertRaises(ValueError, cached.write, 0, blockData(META, 0))
        self.assertFalse(cached.has(0))

    def test_writeChecksIndexAndLength(self) -> None:
        """
        Writing outside the file, or a block of the wrong length, is refused.
        """
        cached = self.open()
        cached.setDigests(0, allDigests(META))
        self.assertRaises(ValueError, cached.write, 11, bytes(BLOCK))
        self.assertRaises(ValueError, cached.write, -1, bytes(BLOCK))
        self.assertRaises(ValueError, cached.write, 0, bytes(BLOCK - 1))
        self.assertEqual(cached.held(), [])

    def test_writeHeldBlockIsNoop(self) -> None:
        """
        Writing a block already held changes nothing on disk.
        """
        cached = self.open()
        self.fill(cached, [1])
        journal = os.path.join(self.directory(), "journal")
        size = os.path.getsize(journal)
        cached.write(1, blockData(META, 1))
        self.assertEqual(os.path.getsize(journal), size)
        self.assertEqual(cached.heldCount, 1)

    def test_heldMerged(self) -> None:
        """
        Held blocks are described as sorted, merged C{(first, count)} ranges,
        whatever the order they were written in.
        """
        cached = self.open()
        self.fill(cached, [8, 0, 5, 2, 1, 10, 7])
        self.assertEqual(cached.held(), [(0, 3), (5, 1), (7, 2), (10, 1)])
        self.assertEqual(cached.heldCount, 7)

    @settings(deadline=None, max_examples=60)
    @given(
        st.integers(0, 70),
        st.lists(st.tuples(st.booleans(), st.integers(0, 69)), max_size=80),
    )
    def test_heldMatchesReference(
        self, blocks: int, operations: list[tuple[bool, int]]
    ) -> None:
        """
        After any writes and losses of blocks (and a restart), C{held()} is
        the merged ranges of exactly the blocks held, C{has()} and
        C{heldCount} agree, and the file is complete when all are held.
        """
        root = tempfile.mkdtemp(dir=self.root)
        meta = FileMeta(URL, blocks * 64, 64, "sha256", "v")
        cached = BlockCache(root).open(meta)
        cached.setDigests(0, allDigests(meta))
        reference: set[int] = set()
        for write, index in operations:
            if index >= blocks:
                continue
            if write:
                cached.write(index, blockData(meta, index))
                reference.add(index)
            elif index in reference:
                # Corruption is found by the first read after a restart.
                cached.close()
                self.corrupt(root, meta, index)
                cached = BlockCache(root).open(meta)
                self.assertIsNone(cached.read(index))
                reference.discard(index)
        self.addCleanup(cached.close)
        again = BlockCache(root).find(URL, "v")
        if blocks and not any(write and i < blocks for write, i in operations):
            # A version is made on disk when its first block is stored.
            self.assertIsNone(again)
            return
        assert again is not None
        self.addCleanup(again.close)
        for view in (cached, again):
            expected: list[tuple[int, int]] = []
            for index in sorted(reference):
                if expected and sum(expected[-1]) == index:
                    expected[-1] = (expected[-1][0], expected[-1][1] + 1)
                else:
                    expected.append((index, 1))
            self.assertEqual(view.held(), expected)
            self.assertEqual(view.heldCount, len(reference))
            self.assertEqual(view.complete, len(reference) == blocks)
            self.assertEqual({i for i in range(blocks) if view.has(i)}, reference)

    def corrupt(self, root: str, meta: FileMeta, index: int) -> None:
        """
        Flip a bit of block C{index} of C{meta} in the data file under
        C{root}.
        """
        path = os.path.join(root, hexName(meta.url), hexName(meta.version), "data")
        with open(path, "r+b") as f:
            f.seek(meta.blockStart(index) + meta.blockLength(index) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 1]))

    def test_digests(self) -> None:
        """
        Digests stored from any block on are returned per block; the others
        are unknown.
        """
        cached = self.open()
        digests = allDigests(META)
        cached.setDigests(4, digests[4 * 32 : 7 * 32])
        self.assertEqual(
            [cached.digest(i) for i in range(3, 8)],
            [None, digests[128:160], digests[160:192], digests[192:224], None],
        )
        self.assertIsNone(cached.digest(11))
        self.assertIsNone(cached.digest(-1))

    def test_setDigestsChecked(self) -> None:
        """
        Digests that are not whole, or would fall outside the file, are
        refused.
        """
        cached = self.open()
        self.assertRaises(ValueError, cached.setDigests, 0, bytes(33))
        self.assertRaises(ValueError, cached.setDigests, 10, bytes(64))
        self.assertRaises(ValueError, cached.setDigests, -1, bytes(32))

    def test_survivesRestart(self) -> None:
        """
        A new cache on the same directory holds the same blocks, verified,
        and the same digests.
        """
        cached = self.open()
        cached.setDigests(0, allDigests(META)[: 9 * 32])
        for index in (0, 1, 2, 6, 8):
            cached.write(index, blockData(META, index))
        cached.close()
        again = self.reopen()
        self.assertEqual(again.held(), [(0, 3), (6, 1), (8, 1)])
        self.assertVerified(again)
        self.assertEqual(
            [again.digest(i) for i in range(11)],
            [allDigests(META)[i * 32 : i * 32 + 32] for i in range(9)] + [None, None],
        )

    def test_layout(self) -> None:
        """
        A file version lives in a directory named by the hashes of its URL
        and version, with its metadata in C{meta.json} and data, digests
        and journal files, private to the user.
        """
        self.fill(self.open(), [0])
        directory = self.directory()
        self.assertEqual(os.listdir(self.root), [hexName(URL)])
        self.assertEqual(
            sorted(os.listdir(directory)), ["data", "digests", "journal", "meta.json"]
        )
        self.assertEqual(os.stat(directory).st_mode & 0o777, 0o700)
        with open(os.path.join(directory, "meta.json")) as f:
            self.assertEqual(
                json.load(f),
                {
                    "format": 1,
                    "url": URL,
                    "version": META.version,
                    "size": META.size,
                    "blockSize": BLOCK,
                    "digestName": "sha256",
                },
            )
        self.assertEqual(os.path.getsize(os.path.join(directory, "journal")), 16)

    def test_lastUsed(self) -> None:
        """
        A version's last use is its C{used} stamp, or when it was made
        while it has none; debris was never used.
        """
        self.fill(self.open(), [0])
        directory = self.directory()
        made = os.stat(os.path.join(directory, "meta.json")).st_mtime
        self.assertEqual(cachelayout.lastUsed(directory), made)
        cachelayout.markUsed(directory, 1_700_000_000.0)
        self.assertEqual(cachelayout.lastUsed(directory), 1_700_000_000.0)
        cachelayout.markUsed(directory, 1_800_000_000.0)
        self.assertEqual(cachelayout.lastUsed(directory), 1_800_000_000.0)
        self.assertEqual(cachelayout.lastUsed(os.path.join(self.root, "none")), 0.0)

    def test_markUsedIgnoresRefusal(self) -> None:
        """
        A stamp the disk refuses is ignored: a missing directory raises
        nothing and stays missing.
        """
        missing = os.path.join(self.root, "gone")
        cachelayout.markUsed(missing, 1_700_000_000.0)
        self.assertFalse(os.path.exists(missing))

    def test_oddNames(self) -> None:
        """
        URLs and versions holding slashes, dots, NUL, non-ASCII or a great
        length only ever name directories by their hashes, inside the cache.
        """
        names = [
            ("spp://h:1/../../../etc/passwd", "../.."),
            ("spp://h:1/a\x00b/%2e%2e/", "v/\x00"),
            ("spp://h:1/Ωμέγα/файл.mkv", "é" * 3),
            ("spp://h:1/" + "x" * 2000, "v" * 64),
        ]
        for url, version in names:
            meta = FileMeta(url, 3 * BLOCK, BLOCK, "sha256", version)
            self.fill(self.open(meta), [1])
        self.assertEqual(
            sorted(os.listdir(self.root)), sorted(hexName(url) for url, _ in names)
        )
        for url, version in names:
            self.assertEqual(
                os.listdir(os.path.join(self.root, hexName(url))), [hexName(version)]
            )
            found = self.find(url, version)
            assert found is not None
            self.assertEqual((found.meta.url, found.meta.version), (url, version))
            self.assertEqual(found.read(1), blockData(found.meta, 1))

    def test_otherMetadataRebuilt(self) -> None:
        """
        Opening a version cached with other metadata (another block size)
        starts it afresh.
        """
        self.fill(self.open(), [0, 1])
        other = FileMeta(URL, META.size, 2048, "sha256", META.version)
        cached = self.reopen(other)
        self.assertEqual((cached.meta, cached.held()), (other, []))
        self.assertIsNone(cached.digest(0))
        self.fill(cached, [0])
        self.assertVerified(cached)

    def test_debrisRemoved(self) -> None:
        """
        A version directory without valid metadata (a crash while making
        it) is not found, and opening that version starts afresh.
        """
        self.fill(self.open(), [0, 1])
        os.unlink(os.path.join(self.directory(), "meta.json"))
        self.assertIsNone(self.find(URL, META.version))
        self.assertIsNone(self.find(URL))
        cached = self.reopen()
        self.assertEqual(cached.held(), [])
        self.fill(cached, [2])
        self.assertEqual(
            sorted(os.listdir(self.directory())),
            ["data", "digests", "journal", "meta.json"],
        )
        found = self.find(URL, META.version)
        assert found is not None
        self.assertEqual(found.held(), [(2, 1)])

    def test_invalidMetadataIgnored(self) -> None:
        """
        C{meta.json} that is not JSON, lacks fields, has wrong types or
        names an unknown algorithm is ignored.
        """
        self.fill(self.open(), [0])
        path = os.path.join(self.directory(), "meta.json")
        good = json.loads(open(path).read())
        for bad in [
            b"{",
            b"[]",
            json.dumps({**good, "size": "1"}).encode(),
            json.dumps({**good, "blockSize": 0}).encode(),
            json.dumps({**good, "digestName": "nope"}).encode(),
            json.dumps({**good, "format": 2}).encode(),
            json.dumps({k: v for k, v in good.items() if k != "url"}).encode(),
        ]:
            with open(path, "wb") as f:
                f.write(bad)
            self.assertIsNone(self.find(URL, META.version), bad)

    def test_dataFileCutShort(self) -> None:
        """
        The blocks a data file cut short behind the cache's back lost are
        forgotten when read.
        """
        self.fill(self.open(), [0, 9, 10])
        os.truncate(os.path.join(self.directory(), "data"), 5 * BLOCK)
        cached = self.reopen()
        self.assertEqual(cached.read(0), blockData(META, 0))
        self.assertIsNone(cached.read(9))
        self.assertIsNone(cached.read(10))
        self.assertEqual(cached.held(), [(0, 1)])


class VerificationTests(_CacheTestCase):
    """
    Blocks are verified on every read; what fails is forgotten.
    """

    def corruptByte(self, offset: int, path: str = "data") -> None:
        with open(os.path.join(self.directory(), path), "r+b") as f:
            f.seek(offset)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x80]))

    def test_corruptBlockForgotten(self) -> None:
        """
        A block whose bytes changed on disk is not returned: C{read} gives
        L{None}, logs it, and the block is not held any more, even after a
        restart.
        """
        self.fill(self.open(), [2, 3, 4])
        self.corruptByte(3 * BLOCK + 100)
        cached = self.reopen()
        with capturedLogs() as events:
            self.assertIsNone(cached.read(3))
        self.assertFalse(cached.has(3))
        self.assertEqual((cached.held(), cached.heldCount), ([(2, 1), (4, 1)], 2))
        self.assertEqual(len(events), 1)
        self.assertEqual((events[0]["index"], events[0]["url"]), (3, URL))
        self.assertEqual(self.reopen().held(), [(2, 1), (4, 1)])

    def test_refetchAfterCorruption(self) -> None:
        """
        A forgotten block can be written again, and is held again, across a
        restart.
        """
        self.fill(self.open(), [3])
        self.corruptByte(3 * BLOCK)
        cached = self.reopen()
        self.assertIsNone(cached.read(3))
        cached.write(3, blockData(META, 3))
        self.assertEqual(cached.read(3), blockData(META, 3))
        self.assertEqual(self.reopen().held(), [(3, 1)])

    def test_verifiedOncePerProcess(self) -> None:
        """
        A block this process wrote is read back without hashing it again;
        after a restart, the first read of a block verifies it and later
        reads trust it.
        """
        hashed: list[int] = []
        digest = FileMeta.digest

        def counting(meta: FileMeta, data: bytes) -> bytes:
            hashed.append(len(data))
            return digest(meta, data)

        self.patch(FileMeta, "digest", counting)
        cached = self.open()
        self.fill(cached, [1, 2])
        del hashed[:]  # the test's own digests of every block
        self.assertEqual(cached.read(1), blockData(META, 1))
        self.assertEqual(hashed, [])
        again = self.reopen()
        for _ in range(3):
            self.assertEqual(again.read(1), blockData(META, 1))
            self.assertEqual(again.read(2), blockData(META, 2))
        self.assertEqual(hashed, [BLOCK, BLOCK])

    def test_digestsReadOncePerProcess(self) -> None:
        """
        A new file's digests are never looked for on disk, and a cached
        file's are read from disk once each: scheduling asks for them again
        and again. What is read is what was stored.
        """
        reads: list[int] = []
        pread = os.pread

        def counting(fd: int, length: int, offset: int) -> bytes:
            reads.append(length)
            return pread(fd, length, offset)

        self.patch(os, "pread", counting)
        cached = self.open()
        for _ in range(3):
            self.assertEqual(
                [cached.digest(i) for i in range(META.blocks)], [None] * 11
            )
        self.assertEqual(reads, [])
        cached.setDigests(0, allDigests(META)[: 5 * 32])
        self.assertEqual(cached.digest(4), allDigests(META)[128:160])
        cached.write(0, blockData(META, 0))
        self.assertEqual(reads, [])
        again = self.reopen()
        for _ in range(3):
            self.assertEqual(
                [again.digest(i) for i in range(META.blocks)],
                [allDigests(META)[i * 32 : i * 32 + 32] for i in range(5)] + [None] * 6,
            )
        record = 32 + 8  # a digest and its check; the journal is read too
        self.assertEqual(reads.count(record), META.blocks)

    def test_unwrittenDataRejected(self) -> None:
        """
        A block the journal names but whose bytes never reached the disk
        (a power loss) reads as zeros and is rejected.
        """
        cached = self.open()
        self.fill(cached, [5])
        with open(os.path.join(self.directory(), "data"), "r+b") as f:
            f.seek(5 * BLOCK)
            f.write(bytes(BLOCK))
        again = self.reopen()
        self.assertTrue(again.has(5))
        self.assertIsNone(again.read(5))
        self.assertFalse(again.has(5))

    def test_lostDigestRejects(self) -> None:
        """
        A held block whose digest record was lost or damaged cannot be
        verified: it is not returned, and is forgotten.
        """
        cached = self.open()
        self.fill(cached, [5, 6])
        self.corruptByte(5 * 40 + 3, "digests")
        with open(os.path.join(self.directory(), "digests"), "r+b") as f:
            f.seek(6 * 40)
            f.write(bytes(40))
        again = self.reopen()
        self.assertIsNone(again.digest(5))
        self.assertIsNone(again.read(5))
        self.assertIsNone(again.read(6))
        self.assertEqual(again.held(), [])

    def test_digestsOfAnotherVersionNotTrusted(self) -> None:
        """
        Digest and journal files copied from another version of the file are
        not trusted.
        """
        self.fill(self.open(), [0, 1, 2])
        saved = {}
        for name in ("digests", "journal"):
            with open(os.path.join(self.directory(), name), "rb") as f:
                saved[name] = f.read()
        other = FileMeta(URL, META.size, BLOCK, "sha256", "other")
        self.fill(self.open(other), [5])
        for name, raw in saved.items():
            with open(os.path.join(self.directory(other), name), "wb") as f:
                f.write(raw)
        again = self.reopen(other)
        self.assertEqual(again.held(), [])
        self.assertIsNone(again.digest(0))


class JournalTests(_CacheTestCase):
    """
    The journal of held blocks survives damage.
    """

    def journal(self) -> str:
        return os.path.join(self.directory(), "journal")

    def test_tornTrailingRecordIgnored(self) -> None:
        """
        Half a record at the end of the journal is ignored and cut off, so
        the records written after it stay aligned.
        """
        cached = self.open()
        self.fill(cached, [0, 1])
        cached.close()
        with open(self.journal(), "ab") as f:
            f.write(b"\x00\x00\x00\x05\x01\x00\x00")
        again = self.reopen()
        self.assertEqual(again.held(), [(0, 2)])
        self.assertEqual(os.path.getsize(self.journal()), 32)
        again.write(5, blockData(META, 5))
        again.close()
        self.assertEqual(self.reopen().held(), [(0, 2), (5, 1)])

    def test_badRecordIgnored(self) -> None:
        """
        A record failing its check (damaged, or forged without the key) is
        ignored, and the records after it still count.
        """
        cached = self.open()
        self.fill(cached, [0])
        cached.close()
        with open(self.journal(), "ab") as f:
            f.write(b"\x00\x00\x00\x05\x01\x00\x00\x00" + bytes(8))
        again = self.reopen()
        again.write(7, blockData(META, 7))
        again.close()
        self.assertEqual(self.reopen().held(), [(0, 1), (7, 1)])

    def test_compacted(self) -> None:
        """
        A journal grown long with blocks forgotten and written again is
        rewritten, holding one record per held block, when loaded.
        """
        cached = self.open()
        self.fill(cached, [0, 1, 2])
        state = cached._state
        assert state is not None
        for _ in range(600):
            state.forget(1)
            cached.write(1, blockData(META, 1))
        cached.close()
        self.assertGreater(os.path.getsize(self.journal()), 1200 * 16)
        again = self.reopen()
        self.assertEqual(again.held(), [(0, 3)])
        self.assertEqual(os.path.getsize(self.journal()), 3 * 16)
        again.write(4, blockData(META, 4))
        again.close()
        self.assertEqual(self.reopen().held(), [(0, 3), (4, 1)])
        self.assertVerified(self.reopen())


class VersionTests(_CacheTestCase):
    """
    One cached version per URL, found by version or as the newest.
    """

    def test_hasAnyVersion(self) -> None:
        """
        Whether some version of a URL is cached: once a block of it is
        stored, and not for another URL.
        """
        self.assertFalse(self.cache.hasAnyVersion(URL))
        cached = self.open()
        cached.setDigests(0, allDigests(META))
        self.assertFalse(self.cache.hasAnyVersion(URL))
        cached.write(3, blockData(META, 3))
        self.assertTrue(self.cache.hasAnyVersion(URL))
        self.assertFalse(self.cache.hasAnyVersion(URL + "x"))

    def test_findVersion(self) -> None:
        """
        C{find} with a version returns that version, with its blocks and
        digests; a version or URL not cached gives L{None}.
        """
        self.fill(self.open(), [1, 2])
        found = self.find(URL, META.version)
        assert found is not None
        self.assertEqual(found.meta, META)
        self.assertEqual(found.held(), [(1, 2)])
        self.assertEqual(found.digest(0), META.digest(blockData(META, 0)))
        self.assertIsNone(self.find(URL, "other"))
        self.assertIsNone(self.find(URL + "x", META.version))
        self.assertIsNone(self.find(URL + "x"))

    def test_findNewest(self) -> None:
        """
        C{find} without a version returns the cached version.
        """
        self.fill(self.open(), [1])
        found = self.find(URL)
        assert found is not None
        self.assertEqual(found.meta, META)
        self.assertEqual(found.read(1), blockData(META, 1))

    def test_findNewestOfSeveral(self) -> None:
        """
        If several versions of a URL are on disk (one could not be removed),
        C{find} without a version returns the one made last.
        """
        self.fill(self.open(), [1])
        older = FileMeta(URL, META.size, BLOCK, "sha256", "older")
        olderDirectory = self.directory(older)
        os.makedirs(olderDirectory)
        with open(os.path.join(self.directory(), "meta.json"), "rb") as f:
            content = json.loads(f.read())
        content["version"] = "older"
        with open(os.path.join(olderDirectory, "meta.json"), "w") as f:
            json.dump(content, f)
        made = os.stat(os.path.join(self.directory(), "meta.json")).st_mtime_ns
        os.utime(
            os.path.join(olderDirectory, "meta.json"), ns=(made - 10**9, made - 10**9)
        )
        found = self.find(URL)
        assert found is not None
        self.assertEqual(found.meta, META)
        os.utime(
            os.path.join(olderDirectory, "meta.json"), ns=(made + 10**9, made + 10**9)
        )
        found = self.find(URL)
        assert found is not None
        self.assertEqual(found.meta, older)

    def test_newVersionRemovesOld(self) -> None:
        """
        Opening a new version of a URL removes the directories of the other
        versions; other URLs are untouched.
        """
        self.fill(self.open(), [0, 1])
        otherUrl = FileMeta(URL + "2", META.size, BLOCK, "sha256", "1")
        self.fill(self.open(otherUrl), [0])
        new = FileMeta(URL, META.size + 7, BLOCK, "sha256", "new")
        newer = self.open(new)
        self.assertFalse(os.path.exists(self.directory(META)))
        self.fill(newer, [0])
        self.assertEqual(
            os.listdir(os.path.dirname(self.directory(new))), [hexName("new")]
        )
        self.assertIsNone(self.find(URL, META.version))
        found = self.find(URL)
        assert found is not None
        self.assertEqual(found.meta, new)
        self.assertIsNotNone(self.find(URL + "2", "1"))

    def test_oldVersionHandlesKeepWorking(self) -> None:
        """
        Handles on a version removed by a newer one keep reading the blocks
        they had until closed, and the old version is not handed out again.
        """
        old = self.open()
        self.fill(old, [0, 1])
        new = FileMeta(URL, META.size, BLOCK, "sha256", "new")
        self.fill(self.open(new), [0])
        self.assertEqual(old.read(1), blockData(META, 1))
        self.assertIsNone(self.cache.find(URL, META.version))
        found = self.cache.find(URL)
        assert found is not None
        self.addCleanup(found.close)
        self.assertEqual(found.meta, new)

    def test_handlesShareState(self) -> None:
        """
        Handles from C{open} and C{find} on the same version share it: a
        block written through one is held and readable through the other.
        """
        cached = self.open()
        found = self.cache.find(URL, META.version)
        assert found is not None
        self.addCleanup(found.close)
        self.fill(cached, [4])
        self.assertTrue(found.has(4))
        self.assertEqual(found.read(4), blockData(META, 4))
        newest = self.cache.find(URL)
        assert newest is not None
        self.addCleanup(newest.close)
        self.assertEqual(newest.held(), [(4, 1)])
        again = self.open()
        self.assertEqual(again.held(), [(4, 1)])

    def test_close(self) -> None:
        """
        Closing one handle leaves the others working; closing twice does
        nothing; a closed handle refuses to be used; once every handle is
        closed the file can be opened again from disk.
        """
        first = self.cache.open(META)
        second = self.cache.open(META)
        self.fill(first, [0])
        first.close()
        first.close()
        self.assertEqual(second.read(0), blockData(META, 0))
        self.assertRaises(ValueError, first.has, 0)
        self.assertRaises(ValueError, first.read, 0)
        second.close()
        self.assertEqual(self.cache._states, {})
        third = self.open()
        self.assertEqual(third.read(0), blockData(META, 0))


class BlockRunsTests(SynchronousTestCase):
    """
    L{BlockRuns}, the sets of blocks the cache and downloads keep.
    """

    @given(
        st.lists(
            st.tuples(st.booleans(), st.integers(0, 200), st.integers(0, 40)),
            max_size=60,
        )
    )
    def test_matchesReference(self, operations: list[tuple[bool, int, int]]) -> None:
        """
        After any additions of ranges and removals of blocks, the runs are
        the sorted, merged runs of exactly the blocks in a reference set,
        and membership, C{runAt} and C{count} agree with it.
        """
        runs = BlockRuns()
        reference: set[int] = set()
        for add, index, count in operations:
            if add:
                runs.add(index, count)
                reference.update(range(index, index + count))
            else:
                runs.discard(index)
                reference.discard(index)
        expected: list[tuple[int, int]] = []
        for index in sorted(reference):
            if expected and sum(expected[-1]) == index:
                expected[-1] = (expected[-1][0], expected[-1][1] + 1)
            else:
                expected.append((index, 1))
        self.assertEqual(runs.ranges(), expected)
        self.assertEqual(runs.count, len(reference))
        for index in range(250):
            self.assertEqual(index in runs, index in reference)
            run = runs.runAt(index)
            if run is not None:
                self.assertIn((run[0], run[1] - run[0]), expected)
