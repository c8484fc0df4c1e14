"""
Test doubles and fixtures shared by several test modules: a block store in
memory, a thread pool that runs jobs when the test says, and files on disk.
"""

import os
from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure

from p2pd.core.meta import FileMeta


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
