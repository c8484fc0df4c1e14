"""
Tests for what L{p2pd.store.cache.BlockCache} removes, and how it checks a
held block again: for C{p2pd cache rm}, C{purge} and C{verify}.
"""

import os

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.meta import FileMeta
from p2pd.store.cache import BlockCache
from p2pd.store.cachedfile import CachedFile
from p2pd.store.cachelayout import directoryName
from tests.unit.test_cache import BLOCK, META, URL, allDigests, blockData

OTHER = FileMeta(
    "spp://origin.example:1111/other.mkv", 3 * BLOCK, BLOCK, "sha256", "v9"
)


class RemovalTests(SynchronousTestCase):
    """
    L{BlockCache.remove}, L{BlockCache.purge} and L{CachedFile.recheck}.
    """

    def setUp(self) -> None:
        self.root = os.path.abspath(self.mktemp())
        self.cache = BlockCache(self.root)

    def fill(self, meta: FileMeta, indices: list[int]) -> CachedFile:
        """
        Cache blocks C{indices} of C{meta}; the handle is closed after the
        test.
        """
        cached = self.cache.open(meta)
        self.addCleanup(cached.close)
        cached.setDigests(0, allDigests(meta))
        for index in indices:
            cached.write(index, blockData(meta, index))
        return cached

    def test_remove(self) -> None:
        """
        Removing a URL removes its directory; a new cache on the directory
        finds nothing of it, and other URLs stay.
        """
        self.fill(META, [0, 1]).close()
        self.fill(OTHER, [0]).close()
        self.assertTrue(self.cache.remove(URL))
        self.assertFalse(os.path.exists(os.path.join(self.root, directoryName(URL))))
        self.assertFalse(self.cache.hasAnyVersion(URL))
        self.assertIsNone(BlockCache(self.root).find(URL))
        other = BlockCache(self.root).find(OTHER.url)
        assert other is not None
        self.addCleanup(other.close)
        self.assertEqual(other.held(), [(0, 1)])

    def test_removeOpen(self) -> None:
        """
        A handle still open on a removed version holds nothing any more, so
        nothing of it is read or served.
        """
        cached = self.fill(META, [0, 1])
        self.assertTrue(self.cache.remove(URL))
        self.assertEqual(cached.held(), [])
        self.assertFalse(cached.has(0))
        self.assertIsNone(cached.read(0))
        self.assertIsNone(self.cache.find(URL))

    def test_removeUnknown(self) -> None:
        """
        Removing a URL that is not cached says so and changes nothing.
        """
        self.fill(META, [0])
        self.assertFalse(self.cache.remove(OTHER.url))
        self.assertTrue(self.cache.hasAnyVersion(URL))

    def test_purge(self) -> None:
        """
        Purging removes every URL and any debris, and leaves the cache
        usable.
        """
        cached = self.fill(META, [0])
        self.fill(OTHER, [1])
        with open(os.path.join(self.root, "stray"), "w") as f:
            f.write("x")
        self.assertEqual(self.cache.purge(), 3)
        self.assertEqual(os.listdir(self.root), [])
        self.assertEqual(cached.held(), [])
        self.assertEqual(self.fill(META, [2]).held(), [(2, 1)])
        self.assertEqual(self.cache.purge(), 1)
        self.assertEqual(self.cache.purge(), 0)

    def test_recheck(self) -> None:
        """
        Rechecking reads a block back from the disk even though this
        process wrote it (and so trusts it): a good one stays, one changed
        on disk is forgotten, with a log line.
        """
        cached = self.fill(META, [0, 1])
        self.assertTrue(cached.recheck(0))
        path = os.path.join(
            self.root, directoryName(URL), directoryName(META.version), "data"
        )
        with open(path, "r+b") as f:
            f.seek(BLOCK)
            f.write(bytes(b ^ 0xFF for b in blockData(META, 1)[:8]))
        with capturedLogs() as events:
            self.assertFalse(cached.recheck(1))
        self.assertEqual([e["why"] for e in events], ["it does not match its digest"])
        self.assertEqual(cached.held(), [(0, 1)])
        self.assertFalse(cached.recheck(5))
        again = BlockCache(self.root).find(URL)
        assert again is not None
        self.addCleanup(again.close)
        self.assertEqual(again.held(), [(0, 1)])
