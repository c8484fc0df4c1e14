# -*- test-case-name: tests.unit.test_cache,tests.unit.test_cacheremoval,tests.integration.test_cache -*-
"""
The node's cache of fetched, verified blocks: which file versions it holds,
one per URL.

Its other modules:

  - L{p2pd.store.cachelayout}: where a version lives on disk, its
    C{meta.json}, and how its directory is made and removed;
  - L{p2pd.store.cachedfile}: one version's blocks, written and read back
    verified (L{CachedFile});
  - L{p2pd.store.journal}: which blocks are held, surviving crashes;
  - L{p2pd.store.digestpages}: the origin's digests, in bounded memory;
  - L{p2pd.store.diskfailures}: what happens when the disk refuses writes;
  - L{p2pd.store.limit}: the bytes it holds, and eviction under C{-C};
  - L{p2pd.store.freeing}: evicted blocks' bytes freed, in a thread once
    the node runs (L{BlockCache.punches});
  - L{p2pd.store.memoryblocks}: blocks kept in memory under C{-M}.

With a limit, the cache reads every version's journal when the node
starts (L{BlockCache.enforceLimit}), frees what no journal holds (a
crash's leftovers), and evicts down to the limit (which may have been
lowered) before it is used.
"""

import os
import shutil
import time
from collections.abc import Callable, Sequence

from twisted.logger import Logger
from zope.interface import implementer

from p2pd.core.meta import FileMeta
from p2pd.store.cachedfile import CachedFile, CachedState
from p2pd.store.cachelayout import (
    directoryName,
    lastUsed,
    markUsed,
    readMeta,
    removeDirectory,
)
from p2pd.store.diskfailures import DiskFailures
from p2pd.store.eviction import SEGMENT_BLOCKS, Segment
from p2pd.store.freeing import Punches, dropClosed
from p2pd.store.interfaces import IBlockCache
from p2pd.store.limit import CacheLimit
from p2pd.store.memoryblocks import MemoryBlocks


@implementer(IBlockCache)
class BlockCache:
    """
    The cache of fetched, verified blocks, under C{root} (created, private
    to the user, if missing): one directory per file version, and only the
    newest opened version of each URL kept.

    @param now: the clock that times the pause after the disk refuses a
        write.
    @param capacity: the most bytes it keeps on disk (L{None}: no limit).
    @param memory: the most bytes of blocks it keeps in memory.
    @ivar punches: where evicted blocks' holes are punched: at once until
        started, in a thread while the node runs.
    """

    _log = Logger()

    def __init__(
        self,
        root: str,
        now: Callable[[], float] = time.monotonic,
        capacity: int | None = None,
        memory: int = 0,
    ) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._states: dict[tuple[str, str], CachedState] = {}
        self._disk = DiskFailures(self.root, now)
        self.punches = Punches()
        self.limit = CacheLimit(capacity, self._drop, self._emptied)
        self.memory = MemoryBlocks(memory)
        # Where each version charged to the limit lives, by key.
        self._onDisk: dict[str, tuple[str, FileMeta]] = {}

    def _key(self, directory: str) -> str:
        """
        A version's key in the limit and the memory: its directory below
        the root.
        """
        return os.path.relpath(directory, self.root)

    def _urlDirectory(self, url: str) -> str:
        return os.path.join(self.root, directoryName(url))

    def _directory(self, url: str, version: str) -> str:
        return os.path.join(self._urlDirectory(url), directoryName(version))

    def open(self, meta: FileMeta) -> CachedFile:
        """
        The cached file for C{meta}, made empty if it is not cached yet (or
        was cached with other metadata). Every other cached version of
        C{meta.url} is removed.
        """
        key = (meta.url, meta.version)
        directory = self._directory(*key)
        state = self._states.get(key)
        if state is not None and state.meta != meta:
            self._retire(state)
            state = None
        othersOnDisk = True
        if state is None:
            new = readMeta(directory) != meta
            if new:
                othersOnDisk = os.path.isdir(self._urlDirectory(meta.url))
            state = self._load(directory, meta, new)
        self._removeOthers(meta.url, directory, othersOnDisk)
        if state.onDisk:
            markUsed(directory, time.time())
        return CachedFile(state, self._release)

    def hasAnyVersion(self, url: str) -> bool:
        """
        Whether some version of C{url} may be cached (one C{stat}).
        """
        return os.path.isdir(self._urlDirectory(url))

    def find(self, url: str, version: str = "") -> CachedFile | None:
        """
        The cached file for C{url} at C{version} or, with C{""}, its newest
        cached version; L{None} if there is none.
        """
        if version:
            state = self._states.get((url, version))
            if state is not None:
                return CachedFile(state, self._release)
            directory = self._directory(url, version)
            meta = readMeta(directory)
        else:
            directory, meta = self._newest(url)
        if meta is None or meta.url != url or (version and meta.version != version):
            return None
        state = self._states.get((url, meta.version))
        if state is None:
            try:
                state = self._load(directory, meta)
            except OSError as e:
                self._log.warn("cannot open cached {url}: {why}", url=url, why=str(e))
                return None
        return CachedFile(state, self._release)

    def remove(self, url: str) -> bool:
        """
        Remove every cached version of C{url}; handles still open on one
        hold nothing from now on. Whether there was anything to remove.
        """
        found = False
        for (stateUrl, _), state in list(self._states.items()):
            if stateUrl == url:
                self._retire(state)
                state.empty()
                found = True
        return self._removeTree(self._urlDirectory(url)) or found

    def recheck(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        """
        Hash C{blocks} of a cached version again and drop those that no
        longer match their digests (the disk may have changed them); the
        blocks dropped.
        """
        cached = self.find(url, version)
        if cached is None:
            return []
        try:
            return [index for index in blocks if not cached.recheck(index)]
        finally:
            cached.close()

    def purge(self) -> int:
        """
        Remove every cached version of every URL, as L{remove} does; how
        many URLs' directories (or pieces of debris) were removed.
        """
        for state in list(self._states.values()):
            self._retire(state)
            state.empty()
        return sum(
            self._removeTree(os.path.join(self.root, name))
            for name in sorted(os.listdir(self.root))
        )

    def _removeTree(self, parent: str) -> bool:
        """
        Remove a URL's directory, each version's C{meta.json} first; whether
        there was one.
        """
        try:
            names = os.listdir(parent)
        except NotADirectoryError:
            os.unlink(parent)
            return True
        except FileNotFoundError:
            return False
        for name in names:
            directory = os.path.join(parent, name)
            removeDirectory(directory)
            self._forget(self._key(directory))
        shutil.rmtree(parent, ignore_errors=True)
        return True

    def _newest(self, url: str) -> tuple[str, FileMeta | None]:
        parent = self._urlDirectory(url)
        try:
            names = os.listdir(parent)
        except OSError:
            return "", None
        found: list[tuple[int, str, str, FileMeta]] = []
        for name in names:
            directory = os.path.join(parent, name)
            meta = readMeta(directory)
            if meta is None or meta.url != url or directoryName(meta.version) != name:
                continue
            try:
                made = os.stat(os.path.join(directory, "meta.json")).st_mtime_ns
            except OSError:
                continue
            found.append((made, name, directory, meta))
        if not found:
            return "", None
        _, _, directory, meta = max(found, key=lambda item: item[:2])
        return directory, meta

    def _load(self, directory: str, meta: FileMeta, new: bool = False) -> CachedState:
        key = self._key(directory)
        if new:
            # Whatever was there under this key is replaced.
            self._forget(key)
        charged = key in self._onDisk
        account = self.limit.account(key, meta.blocks)
        state = CachedState(directory, meta, self._disk, account, self.memory, new)
        self._states[(meta.url, meta.version)] = state
        if not charged and state.onDisk:
            # Found on disk: charged as its journal says, and nothing more
            # taking space.
            self._onDisk[key] = (directory, meta)
            if self.limit.capacity is not None:
                state.reclaim()
            for first, count in state.held.ranges():
                for index in range(first, first + count):
                    account.stored(index, meta.blockLength(index))
            state.charge()
        elif not state.onDisk:
            self._onDisk[key] = (directory, meta)
        return state

    def enforceLimit(self) -> None:
        """
        Charge every version on disk, the least recently used first, remove
        debris, free what no journal holds, and evict down to the limit
        (nothing without one). Once, with the cache directory locked (the
        cache's files are changed), before the cache is used.
        """
        if self.limit.capacity is None:
            return
        found: list[tuple[float, str, FileMeta]] = []
        for parent in os.listdir(self.root):
            parentPath = os.path.join(self.root, parent)
            if not os.path.isdir(parentPath):
                continue
            for name in os.listdir(parentPath):
                directory = os.path.join(parentPath, name)
                meta = readMeta(directory)
                if meta is None or self._key(directory) != self._key(
                    self._directory(meta.url, meta.version)
                ):
                    removeDirectory(directory)
                    continue
                found.append((lastUsed(directory), directory, meta))
        for _, directory, meta in sorted(found, key=lambda item: item[:2]):
            try:
                state = self._load(directory, meta)
            except OSError as e:
                self._log.warn(
                    "cannot read cached {url}: {why}", url=meta.url, why=str(e)
                )
                continue
            self._retire(state)
            state.close()
        if not self.limit.makeRoom(0):
            self._log.warn("the disk cache holds more than its limit, all of it pinned")
        self._log.info(
            "disk cache {root}: {used} bytes in {versions} files, limit {limit}",
            root=self.root,
            used=self.limit.used,
            versions=len(self._onDisk),
            limit=self.limit.capacity,
        )

    def _drop(self, segment: Segment, freed: Callable[[], None]) -> bool:
        """
        Evict a segment's blocks, journaled as gone before their bytes are
        freed (then C{freed} is called); whether it could.
        """
        key, number = segment
        first = number * SEGMENT_BLOCKS
        where = self._onDisk.get(key)
        if where is None:
            freed()
            return True
        directory, meta = where
        end = min(first + SEGMENT_BLOCKS, meta.blocks)
        try:
            state = self._states.get((meta.url, meta.version))
            if state is not None and state.directory == directory:
                state.drop(first, end, self.punches, freed)
            else:
                self.memory.discard(key, first, end)
                size = dropClosed(directory, meta, first, end, self.punches, freed)
                account = self.limit.account(key, meta.blocks)
                account.files(size, account.digestsBytes)
        except OSError as e:
            self._log.warn(
                "cannot evict blocks {first}-{last} of {url}: {why}",
                first=first,
                last=end - 1,
                url=meta.url,
                why=str(e),
            )
            return False
        return True

    def _emptied(self, key: str) -> None:
        """
        Every block of version C{key} is evicted: remove it, unless open.
        """
        directory, meta = self._onDisk[key]
        state = self._states.get((meta.url, meta.version))
        if state is not None and state.directory == directory:
            return
        self._removeVersion(directory)

    def _removeVersion(self, directory: str) -> None:
        """
        Remove a version's directory (its URL's too, if then empty), and
        all it is charged.
        """
        removeDirectory(directory)
        try:
            os.rmdir(os.path.dirname(directory))
        except OSError:
            pass
        self._forget(self._key(directory))

    def _forget(self, key: str) -> None:
        """
        Charge nothing more for version C{key}, nor keep its blocks.
        """
        self._onDisk.pop(key, None)
        self.limit.remove(key)
        self.memory.discardVersion(key)

    def _removeOthers(self, url: str, keep: str, onDisk: bool) -> None:
        """
        Forget every version of C{url} but the one in C{keep}, and with
        C{onDisk}, remove their directories.
        """
        for (stateUrl, _), state in list(self._states.items()):
            if stateUrl == url and state.directory != keep:
                self._retire(state)
        if not onDisk:
            return
        parent = self._urlDirectory(url)
        try:
            names = os.listdir(parent)
        except OSError:
            return
        for name in names:
            directory = os.path.join(parent, name)
            if directory != keep:
                self._removeVersion(directory)

    def _retire(self, state: CachedState) -> None:
        """
        Forget C{state}: its handles keep working until closed, but it is
        not handed out again.
        """
        key = (state.meta.url, state.meta.version)
        if self._states.get(key) is state:
            del self._states[key]

    def _release(self, state: CachedState) -> None:
        state.handles -= 1
        if state.handles == 0:
            self._retire(state)
            state.close()
            if not state.onDisk:
                # Nothing of it was stored: nothing to keep accounts of.
                self._forget(state.key)
            elif self.limit.capacity is not None and state.emptied:
                self._removeVersion(state.directory)
            else:
                markUsed(state.directory, time.time())
