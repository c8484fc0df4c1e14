# -*- test-case-name: tests.unit.test_digests -*-
"""
Block digests of published files, for the origin side of SPP: the ranges
other nodes ask for, served from memory, from the index on disk
(L{p2pd.store.indexfile}), or hashed on demand in threads
(L{p2pd.store.hashing}), only for the blocks asked for.
"""

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pd.store.fileio import TEMP_SUFFIX
from p2pd.store.hashing import hashChunk
from p2pd.store.indexfile import IndexFile, indexHeader, indexName, openIndex
from p2pd.store.published import PublishedFile
from p2pd.store.records import DigestRecords

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorThreads
    from twisted.python.threadpool import ThreadPool

_T = TypeVar("_T")
_P = ParamSpec("_P")


class BlocksOutOfRange(ValueError):
    """
    Digests asked for blocks outside the file.
    """


class _Pending:
    """
    Work in progress that several requests wait for; a request that comes
    after the work is done gets its result at once.
    """

    def __init__(self) -> None:
        self._waiters: list[Deferred[bytes]] = []
        self._result: "bytes | Failure | None" = None

    def wait(self) -> "Deferred[bytes]":
        if isinstance(self._result, Failure):
            return fail(self._result)
        if self._result is not None:
            return succeed(self._result)
        d: Deferred[bytes] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        return d

    def fire(self, result: "bytes | Failure") -> None:
        self._result = result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


class _Entry:
    """
    The digests of one version of one published path, while in use.
    """

    def __init__(
        self, key: str, published: PublishedFile, header: bytes, digestSize: int
    ) -> None:
        self.key = key
        self.published = published
        self.version = published.version
        self.header = header
        self.records = DigestRecords(digestSize, header, b"p2pd-index")
        self.index: IndexFile | None = None
        self.opened = False
        self.retired = False
        self.jobs = 0
        self.inflight: dict[int, _Pending] = {}
        self.queued: list[Callable[[], None]] = []
        self.afterOpen: list[Callable[[], None]] = []


class _Memory:
    """
    Recently used chunks of digests, up to a number of bytes.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._chunks: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()

    def get(self, key: tuple[str, str, int]) -> bytes | None:
        value = self._chunks.get(key)
        if value is not None:
            self._chunks.move_to_end(key)
        return value

    def put(self, key: tuple[str, str, int], value: bytes) -> None:
        old = self._chunks.pop(key, None)
        if old is not None:
            self.size -= len(old)
        if len(value) > self.limit:
            return
        self._chunks[key] = value
        self.size += len(value)
        while self.size > self.limit:
            _, dropped = self._chunks.popitem(last=False)
            self.size -= len(dropped)

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0


def _unwrapFirstError(reason: Failure) -> Failure:
    error = reason.value
    if isinstance(error, FirstError):
        return error.subFailure
    return reason


class DigestIndex:
    """
    Block digests of published files: computed on demand, off the reactor
    thread, kept on disk so a restart does not re-hash unchanged files.

    Work is done in chunks of about C{chunkBytes} of file data (at least a
    block): a request hashes the chunks it overlaps that are not yet known,
    one thread job per chunk, and requests overlapping a chunk in progress
    wait for it rather than hash it again. Up to C{memoryBytes} of recent
    digests are kept in memory, and up to C{maxOpen} index files open.

    @ivar blockSize: the block size of every file.
    @ivar digestName: the C{hashlib} name of the digest algorithm.
    @ivar digestSize: the length of one digest.
    """

    _log = Logger()

    def __init__(
        self,
        indexDir: str,
        blockSize: int,
        digestName: str,
        reactor: "IReactorThreads",
        threadpool: "ThreadPool | None" = None,
        *,
        chunkBytes: int = 1 << 20,
        memoryBytes: int = 8 << 20,
        maxOpen: int = 16,
    ) -> None:
        if blockSize <= 0:
            raise ValueError(f"bad block size {blockSize}")
        self.indexDir = os.path.abspath(indexDir)
        self.blockSize = blockSize
        self.digestName = digestName
        self.digestSize = hashlib.new(digestName).digest_size
        self._reactor = reactor
        self._threadpool = threadpool
        self._chunkBlocks = max(1, chunkBytes // blockSize)
        self._memory = _Memory(memoryBytes)
        self._maxOpen = maxOpen
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Whether the disk refused digests, and has not taken any since.
        self._refusing = False
        os.makedirs(self.indexDir, mode=0o700, exist_ok=True)
        for name in os.listdir(self.indexDir):
            if name.endswith(TEMP_SUFFIX):
                try:
                    os.unlink(os.path.join(self.indexDir, name))
                except OSError:
                    pass

    def digests(
        self, published: PublishedFile, first: int, count: int
    ) -> "Deferred[bytes]":
        """
        Digests of blocks C{[first, first + count)} of C{published},
        concatenated.

        Fails with L{FileChanged} if the file on disk is not (or stops
        being, while hashing) C{published.version}, and L{BlocksOutOfRange}
        if the range is not inside the file.
        """
        blocks = -(-published.size // self.blockSize)
        if first < 0 or count < 0 or first + count > blocks:
            return fail(
                BlocksOutOfRange(f"blocks {first}+{count} outside a file of {blocks}")
            )
        if count == 0:
            return succeed(b"")
        entry = self._entry(published)
        size = self.chunkBlocks
        firstChunk = first // size
        start = (first - firstChunk * size) * self.digestSize
        end = start + count * self.digestSize
        chunks = range(firstChunk, (first + count - 1) // size + 1)
        known = [self._memory.get((entry.key, entry.version, c)) for c in chunks]
        found = [digests for digests in known if digests is not None]
        if len(found) == len(known):
            # All in memory, the usual case: no Deferred per chunk.
            return succeed(b"".join(found)[start:end])
        parts: list[Deferred[bytes]] = []
        for chunk, digests in zip(chunks, known):
            if digests is not None:
                parts.append(succeed(digests))
                continue
            pending = entry.inflight.get(chunk)
            if pending is None:
                pending = self._start(entry, chunk, blocks)
            parts.append(pending.wait())

        def assemble(chunks: list[bytes]) -> bytes:
            return b"".join(chunks)[start:end]

        if len(parts) == 1:
            return parts[0].addCallback(lambda chunk: chunk[start:end])
        gathered = gatherResults(parts, consumeErrors=True)
        gathered.addErrback(_unwrapFirstError)
        return gathered.addCallback(assemble)

    @property
    def chunkBlocks(self) -> int:
        """
        How many blocks one thread job hashes at most.
        """
        return self._chunkBlocks

    def close(self) -> None:
        """
        Close the index files (those in use as soon as their work is done)
        and forget the digests held in memory. The index stays usable.
        """
        entries = list(self._entries.values())
        self._entries.clear()
        self._memory.clear()
        for entry in entries:
            entry.retired = True
            self._closeIfIdle(entry)

    # -- entries

    def _pool(self) -> "ThreadPool":
        if self._threadpool is None:
            return self._reactor.getThreadPool()
        return self._threadpool

    def _inThread(
        self, f: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> "Deferred[_T]":
        return deferToThreadPool(self._reactor, self._pool(), f, *args, **kwargs)

    def _entry(self, published: PublishedFile) -> _Entry:
        path = os.path.abspath(published.path)
        key = indexName(path)
        entry = self._entries.get(key)
        if entry is not None and entry.version == published.version:
            self._entries.move_to_end(key)
            return entry
        header = indexHeader(path, published.version, self.blockSize, self.digestName)
        new = _Entry(key, published, header, self.digestSize)
        self._entries[key] = new
        self._entries.move_to_end(key)
        if entry is None:
            self._open(new)
        else:
            entry.retired = True
            if entry.opened:
                self._closeIfIdle(entry)
                self._open(new)
            else:
                # Let the old version's file be settled first, so it cannot
                # replace the new one.
                entry.afterOpen.append(lambda: self._open(new))
        self._evict()
        return new

    def _open(self, entry: _Entry) -> None:
        entry.jobs += 1
        path = os.path.join(self.indexDir, entry.key)
        d = self._inThread(openIndex, path, entry.header)

        def opened(result: "IndexFile | Failure") -> None:
            entry.jobs -= 1
            entry.opened = True
            if isinstance(result, Failure):
                self._refused(
                    "cannot keep digests of {path} in {index}: {why}",
                    path=entry.published.path,
                    index=path,
                    why=result.getErrorMessage(),
                )
            else:
                entry.index = result
            queued, entry.queued = entry.queued, []
            for run in queued:
                run()
            afterOpen, entry.afterOpen = entry.afterOpen, []
            for then in afterOpen:
                then()
            self._closeIfIdle(entry)
            self._evict()

        d.addBoth(opened)

    def _start(self, entry: _Entry, chunk: int, blocks: int) -> _Pending:
        pending = _Pending()
        entry.inflight[chunk] = pending
        entry.jobs += 1
        first = chunk * self.chunkBlocks
        count = min(self.chunkBlocks, blocks - first)

        def run() -> None:
            d = self._inThread(
                hashChunk,
                entry.published,
                entry.index,
                entry.records,
                self.blockSize,
                self.digestName,
                first,
                count,
            )
            d.addBoth(done)

        def done(result: "tuple[bytes, str | None, bool] | Failure") -> None:
            entry.jobs -= 1
            del entry.inflight[chunk]
            if isinstance(result, Failure):
                pending.fire(result)
            else:
                digests, problem, recorded = result
                if problem is not None:
                    self._refused(
                        "cannot record digests of {path}: {why}",
                        path=entry.published.path,
                        why=problem,
                    )
                elif recorded and self._refusing:
                    self._refusing = False
                    self._log.info(
                        "recording digests in {index} again", index=self.indexDir
                    )
                self._memory.put((entry.key, entry.version, chunk), digests)
                pending.fire(digests)
            self._closeIfIdle(entry)
            self._evict()

        if entry.opened:
            run()
        else:
            entry.queued.append(run)
        return pending

    def _refused(self, format: str, **fields: object) -> None:
        """
        Log that the disk refused to keep digests, once until it takes some
        again: a full disk would otherwise log a line per megabyte hashed.
        """
        if not self._refusing:
            self._refusing = True
            self._log.warn(format, **fields)

    def _closeIfIdle(self, entry: _Entry) -> None:
        if entry.retired and entry.opened and entry.jobs == 0:
            if entry.index is not None:
                os.close(entry.index.fd)
                entry.index = None

    def _evict(self) -> None:
        while len(self._entries) > self._maxOpen:
            for key, entry in self._entries.items():
                if entry.opened and entry.jobs == 0:
                    break
            else:
                return
            del self._entries[key]
            entry.retired = True
            self._closeIfIdle(entry)
