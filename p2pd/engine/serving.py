# -*- test-case-name: tests.test_node -*-
"""
Files this node serves to other nodes over SPP: its published files (as the
authority) and what it has cached (as a peer).
"""

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from zope.interface import implementer

from p2pd.engine.interfaces import IServedFile, SPPError
from p2pd.engine.tracker import Tracker
from p2pd.spp.codec import ErrorCode, Peer
from p2pd.store.published import NotPublished, PublishedFile

if TYPE_CHECKING:
    from p2pd.engine.download import Download
    from p2pd.store.cache import CachedFile
    from p2pd.store.digests import DigestIndex


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


def _checkRange(first: int, count: int, blocks: int) -> None:
    if first < 0 or count < 1 or first + count > blocks:
        raise SPPError(
            ErrorCode.BAD_REQUEST, f"blocks {first}+{count} past the end ({blocks})"
        )


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
        digestIndex: "DigestIndex",
        tracker: Tracker,
        counters: Counters,
    ) -> None:
        self.published = published
        self.digestIndex = digestIndex
        self.tracker = tracker
        self.counters = counters
        self.size = published.size
        self.blockSize = digestIndex.blockSize
        self.digestName = digestIndex.digestName
        self.version = published.version
        self.blocks = -(-self.size // self.blockSize)
        self._file: Any = None
        self._recorded: tuple[str, int] | None = None

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        _checkRange(first, count, self.blocks)
        return self.digestIndex.digests(self.published, first, count)

    def readBlock(self, index: int) -> "defer.Deferred[bytes]":
        _checkRange(index, 1, self.blocks)
        if self._file is None:
            try:
                self._file = self.published.open()
            except NotPublished:
                raise SPPError(ErrorCode.CHANGED, "file changed") from None
            except OSError as e:
                raise SPPError(
                    ErrorCode.NOT_FOUND, e.strerror or "cannot open"
                ) from None
        fd = self._file.fileno()
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
        if self._file is not None:
            self._file.close()
            self._file = None


@implementer(IServedFile)
class CachedServedFile:
    """
    Blocks this node has fetched and verified, served to a peer.
    """

    authoritative = False

    def __init__(
        self, cached: "CachedFile", download: "Download | None", counters: Counters
    ) -> None:
        self.cached = cached
        self.download = download
        self.counters = counters
        meta = cached.meta
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
        if self.download is not None:
            for callback in self._watching:
                self.download.unwatch(callback)
        else:
            # Our own handle from the cache (a download's store is its own).
            self.cached.close()
        self._watching = []
