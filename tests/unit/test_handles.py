# -*- test-case-name: tests.unit.test_handles -*-
"""
Tests for L{p2pd.spp.handles}: the handles a node holds on another, and
the Opens waiting for one.
"""

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.spp import answering
from p2pd.spp.handles import MAX_HANDLES, MAX_WAITING_OPENS, Handles


class HandlesTests(SynchronousTestCase):
    """
    L{Handles}: at most L{MAX_HANDLES} held, then a queue of at most
    L{MAX_WAITING_OPENS}.
    """

    def test_sameLimitAsAnswered(self) -> None:
        """
        A node holds no more handles than the other node answers.
        """
        self.assertEqual(MAX_HANDLES, answering.MAX_OPEN_FILES)

    def test_waitsPastTheLimit(self) -> None:
        """
        The first L{MAX_HANDLES} handles come at once; the next waits until
        one is given back, and the waiting ones are served in order.
        """
        handles = Handles()
        for _ in range(MAX_HANDLES):
            self.successResultOf(handles.take())
        first, second = handles.take(), handles.take()
        self.assertNoResult(first)
        self.assertEqual(handles.waiting, 2)
        handles.give()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertEqual(handles.held, MAX_HANDLES)

    def test_queueBounded(self) -> None:
        """
        One Open past L{MAX_WAITING_OPENS} waiting fails with BUSY at once.
        """
        handles = Handles()
        for _ in range(MAX_HANDLES):
            handles.take()
        waiting = [handles.take() for _ in range(MAX_WAITING_OPENS)]
        for d in waiting:
            self.assertNoResult(d)
        failure = self.failureResultOf(handles.take(), SPPError)
        self.assertEqual(failure.value.code, ErrorCode.BUSY)

    def test_cancelLeavesQueue(self) -> None:
        """
        A cancelled wait leaves the queue: the next one takes the handle.
        """
        handles = Handles()
        for _ in range(MAX_HANDLES):
            handles.take()
        first, second = handles.take(), handles.take()
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        handles.give()
        self.successResultOf(second)
        self.assertEqual(handles.waiting, 0)

    def test_fail(self) -> None:
        """
        When the connection goes, every waiting Open fails with its reason,
        and so does any asked for later.
        """
        handles = Handles()
        for _ in range(MAX_HANDLES):
            handles.take()
        d = handles.take()
        handles.fail(ValueError("gone"))
        self.failureResultOf(d, ValueError)
        self.assertEqual(handles.waiting, 0)
        self.failureResultOf(handles.take(), ValueError)
