# -*- test-case-name: tests.conformance.test_requests -*-
"""
docs/protocol.md's MUSTs about requests, answers, handles and BUSY,
checked on a running node.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import node, wire
from tests.conformance.wire import BAD_REQUEST, BUSY, NOT_FOUND, Connection

# The handles, and the requests unanswered, a node allows per connection.
LIMIT = 64


class RequestTests(SynchronousTestCase):
    """
    Request ids, answers, Cancel, and BUSY.
    """

    def opened(self, name: str = "clip.ts") -> Connection:
        """
        A connection to the origin with C{name} open as handle 1.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        node.openFile(connection, name)
        return connection

    def assertClosedWithBadRequest(self, connection: Connection) -> None:
        """
        The node's last frame is Error(0, BAD_REQUEST), then it closes.
        """
        frames = connection.rest()
        self.assertTrue(frames, "closed with no Error")
        self.assertEqual(frames[-1].error()[:2], (0, BAD_REQUEST))

    def test_requestIdZero(self) -> None:
        """
        [M7] A request with id 0 (Open, GetDigests, GetBlock, GetPeers) is a
        protocol error: Error(0, BAD_REQUEST) and a close, no answer.
        """
        url = node.origin().url("clip.ts")
        for request in [
            wire.open_(0, url),
            wire.getDigests(0, 1, 0, 1),
            wire.getBlock(0, 1, 0),
            wire.getPeers(0, 1),
        ]:
            connection = self.opened()
            connection.send(request)
            frames = connection.rest()
            self.assertEqual([f.error()[:2] for f in frames], [(0, BAD_REQUEST)])

    def test_requestIdReused(self) -> None:
        """
        [M8] A GetBlock reusing the id of one still unanswered (both in one
        write) is a protocol error: the connection closes with
        Error(0, BAD_REQUEST).
        """
        connection = self.opened()
        connection.send(wire.getBlock(5, 1, 0), wire.getBlock(5, 1, 1))
        self.assertClosedWithBadRequest(connection)

    def test_oneAnswerEach(self) -> None:
        """
        [M9] Pipelined requests of every kind, some failing, each get
        exactly one answer with their id.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        connection.send(
            wire.open_(1, node.origin().url("clip.ts")),
            wire.getDigests(2, 1, 0, 3),
            wire.getBlock(3, 1, 0),
            wire.getBlock(4, 1, 2),
            wire.getPeers(5, 1),
            wire.getBlock(6, 99, 0),
            wire.open_(7, node.origin().url("missing.ts")),
        )
        ids = sorted(answer.request() for answer in connection.answers(7))
        self.assertEqual(ids, [1, 2, 3, 4, 5, 6, 7])
        connection.stillOpen()

    def test_cancel(self) -> None:
        """
        [M10] A cancelled GetBlock still gets one answer: its Block or
        Error CANCELLED, and nothing more.
        """
        connection = self.opened()
        connection.send(wire.getBlock(7, 1, 0), wire.cancel(7))
        [answer] = connection.answers(1)
        self.assertEqual(answer.request(), 7)
        if answer.kind == wire.ERROR:
            self.assertEqual(answer.error()[1], wire.CANCELLED)
        else:
            self.assertEqual(answer.kind, wire.BLOCK)
        connection.stillOpen()

    def test_unaskedData(self) -> None:
        """
        [M11] A Block answering no request of the node is a protocol error.
        """
        connection = self.opened()
        connection.send(wire.block(9, 0, b"x" * 100))
        self.assertClosedWithBadRequest(connection)

    def test_busy(self) -> None:
        """
        [M12] Of 65 GetBlock sent in one write, the node answers 64 with
        their blocks and one (p2pd: the 65th) with BUSY; the connection
        stays up.
        """
        connection = self.opened()
        count = LIMIT + 1
        connection.send(*[wire.getBlock(r, 1, r % 3) for r in range(1, count + 1)])
        answers = connection.answers(count)
        busy = [a.error()[0] for a in answers if a.kind == wire.ERROR]
        blocks = sorted(a.data()[0] for a in answers if a.kind == wire.BLOCK)
        self.assertEqual(busy, [count])
        self.assertEqual(blocks, list(range(1, count)))
        self.assertEqual(
            [a.error()[1] for a in answers if a.kind == wire.ERROR], [BUSY]
        )
        connection.stillOpen()


class HandleTests(SynchronousTestCase):
    """
    Handles: the Open's request id, at most 64, and requests naming them.
    """

    def test_handleInUse(self) -> None:
        """
        [M13] An Open whose request id is an open handle gets BAD_REQUEST;
        the connection stays up.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        node.openFile(connection, "clip.ts", 1)
        connection.send(wire.open_(1, node.origin().url("one.ts")))
        [answer] = connection.answers(1)
        self.assertEqual(answer.error()[:2], (1, BAD_REQUEST))
        connection.stillOpen()

    def test_handleLimit(self) -> None:
        """
        [M14] 64 handles open on one connection; a 65th Open gets BUSY and
        the connection stays up; after a Close an Open succeeds again.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        url = node.origin().url("clip.ts")
        connection.send(*[wire.open_(r, url) for r in range(1, LIMIT + 2)])
        answers = connection.answers(LIMIT + 1)
        self.assertEqual(
            sorted(a.opened()[0] for a in answers if a.kind == wire.OPENED),
            list(range(1, LIMIT + 1)),
        )
        self.assertEqual(answers[-1].error()[:2], (LIMIT + 1, BUSY))
        connection.send(wire.close(1), wire.open_(LIMIT + 2, url))
        [answer] = connection.answers(1)
        self.assertEqual(answer.opened()[0], LIMIT + 2)

    def test_handleNotOpen(self) -> None:
        """
        [M15] Requests naming a handle whose Open failed, or that was
        closed, get NOT_FOUND; the connection stays up.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        connection.send(
            wire.open_(1, node.origin().url("missing.ts")), wire.getBlock(2, 1, 0)
        )
        answers = connection.answers(2)
        self.assertEqual(
            [a.error()[:2] for a in answers], [(1, NOT_FOUND), (2, NOT_FOUND)]
        )
        node.openFile(connection, "clip.ts", 3)
        connection.send(wire.close(3), wire.getDigests(4, 3, 0, 1))
        [answer] = connection.answers(1)
        self.assertEqual(answer.error()[:2], (4, NOT_FOUND))
        connection.stillOpen()

    def test_openedFirst(self) -> None:
        """
        [M16] Requests sent right behind an Open are answered after its
        Opened.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        connection.send(
            wire.open_(1, node.origin().url("one.ts")),
            wire.getPeers(2, 1),
            wire.getBlock(3, 1, 0),
            wire.getDigests(4, 1, 0, 1),
        )
        answers = connection.answers(4)
        self.assertEqual(answers[0].kind, wire.OPENED)
        self.assertEqual(sorted(a.request() for a in answers[1:]), [2, 3, 4])
