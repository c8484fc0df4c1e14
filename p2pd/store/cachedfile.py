# -*- test-case-name: tests.unit.test_cache,tests.unit.test_cacheremoval -*-
"""
One cached file version: its blocks written and read back, verified.

The first read of a block after the cache is opened verifies it against its
digest and forgets it on a mismatch (the journal may name a block whose
bytes never reached the disk: L{p2pd.store.journal}). Blocks this process
wrote (verified before they were written) or has verified since are
trusted until the file's state is dropped: the page cache does not change
behind a running process, and hashing every read would halve warm
streaming speed. Held and verified blocks are kept as runs.

What it stores and holds is charged to the cache's limit
(L{p2pd.store.limit}) before it is written: a block that finds no room
raises L{CacheFull}, like a disk that refuses it, as does a block evicted
whose hole is not punched yet. Blocks read are kept in
the cache's memory (L{p2pd.store.memoryblocks}) for the next reader.
"""

import errno
import os
from collections.abc import Callable

from twisted.logger import Logger

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.store import fileio
from p2pd.store.cachelayout import identity, makeDirectory, openFile
from p2pd.store.digestpages import DigestPages
from p2pd.store.diskfailures import DiskFailures
from p2pd.store.freeing import Punches, free
from p2pd.store.journal import Journal
from p2pd.store.limit import (
    ALLOCATION,
    VERSION_OVERHEAD,
    Pin,
    VersionAccount,
    allocated,
)
from p2pd.store.memoryblocks import MemoryBlocks


class CacheFull(OSError):
    """
    The cache's limit has no room for a block now: what it holds is
    pinned, or its bytes are still being freed.
    """

    def __init__(self) -> None:
        super().__init__(errno.ENOSPC, "the disk cache has no room for it now")


class CachedState:
    """
    One cached file version's files and held blocks, shared by every
    L{CachedFile} handle on it.

    @param account: its charges in the cache's limit.
    @param memory: the cache's blocks in memory.
    """

    _log = Logger()

    def __init__(
        self,
        directory: str,
        meta: FileMeta,
        disk: DiskFailures,
        account: VersionAccount,
        memory: MemoryBlocks,
        new: bool = False,
    ) -> None:
        self.directory = directory
        self.meta = meta
        self.disk = disk
        self.account = account
        self.key = account.key
        self.memory = memory
        self.handles = 0
        self.blocks = meta.blocks
        self.held = BlockRuns()
        # Blocks verified by this process: read back without hashing.
        self.verified = BlockRuns()
        key = identity(meta)
        self.digests = DigestPages(meta, key, disk, account.room)
        self._journal = Journal(key)
        self._dataFd = -1
        # A new version's directory is made when its first block is stored,
        # not before: a player waits for that block.
        self.onDisk = not new
        if self.onDisk:
            self._openFiles()
        elif not self.blocks and disk.ready and account.room(VERSION_OVERHEAD):
            # Nothing to wait for: cached as it is, if the disk (and the
            # limit) takes it.
            try:
                self._makeOnDisk()
            except OSError as e:
                disk.refused(e)

    def _openFiles(self) -> None:
        try:
            self._dataFd = openFile(os.path.join(self.directory, "data"), os.O_RDWR)
            self.digests.open(os.path.join(self.directory, "digests"))
            self.held = self._journal.open(
                os.path.join(self.directory, "journal"), self.blocks
            )
        except BaseException:
            self.close()
            raise

    def _makeOnDisk(self) -> None:
        """
        Make the directory of a new version and write the digests known so
        far.
        """
        makeDirectory(self.directory, self.meta)
        self._openFiles()
        self.onDisk = True
        self.digests.flush()
        self.charge()

    @property
    def emptied(self) -> bool:
        """
        Whether eviction took every block this version held.
        """
        return self.onDisk and self.held.count == 0 and self.account.evicted

    def charge(self) -> None:
        """
        Charge the version's metadata files to the limit as they are now.
        """
        self.account.files(self._journal.size, self.digests.diskBytes)

    def reclaim(self) -> None:
        """
        Free the bytes of blocks the journal does not hold (written, or
        evicted, when the node was killed), so that the disk takes no more
        than what is charged.
        """
        size = os.fstat(self._dataFd).st_size
        start = 0
        for first, count in self.held.ranges():
            end = self.meta.blockStart(first)
            if end > start:
                self._free(start, end - start)
            start = self.meta.blockStart(first + count)
        if size > start:
            self._free(start, size - start)

    def _free(self, start: int, length: int) -> None:
        free(self._dataFd, start, length, self.meta.url)

    def close(self) -> None:
        fd, self._dataFd = self._dataFd, -1
        if fd >= 0:
            os.close(fd)
        self.digests.close()
        self._journal.close()

    def write(self, index: int, data: bytes) -> None:
        if not 0 <= index < self.blocks:
            raise ValueError(f"block {index} outside a file of {self.blocks}")
        if len(data) != self.meta.blockLength(index):
            raise ValueError(f"block {index} of {len(data)} bytes")
        if index in self.held:
            return
        if self.account.beingFreed(index):
            # Its hole, still to be punched, would take it.
            raise CacheFull()
        if self.digests.digest(index) is None:
            raise ValueError(f"block {index} has no digest to verify it against")
        self.disk.check()
        # The block, a journal unit, the digests not on disk yet, and a new
        # version's own files.
        need = allocated(len(data)) + ALLOCATION + self.digests.pendingBytes()
        if not self.onDisk:
            need += VERSION_OVERHEAD
        if not self.account.room(need, index):
            raise CacheFull()
        written = False
        try:
            if self.onDisk:
                self.digests.flush()
            else:
                self._makeOnDisk()
            fileio.writeAll(self._dataFd, data, self.meta.blockStart(index))
            written = True
            self._journal.append(index, True)
        except OSError as e:
            if written:
                self._free(self.meta.blockStart(index), len(data))
            self.disk.refused(e)
            raise
        self.disk.stored()
        self.held.add(index)
        self.verified.add(index)
        self.account.stored(index, len(data))
        self.charge()

    def read(self, index: int) -> bytes | None:
        if index not in self.held:
            return None
        self.account.read(index)
        data = self.memory.get(self.key, index)
        if data is not None:
            return data
        data = self._readDisk(index)
        if data is not None:
            self.memory.put(self.key, index, data)
        return data

    def _readDisk(self, index: int) -> bytes | None:
        length = self.meta.blockLength(index)
        verified = index in self.verified
        why = None
        try:
            data = fileio.readAll(self._dataFd, length, self.meta.blockStart(index))
            digest = None if verified else self.digests.digest(index)
        except OSError as e:
            why = str(e)
        else:
            if len(data) != length:
                why = "it is cut short"
            elif verified:
                return data
            elif digest is None:
                why = "its digest is lost"
            elif self.meta.digest(data) != digest:
                why = "it does not match its digest"
            else:
                self.verified.add(index)
                return data
        self._log.warn(
            "cached block {index} of {url} forgotten: {why}",
            index=index,
            url=self.meta.url,
            why=why,
        )
        self.forget(index)
        return None

    def recheck(self, index: int) -> bool:
        """
        Read block C{index} back from the disk and check it, even if this
        process verified it before; forgotten if it fails.
        """
        self.verified.discard(index)
        self.memory.discard(self.key, index, index + 1)
        return self.read(index) is not None

    def empty(self) -> None:
        """
        Hold nothing from now on: the version was removed from the disk.
        """
        self.held = BlockRuns()
        self.verified = BlockRuns()

    def forget(self, index: int) -> None:
        if index not in self.held:
            return
        self.memory.discard(self.key, index, index + 1)
        self.held.discard(index)
        self.verified.discard(index)
        self.account.forgotten(index, self.meta.blockLength(index))
        try:
            self._journal.append(index, False)
        except OSError as e:
            # Still held on disk: the next load will forget it again when
            # it fails verification.
            self._log.warn(
                "cannot journal the loss of block {index} of {url}: {why}",
                index=index,
                url=self.meta.url,
                why=str(e),
            )

    def drop(
        self, first: int, end: int, punches: Punches, freed: Callable[[], None]
    ) -> None:
        """
        Evict blocks C{first} to C{end - 1}: journaled as not held, then
        their bytes freed by C{punches}, which calls C{freed} then. Their
        charges are the limit's to take off.

        @raise OSError: the journal refused; they are still held.
        """
        end = min(end, self.blocks)
        indices = [i for i in range(first, end) if i in self.held]
        self.memory.discard(self.key, first, end)
        self._journal.forgetAll(indices)
        for index in indices:
            self.held.discard(index)
            self.verified.discard(index)
        self.account.evicted = True
        start = self.meta.blockStart(first)
        length = min(self.meta.size, self.meta.blockStart(end)) - start
        try:
            fd = os.dup(self._dataFd)
        except OSError as e:
            self._log.warn(
                "cannot free blocks of {url}: {why}", url=self.meta.url, why=str(e)
            )
            freed()
        else:
            punches.punch(fd, start, length, self.meta.url, freed)
        self._journal.compact(self.held)
        self.charge()


class CachedFile:
    """
    One version of one file in the cache: the origin's digests and the
    blocks fetched and verified so far.

    Every L{p2pd.store.cache.BlockCache.open} or C{find} returns a new
    handle; handles on the same version share their state (a block written
    through one is held for all) and each must be closed once, which calls
    C{release} with the state.

    Reads and writes are synchronous: they go to the page cache.

    @ivar meta: the file version.
    """

    def __init__(
        self, state: CachedState, release: Callable[[CachedState], None]
    ) -> None:
        self._state: CachedState | None = state
        self._release = release
        self.meta = state.meta
        self._pins: list[Pin] = []
        state.handles += 1

    def _live(self) -> CachedState:
        if self._state is None:
            raise ValueError("the cached file is closed")
        return self._state

    def has(self, index: int) -> bool:
        """
        Whether block C{index} is held.
        """
        return index in self._live().held

    def held(self) -> list[tuple[int, int]]:
        """
        The blocks held, as sorted, merged C{(first, count)} ranges.
        """
        return self._live().held.ranges()

    @property
    def heldCount(self) -> int:
        """
        How many blocks are held.
        """
        return self._live().held.count

    @property
    def emptied(self) -> bool:
        """
        Whether eviction took every block this version held.
        """
        return self._live().emptied

    @property
    def complete(self) -> bool:
        """
        Whether every block is held (an empty file always is).
        """
        state = self._live()
        return state.held.count == state.blocks

    def digest(self, index: int) -> bytes | None:
        """
        The origin's digest for block C{index}, if known.
        """
        return self._live().digests.digest(index)

    def setDigests(self, first: int, digests: bytes) -> None:
        """
        Keep the origin's digests (concatenated) of blocks from C{first}: on
        disk, or if the disk refuses them (or the version has no directory
        yet), in memory, up to C{digestpages.DIGEST_MEMORY} bytes of them.

        @raise ValueError: if they are not whole digests inside the file.
        """
        self._live().digests.set(first, digests)

    def write(self, index: int, data: bytes) -> None:
        """
        Store block C{index}, which the caller verified against
        C{digest(index)}. Writing a block already held does nothing.

        @raise ValueError: if the index or the length is wrong for the file,
            or the block's digest is not known.
        @raise OSError: if the disk refuses, or refused less than
            C{diskfailures.STORE_RETRY} seconds ago; the block is then not held.
        """
        self._live().write(index, data)

    def read(self, index: int) -> bytes | None:
        """
        Block C{index}, verified against its digest the first time this
        process reads it (a block it wrote is verified already); L{None} if
        it is not held. A block that fails verification (a torn write, a
        corrupt disk) is forgotten (not held any more) and L{None} is
        returned.
        """
        return self._live().read(index)

    def pin(self, pinned: Pin) -> None:
        """
        Until this handle is closed, never evict the blocks C{pinned(first,
        end)} says are pinned (blocks C{first} to C{end - 1}: any of them).
        """
        self._live().account.pin(pinned)
        self._pins.append(pinned)

    def recheck(self, index: int) -> bool:
        """
        Read block C{index} back from the disk and check it against its
        digest, even if this process has verified it before (for
        C{p2pd cache verify}); a block that fails is forgotten. Whether it
        is held, and good.
        """
        return self._live().recheck(index)

    def close(self) -> None:
        """
        Done with this handle (and its pins); closing it again does nothing.
        """
        state, self._state = self._state, None
        if state is not None:
            for pinned in self._pins:
                state.account.unpin(pinned)
            self._pins = []
            self._release(state)
