# -*- test-case-name: tests.unit.test_node -*-
"""
Files this node serves to other nodes over SPP: its published files (as the
authority) and what it has cached (as a peer).
"""

import os
import resource
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, BinaryIO

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.peers import Peer
from p2pd.engine.interfaces import IServedFile
from p2pd.engine.tracker import Tracker
from p2pd.store.digests import DigestIndex
from p2pd.store.hashing import FileChanged
from p2pd.store.published import NotPublished, PublishedFile

if TYPE_CHECKING:
    from p2pd.engine.download import Download
    from p2pd.store.cachedfile import CachedFile


class Counters:
    """
    What this node has served, for the status page and the benchmarks.
    """

    def __init__(self) -> None:
        self.blocksServed = 0
        self.bytesServed = 0
        self.bytesByFile: dict[str, int] = {}

    def served(self, name: str, length: int) -> None:
        self.blocksServed += 1
        self.bytesServed += length
        self.bytesByFile[name] = self.bytesByFile.get(name, 0) + length


# What RLIMIT_NOFILE is taken to be when it is unlimited or huge: the caps
# derived from it stay sane.
MAX_DESCRIPTORS = 65536
# The share of the descriptor limit that files served to peers may hold.
SERVED_FILES_SHARE = 8
# Descriptors a cached version holds open (data, digests, journal).
CACHED_FILE_DESCRIPTORS = 3


def descriptorLimit() -> int:
    """
    The descriptors this process may hold (its soft C{RLIMIT_NOFILE}), at
    most L{MAX_DESCRIPTORS}: every node-wide cap on files and connections
    is a share of it.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_DESCRIPTORS
    return min(soft, MAX_DESCRIPTORS)


class _Held:
    """
    One file held for peers: its handles and, once read, its descriptor.
    """

    def __init__(self, cost: int) -> None:
        self.cost = cost
        self.handles = 0
        self.file: BinaryIO | None = None


class ServedFiles:
    """
    The files this node serves to peers, each held once however many
    handles (on one connection or many) have it open, under a node-wide
    budget of descriptors: an Open past it is answered BUSY, so no peer can
    take the descriptors the node needs for everyone else.

    @ivar budget: descriptors files served to peers may hold, by default
        1/L{SERVED_FILES_SHARE} of L{descriptorLimit}.
    @ivar used: descriptors they hold now.
    """

    def __init__(self, budget: int | None = None) -> None:
        if budget is None:
            budget = descriptorLimit() // SERVED_FILES_SHARE
        self.budget = budget
        self.used = 0
        self._held: dict[Hashable, _Held] = {}

    def hold(self, key: Hashable, cost: int) -> _Held:
        """
        One more handle of the file C{key}, which holds C{cost} descriptors.

        @raise SPPError: BUSY if the file is not held yet and its
            descriptors do not fit in the budget.
        """
        held = self._held.get(key)
        if held is None:
            if self.used + cost > self.budget:
                raise SPPError(ErrorCode.BUSY, "too many open files")
            held = self._held[key] = _Held(cost)
            self.used += cost
        held.handles += 1
        return held

    def release(self, key: Hashable) -> None:
        """
        A handle of C{key} is closed; the last one closes the file.
        """
        held = self._held[key]
        held.handles -= 1
        if held.handles == 0:
            del self._held[key]
            self.used -= held.cost
            if held.file is not None:
                held.file.close()


def _checkRange(first: int, count: int, blocks: int) -> None:
    if first < 0 or count < 1 or first + count > blocks:
        raise SPPError(
            ErrorCode.BAD_REQUEST, f"blocks {first}+{count} past the end ({blocks})"
        )


def _wireError(reason: Failure) -> Failure:
    """
    The store's errors as the SPP errors a peer is answered with (the range
    was checked before asking the store).
    """
    if reason.check(FileChanged):
        return Failure(SPPError(ErrorCode.CHANGED, str(reason.value)))
    return reason


@implementer(IServedFile)
class PublishedServedFile:
    """
    A published file, served by its origin: every block, the digests, and
    the peer list.
    """

    authoritative = True

    def __init__(
        self,
        published: PublishedFile,
        digestIndex: DigestIndex,
        tracker: Tracker,
        counters: Counters,
        files: ServedFiles,
    ) -> None:
        self.published = published
        self.digestIndex = digestIndex
        self.tracker = tracker
        self.counters = counters
        self.files = files
        self._held: _Held | None = files.hold(published, 1)
        self.size = published.size
        self.blockSize = digestIndex.blockSize
        self.digestName = digestIndex.digestName
        self.version = published.version
        self.blocks = -(-self.size // self.blockSize)
        self._recorded: tuple[str, int] | None = None

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        if (first, count) == (self.blocks, 0):
            return defer.succeed(b"")  # from the end: an empty file's digests
        _checkRange(first, count, self.blocks)
        d = self.digestIndex.digests(self.published, first, count)
        return d.addErrback(_wireError)

    def readBlock(self, index: int) -> "defer.Deferred[bytes]":
        _checkRange(index, 1, self.blocks)
        held = self._held
        assert held is not None, "read after close"
        if held.file is None:
            # Opened by the first read of any handle, then shared.
            try:
                held.file = self.published.open()
            except NotPublished:
                raise SPPError(ErrorCode.CHANGED, "file changed") from None
            except OSError as e:
                raise SPPError(
                    ErrorCode.NOT_FOUND, e.strerror or "cannot open"
                ) from None
        fd = held.file.fileno()
        st = os.fstat(fd)
        if (st.st_size, st.st_mtime_ns) != (
            self.published.size,
            self.published.mtimeNs,
        ):
            raise SPPError(ErrorCode.CHANGED, "file changed")
        start = index * self.blockSize
        data = os.pread(fd, min(self.blockSize, self.size - start), start)
        self.counters.served(self.published.name, len(data))
        return defer.succeed(data)

    def held(self) -> Sequence[tuple[int, int]]:
        return [(0, self.blocks)] if self.blocks else []

    def watch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        pass

    def peers(self, host: str, port: int) -> Sequence[Peer]:
        if port and self._recorded is None:
            self._recorded = (host, port)
            self.tracker.record(self.published.name, host, port)
        return self.tracker.peersFor(self.published.name, host, port)

    def close(self) -> None:
        if self._recorded is not None:
            self.tracker.forget(self.published.name, *self._recorded)
            self._recorded = None
        if self._held is not None:
            self._held = None
            self.files.release(self.published)


@implementer(IServedFile)
class CachedServedFile:
    """
    Blocks this node has fetched and verified, served to a peer: from
    C{cached}, a handle of its own on the cache closed with it, and while
    C{download} runs, the blocks it gains announced as they come.
    """

    authoritative = False

    def __init__(
        self,
        cached: "CachedFile",
        download: "Download | None",
        counters: Counters,
        files: ServedFiles,
    ) -> None:
        meta = cached.meta
        self._key: Hashable = ("cached", meta.url, meta.version)
        try:
            files.hold(self._key, CACHED_FILE_DESCRIPTORS)
        except SPPError:
            cached.close()
            raise
        self.cached = cached
        self.download = download
        self.counters = counters
        self.files = files
        self._closed = False
        self.size = meta.size
        self.blockSize = meta.blockSize
        self.digestName = meta.digestName
        self.version = meta.version
        self._watching: list[Callable[[Sequence[tuple[int, int]]], None]] = []

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        raise SPPError(ErrorCode.NOT_FOUND, "digests come from the origin")

    def readBlock(self, index: int) -> "defer.Deferred[bytes]":
        _checkRange(index, 1, self.cached.meta.blocks)
        data = self.cached.read(index) if self.cached.has(index) else None
        if data is None:
            raise SPPError(ErrorCode.UNAVAILABLE, f"block {index} not held")
        self.counters.served(self.cached.meta.url, len(data))
        return defer.succeed(data)

    def held(self) -> Sequence[tuple[int, int]]:
        return self.cached.held()

    def watch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        if self.download is not None:
            self.download.watch(callback)
            self._watching.append(callback)

    def peers(self, host: str, port: int) -> Sequence[Peer]:
        return []

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.files.release(self._key)
        if self.download is not None:
            for callback in self._watching:
                self.download.unwatch(callback)
        self.cached.close()
        self._watching = []
