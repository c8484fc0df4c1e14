# -*- test-case-name: tests.unit.test_handles -*-
"""
The handles this node holds on the other node of one connection: no more
than the other node answers (docs/protocol.md, Handles), and a bounded
queue of Opens waiting for one. A player reading many files of one origin
at once then waits for a handle instead of being told BUSY.
"""

from collections import deque

from twisted.internet import defer

from p2pd.core.errors import ErrorCode, SPPError

# The handles a node answers per connection (answering.MAX_OPEN_FILES).
MAX_HANDLES = 64
# The Opens that may wait for a handle on one connection; one more fails
# with BUSY without being sent.
MAX_WAITING_OPENS = 64


class Handles:
    """
    Handles held on one connection, and the Opens waiting for one, served
    in the order they came.

    @ivar held: the handles held: files open, and Opens sent and not yet
        answered.
    """

    def __init__(self) -> None:
        self.held = 0
        self._waiting: deque[defer.Deferred[None]] = deque()
        self._gone: Exception | None = None

    @property
    def waiting(self) -> int:
        """
        How many Opens wait for a handle.
        """
        return len(self._waiting)

    def take(self) -> "defer.Deferred[None]":
        """
        A handle: at once if one is free and nobody waits, else once one
        is given back. Cancelling the Deferred leaves the queue.

        @return: fails with L{SPPError} BUSY if L{MAX_WAITING_OPENS} Opens
            already wait, and with the connection's end once it is gone.
        """
        if self._gone is not None:
            return defer.fail(self._gone)
        if self.held < MAX_HANDLES and not self._waiting:
            self.held += 1
            return defer.succeed(None)
        if len(self._waiting) >= MAX_WAITING_OPENS:
            return defer.fail(
                SPPError(ErrorCode.BUSY, "too many files waiting for a handle")
            )
        waiting: defer.Deferred[None] = defer.Deferred(self._waiting.remove)
        self._waiting.append(waiting)
        return waiting

    def give(self) -> None:
        """
        A handle is given back (its file closed, or its Open failed): the
        first Open waiting takes it.
        """
        self.held -= 1
        while self._waiting and self.held < MAX_HANDLES:
            self.held += 1
            self._waiting.popleft().callback(None)

    def fail(self, reason: Exception) -> None:
        """
        The connection is gone: no Open waiting, or asked for later, will
        be sent.
        """
        self._gone = reason
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(reason)
