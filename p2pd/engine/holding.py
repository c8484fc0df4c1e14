# -*- test-case-name: tests.unit.test_download,tests.unit.test_disk -*-
"""
The blocks a download holds: verified blocks in its store, the recent ones
in memory, and who hears of each block stored.

When the store refuses a block (a full or failing disk), the stream goes on
from memory: the download then asks only for the few blocks just ahead of
its readers (L{MEMORY_BYTES} each), keeps them (and any it asked for before,
up to L{scheduling.READAHEAD_BYTES} ahead) until read, and asks for nothing
when no reader wants anything, until the store takes a block again. Memory
follows what readers ask for, never the size the origin announces.

The store's limit never evicts what readers read now or soon: the block of
each reader and L{PIN_AHEAD_BYTES} after it (L{Holding.pinned}).
"""

from collections.abc import Callable, Sequence
from typing import Protocol

from p2pd.core.meta import FileMeta
from p2pd.engine import scheduling
from p2pd.engine.memory import RecentBlocks
from p2pd.engine.reading import Reader

# The recent blocks a download keeps in memory (per reader while the store
# refuses blocks).
MEMORY_BYTES = 4 * 1024 * 1024
# What the cache never evicts ahead of each reader: its own block and the
# blocks of this many bytes after it.
PIN_AHEAD_BYTES = 2 * 1024 * 1024


class IBlockStore(Protocol):
    """
    Where verified blocks and the origin's digests are kept (a cached file).
    C{write} raises L{OSError} when the disk refuses the block; C{digest}
    may forget a digest it was given (and not yet put on disk).
    """

    def has(self, index: int) -> bool: ...
    def read(self, index: int) -> bytes | None: ...
    def write(self, index: int, data: bytes) -> None: ...
    def digest(self, index: int) -> bytes | None: ...
    def setDigests(self, first: int, digests: bytes) -> None: ...
    def held(self) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


class Holding:
    """
    The part of L{p2pd.engine.download.Download} that keeps its blocks: in
    its store, and recent ones in memory. The download's C{__init__} sets
    the state named here.
    """

    meta: FileMeta
    store: IBlockStore
    readers: set[Reader]
    _recent: RecentBlocks
    _recentBlocks: int
    # Whether the store refused the last block it was given.
    _unstored: bool
    _wants: scheduling.Wants
    _watchers: list[Callable[[Sequence[tuple[int, int]]], None]]
    # Whether the download is closed (its store with it).
    _closed: bool

    def _have(self, index: int) -> bool:
        """
        Whether block C{index} is here: stored, or in memory.
        """
        return index in self._recent or self.store.has(index)

    def blockData(self, index: int) -> bytes | None:
        """
        A verified block: from the recent blocks in memory, else from the
        store (which checks it against its digest if this process has not).
        """
        if self._closed:
            return None
        data = self._recent.recall(index)
        if data is not None:
            return data
        if not self.store.has(index):
            return None
        data = self.store.read(index)
        if data is not None:
            self._remember(index, data)
        return data

    def _remember(self, index: int, data: bytes) -> None:
        """
        Keep block C{index} in memory: a few MiB, per reader while the store
        refuses blocks.
        """
        limit = self._recentBlocks
        if self._unstored:
            limit *= max(1, len(self.readers))
        self._recent.keep(index, data, limit, self._wants.kept, self.store.has)

    def pinned(self, first: int, end: int) -> bool:
        """
        Whether a reader reads one of blocks C{first} to C{end - 1}, or will
        within L{PIN_AHEAD_BYTES}: the store must not evict them.
        """
        ahead = PIN_AHEAD_BYTES // self.meta.blockSize
        for reader in self.readers:
            block = self.meta.blockAt(reader.position)
            if block < end and first <= block + ahead:
                return True
        return False

    @property
    def complete(self) -> bool:
        held = self.store.held()
        return held == [(0, self.meta.blocks)] or self.meta.blocks == 0

    # -- announcements to peers

    def watch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)
