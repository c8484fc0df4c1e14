# -*- test-case-name: tests.unit.test_cachelimit,tests.unit.test_punches -*-
"""
Evicted blocks freed on disk: journaled as not held first, then their
bytes freed (a hole punched in the sparse C{data} file), so that after a
crash at any moment a block is either held with its bytes or known absent
(a restart frees the bytes of blocks its journal does not hold).
A file system that cannot punch holes keeps the bytes until the version
is removed, and the node says so in its log.

Punching a hole waits for the pages of its range still being written
back: milliseconds, which the reactor must not spend. While the node runs
(L{Punches.start}), holes are punched in a thread, one at a time, and the
bytes each frees are applied on the reactor when it is done; until then
the cache counts them as used, so its limit holds on disk too. Each hole
holds a descriptor of its own on the file its eviction was journaled for:
a version removed and made again at the same path is another file, and
the hole is never punched in it. At most L{MOST_WAITING} holes wait; the
next one is punched at once, on the reactor, as they all are before the
node starts (the limit enforced at start-up) and after it stops.
"""

import os
from collections import deque
from collections.abc import Callable

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from p2pd.core.meta import FileMeta
from p2pd.store import fileio
from p2pd.store.cachelayout import identity
from p2pd.store.journal import Journal

_log = Logger()

# Holes waiting for the thread; each holds a file descriptor.
MOST_WAITING = 64


def free(fd: int, start: int, length: int, url: str) -> None:
    """
    Free C{length} bytes at C{start} of the data file C{fd} of C{url}.
    """
    _logRefused(_punch(fd, start, length), length, url)


def _punch(fd: int, start: int, length: int) -> str | None:
    """
    Punch the hole; why it could not, if it could not.
    """
    try:
        fileio.punchHole(fd, start, length)
    except OSError as e:
        return str(e)
    return None


def _logRefused(why: str | None, length: int, url: str) -> None:
    if why is not None:
        _log.warn(
            "cannot free {length} bytes of {url}: {why}",
            length=length,
            url=url,
            why=why,
        )


class _Hole:
    """
    One hole to punch: C{length} bytes at C{start} of the file open as
    C{fd} (its own descriptor, closed once punched); C{freed} is called
    then, on the reactor.
    """

    def __init__(
        self, fd: int, start: int, length: int, url: str, freed: Callable[[], None]
    ) -> None:
        self.fd = fd
        self.start = start
        self.length = length
        self.url = url
        self.freed = freed

    def punch(self) -> str | None:
        """
        Punch it and close its descriptor (on any thread); why it could
        not, if it could not.
        """
        try:
            return _punch(self.fd, self.start, self.length)
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass

    def done(self, why: str | None) -> None:
        _logRefused(why, self.length, self.url)
        self.freed()


class Punches:
    """
    The holes evictions punch: at once on the caller's thread until
    L{start}ed, then in the reactor's thread pool, one at a time, oldest
    first.
    """

    def __init__(self) -> None:
        self._reactor: IReactorThreads | None = None
        self._waiting: deque[_Hole] = deque()
        self._running: _Hole | None = None

    @property
    def pending(self) -> int:
        """
        How many holes are waiting or being punched.
        """
        return len(self._waiting) + (self._running is not None)

    def start(self, reactor: IReactorThreads) -> None:
        """
        From now on, punch holes in C{reactor}'s thread pool.
        """
        self._reactor = reactor

    def stop(self) -> None:
        """
        Punch the holes still waiting now, and from now on punch them at
        once; the one the thread punches is applied when it is done.
        """
        self._reactor = None
        while self._waiting:
            hole = self._waiting.popleft()
            hole.done(hole.punch())

    def punch(
        self, fd: int, start: int, length: int, url: str, freed: Callable[[], None]
    ) -> None:
        """
        Free C{length} bytes at C{start} of the data file of C{url} open as
        C{fd}, a descriptor this takes over (and closes); call C{freed}
        when they are freed.
        """
        hole = _Hole(fd, start, length, url, freed)
        if self._reactor is None or len(self._waiting) >= MOST_WAITING:
            hole.done(hole.punch())
            return
        self._waiting.append(hole)
        self._next()

    def _next(self) -> None:
        reactor = self._reactor
        if self._running is not None or not self._waiting or reactor is None:
            return
        hole = self._running = self._waiting.popleft()
        punched = deferToThreadPool(reactor, reactor.getThreadPool(), hole.punch)
        punched.addCallback(self._punched, hole)

    def _punched(self, why: str | None, hole: _Hole) -> None:
        self._running = None
        try:
            hole.done(why)
        finally:
            self._next()


def dropClosed(
    directory: str,
    meta: FileMeta,
    first: int,
    end: int,
    punches: Punches,
    freed: Callable[[], None],
) -> int:
    """
    Evict blocks C{first} to C{end - 1} of the version in C{directory},
    which nobody has open, without reading its journal; C{freed} is called
    once their bytes are freed (or cannot be).

    @return: the journal's length after.
    @raise OSError: the journal refused; the blocks are still held.
    """
    journal = Journal(identity(meta))
    journal.attach(os.path.join(directory, "journal"))
    try:
        journal.forgetAll(range(first, end))
        size = journal.size
    finally:
        journal.close()
    start = meta.blockStart(first)
    try:
        fd = os.open(os.path.join(directory, "data"), os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        _log.warn("cannot free blocks of {url}: {why}", url=meta.url, why=str(e))
        freed()
        return size
    length = min(meta.size, meta.blockStart(end)) - start
    punches.punch(fd, start, length, meta.url, freed)
    return size
