# -*- test-case-name: tests.unit.test_download -*-
"""
A reader of a download: bytes from X on, in order, one block at a time,
and the rate at which its player takes them.
"""

from collections import deque
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from p2pd.core.meta import FileMeta

# A reader's rate is known once it has read for RATE_SECONDS, and measured
# over the last RATE_WINDOW seconds.
RATE_SECONDS = 5.0
RATE_WINDOW = 10.0


class IReadable(Protocol):
    """
    What a reader needs of its download.
    """

    @property
    def meta(self) -> FileMeta: ...

    @property
    def clock(self) -> IReactorTime: ...

    @property
    def failure(self) -> Failure | None:
        """
        Why the download gave up, if it has.
        """

    def blockData(self, index: int) -> bytes | None:
        """
        Block C{index}, verified, if it is here.
        """

    def schedule(self) -> None:
        """
        A reader waits: ask for what it needs.
        """

    def readerMoved(self) -> None:
        """
        A reader has taken bytes and may be at another block.
        """

    def readerClosed(self, reader: "Reader") -> None:
        """
        C{reader} is done.
        """


class Reader:
    """
    Bytes C{start} to C{stop} of a download, in order, one block at a time.
    """

    def __init__(self, download: IReadable, start: int, stop: int) -> None:
        self.download = download
        self.position = start
        self.stop = stop
        self._waiting: defer.Deferred[bytes] | None = None
        self.closed = False
        self._opened = download.clock.seconds()
        # (time, position) as the reader moved, over the last RATE_WINDOW
        # seconds.
        self._samples = deque([(self._opened, start)])

    def rate(self) -> float | None:
        """
        The bytes per second its player takes, over the last
        L{RATE_WINDOW} seconds, once it has read for L{RATE_SECONDS}. High
        at first, while the player fills its buffer (which errs on the side
        of reading ahead); low while the download cannot keep up.
        """
        now = self.download.clock.seconds()
        if now - self._opened < RATE_SECONDS:
            return None
        then, position = self._samples[0]
        return (self.position - position) / max(now - then, 1.0)

    @property
    def block(self) -> int:
        return self.download.meta.blockAt(self.position)

    @property
    def waiting(self) -> bool:
        """
        Whether a read is outstanding: the reader waits for L{block}.
        """
        return self._waiting is not None

    def read(self) -> "defer.Deferred[bytes]":
        """
        The next bytes (up to the end of the current block); b"" at the end.

        Only one read may be outstanding; cancelling it is allowed.
        """
        assert self._waiting is None, "a read is already outstanding"
        if self.position >= self.stop or self.closed:
            return defer.succeed(b"")
        data = self.download.blockData(self.block)
        if data is not None:
            return defer.succeed(self._consume(data))
        failure = self.download.failure
        if failure is not None:
            return defer.fail(failure)

        def cancel(d: defer.Deferred[bytes]) -> None:
            self._waiting = None

        waiting: defer.Deferred[bytes] = defer.Deferred(cancel)
        self._waiting = waiting
        self.download.schedule()
        return waiting

    def _consume(self, data: bytes) -> bytes:
        """
        The bytes of block C{data} from the reader's position on; the
        reader moves past them.
        """
        start = self.download.meta.blockStart(self.block)
        piece = data[self.position - start : self.stop - start]
        self.position += len(piece)
        now = self.download.clock.seconds()
        samples = self._samples
        samples.append((now, self.position))
        # One sample at or before the window's start stays.
        while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW:
            samples.popleft()
        self.download.readerMoved()
        return piece

    def available(self, index: int) -> None:
        """
        Block C{index} is here: a read waiting for it gets it.
        """
        if self._waiting is not None and index == self.block:
            data = self.download.blockData(index)
            if data is not None:
                waiting, self._waiting = self._waiting, None
                waiting.callback(self._consume(data))

    def fail(self, reason: Failure) -> None:
        """
        A read waiting fails with C{reason}.
        """
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.errback(reason)

    def close(self) -> None:
        """
        The reader is done; work only it needed stops.
        """
        if not self.closed:
            self.closed = True
            if self._waiting is not None:
                self._waiting.cancel()
            self.download.readerClosed(self)
