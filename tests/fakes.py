"""
Test doubles and fixtures shared by several test modules: one fake per
interface of L{p2pd.engine.interfaces} (each checked by L{tests.unit.test_fakes}
with C{verifyObject}), a block store in memory, a thread pool that runs jobs
when the test says, and files on disk.
"""

import hashlib
import os
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.net import PLAIN, Security
from p2pd.core.peers import Peer
from p2pd.core.url import parse
from p2pd.engine.download import Download
from p2pd.engine.interfaces import (
    ICacheControl,
    IConnection,
    IConnector,
    IRemoteFile,
    IServedFile,
    ISource,
    ISPPNode,
    IWebNode,
)


class MemoryStore:
    """
    A block store in memory (what a download keeps), refusing unverified
    writes.
    """

    def __init__(self, meta: FileMeta) -> None:
        self.meta = meta
        self.blocks: dict[int, bytes] = {}
        self.digests: dict[int, bytes] = {}
        self.closed = False

    def has(self, index: int) -> bool:
        return index in self.blocks

    def read(self, index: int) -> bytes | None:
        return self.blocks.get(index)

    def write(self, index: int, data: bytes) -> None:
        assert not self.closed, "write after close"
        assert self.meta.digest(data) == self.digests[index], "unverified write"
        self.blocks[index] = data

    def digest(self, index: int) -> bytes | None:
        return self.digests.get(index)

    def setDigests(self, first: int, digests: bytes) -> None:
        size = self.meta.digestSize
        for n in range(len(digests) // size):
            self.digests[first + n] = digests[n * size : (n + 1) * size]

    def held(self) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        for index in sorted(self.blocks):
            if ranges and ranges[-1][0] + ranges[-1][1] == index:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
            else:
                ranges.append((index, 1))
        return ranges

    def close(self) -> None:
        self.closed = True


class QueuedThreads:
    """
    A thread pool (and the reactor calls that go with one) whose jobs wait
    in L{jobs} until the test runs them, on its own thread, as results from
    real threads arrive later.
    """

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[..., None], Callable[..., Any], Any]] = []
        self.started = 0

    def callInThreadWithCallback(
        self, onResult: Callable[..., None], f: Callable[..., Any], *args: Any
    ) -> None:
        self.started += 1
        self.jobs.append((onResult, f, args))

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        f(*args)

    def getThreadPool(self) -> "QueuedThreads":
        return self

    def runOne(self, position: int = 0) -> None:
        """
        Run the job at C{position} in the queue.
        """
        onResult, f, args = self.jobs.pop(position)
        try:
            result = f(*args)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def runAll(self) -> None:
        """
        Run jobs, oldest first, until none is left (jobs may queue more).
        """
        while self.jobs:
            self.runOne()


def writeFile(path: str, data: bytes, mtimeNs: int | None = None) -> None:
    """
    Write C{data} to C{path} (making its directory), with the modification
    time C{mtimeNs} if given.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtimeNs is not None:
        os.utime(path, ns=(mtimeNs, mtimeNs))


def makeFile(directory: str, name: str, size: int) -> bytes:
    """
    A file of C{size} random bytes at C{directory}/C{name}; its content.
    """
    data = os.urandom(size)
    writeFile(os.path.join(directory, name), data)
    return data


@implementer(ISource)
class FakeSource:
    """
    A source of C{content} whose block requests the test answers by hand
    (L{answer}), or that answers them at once (C{auto}). It holds every
    block if C{authoritative}, else those of C{holds}; with C{corrupt} its
    blocks fail their digests.
    """

    onHave: Callable[[Sequence[tuple[int, int]]], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(
        self,
        name: str,
        content: bytes,
        meta: FileMeta,
        authoritative: bool = False,
        holds: Sequence[int] = (),
        auto: bool = False,
    ) -> None:
        self.name = name
        self.content = content
        self.meta = meta
        self.authoritative = authoritative
        self.holds = set(holds)
        self.auto = auto
        self.requests: dict[int, defer.Deferred[bytes]] = {}
        self.requested: list[int] = []
        self.cancelled: list[int] = []
        self.closed = False
        self.corrupt = False

    def has(self, index: int) -> bool:
        return self.authoritative or index in self.holds

    def unavailable(self, index: int) -> None:
        self.holds.discard(index)

    def _real(self, index: int) -> bytes:
        start = self.meta.blockStart(index)
        return self.content[start : start + self.meta.blockSize]

    def block(self, index: int) -> bytes:
        data = self._real(index)
        return b"X" * len(data) if self.corrupt else data

    def getBlock(self, index: int) -> "defer.Deferred[bytes]":
        self.requested.append(index)
        if self.auto:
            return defer.succeed(self.block(index))

        def cancel(d: "defer.Deferred[bytes]") -> None:
            self.cancelled.append(index)
            self.requests.pop(index, None)

        d: defer.Deferred[bytes] = defer.Deferred(cancel)
        self.requests[index] = d
        return d

    def answer(self, index: int) -> None:
        self.requests.pop(index).callback(self.block(index))

    def answerAll(self) -> None:
        while self.requests:
            self.answer(min(self.requests))

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        return defer.succeed(
            b"".join(
                self.meta.digest(self._real(i)) for i in range(first, first + count)
            )
        )

    def getPeers(self) -> "defer.Deferred[Sequence[Peer]]":
        return defer.succeed([])

    def close(self) -> None:
        self.closed = True

    def lose(self) -> None:
        """
        The source goes away, as a connection that closes.
        """
        assert self.onLost is not None
        self.onLost(Failure(ConnectionError("gone")))


@implementer(IRemoteFile)
class FakeRemoteFile:
    """
    A file opened on a L{FakeConnection}: a source claiming authority,
    whose answers arrive when the test calls L{FakeConnection.flush}. The
    node decides whether to believe it.
    """

    onHave: Callable[[Sequence[tuple[int, int]]], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(self, connection: "FakeConnection", meta: FileMeta, data: bytes):
        self.connection = connection
        self.meta = meta
        self.data = data
        self.name = connection.remoteName
        self.claimsAuthority = True
        self.authoritative = False
        self.closed = False
        self.unavailableBlocks: set[int] = set()

    def believe(self) -> None:
        self.authoritative = self.claimsAuthority

    def has(self, index: int) -> bool:
        if index in self.unavailableBlocks and not self.authoritative:
            return False
        return 0 <= index < self.meta.blocks

    def unavailable(self, index: int) -> None:
        self.unavailableBlocks.add(index)

    def _later(self, value: Any) -> "defer.Deferred[Any]":
        d: defer.Deferred[Any] = defer.Deferred()
        self.connection.pending.append((d, value))
        return d

    def _block(self, index: int) -> bytes:
        start = self.meta.blockStart(index)
        return self.data[start : start + self.meta.blockLength(index)]

    def getBlock(self, index: int) -> "defer.Deferred[bytes]":
        self.connection.blocksAsked.append(index)
        return self._later(self._block(index))

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        return self._later(
            b"".join(
                self.meta.digest(self._block(i)) for i in range(first, first + count)
            )
        )

    def getPeers(self) -> "defer.Deferred[Sequence[Peer]]":
        return self._later(list(self.connection.peers))

    def close(self) -> None:
        self.closed = True


@implementer(IConnection)
class FakeConnection:
    """
    A connection to a node publishing C{files} (URL: its metadata and
    bytes); answers come when the test calls L{flush}. It is one this node
    dialed unless C{initiator} is false.
    """

    def __init__(
        self,
        files: dict[str, tuple[FileMeta, bytes]],
        host: str,
        port: int,
        initiator: bool = True,
    ) -> None:
        self.files = files
        self.initiator = initiator
        self.ready: defer.Deferred[FakeConnection] = defer.succeed(self)
        self.remoteHost = host
        self.remoteListenPort = port
        self.remoteName = f"{host}:{port}"
        self.encrypted = False
        self.waitingOpens = 0
        self.opened: list[tuple[str, str]] = []
        self.early: list[tuple[int, tuple[int, ...], bool]] = []
        self.pending: list[tuple[defer.Deferred[Any], Any]] = []
        self.remoteFiles: list[FakeRemoteFile] = []
        self.blocksAsked: list[int] = []
        self.peers: list[Peer] = []
        self.dropped = False

    def open(
        self,
        url: str,
        version: str = "",
        digests: int = 0,
        blocks: Sequence[int] = (),
        peers: bool = False,
    ) -> "defer.Deferred[IRemoteFile]":
        self.opened.append((url, version))
        self.early.append((digests, tuple(blocks), peers))
        if url not in self.files:
            return defer.fail(SPPError(ErrorCode.NOT_FOUND, "no such file"))
        meta, data = self.files[url]
        remote = FakeRemoteFile(self, meta, data)
        self.remoteFiles.append(remote)
        return defer.succeed(remote)

    def drop(self) -> None:
        self.dropped = True

    def flush(self) -> None:
        """
        Answer every request, including those the answers cause.
        """
        while self.pending:
            d, value = self.pending.pop(0)
            if not d.called:
                d.callback(value)


@implementer(IConnector)
class FakeConnector:
    """
    A connector whose connection attempts the test completes by hand.
    """

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int, defer.Deferred[IConnection]]] = []
        self.securities: list[Security] = []

    def connect(
        self, host: str, port: int, security: Security = PLAIN
    ) -> "defer.Deferred[IConnection]":
        d: defer.Deferred[IConnection] = defer.Deferred()
        self.attempts.append((host, port, d))
        self.securities.append(security)
        return d

    def succeed(self, connection: IConnection) -> None:
        """
        Complete every pending attempt with C{connection}.
        """
        attempts, self.attempts = self.attempts, []
        for _, _, d in attempts:
            d.callback(connection)

    def fail(self, reason: Exception) -> None:
        attempts, self.attempts = self.attempts, []
        for _, _, d in attempts:
            d.errback(reason)


@implementer(IWebNode)
class FakeWebNode:
    """
    What the HTTP side sees of a node: one shared L{Download} per URL of
    C{content}, from a L{FakeSource} origin, made on the first
    C{download(url)}.

    @ivar urls: every URL asked for, in order.
    @ivar made: the downloads made, by URL.
    @ivar origins: the origin of each download, by URL.
    @ivar failure: if set, what every C{download} fails with.
    @ivar pending: if set, C{download} returns Deferreds that the test
        fires (they are collected in C{waiting}).
    @ivar copies: the URLs whose files the cache holds.
    """

    nodeId = b"\x01" * 16
    listenPort = 1111

    def __init__(self, content: bytes, blockSize: int, auto: bool = True) -> None:
        self.content = content
        self.blockSize = blockSize
        self.auto = auto
        self.counters = SimpleNamespace(blocksServed=0, bytesServed=0, bytesByFile={})
        self.urls: list[str] = []
        self.made: dict[str, Download] = {}
        self.origins: dict[str, FakeSource] = {}
        self.failure: Exception | None = None
        self.pending = False
        self.waiting: list[defer.Deferred[Download]] = []
        self.copies: set[str] = set()

    def download(self, url: str) -> "defer.Deferred[Download]":
        self.urls.append(url)
        try:
            key = str(parse(url))
        except ValueError as e:
            return defer.fail(e)
        if self.failure is not None:
            return defer.fail(self.failure)
        if self.pending:
            d: defer.Deferred[Download] = defer.Deferred()
            self.waiting.append(d)
            return d
        return defer.succeed(self.make(key))

    def make(self, key: str) -> Download:
        """
        The download of C{key}, made on first use.
        """
        if key not in self.made:
            size = len(self.content)
            meta = FileMeta(key, size, self.blockSize, "sha256", "v1")
            download = Download(meta, MemoryStore(meta), MemoryReactorClock())
            origin = FakeSource("origin", self.content, meta, True, auto=self.auto)
            download.addSource(origin)
            self.made[key] = download
            self.origins[key] = origin
        return self.made[key]

    def downloads(self) -> list[Download]:
        return list(self.made.values())

    def hasCached(self, url: str) -> bool:
        return url in self.copies

    def cacheUsage(self) -> dict[str, int | None]:
        return {"diskUsed": 0, "diskLimit": None, "memoryUsed": 0, "memoryLimit": 0}


@implementer(ICacheControl)
class FakeCacheControl:
    """
    A node taking cache commands: it records them, and holds the URLs in
    C{cached} and, by URL, the bad blocks in C{bad}.

    @ivar calls: every command, as C{(name, arguments...)}.
    """

    def __init__(self, cached: set[str], bad: dict[str, set[int]]) -> None:
        self.cached = cached
        self.bad = bad
        self.calls: list[tuple[Any, ...]] = []

    def removeCached(self, url: str) -> bool:
        self.calls.append(("removeCached", url))
        found = url in self.cached
        self.cached.discard(url)
        return found

    def purgeCache(self) -> int:
        self.calls.append(("purgeCache",))
        count = len(self.cached)
        self.cached.clear()
        return count

    def recheckCached(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        self.calls.append(("recheckCached", url, version, list(blocks)))
        return [i for i in blocks if i in self.bad.get(url, set())]


@implementer(IServedFile)
class FakeServedFile:
    """
    A file served from memory. With C{manual}, reads and digests wait for
    the test to fire them.
    """

    def __init__(
        self,
        data: bytes = b"",
        blockSize: int = 16 * 1024,
        authoritative: bool = True,
        version: str = "v1",
        held: Sequence[tuple[int, int]] = (),
        manual: bool = False,
    ) -> None:
        self.data = data
        self.size = len(data)
        self.blockSize = blockSize
        self.digestName = "sha256"
        self.version = version
        self.authoritative = authoritative
        self.heldRanges = list(held)
        self.manual = manual
        self.readIndexes: list[int] = []
        self.reads: list[tuple[int, defer.Deferred[bytes]]] = []
        self.cancelled: list[int] = []
        self.pendingDigests: list[tuple[defer.Deferred[bytes], bytes]] = []
        self.watchers: list[Callable[[Sequence[tuple[int, int]]], None]] = []
        self.peerList: list[Peer] = []
        self.askers: list[tuple[str, int]] = []
        self.closed = 0
        self.readError: Exception | None = None

    @property
    def blocks(self) -> int:
        return -(-self.size // self.blockSize)

    def block(self, index: int) -> bytes:
        return self.data[index * self.blockSize : (index + 1) * self.blockSize]

    def digestsOf(self, first: int, count: int) -> bytes:
        return b"".join(
            hashlib.sha256(self.block(i)).digest() for i in range(first, first + count)
        )

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        if not self.authoritative:
            raise SPPError(ErrorCode.NOT_FOUND, "no digests here")
        if first + count > self.blocks:
            raise SPPError(ErrorCode.BAD_REQUEST, "past the end")
        if self.manual:
            d: defer.Deferred[bytes] = defer.Deferred()
            self.pendingDigests.append((d, self.digestsOf(first, count)))
            return d
        return defer.succeed(self.digestsOf(first, count))

    def readBlock(self, index: int) -> "defer.Deferred[bytes]":
        self.readIndexes.append(index)
        if not 0 <= index < self.blocks:
            raise SPPError(ErrorCode.BAD_REQUEST, "past the end")
        if self.readError is not None:
            return defer.fail(self.readError)
        if self.manual:
            d: defer.Deferred[bytes] = defer.Deferred(
                lambda _: self.cancelled.append(index)
            )
            self.reads.append((index, d))
            return d
        return defer.succeed(self.block(index))

    def uploaded(self, index: int) -> bool:
        return self.authoritative and index in self.readIndexes

    def finishRead(self, index: int) -> None:
        """
        Complete the first outstanding read of block C{index}.
        """
        for i, (readIndex, d) in enumerate(self.reads):
            if readIndex == index:
                del self.reads[i]
                d.callback(self.block(index))
                return
        raise AssertionError(f"block {index} is not being read")

    def held(self) -> Sequence[tuple[int, int]]:
        return self.heldRanges

    def watch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        self.watchers.append(callback)

    def peers(self, host: str, port: int) -> Sequence[Peer]:
        self.askers.append((host, port))
        return self.peerList

    def close(self) -> None:
        self.closed += 1


@implementer(ISPPNode)
class FakeSPPNode:
    """
    A node serving the files in C{files}, recording what its connections
    tell it.
    """

    def __init__(self, nodeId: bytes = b"\x01" * 16, listenPort: int = 1111) -> None:
        self.nodeId = nodeId
        self.listenPort = listenPort
        self.files: dict[str, FakeServedFile] = {}
        self.openError: SPPError | None = None
        self.opens: list[tuple[str, str, Any]] = []
        self.ready: list[Any] = []
        self.gone: list[Any] = []

    def open(self, url: str, version: str, connection: object) -> IServedFile:
        self.opens.append((url, version, connection))
        if self.openError is not None:
            raise self.openError
        served = self.files.get(url)
        if served is None:
            raise SPPError(ErrorCode.NOT_FOUND, "not here")
        return served

    def connectionReady(self, connection: object) -> None:
        self.ready.append(connection)

    def connectionGone(self, connection: object) -> None:
        self.gone.append(connection)
