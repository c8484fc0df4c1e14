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
  - L{p2pd.store.diskfailures}: what happens when the disk refuses writes.
"""

import os
import shutil
import time
from collections.abc import Callable

from twisted.logger import Logger
from zope.interface import implementer

from p2pd.core.meta import FileMeta
from p2pd.store.cachedfile import CachedFile, CachedState
from p2pd.store.cachelayout import directoryName, readMeta, removeDirectory
from p2pd.store.diskfailures import DiskFailures
from p2pd.store.interfaces import IBlockCache


@implementer(IBlockCache)
class BlockCache:
    """
    The cache of fetched, verified blocks, under C{root} (created, private
    to the user, if missing): one directory per file version, and only the
    newest opened version of each URL kept.

    @param now: the clock that times the pause after the disk refuses a
        write.
    """

    _log = Logger()

    def __init__(self, root: str, now: Callable[[], float] = time.monotonic) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        self._states: dict[tuple[str, str], CachedState] = {}
        self._disk = DiskFailures(self.root, now)

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
            removeDirectory(os.path.join(parent, name))
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
        state = CachedState(directory, meta, self._disk, new)
        self._states[(meta.url, meta.version)] = state
        return state

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
                removeDirectory(directory)

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
