# -*- test-case-name: tests.unit.test_fakes -*-
"""
What the layers above need of the store.
"""

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from collections.abc import Sequence

    from p2pd.core.meta import FileMeta
    from p2pd.store.cachedfile import CachedFile


class IBlockCache(Interface):
    """
    The fetched blocks of files, by URL and version
    (L{p2pd.store.cache.BlockCache}).
    """

    limit = Attribute("CacheLimit: the bytes held on disk, and at most how many")
    memory = Attribute("MemoryBlocks: the blocks held in memory for serving")

    def open(meta: "FileMeta") -> "CachedFile":
        """
        The cached file for C{meta}, made empty if it is not cached yet;
        every other cached version of its URL is removed.

        @raise OSError: the cache cannot hold it.
        """

    def find(url: str, version: str = "") -> "CachedFile | None":
        """
        The cached file for C{url} at C{version} or, with C{""}, its newest
        cached version; L{None} if there is none.
        """

    def hasAnyVersion(url: str) -> bool:
        """
        Whether some version of C{url} may be cached, cheaply.
        """

    def remove(url: str) -> bool:
        """
        Remove every cached version of C{url}; handles still open on one
        hold nothing from now on. Whether there was anything to remove.
        """

    def recheck(url: str, version: str, blocks: "Sequence[int]") -> "list[int]":
        """
        Hash C{blocks} of a cached version again and drop those that no
        longer match their digests; the blocks dropped.
        """

    def purge() -> int:
        """
        Remove every cached version of every URL; how many URLs'
        directories (or pieces of debris) were removed.
        """
