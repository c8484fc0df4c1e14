# -*- test-case-name: tests.conformance.test_handshake -*-
"""
docs/protocol.md's MUSTs about the magic, the Hello exchange, refusals,
frame limits and the errors that close a connection, checked on a running
node.
"""

import struct

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import node, wire
from tests.conformance.wire import BAD_REQUEST, BUSY, Connection, Frame

# Connections from one address a node accepts at once (docs/security.md).
PER_ADDRESS = 64


def dial(source: str | None = None) -> Connection:
    """
    A new connection to the origin, nothing sent yet.
    """
    origin = node.origin()
    return Connection.dial(origin.host, origin.port, source)


class HandshakeTests(SynchronousTestCase):
    """
    The magic and the Hellos.
    """

    def assertRefused(self, connection: Connection, code: int) -> Frame:
        """
        The node sends only an Error with request 0 and C{code}, then
        closes: no Hello before it, nothing after.
        """
        frames = connection.rest()
        self.assertEqual(len(frames), 1, frames)
        request, got, _ = frames[0].error()
        self.assertEqual((request, got), (0, code))
        return frames[0]

    def test_badMagic(self) -> None:
        """
        [M2] A connection whose first four bytes start with 0x89 but are not
        the magic is closed with nothing sent.
        """
        connection = dial()
        self.addCleanup(connection.close)
        connection.send(b"\x89SPX" + wire.hello())
        self.assertEqual(connection.rest(), [])
        self.assertEqual(connection.received, b"")

    def test_helloAnswered(self) -> None:
        """
        [M29] The node's first frame is its Hello, version 1 and a 16-byte
        node id, sent once the initiator's Hello is in, whether it comes
        with the magic or after it.
        """
        for together in (True, False):
            connection = dial()
            self.addCleanup(connection.close)
            if together:
                connection.send(wire.MAGIC, wire.hello())
            else:
                connection.send(wire.MAGIC)
                connection.send(wire.hello())
            version, _, nodeId, agent = connection.frame().hello()
            self.assertEqual((version, len(nodeId)), (1, 16))
            self.assertTrue(agent)

    def test_refusedWithOnlyAnError(self) -> None:
        """
        [M30] A refused handshake gets only an Error with request 0 and a
        close, never a Hello first: a first frame that is not a Hello, a
        version lower than 1, a Hello with bytes after its fields, a frame
        over the 1 KiB limit before the Hello; and a node that takes only
        TLS refuses plain SPP with FORBIDDEN.
        """
        hello = wire.hello()
        causes = [
            (wire.getPeers(1, 1), BAD_REQUEST),
            (wire.hello(version=0), wire.UNSUPPORTED_VERSION),
            (struct.pack("!I", len(hello) - 3) + hello[4:] + b"x", BAD_REQUEST),
            (struct.pack("!IB", 1025, wire.HELLO), BAD_REQUEST),
        ]
        for first, code in causes:
            connection = dial()
            self.addCleanup(connection.close)
            connection.send(wire.MAGIC, first)
            self.assertRefused(connection, code)
        tlsOnly = node.tlsOnly()
        plain = Connection.dial(tlsOnly.host, tlsOnly.port)
        self.addCleanup(plain.close)
        plain.send(wire.MAGIC, hello)
        self.assertRefused(plain, wire.FORBIDDEN)

    def test_ownNodeId(self) -> None:
        """
        [M34] A Hello carrying the node's own id is refused with only
        Error(0, BAD_REQUEST, "connected to itself").
        """
        first = dial()
        self.addCleanup(first.close)
        _, _, nodeId, _ = first.handshake().hello()
        second = dial()
        self.addCleanup(second.close)
        second.send(wire.MAGIC, wire.hello(nodeId=nodeId))
        refusal = self.assertRefused(second, BAD_REQUEST)
        self.assertEqual(refusal.error()[2], "connected to itself")

    def test_busyAddress(self) -> None:
        """
        [M31] With 64 connections open from one address, a 65th that sends
        the magic gets only Error(0, BUSY) and a close.
        """
        source = node.freshAddress()
        for _ in range(PER_ADDRESS):
            connection = dial(source)
            self.addCleanup(connection.close)
            connection.handshake()
        extra = dial(source)
        self.addCleanup(extra.close)
        extra.send(wire.MAGIC, wire.hello())
        self.assertRefused(extra, BUSY)

    def test_requestsBehindHello(self) -> None:
        """
        [M32] Requests sent right behind the initiator's Hello, in one
        write, are answered after the node's Hello.
        """
        connection = dial()
        self.addCleanup(connection.close)
        url = node.origin().url("clip.ts")
        connection.send(
            wire.MAGIC, wire.hello(), wire.open_(1, url), wire.getBlock(2, 1, 0)
        )
        self.assertEqual(connection.frame().kind, wire.HELLO)
        opened, block = connection.answers(2)
        self.assertEqual(opened.opened()[0], 1)
        self.assertEqual(block.data()[:2], (2, 0))

    def test_lowestVersion(self) -> None:
        """
        [M33] A Hello naming a higher version than the node's is answered
        with the node's (1), and the connection works in it.
        """
        connection = dial()
        self.addCleanup(connection.close)
        self.assertEqual(connection.handshake(version=9).hello()[0], 1)
        self.assertEqual(node.openFile(connection, "clip.ts")[0], 1)


class ClosingTests(SynchronousTestCase):
    """
    Frame limits, malformed frames, and Errors with request 0.
    """

    def assertClosedWithBadRequest(self, connection: Connection) -> None:
        """
        The node's last frame is Error(0, BAD_REQUEST), then it closes.
        """
        frames = [f for f in connection.rest() if f.kind != wire.HAVE]
        self.assertTrue(frames, "closed with no Error")
        self.assertEqual(frames[-1].error()[:2], (0, BAD_REQUEST))

    def test_overLimitByItsHeader(self) -> None:
        """
        [M5] A frame over the 16 KiB limit (its length, not counting the
        4 bytes of the length) is refused on its first 5 bytes, the rest
        never sent.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        connection.send(struct.pack("!IB", 16 * 1024 + 1, wire.GET_PEERS))
        self.assertClosedWithBadRequest(connection)

    def test_malformed(self) -> None:
        """
        [M6] An unknown type, a frame shorter than its fields, bytes after
        the last field, a GetDigests count of 0 or 4097, and a URL over
        2048 bytes are protocol errors: Error(0, BAD_REQUEST) and a close.
        """
        long = node.origin().url("x" * 2049)
        for bad in [
            wire.frame(0x7F, b"\0" * 8),
            wire.frame(wire.OPEN, b"\0\0\0"),
            wire.frame(wire.GET_BLOCK, struct.pack("!III", 2, 1, 0) + b"x"),
            wire.getDigests(2, 1, 0, 0),
            wire.getDigests(2, 1, 0, 4097),
            wire.open_(3, long),
        ]:
            connection = node.connect()
            self.addCleanup(connection.close)
            node.openFile(connection, "clip.ts")
            connection.send(bad)
            self.assertClosedWithBadRequest(connection)

    def test_protocolErrorClosesOnlyThat(self) -> None:
        """
        [M28] A protocol error gets Error(0, BAD_REQUEST) and a close of
        that connection; another connection goes on being answered.
        """
        other = node.connect()
        self.addCleanup(other.close)
        broken = node.connect()
        self.addCleanup(broken.close)
        broken.send(wire.frame(0x7F))
        self.assertClosedWithBadRequest(broken)
        self.assertEqual(node.openFile(other, "clip.ts")[0], 1)

    def test_errorZeroCloses(self) -> None:
        """
        [M27] After an Error with request 0 the node sends nothing more,
        not even answers to requests behind it, and closes.
        """
        connection = node.connect()
        self.addCleanup(connection.close)
        connection.send(wire.error(0, wire.BAD_REQUEST, "bye"), wire.getPeers(1, 1))
        self.assertEqual(connection.rest(), [])
