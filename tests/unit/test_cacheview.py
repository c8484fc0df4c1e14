"""
Tests for L{p2pd.store.cacheview}: what a cache directory holds, read
without changing it.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.meta import FileMeta
from p2pd.store import cachelayout
from p2pd.store.cache import BlockCache
from p2pd.store.cachelayout import directoryName
from p2pd.store.cacheview import Damaged, Version, badBlocks, versions
from p2pd.store.journal import RECORD_SIZE
from tests.unit.test_cache import BLOCK, META, URL, allDigests, blockData

OTHER = FileMeta(
    "spp://origin.example:1111/other.mkv", 3 * BLOCK, BLOCK, "sha256", "v9"
)


def snapshot(root: str) -> dict[str, tuple[int, int]]:
    """
    Every file under C{root} with its size and modification time.
    """
    found = {}
    for directory, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(directory, name))
            found[os.path.join(directory, name)] = (st.st_size, st.st_mtime_ns)
    return found


class CacheViewTests(SynchronousTestCase):
    """
    L{versions} and L{badBlocks} on a cache filled by a L{BlockCache}.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.cache = BlockCache(self.root)

    def fill(self, meta: FileMeta, indices: list[int]) -> str:
        """
        Cache blocks C{indices} of C{meta}; returns the version's directory.
        """
        cached = self.cache.open(meta)
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(meta))
        for index in indices:
            cached.write(index, blockData(meta, index))
        return os.path.join(
            self.root, directoryName(meta.url), directoryName(meta.version)
        )

    def only(self) -> Version:
        [found] = list(versions(self.root))
        assert isinstance(found, Version), found
        return found

    def test_empty(self) -> None:
        """
        An empty cache holds nothing.
        """
        self.assertEqual(list(versions(self.root)), [])

    def test_versions(self) -> None:
        """
        Each version is found with its metadata, the blocks held, their
        bytes (the short last block counted as it is) and its last use.
        """
        directory = self.fill(META, [0, 1, 2, 10])
        self.fill(OTHER, [2])
        cachelayout.markUsed(directory, 1_700_000_000.0)
        found = {v.meta.url: v for v in versions(self.root) if isinstance(v, Version)}
        self.assertEqual(sorted(found), sorted([URL, OTHER.url]))
        movie = found[URL]
        self.assertEqual(movie.meta, META)
        self.assertEqual(movie.held.ranges(), [(0, 3), (10, 1)])
        self.assertEqual(movie.heldBlocks, 4)
        self.assertEqual(movie.heldBytes, 3 * BLOCK + 500)
        self.assertEqual(movie.lastUsed, 1_700_000_000.0)
        self.assertGreaterEqual(movie.diskBytes, 4 * BLOCK)
        self.assertEqual(found[OTHER.url].heldBytes, BLOCK)

    def test_readOnly(self) -> None:
        """
        Reading a cache changes no file, not even a journal with a torn
        record, which a node would cut off.
        """
        directory = self.fill(META, [0, 1])
        with open(os.path.join(directory, "journal"), "ab") as f:
            f.write(b"\x00" * (RECORD_SIZE // 2))
        before = snapshot(self.root)
        version = self.only()
        self.assertEqual(version.held.ranges(), [(0, 2)])
        self.assertEqual(list(badBlocks(version)), [])
        self.assertEqual(snapshot(self.root), before)

    def test_damaged(self) -> None:
        """
        A stray file, a version without valid metadata, and metadata under
        another file's name are each reported, not raised.
        """
        directory = self.fill(META, [0])
        with open(os.path.join(self.root, "stray"), "w") as f:
            f.write("x")
        debris = os.path.join(os.path.dirname(directory), "f" * 64)
        os.mkdir(debris)
        with open(os.path.join(debris, "meta.json"), "w") as f:
            f.write("{not json")
        moved = os.path.join(self.root, "e" * 64)
        os.mkdir(moved)
        os.rename(directory, os.path.join(moved, os.path.basename(directory)))
        found = list(versions(self.root))
        self.assertEqual(len(found), 3)
        self.assertTrue(all(isinstance(item, Damaged) for item in found), found)
        reasons = sorted(item.reason for item in found if isinstance(item, Damaged))
        self.assertEqual(
            reasons,
            [
                f"its meta.json names another file ({URL})",
                "no valid meta.json (debris of a crash?)",
                "not a cached file's directory",
            ],
        )

    def test_missingJournal(self) -> None:
        """
        A version whose journal is gone holds nothing.
        """
        directory = self.fill(META, [0, 1])
        os.unlink(os.path.join(directory, "journal"))
        self.assertEqual(self.only().heldBlocks, 0)

    def test_badBlocks(self) -> None:
        """
        A held block whose bytes changed, one cut short, and one whose
        digest record is damaged are each found, with why; good ones are
        not.
        """
        directory = self.fill(META, list(range(META.blocks)))
        with open(os.path.join(directory, "data"), "r+b") as f:
            f.seek(3 * BLOCK + 7)
            f.write(b"\xff" if blockData(META, 3)[7] != 0xFF else b"\x00")
        record = META.digestSize + 8
        with open(os.path.join(directory, "digests"), "r+b") as f:
            f.seek(5 * record)
            f.write(b"\x00" * record)
        os.truncate(os.path.join(directory, "data"), META.size - 100)
        self.assertEqual(
            list(badBlocks(self.only())),
            [
                (3, "it does not match its digest"),
                (5, "its digest is lost"),
                (10, "it is cut short"),
            ],
        )

    def test_progress(self) -> None:
        """
        L{badBlocks} tells of every held block it checks, good or bad, by
        its length.
        """
        directory = self.fill(META, [0, 1, 10])
        os.truncate(os.path.join(directory, "data"), BLOCK + 10)
        lengths: list[int] = []
        bad = list(badBlocks(self.only(), lengths.append))
        self.assertEqual([index for index, _ in bad], [1, 10])
        self.assertEqual(lengths, [BLOCK, BLOCK, 500])

    def test_missingFiles(self) -> None:
        """
        A version whose data and digests files are gone has every held
        block bad, and no error.
        """
        directory = self.fill(META, [0, 1])
        os.unlink(os.path.join(directory, "data"))
        os.unlink(os.path.join(directory, "digests"))
        self.assertEqual(
            list(badBlocks(self.only())),
            [(0, "its digest is lost"), (1, "its digest is lost")],
        )

    def test_unreadableRoot(self) -> None:
        """
        A block directory that is not there raises L{OSError}.
        """
        self.assertRaises(OSError, list, versions(os.path.join(self.root, "none")))
