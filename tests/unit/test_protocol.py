# -*- test-case-name: tests.unit.test_protocol -*-
"""
Tests for L{p2pd.spp.protocol}: the SPP connection as a whole (its
handshake, timers and end, and two connections talking), and the test
doubles the other SPP tests share. What each side does is tested in
L{tests.unit.test_asking} and L{tests.unit.test_answering}, the framing in
L{tests.unit.test_framing}.
"""

import gc
import hashlib
import re
import socket
import struct
from typing import Any

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from p2pd import __version__
from p2pd.core.errors import ErrorCode, SelfConnection
from p2pd.core.peers import Peer
from p2pd.spp import codec
from p2pd.spp.asking import ConnectionGone
from p2pd.spp.protocol import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    KEEPALIVE_INTERVAL,
    SELF_CONNECTION,
    UNSENT_BYTES,
    SPPFactory,
    SPPProtocol,
    State,
)
from tests.fakes import FakeServedFile, FakeSPPNode
from tests.helpers import FakeTransport, connectedServerAndClient
from tests.unit.test_spec import SPEC, _section

BLOCK = codec.MIN_BLOCK_SIZE
URL = "spp://origin:1111/movie.ts"
OTHER_URL = "spp://peer:2222/other.ts"
OUR_ID = b"\x01" * 16
THEIR_ID = b"\x02" * 16
HOST = IPv4Address("TCP", "10.0.0.1", 1111)
PEER = IPv4Address("TCP", "10.0.0.2", 40000)
THEIR_HELLO = codec.Hello(1, 2222, THEIR_ID, "other/1.0")


def content(size: int, seed: bytes = b"") -> bytes:
    """
    C{size} bytes that differ from block to block.
    """
    chunks = (hashlib.sha256(seed + b"%d" % i).digest() for i in range(size // 32 + 1))
    return b"".join(chunks)[:size]


def frame(message: codec.Message) -> bytes:
    """
    A whole frame: length prefix and body.
    """
    body = codec.encode(message)
    return struct.pack("!I", len(body)) + body


def parseFrames(data: bytes) -> list[codec.Message]:
    """
    Every frame in C{data}, which must hold whole frames only.
    """
    messages = []
    while data:
        assert len(data) >= 4, f"partial length prefix {data!r}"
        (length,) = struct.unpack("!I", data[:4])
        assert len(data) >= 4 + length, "partial frame"
        messages.append(codec.decode(data[4 : 4 + length]))
        data = data[4 + length :]
    return messages


class Wire:
    """
    One L{SPPProtocol} on a L{StringTransport}; the test plays the other
    node by feeding frames and reading what the protocol sent.

    @ivar greeting: what an initiator wrote on connecting.
    """

    def __init__(self, initiator: bool = False, node: FakeSPPNode | None = None) -> None:
        self.clock = task.Clock()
        self.node = node or FakeSPPNode()
        self.protocol = SPPProtocol(self.node, self.clock, initiator)
        self.readyResults: list[Any] = []
        self.protocol.ready.addBoth(self.readyResults.append)
        self.transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
        self.protocol.makeConnection(self.transport)
        self.greeting = self.transport.value()
        self.transport.clear()

    def feedRaw(self, data: bytes, chunk: int | None = None) -> None:
        if chunk is None:
            self.protocol.dataReceived(data)
            return
        for start in range(0, len(data), chunk):
            self.protocol.dataReceived(data[start : start + chunk])

    def feed(self, *messages: codec.Message) -> None:
        self.feedRaw(b"".join(frame(m) for m in messages))

    def sent(self) -> list[codec.Message]:
        """
        The frames sent since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return parseFrames(data)

    def handshake(self) -> None:
        """
        Complete the handshake from the other side and forget its frames.
        """
        if self.protocol.initiator:
            self.feed(THEIR_HELLO)
        else:
            self.feedRaw(codec.MAGIC + frame(THEIR_HELLO))
        self.transport.clear()

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def wait(self, seconds: float) -> None:
        """
        Let C{seconds} pass in half-second steps, so that timers run when
        they are due, as on a real reactor.
        """
        self.clock.pump([0.5] * int(seconds * 2))

    def lose(self, reason: Exception | None = None) -> None:
        self.protocol.connectionLost(Failure(reason or ConnectionDone()))


def ready(initiator: bool = False) -> Wire:
    wire = Wire(initiator)
    wire.handshake()
    return wire


def serving(
    served: FakeServedFile | None = None, url: str = URL
) -> tuple[Wire, FakeServedFile]:
    """
    A responder after its handshake, serving C{served} at C{url}.
    """
    wire = ready()
    served = served or FakeServedFile(content(3 * BLOCK - 100))
    wire.node.files[url] = served
    return wire, served


class ErrorAssertions:
    def assertErrorFrame(
        self, message: codec.Message, request: int, code: ErrorCode
    ) -> None:
        assert isinstance(message, codec.Error), f"{message!r} is not an Error"
        assert (message.request, message.code) == (request, code), (
            f"{message!r} is not Error({request}, {code.name})"
        )

    def assertClosedWith(self, wire: Wire, code: ErrorCode) -> None:
        """
        The protocol sent Error C{code} about the connection and closed it.
        """
        sent = wire.sent()
        assert sent, "nothing sent"
        self.assertErrorFrame(sent[-1], 0, code)
        assert wire.closed, "connection not closed"


class FactoryTests(SynchronousTestCase):
    """
    L{SPPFactory}.
    """

    def test_factory(self) -> None:
        """
        L{SPPFactory} builds protocols for its node, clock and side.
        """
        node, clock = FakeSPPNode(), task.Clock()
        factory = SPPFactory(node, clock, initiator=False)
        protocol = factory.buildProtocol(PEER)
        self.assertIs(protocol.node, node)
        self.assertIs(protocol.clock, clock)
        self.assertFalse(protocol.initiator)
        self.assertIs(protocol.factory, factory)


class HandshakeTests(SynchronousTestCase, ErrorAssertions):
    """
    The magic, the Hello exchange and the version and identity checks.
    """

    def test_statesAsSpecified(self) -> None:
        """
        The connection's states are those docs/protocol.md draws, and each
        side goes through them in the order drawn.
        """
        section = _section(SPEC.getContent().decode("utf-8"), "Connection states")
        drawing = section.split("```")[1]
        self.assertEqual(
            set(re.findall(r"\b[A-Z][A-Z_]*[A-Z]\b", drawing)), {s.name for s in State}
        )
        responder = Wire()
        self.assertIs(responder.protocol.state, State.CONNECTED)
        responder.feedRaw(codec.MAGIC)
        self.assertIs(responder.protocol.state, State.AWAIT_HELLO)
        responder.feed(THEIR_HELLO)
        self.assertIs(responder.protocol.state, State.READY)
        responder.lose()
        self.assertIs(responder.protocol.state, State.CLOSED)
        initiator = Wire(initiator=True)
        self.assertIs(initiator.protocol.state, State.AWAIT_HELLO)
        initiator.feed(THEIR_HELLO)
        self.assertIs(initiator.protocol.state, State.READY)

    def test_noDelay(self) -> None:
        """
        Both ends turn Nagle's algorithm off: a request, or the tail of a
        block, must not wait for the other side's delayed ACK.
        """
        for initiator in (True, False):
            transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
            settings: list[bool] = []
            transport.setTcpNoDelay = settings.append  # type: ignore[attr-defined]
            SPPProtocol(FakeSPPNode(), task.Clock(), initiator).makeConnection(transport)
            self.assertEqual(settings, [True])

    def test_unsentBytes(self) -> None:
        """
        Both ends let their socket hold at most L{UNSENT_BYTES} unsent, so
        what is queued goes out in the order this node decides, not behind
        megabytes in the kernel.
        """
        for initiator in (True, False):
            handle = socket.socket()
            self.addCleanup(handle.close)
            transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
            transport.getHandle = lambda h=handle: h  # type: ignore[attr-defined]
            SPPProtocol(FakeSPPNode(), task.Clock(), initiator).makeConnection(transport)
            self.assertEqual(
                handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT),
                UNSENT_BYTES,
            )

    def test_unsentBytesUnderTLS(self) -> None:
        """
        Over TLS the limit goes on the TCP socket under it (the TLS
        transport's own handle is its TLS connection); a UNIX socket gets
        none.
        """
        handle = socket.socket()
        self.addCleanup(handle.close)
        tcp = StringTransport(hostAddress=HOST, peerAddress=PEER)
        tcp.getHandle = lambda: handle  # type: ignore[attr-defined]
        tls = StringTransport(hostAddress=HOST, peerAddress=PEER)
        tls.getHandle = lambda: object()  # type: ignore[attr-defined]
        tls.transport = tcp  # type: ignore[attr-defined]
        SPPProtocol(FakeSPPNode(), task.Clock(), True).makeConnection(tls)
        self.assertEqual(
            handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT),
            UNSENT_BYTES,
        )
        unix = socket.socket(socket.AF_UNIX)
        self.addCleanup(unix.close)
        local = StringTransport()
        local.getHandle = lambda: unix  # type: ignore[attr-defined]
        SPPProtocol(FakeSPPNode(), task.Clock(), True).makeConnection(local)

    def test_initiatorGreets(self) -> None:
        """
        The initiator sends the magic and its Hello as soon as it connects:
        version 1, its listen port and node id, and its agent.
        """
        wire = Wire(initiator=True)
        self.assertEqual(
            wire.greeting,
            codec.MAGIC + frame(codec.Hello(1, 1111, OUR_ID, f"p2pd/{__version__}")),
        )
        self.assertEqual(wire.readyResults, [])

    def test_initiatorReady(self) -> None:
        """
        The responder's Hello makes the initiator ready: it records the
        remote listen port and id, tells the node, fires C{ready}, and sends
        nothing in reply.
        """
        wire = Wire(initiator=True)
        wire.feed(THEIR_HELLO)
        self.assertEqual(wire.sent(), [])
        self.assertEqual(wire.readyResults, [wire.protocol])
        self.assertEqual(wire.node.ready, [wire.protocol])
        self.assertEqual(wire.protocol.remoteListenPort, 2222)
        self.assertEqual(wire.protocol.remoteNodeId, THEIR_ID)
        self.assertEqual(wire.protocol.remoteHost, "10.0.0.2")
        self.assertEqual(wire.protocol.remoteName, "10.0.0.2:40000")

    def test_responderWaits(self) -> None:
        """
        The responder sends nothing on connecting, nor after the magic alone.
        """
        wire = Wire()
        self.assertEqual(wire.greeting, b"")
        wire.feedRaw(codec.MAGIC)
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_responderAnswersHello(self) -> None:
        """
        After the magic and the initiator's Hello the responder answers with
        its own Hello and is ready.
        """
        wire = Wire()
        wire.feedRaw(codec.MAGIC + frame(THEIR_HELLO))
        self.assertEqual(
            wire.sent(), [codec.Hello(1, 1111, OUR_ID, f"p2pd/{__version__}")]
        )
        self.assertEqual(wire.readyResults, [wire.protocol])
        self.assertEqual(wire.node.ready, [wire.protocol])
        self.assertEqual(wire.protocol.remoteListenPort, 2222)
        self.assertEqual(wire.protocol.remoteNodeId, THEIR_ID)

    def _session(self) -> bytes:
        return (
            codec.MAGIC
            + frame(THEIR_HELLO)
            + frame(codec.Open(1, URL, ""))
            + frame(codec.GetBlock(2, 1, 0))
            + frame(codec.GetBlock(3, 1, 2))
        )

    def _checkSession(self, wire: Wire, served: FakeServedFile) -> None:
        self.assertEqual(
            wire.sent(),
            [
                codec.Hello(1, 1111, OUR_ID, f"p2pd/{__version__}"),
                codec.Opened(1, served.size, BLOCK, True, "sha256", "v1"),
                codec.Block(2, 0, served.block(0)),
                codec.Block(3, 2, served.block(2)),
            ],
        )
        self.assertFalse(wire.closed)

    def test_oneByteAtATime(self) -> None:
        """
        Magic and frames fed one byte at a time are understood.
        """
        wire = Wire()
        served = wire.node.files[URL] = FakeServedFile(content(3 * BLOCK - 5))
        wire.feedRaw(self._session(), chunk=1)
        self._checkSession(wire, served)

    def test_oddChunks(self) -> None:
        """
        Magic and frames fed in chunks that straddle frame boundaries are
        understood.
        """
        wire = Wire()
        served = wire.node.files[URL] = FakeServedFile(content(3 * BLOCK - 5))
        wire.feedRaw(self._session(), chunk=7)
        self._checkSession(wire, served)

    def test_allAtOnce(self) -> None:
        """
        The magic and several frames in one chunk are all understood.
        """
        wire = Wire()
        served = wire.node.files[URL] = FakeServedFile(content(3 * BLOCK - 5))
        wire.feedRaw(self._session())
        self._checkSession(wire, served)

    def test_badMagic(self) -> None:
        """
        A connection that does not start with the magic is closed without a
        word, and what follows is ignored.
        """
        wire = Wire()
        wire.feedRaw(b"GET / HTTP/1.1\r\n\r\n" + frame(THEIR_HELLO))
        self.assertTrue(wire.closed)
        self.assertEqual(wire.transport.value(), b"")
        self.assertEqual(wire.node.ready, [])

    def test_badMagicLastByte(self) -> None:
        """
        A magic wrong only in its last byte, sent one byte at a time, closes
        the connection.
        """
        wire = Wire()
        wire.feedRaw(b"\x89SP", chunk=1)
        self.assertFalse(wire.closed)
        wire.feedRaw(b"X" + frame(THEIR_HELLO), chunk=1)
        self.assertTrue(wire.closed)
        self.assertEqual(wire.transport.value(), b"")

    def test_wrongFirstFrame(self) -> None:
        """
        A first frame other than Hello gets Error BAD_REQUEST and a close,
        and is not acted on.
        """
        wire = Wire()
        wire.node.files[URL] = FakeServedFile(content(10))
        wire.feedRaw(codec.MAGIC + frame(codec.Open(1, URL, "")))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.node.opens, [])
        self.assertEqual(wire.node.ready, [])

    def test_initiatorWrongFirstFrame(self) -> None:
        """
        The initiator too insists on a Hello first.
        """
        wire = Wire(initiator=True)
        wire.feed(codec.KeepAlive())
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.node.ready, [])

    def test_versionZero(self) -> None:
        """
        A Hello with a version below 1 gets Error UNSUPPORTED_VERSION and a
        close.
        """
        wire = Wire()
        wire.feedRaw(codec.MAGIC + frame(codec.Hello(0, 2222, THEIR_ID, "old")))
        self.assertClosedWith(wire, ErrorCode.UNSUPPORTED_VERSION)
        self.assertEqual(wire.node.ready, [])

    def test_newerVersion(self) -> None:
        """
        A Hello with a newer version is accepted: both sides speak the
        lower, 1.
        """
        wire = Wire()
        wire.feedRaw(codec.MAGIC + frame(codec.Hello(7, 2222, THEIR_ID, "new")))
        self.assertEqual(
            wire.sent(), [codec.Hello(1, 1111, OUR_ID, f"p2pd/{__version__}")]
        )
        self.assertEqual(wire.node.ready, [wire.protocol])

    def test_ownNodeId(self) -> None:
        """
        A Hello carrying this node's own id (a node connected to itself) is
        a protocol error; the responder refuses it as any failed handshake,
        with only an Error (request 0) and no Hello, whose message tells the
        initiator (the same node) why: its handshake fails with
        L{SelfConnection}.
        """
        responder = Wire()
        responder.feedRaw(codec.MAGIC + frame(codec.Hello(1, 1111, OUR_ID, "me")))
        [error] = responder.sent()
        self.assertErrorFrame(error, 0, ErrorCode.BAD_REQUEST)
        self.assertEqual(error.message, SELF_CONNECTION)  # type: ignore[union-attr]
        self.assertTrue(responder.closed)
        self.assertEqual(responder.node.ready, [])
        wire = Wire(initiator=True)
        wire.feed(error)
        wire.lose()
        self.assertEqual(wire.node.ready, [])
        [result] = wire.readyResults
        self.assertTrue(result.check(SelfConnection))

    def test_ownNodeIdFromInitiator(self) -> None:
        """
        An initiator given a Hello with its own id closes with Error
        BAD_REQUEST, and its handshake fails with L{SelfConnection}.
        """
        wire = Wire(initiator=True)
        wire.feed(codec.Hello(1, 1111, OUR_ID, "me"))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        [result] = wire.readyResults
        self.assertTrue(result.check(SelfConnection))

    def test_otherRefusalNotSelf(self) -> None:
        """
        Any other refusal in place of the Hello fails the handshake with
        the Error's code, not as a connection to itself.
        """
        wire = Wire(initiator=True)
        wire.feed(codec.Error(0, ErrorCode.BAD_REQUEST, "no"))
        wire.lose()
        [result] = wire.readyResults
        self.assertFalse(result.check(SelfConnection))
        self.assertEqual(result.value.code, ErrorCode.BAD_REQUEST)

    def test_helloTwice(self) -> None:
        """
        A second Hello is a protocol error.
        """
        wire = ready()
        wire.feed(THEIR_HELLO)
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_handshakeTimeout(self) -> None:
        """
        A responder that has no Hello 10 s after the connection sends Error
        TIMEOUT and closes.
        """
        wire = Wire()
        wire.feedRaw(codec.MAGIC)
        wire.clock.advance(HANDSHAKE_TIMEOUT - 0.1)
        self.assertFalse(wire.closed)
        wire.clock.advance(0.1)
        self.assertClosedWith(wire, ErrorCode.TIMEOUT)

    def test_initiatorHandshakeTimeout(self) -> None:
        """
        An initiator whose Hello is not answered within 10 s sends Error
        TIMEOUT and closes.
        """
        wire = Wire(initiator=True)
        wire.clock.advance(HANDSHAKE_TIMEOUT)
        self.assertClosedWith(wire, ErrorCode.TIMEOUT)
        wire.lose()
        self.assertIsInstance(wire.readyResults[0], Failure)
        wire.readyResults[0].trap(ConnectionGone)

    def test_handshakeDoneInTime(self) -> None:
        """
        Once the handshake is done, the handshake timer no longer runs.
        """
        wire = ready()
        wire.clock.advance(HANDSHAKE_TIMEOUT)
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_requestsBehindHello(self) -> None:
        """
        The initiator sends requests right behind its Hello, before the
        answer: they are answered once the handshake is done.
        """
        wire = Wire(initiator=True)
        opened = wire.protocol.open(URL)
        self.assertEqual(wire.sent(), [codec.Open(1, URL, "")])
        self.assertNoResult(opened)
        wire.feed(THEIR_HELLO, codec.Opened(1, 10, BLOCK, True, "sha256", "v1"))
        self.assertEqual(self.successResultOf(opened).meta.size, 10)

    def test_requestsBeforeHandshakeFail(self) -> None:
        """
        Requests fail at once with L{ConnectionGone} on a responder before
        its handshake, and on a connection whose handshake failed.
        """
        wire = Wire()
        self.failureResultOf(wire.protocol.open(URL), ConnectionGone)
        self.assertEqual(wire.sent(), [])
        wire = Wire(initiator=True)
        opened = wire.protocol.open(URL)
        wire.feed(codec.Error(0, ErrorCode.UNSUPPORTED_VERSION, "no"))
        wire.lose()
        self.failureResultOf(opened, ConnectionGone)


class TimerTests(SynchronousTestCase, ErrorAssertions):
    """
    KeepAlive after 30 s without sending; close after 90 s without
    receiving.
    """

    def test_keepalive(self) -> None:
        """
        A side that has sent nothing for 30 s sends KeepAlive.
        """
        wire = ready()
        wire.wait(KEEPALIVE_INTERVAL - 0.5)
        self.assertEqual(wire.sent(), [])
        wire.wait(0.5)
        self.assertEqual(wire.sent(), [codec.KeepAlive()])
        self.assertFalse(wire.closed)

    def test_keepaliveCountsFromLastSend(self) -> None:
        """
        Sending anything restarts the keepalive interval.
        """
        wire = ready()
        wire.wait(20)
        wire.feed(codec.KeepAlive())  # nothing is answered to a KeepAlive
        wire.node.files[URL] = FakeServedFile(content(10))
        wire.feed(codec.Open(1, URL, ""))
        self.assertEqual(len(wire.sent()), 1)
        wire.wait(KEEPALIVE_INTERVAL - 0.5)
        self.assertEqual(wire.sent(), [])
        wire.wait(0.5)
        self.assertEqual(wire.sent(), [codec.KeepAlive()])

    def test_idleTimeout(self) -> None:
        """
        A side that has received nothing for 90 s sends Error TIMEOUT and
        closes, even though it sent keepalives meanwhile.
        """
        wire = ready()
        wire.wait(IDLE_TIMEOUT - 0.5)
        self.assertFalse(wire.closed)
        self.assertEqual(wire.sent(), [codec.KeepAlive()] * 2)
        wire.wait(0.5)
        self.assertClosedWith(wire, ErrorCode.TIMEOUT)

    def test_receivingKeepsOpen(self) -> None:
        """
        A peer's keepalives keep the connection open indefinitely.
        """
        wire = ready()
        for _ in range(20):
            wire.wait(KEEPALIVE_INTERVAL)
            wire.feed(codec.KeepAlive())
        self.assertFalse(wire.closed)
        self.assertTrue(all(m == codec.KeepAlive() for m in wire.sent()))

    def test_nothingAfterClose(self) -> None:
        """
        After a protocol error closes the connection, no timer writes
        anything more, even while the transport is still closing.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 1) + b"\xff")
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.wait(IDLE_TIMEOUT + KEEPALIVE_INTERVAL)
        self.assertEqual(wire.transport.value(), b"")

    def test_timersStopOnLoss(self) -> None:
        """
        Losing the connection cancels every timer.
        """
        for wire in (Wire(), Wire(initiator=True), ready(), ready(initiator=True)):
            wire.lose()
            self.assertEqual(wire.clock.getDelayedCalls(), [])


class LostTests(SynchronousTestCase, ErrorAssertions):
    """
    What a lost connection does to requests, files and the node.
    """

    def test_outstandingFail(self) -> None:
        """
        Outstanding requests fail with L{ConnectionGone}; later ones fail at
        once.
        """
        wire = ready(initiator=True)
        opening = wire.protocol.open(URL)
        wire.feed(codec.Opened(1, 3 * BLOCK, BLOCK, True, "sha256", "v1"))
        remote = self.successResultOf(opening)
        ds = [remote.getBlock(0), remote.getDigests(0, 3), remote.getPeers()]
        ds.append(wire.protocol.open(OTHER_URL))
        wire.lose(ConnectionLost("reset"))
        for d in ds:
            self.failureResultOf(d, ConnectionGone)
        self.failureResultOf(remote.getBlock(1), ConnectionGone)
        self.failureResultOf(wire.protocol.open(URL), ConnectionGone)

    def test_failureCancellingOthers(self) -> None:
        """
        When the failure of one outstanding request makes its caller cancel
        the others (as a download dropping the source does), the rest of the
        clean-up still runs: remote files hear of the loss and the node of
        the closed connection.
        """
        wire = ready(initiator=True)
        opening = wire.protocol.open(URL)
        wire.feed(codec.Opened(1, 3 * BLOCK, BLOCK, True, "sha256", "v1"))
        remote = self.successResultOf(opening)
        first, second = remote.getBlock(0), remote.getBlock(1)
        first.addErrback(lambda _: second.cancel())
        second.addErrback(lambda _: None)
        reasons: list[Failure] = []
        remote.onLost = reasons.append
        wire.lose(ConnectionLost("reset"))
        self.assertEqual(len(reasons), 1)
        self.assertEqual(wire.node.gone, [wire.protocol])

    def test_onLost(self) -> None:
        """
        Each remote file's C{onLost} is called once, with the reason.
        """
        wire = ready(initiator=True)
        opening = wire.protocol.open(URL)
        wire.feed(codec.Opened(1, 3 * BLOCK, BLOCK, True, "sha256", "v1"))
        remote = self.successResultOf(opening)
        reasons: list[Failure] = []
        remote.onLost = reasons.append
        wire.sent()
        wire.lose(ConnectionLost("reset"))
        self.assertEqual(len(reasons), 1)
        reasons[0].trap(ConnectionLost)
        remote.close()
        self.assertEqual(wire.sent(), [])

    def test_servedFilesClosed(self) -> None:
        """
        Files served on the connection are closed.
        """
        wire, served = serving()
        wire.feed(codec.Open(1, URL, ""), codec.Open(2, URL, ""))
        wire.lose()
        self.assertEqual(served.closed, 2)

    def test_readsCancelled(self) -> None:
        """
        Block reads in progress are cancelled, and nothing is sent when they
        end.
        """
        wire, served = serving(FakeServedFile(content(3 * BLOCK), manual=True))
        wire.feed(
            codec.Open(1, URL, ""), codec.GetBlock(2, 1, 0), codec.GetBlock(3, 1, 1)
        )
        wire.sent()
        wire.lose()
        self.assertEqual(served.cancelled, [0, 1])
        self.assertEqual(wire.transport.value(), b"")

    def test_nodeTold(self) -> None:
        """
        The node hears of a ready connection's end through
        C{connectionGone}; a connection that never got ready is not
        reported.
        """
        wire = ready()
        wire.lose()
        self.assertEqual(wire.node.gone, [wire.protocol])
        early = Wire()
        early.lose()
        self.assertEqual(early.node.gone, [])
        failed = Wire()
        failed.feedRaw(codec.MAGIC + frame(codec.Hello(0, 1, THEIR_ID, "")))
        failed.lose()
        self.assertEqual(failed.node.gone, [])

    def test_nodeToldAfterOwnClose(self) -> None:
        """
        A ready connection this side closes, for a protocol error or the
        idle timeout, is reported to the node too, so the node does not
        keep reusing a dead connection.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 1) + b"\x7f")
        self.assertTrue(wire.closed)
        wire.lose()
        self.assertEqual(wire.node.gone, [wire.protocol])
        idle = ready()
        idle.wait(IDLE_TIMEOUT)
        self.assertTrue(idle.closed)
        idle.lose()
        self.assertEqual(idle.node.gone, [idle.protocol])

    def test_readyFails(self) -> None:
        """
        A connection lost before its handshake fails C{ready} with
        L{ConnectionGone}.
        """
        wire = Wire(initiator=True)
        wire.lose()
        [result] = wire.readyResults
        result.trap(ConnectionGone)

    def test_unwatchedReadyNotLogged(self) -> None:
        """
        A responder lost before its handshake (nobody waits on its
        C{ready}) does not log an unhandled error.
        """
        protocol = SPPProtocol(FakeSPPNode(), task.Clock(), False)
        protocol.makeConnection(StringTransport(peerAddress=PEER))
        protocol.dataReceived(b"nonsense")
        protocol.connectionLost(Failure(ConnectionDone()))
        del protocol
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])


class InMemoryTests(SynchronousTestCase):
    """
    Two real protocols talking through an in-memory connection.
    """

    def _connect(
        self, serverNode: FakeSPPNode, clientNode: FakeSPPNode
    ) -> tuple[SPPProtocol, SPPProtocol, Any, task.Clock]:
        clock = task.Clock()
        client, server, pump = connectedServerAndClient(
            lambda: SPPProtocol(serverNode, clock, initiator=False),
            lambda: SPPProtocol(clientNode, clock, initiator=True),
            clientTransportFactory=lambda p: FakeTransport(
                p, False, hostAddress=PEER, peerAddress=HOST
            ),
            serverTransportFactory=lambda p: FakeTransport(
                p, True, hostAddress=HOST, peerAddress=PEER
            ),
        )
        self.assertIs(self.successResultOf(client.ready), client)
        self.assertIs(self.successResultOf(server.ready), server)
        return client, server, pump, clock

    def test_fetch(self) -> None:
        """
        A client opens a file on an authoritative server, fetches its
        digests and blocks, and gets the file's bytes, each block matching
        its digest.
        """
        data = content(2 * BLOCK + 1000)
        served = FakeServedFile(data)
        served.peerList = [Peer("10.0.0.3", 1111)]
        serverNode = FakeSPPNode(OUR_ID, 1111)
        serverNode.files[URL] = served
        clientNode = FakeSPPNode(THEIR_ID, 2222)
        client, server, pump, clock = self._connect(serverNode, clientNode)
        self.assertEqual(serverNode.ready, [server])
        self.assertEqual(clientNode.ready, [client])
        self.assertEqual(server.remoteListenPort, 2222)
        self.assertEqual(client.remoteListenPort, 1111)

        opening = client.open(URL)
        pump.flush()
        remote = self.successResultOf(opening)
        self.assertTrue(remote.claimsAuthority)  # type: ignore[attr-defined]
        self.assertEqual(remote.meta.blocks, 3)
        gettingDigests = remote.getDigests(0, 3)
        gettingBlocks = [remote.getBlock(i) for i in (2, 0, 1)]
        gettingPeers = remote.getPeers()
        pump.flush()
        digests = self.successResultOf(gettingDigests)
        b2, b0, b1 = (self.successResultOf(d) for d in gettingBlocks)
        self.assertEqual(b0 + b1 + b2, data)
        for i, block in enumerate((b0, b1, b2)):
            self.assertEqual(remote.meta.digest(block), digests[32 * i : 32 * i + 32])
        self.assertEqual(list(self.successResultOf(gettingPeers)), served.peerList)  # type: ignore[arg-type]
        self.assertEqual(served.askers, [("10.0.0.2", 2222)])

        remote.close()
        pump.flush()
        self.assertEqual(served.closed, 1)
        client.transport.loseConnection()
        pump.flush()
        self.assertEqual(clientNode.gone, [client])
        self.assertEqual(serverNode.gone, [server])

    def test_bothWays(self) -> None:
        """
        Both sides open files on each other over one connection, with
        independent handles and request ids.
        """
        serverData, clientData = content(BLOCK + 5, b"s"), content(BLOCK + 7, b"c")
        serverNode, clientNode = FakeSPPNode(OUR_ID, 1111), FakeSPPNode(THEIR_ID, 2222)
        serverNode.files[URL] = FakeServedFile(serverData)
        clientNode.files[OTHER_URL] = FakeServedFile(clientData, authoritative=False)
        clientNode.files[OTHER_URL].heldRanges = [(1, 1)]
        client, server, pump, clock = self._connect(serverNode, clientNode)

        fromServer, fromClient = client.open(URL), server.open(OTHER_URL, "v1")
        pump.flush()
        onServer, onClient = (
            self.successResultOf(fromServer),
            self.successResultOf(fromClient),
        )
        self.assertEqual((onServer.handle, onClient.handle), (1, 1))  # type: ignore[attr-defined]
        self.assertEqual(
            [i for i in range(2) if onClient.has(i)], [1], "Have was not received"
        )
        gets = [onServer.getBlock(1), onClient.getBlock(1), onServer.getBlock(0)]
        pump.flush()
        self.assertEqual(
            [self.successResultOf(d) for d in gets],
            [serverData[BLOCK:], clientData[BLOCK:], serverData[:BLOCK]],
        )

    def test_keepalivesKeepItOpen(self) -> None:
        """
        Two idle nodes keep their connection open with keepalives.
        """
        client, server, pump, clock = self._connect(
            FakeSPPNode(OUR_ID), FakeSPPNode(THEIR_ID)
        )
        for _ in range(int(3 * IDLE_TIMEOUT // 10)):
            clock.advance(10)
            pump.flush()
        self.assertFalse(client.transport.disconnecting)
        self.assertFalse(server.transport.disconnecting)
        self.assertGreater(server.bytesReceived, 0)
