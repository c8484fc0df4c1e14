# -*- test-case-name: tests.test_protocol -*-
"""
Tests for L{p2pd.spp.protocol}: the SPP connection, both as the node that
answers requests and as the node that makes them.
"""

import dataclasses
import gc
import hashlib
import struct
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from p2pd import __version__
from p2pd.engine.interfaces import (
    IServedFile,
    ISource,
    ISPPNode,
    SelfConnection,
    SPPError,
)
from p2pd.engine.meta import FileMeta
from p2pd.spp import answering, codec
from p2pd.spp.answering import MAX_OPEN_FILES, MAX_PENDING_REQUESTS
from p2pd.spp.asking import ConnectionGone, RemoteFile
from p2pd.spp.codec import ErrorCode
from p2pd.spp.protocol import (
    HANDSHAKE_TIMEOUT,
    IDLE_TIMEOUT,
    KEEPALIVE_INTERVAL,
    SPPFactory,
    SPPProtocol,
)
from tests.helpers import FakeTransport, connectedServerAndClient

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


@implementer(IServedFile)
class FakeServedFile:
    """
    A file served from memory. With C{manual}, reads and digests wait for
    the test to fire them.
    """

    def __init__(
        self,
        data: bytes = b"",
        blockSize: int = BLOCK,
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
        self.peerList: list[codec.Peer] = []
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

    def peers(self, host: str, port: int) -> Sequence[codec.Peer]:
        self.askers.append((host, port))
        return self.peerList

    def close(self) -> None:
        self.closed += 1


@implementer(ISPPNode)
class FakeNode:
    """
    A node serving the files in C{files}, recording what its connections
    tell it.
    """

    def __init__(self, nodeId: bytes = OUR_ID, listenPort: int = 1111) -> None:
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


class Wire:
    """
    One L{SPPProtocol} on a L{StringTransport}; the test plays the other
    node by feeding frames and reading what the protocol sent.

    @ivar greeting: what an initiator wrote on connecting.
    """

    def __init__(self, initiator: bool = False, node: FakeNode | None = None) -> None:
        self.clock = task.Clock()
        self.node = node or FakeNode()
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


class FakesTests(SynchronousTestCase):
    """
    The test doubles provide the interfaces they stand in for.
    """

    def test_interfaces(self) -> None:
        """
        L{FakeNode} is an L{ISPPNode} and L{FakeServedFile} an
        L{IServedFile}; L{RemoteFile} is an L{ISource}.
        """
        self.assertTrue(verifyObject(ISPPNode, FakeNode()))
        self.assertTrue(verifyObject(IServedFile, FakeServedFile()))
        wire = ready(initiator=True)
        remote = RemoteFile(wire.protocol, 1)
        remote.opened(FileMeta(URL, 1, BLOCK, "sha256", "v"), True)
        self.assertTrue(verifyObject(ISource, remote))

    def test_factory(self) -> None:
        """
        L{SPPFactory} builds protocols for its node, clock and side.
        """
        node, clock = FakeNode(), task.Clock()
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

    def test_noDelay(self) -> None:
        """
        Both ends turn Nagle's algorithm off: a request, or the tail of a
        block, must not wait for the other side's delayed ACK.
        """
        for initiator in (True, False):
            transport = StringTransport(hostAddress=HOST, peerAddress=PEER)
            settings: list[bool] = []
            transport.setTcpNoDelay = settings.append  # type: ignore[attr-defined]
            SPPProtocol(FakeNode(), task.Clock(), initiator).makeConnection(transport)
            self.assertEqual(settings, [True])

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
        a protocol error; the responder answers with its Hello first, so the
        initiator (the same node) learns why, and the initiator's handshake
        fails with L{SelfConnection}.
        """
        wire = Wire(initiator=True)
        wire.feed(codec.Hello(1, 1111, OUR_ID, "me"))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.node.ready, [])
        responder = Wire()
        responder.feedRaw(codec.MAGIC + frame(codec.Hello(1, 1111, OUR_ID, "me")))
        hello, error = responder.sent()
        self.assertIsInstance(hello, codec.Hello)
        self.assertErrorFrame(error, 0, ErrorCode.BAD_REQUEST)
        self.assertTrue(responder.closed)
        self.assertEqual(responder.node.ready, [])
        wire.lose()
        [result] = wire.readyResults
        self.assertTrue(result.check(SelfConnection))

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


class FramingTests(SynchronousTestCase, ErrorAssertions):
    """
    Oversized, malformed and unknown frames.
    """

    def test_frameTooLong(self) -> None:
        """
        A length prefix over L{codec.MAX_FRAME} gets Error BAD_REQUEST and a
        close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", codec.MAX_FRAME + 1))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_hugeFrameNotBuffered(self) -> None:
        """
        After a length prefix over the limit, the protocol keeps none of the
        bytes that follow: memory stays bounded however much is sent.
        """
        for handshaken in (False, True):
            wire = ready() if handshaken else Wire()
            if not handshaken:
                wire.feedRaw(codec.MAGIC)
            wire.feedRaw(struct.pack("!I", 0xFFFFFFFF))
            for _ in range(64):
                wire.feedRaw(b"x" * 65536)
            self.assertTrue(wire.closed)
            self.assertLessEqual(wire.protocol.bufferedBytes, 4)

    def test_framesInAnyChunking(self) -> None:
        """
        Frames arrive intact however the stream is cut: a big Block split
        across many reads, and many small frames in one read.
        """
        wire, served = serving(FakeServedFile(content(4 * BLOCK)))
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        requests = b"".join(frame(codec.GetBlock(r, 1, r % 4)) for r in range(2, 40))
        wire.feedRaw(requests)
        self.assertEqual(len(wire.sent()), 38)
        self.assertEqual(wire.protocol.bufferedBytes, 0)
        client = ready(initiator=True)
        d = client.protocol.open(URL)
        client.feed(codec.Opened(1, 4 * BLOCK, BLOCK, True, "sha256", "v1"))
        remote = self.successResultOf(d)
        client.sent()
        whole = content(4 * BLOCK)
        for index, chunk in ((1, 1), (2, 1000), (3, 65536)):
            got = remote.getBlock(index)
            [request] = client.sent()
            block = whole[index * BLOCK : (index + 1) * BLOCK]
            client.feedRaw(frame(codec.Block(request.request, index, block)), chunk)
            self.assertEqual(self.successResultOf(got), block)
            self.assertEqual(client.protocol.bufferedBytes, 0)

    def test_largestBlockAccepted(self) -> None:
        """
        A Block of the largest block size fits in a frame and is delivered.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        size = codec.MAX_BLOCK_SIZE
        wire.feed(codec.Opened(1, size, size, True, "sha256", "v1"))
        remote = self.successResultOf(d)
        got = remote.getBlock(0)
        data = b"b" * size
        wire.feedRaw(frame(codec.Block(2, 0, data)), chunk=65536)
        self.assertEqual(self.successResultOf(got), data)
        self.assertFalse(wire.closed)

    def test_malformedFrame(self) -> None:
        """
        A frame that does not decode gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 3) + b"\x08\x00\x00")
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_unknownType(self) -> None:
        """
        A frame of an unknown type gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 1) + b"\x7f")
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_emptyFrame(self) -> None:
        """
        A frame of length 0 gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 0))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_framesAfterErrorIgnored(self) -> None:
        """
        Frames arriving after a protocol error, even in the same chunk, are
        not acted on.
        """
        wire, served = serving()
        wire.feedRaw(struct.pack("!I", 1) + b"\x7f" + frame(codec.Open(1, URL, "")))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.node.opens, [])


class ServingTests(SynchronousTestCase, ErrorAssertions):
    """
    Answering the other node's Open, GetDigests, GetBlock, GetPeers, Cancel
    and Close.
    """

    def test_open(self) -> None:
        """
        Open is answered with Opened: the served file's metadata. The node
        is asked with the URL, version and connection.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(
            wire.sent(), [codec.Opened(5, served.size, BLOCK, True, "sha256", "v1")]
        )
        self.assertEqual(wire.node.opens, [(URL, "v1", wire.protocol)])

    def test_handleIsOpenRequest(self) -> None:
        """
        A file's handle is the id of the Open that opened it: requests can
        name it right behind the Open. An Open whose id is an open handle
        gets Error BAD_REQUEST and leaves that handle alone.
        """
        wire, served = serving()
        wire.feed(
            codec.Open(5, URL, ""),
            codec.GetDigests(6, 5, 0, 1),
            codec.Open(5, URL, ""),
        )
        opened, digests, error = wire.sent()
        self.assertIsInstance(opened, codec.Opened)
        self.assertEqual(digests, codec.Digests(6, 0, served.digestsOf(0, 1)))
        self.assertErrorFrame(error, 5, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)
        wire.feed(codec.GetDigests(7, 5, 1, 1))
        self.assertEqual(wire.sent(), [codec.Digests(7, 1, served.digestsOf(1, 1))])

    def test_openNotFound(self) -> None:
        """
        An Open the node refuses gets an Error with the request id and its
        code; the connection stays open.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, "spp://origin:1111/nothing", ""))
        [error] = wire.sent()
        self.assertErrorFrame(error, 5, ErrorCode.NOT_FOUND)
        self.assertFalse(wire.closed)

    def test_openOtherErrors(self) -> None:
        """
        The node's error code (CHANGED, FORBIDDEN) is passed on.
        """
        for code in (ErrorCode.CHANGED, ErrorCode.FORBIDDEN):
            wire, served = serving()
            wire.node.openError = SPPError(code, "no")
            wire.feed(codec.Open(5, URL, ""))
            [error] = wire.sent()
            self.assertErrorFrame(error, 5, code)
            self.assertFalse(wire.closed)

    def test_tooManyOpen(self) -> None:
        """
        At most 64 handles are open per connection; Open beyond gets BUSY,
        and after a Close there is room again.
        """
        wire, served = serving()
        wire.feed(*[codec.Open(r, URL, "") for r in range(1, MAX_OPEN_FILES + 1)])
        self.assertEqual(len(wire.sent()), MAX_OPEN_FILES)
        wire.feed(codec.Open(100, URL, ""))
        [error] = wire.sent()
        self.assertErrorFrame(error, 100, ErrorCode.BUSY)
        wire.feed(codec.Close(3), codec.Open(101, URL, ""))
        [opened] = wire.sent()
        self.assertIsInstance(opened, codec.Opened)
        self.assertFalse(wire.closed)

    def test_haveForHeld(self) -> None:
        """
        A non-authoritative Opened is followed by Have for the blocks held.
        """
        served = FakeServedFile(
            content(10 * BLOCK), authoritative=False, held=[(0, 2), (5, 1)]
        )
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(
            wire.sent(),
            [
                codec.Opened(5, served.size, BLOCK, False, "sha256", "v1"),
                codec.Have(5, ((0, 2), (5, 1))),
            ],
        )

    def test_haveManyRanges(self) -> None:
        """
        More held ranges than fit in one Have go in several.
        """
        held = [(2 * i, 1) for i in range(codec.MAX_HAVE_RANGES + 10)]
        served = FakeServedFile(content(BLOCK), authoritative=False, held=held)
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        opened, first, second = wire.sent()
        self.assertEqual(first, codec.Have(5, tuple(held[: codec.MAX_HAVE_RANGES])))
        self.assertEqual(second, codec.Have(5, tuple(held[codec.MAX_HAVE_RANGES :])))

    def test_haveUpdates(self) -> None:
        """
        Blocks the served file gains while the handle is open are announced
        with Have; after Close they are not.
        """
        served = FakeServedFile(content(10 * BLOCK), authoritative=False)
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(len(wire.sent()), 1)
        [watcher] = served.watchers
        watcher([(3, 2)])
        self.assertEqual(wire.sent(), [codec.Have(5, ((3, 2),))])
        wire.feed(codec.Close(5))
        watcher([(7, 1)])
        self.assertEqual(wire.sent(), [])

    def test_authoritativeNoHave(self) -> None:
        """
        An authoritative answer holds every block: no Have, no watch.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, ""))
        [opened] = wire.sent()
        self.assertEqual(served.watchers, [])

    def test_peerReadingNothingDropped(self) -> None:
        """
        A peer that keeps asking while it reads nothing (its transport stays
        full) is dropped, without waiting to send what is buffered, once
        C{MAX_UNREAD} bytes were written since it last read; a peer that
        reads in between is not.
        """
        self.patch(answering, "MAX_UNREAD", 1000)
        wire, served = serving()
        missing = codec.Open(0, "spp://origin:1111/nothing", "")
        producer = wire.transport.producer
        for round_ in range(3):
            producer.pauseProducing()  # as a full transport does
            wire.feed(*[dataclasses.replace(missing, request=r) for r in range(1, 41)])
            self.assertFalse(wire.closed, round_)
            producer.resumeProducing()
        self.assertGreater(len(wire.transport.value()), 2000)
        wire.transport.clear()
        aborted: list[bool] = []
        wire.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        producer.pauseProducing()
        wire.feed(*[dataclasses.replace(missing, request=r) for r in range(1, 81)])
        self.assertEqual(aborted, [True])
        self.assertLessEqual(len(wire.transport.value()), 1000)

    def test_close(self) -> None:
        """
        Close releases the served file and is not answered; the handle is
        then unknown.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, ""))
        wire.sent()
        wire.feed(codec.Close(5))
        self.assertEqual(served.closed, 1)
        self.assertEqual(wire.sent(), [])
        wire.feed(codec.GetBlock(6, 5, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 6, ErrorCode.NOT_FOUND)

    def test_closeUnknownHandle(self) -> None:
        """
        Close of a handle that is not open is ignored.
        """
        wire, served = serving()
        wire.feed(codec.Close(9))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def _opened(
        self, served: FakeServedFile | None = None
    ) -> tuple[Wire, FakeServedFile]:
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        return wire, served

    def test_getDigests(self) -> None:
        """
        GetDigests is answered with the digests of the blocks asked for.
        """
        wire, served = self._opened()
        wire.feed(codec.GetDigests(7, 1, 1, 2))
        self.assertEqual(wire.sent(), [codec.Digests(7, 1, served.digestsOf(1, 2))])

    def test_getDigestsLater(self) -> None:
        """
        Digests computed later are sent when ready, in the order they are
        ready.
        """
        wire, served = self._opened(FakeServedFile(content(3 * BLOCK), manual=True))
        wire.feed(codec.GetDigests(7, 1, 0, 1), codec.GetDigests(8, 1, 1, 2))
        self.assertEqual(wire.sent(), [])
        (first, firstValue), (second, secondValue) = served.pendingDigests
        second.callback(secondValue)
        first.callback(firstValue)
        self.assertEqual(
            wire.sent(),
            [codec.Digests(8, 1, secondValue), codec.Digests(7, 0, firstValue)],
        )

    def test_getDigestsNotAuthoritative(self) -> None:
        """
        Only authorities give digests: others answer NOT_FOUND.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), authoritative=False))
        wire.feed(codec.GetDigests(7, 1, 0, 1))
        [error] = wire.sent()
        self.assertErrorFrame(error, 7, ErrorCode.NOT_FOUND)
        self.assertFalse(wire.closed)

    def test_getDigestsPastEnd(self) -> None:
        """
        Digests asked for past the end of the file are cut at the end (an
        opener may ask before it knows the size); digests from a block
        past the end get BAD_REQUEST for that request only.
        """
        wire, served = self._opened()
        wire.feed(codec.GetDigests(7, 1, 2, 5), codec.GetDigests(8, 1, 3, 1))
        digests, error = wire.sent()
        self.assertEqual(digests, codec.Digests(7, 2, served.digestsOf(2, 1)))
        self.assertErrorFrame(error, 8, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_getDigestsBusy(self) -> None:
        """
        Beyond 64 digest requests outstanding, GetDigests gets BUSY.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(
            *[codec.GetDigests(r, 1, 0, 1) for r in range(1, MAX_PENDING_REQUESTS + 2)]
        )
        [error] = wire.sent()
        self.assertErrorFrame(error, MAX_PENDING_REQUESTS + 1, ErrorCode.BUSY)
        for d, value in served.pendingDigests[:MAX_PENDING_REQUESTS]:
            d.callback(value)
        self.assertEqual(len(wire.sent()), MAX_PENDING_REQUESTS)
        del served.pendingDigests[:]
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_getPeers(self) -> None:
        """
        GetPeers is answered with the served file's peers, and the asker is
        recorded at its address and the listen port of its Hello.
        """
        wire, served = self._opened()
        served.peerList = [codec.Peer("10.0.0.3", 1111), codec.Peer("::1", 80, True)]
        wire.feed(codec.GetPeers(8, 1))
        self.assertEqual(wire.sent(), [codec.Peers(8, tuple(served.peerList))])
        self.assertEqual(served.askers, [("10.0.0.2", 2222)])

    def test_getPeersAtMost64(self) -> None:
        """
        At most 64 peers are sent, the first ones.
        """
        wire, served = self._opened()
        served.peerList = [codec.Peer("10.0.0.3", port) for port in range(1, 100)]
        wire.feed(codec.GetPeers(8, 1))
        [peers] = wire.sent()
        self.assertEqual(peers.peers, tuple(served.peerList[: codec.MAX_PEERS]))  # type: ignore[union-attr]

    def test_getBlock(self) -> None:
        """
        GetBlock is answered with the block's bytes, the last one short.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(9, 1, 0), codec.GetBlock(10, 1, 2))
        self.assertEqual(
            wire.sent(),
            [codec.Block(9, 0, served.block(0)), codec.Block(10, 2, served.block(2))],
        )
        self.assertEqual(len(served.block(2)), BLOCK - 100)

    def test_getBlockPastEnd(self) -> None:
        """
        A block past the end gets BAD_REQUEST for that request only.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(9, 1, 3))
        [error] = wire.sent()
        self.assertErrorFrame(error, 9, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_readFails(self) -> None:
        """
        A read failing with an SPP error sends that error; any other failure
        is logged and sent as INTERNAL.
        """
        wire, served = self._opened()
        served.readError = SPPError(ErrorCode.UNAVAILABLE, "not held")
        wire.feed(codec.GetBlock(9, 1, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 9, ErrorCode.UNAVAILABLE)
        served.readError = OSError("disk on fire")
        wire.feed(codec.GetBlock(10, 1, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 10, ErrorCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse(wire.closed)

    def test_unknownHandle(self) -> None:
        """
        GetBlock, GetDigests or GetPeers naming a handle that is not open
        (it may follow an Open that failed) gets Error NOT_FOUND; the
        connection stays up.
        """
        for message in (
            codec.GetBlock(9, 7, 0),
            codec.GetDigests(9, 7, 0, 1),
            codec.GetPeers(9, 7),
        ):
            wire, served = self._opened()
            wire.feed(message)
            [error] = wire.sent()
            self.assertErrorFrame(error, 9, ErrorCode.NOT_FOUND)
            self.assertFalse(wire.closed)

    def test_pipelining(self) -> None:
        """
        Several GetBlock may be outstanding; each is answered when its block
        is read, whatever the order of the requests.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        self.assertEqual(wire.sent(), [])
        self.assertEqual(served.readIndexes, [0, 1])  # two reads at once
        served.finishRead(1)
        self.assertEqual(wire.sent(), [codec.Block(2, 1, served.block(1))])
        self.assertEqual(served.readIndexes, [0, 1, 2])
        served.finishRead(2)
        served.finishRead(0)
        self.assertEqual(
            wire.sent(),
            [codec.Block(3, 2, served.block(2)), codec.Block(1, 0, served.block(0))],
        )

    def test_tooManyBlockRequests(self) -> None:
        """
        Beyond 64 outstanding GetBlock, a request gets BUSY; the others are
        still answered.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        count = MAX_PENDING_REQUESTS + 1
        wire.feed(*[codec.GetBlock(r, 1, 0) for r in range(1, count + 1)])
        [error] = wire.sent()
        self.assertErrorFrame(error, count, ErrorCode.BUSY)
        self.assertFalse(wire.closed)
        while served.reads:
            served.finishRead(0)
        self.assertEqual(
            [m.request for m in wire.sent()],  # type: ignore[union-attr]
            list(range(1, count)),
        )

    def test_cancelQueued(self) -> None:
        """
        Cancel of a request not yet being read gets Error CANCELLED, and its
        block is neither read nor sent.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Cancel(3))
        [error] = wire.sent()
        self.assertErrorFrame(error, 3, ErrorCode.CANCELLED)
        served.finishRead(0)
        served.finishRead(1)
        self.assertEqual(
            wire.sent(),
            [codec.Block(1, 0, served.block(0)), codec.Block(2, 1, served.block(1))],
        )
        self.assertEqual(served.readIndexes, [0, 1])
        self.assertFalse(wire.closed)

    def test_cancelReading(self) -> None:
        """
        Cancel of a block being read cancels the read and sends Error
        CANCELLED; the next queued request is then read.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Cancel(1))
        self.assertEqual(served.cancelled, [0])
        [error] = wire.sent()
        self.assertErrorFrame(error, 1, ErrorCode.CANCELLED)
        self.assertEqual(served.readIndexes, [0, 1, 2])

    def test_cancelDigests(self) -> None:
        """
        Cancel of a digest request being computed sends Error CANCELLED.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(codec.GetDigests(4, 1, 0, 1), codec.Cancel(4))
        [error] = wire.sent()
        self.assertErrorFrame(error, 4, ErrorCode.CANCELLED)

    def test_cancelUnknown(self) -> None:
        """
        Cancel of a request that was already answered, or never made, is
        ignored.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(1, 1, 0))
        self.assertEqual(len(wire.sent()), 1)
        wire.feed(codec.Cancel(1), codec.Cancel(77))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_closeWithQueuedRequests(self) -> None:
        """
        Requests still queued when their handle is closed get Error
        BAD_REQUEST; reads already started are answered.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Close(1))
        served.finishRead(0)
        block, error = wire.sent()
        self.assertEqual(block, codec.Block(1, 0, served.block(0)))
        self.assertErrorFrame(error, 3, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_producerRegistered(self) -> None:
        """
        The protocol registers a streaming producer on its transport.
        """
        wire = ready()
        self.assertIsNotNone(wire.transport.producer)
        self.assertTrue(wire.transport.streaming)

    def test_backpressure(self) -> None:
        """
        While the transport has paused the producer, queued blocks are not
        read or sent; resuming sends them.
        """
        wire, served = self._opened()
        wire.transport.producer.pauseProducing()
        wire.feed(*[codec.GetBlock(r, 1, r % 3) for r in range(1, 6)])
        self.assertEqual(wire.sent(), [])
        self.assertEqual(served.readIndexes, [])
        wire.transport.producer.resumeProducing()
        self.assertEqual(
            wire.sent(),
            [codec.Block(r, r % 3, served.block(r % 3)) for r in range(1, 6)],
        )

    def test_backpressureWhileReading(self) -> None:
        """
        Blocks already being read when the producer is paused are sent, but
        no new read starts until it is resumed.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(*[codec.GetBlock(r, 1, r - 1) for r in range(1, 5)])
        wire.transport.producer.pauseProducing()
        served.finishRead(0)
        served.finishRead(1)
        self.assertEqual([m.request for m in wire.sent()], [1, 2])  # type: ignore[union-attr]
        self.assertEqual(served.readIndexes, [0, 1])
        wire.transport.producer.resumeProducing()
        self.assertEqual(served.readIndexes, [0, 1, 2, 3])


class RequestAccountingTests(SynchronousTestCase, ErrorAssertions):
    """
    Request ids and limits across the kinds of request.
    """

    def _opened(
        self, served: FakeServedFile | None = None
    ) -> tuple[Wire, FakeServedFile]:
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        return wire, served

    def test_reusedRequestId(self) -> None:
        """
        A request id reused while its answer is outstanding is a protocol
        error.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(codec.GetBlock(5, 1, 0), codec.GetBlock(5, 1, 0))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_limitCountsEveryKind(self) -> None:
        """
        Block and digest requests share one limit of MAX_PENDING_REQUESTS.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(*[codec.GetBlock(r, 1, 0) for r in range(1, MAX_PENDING_REQUESTS)])
        wire.feed(codec.GetDigests(1000, 1, 0, 1))
        wire.feed(codec.GetDigests(1001, 1, 0, 1))
        errors = [m for m in wire.sent() if isinstance(m, codec.Error)]
        self.assertEqual([e.request for e in errors], [1001])
        self.assertErrorFrame(errors[0], 1001, ErrorCode.BUSY)

    def test_errorZeroStopsProcessing(self) -> None:
        """
        Frames after a connection-level Error in the same data are ignored.
        """
        wire, served = self._opened()
        wire.feedRaw(
            frame(codec.Error(0, ErrorCode.INTERNAL, "bye"))
            + frame(codec.GetBlock(2, 1, 0))
        )
        self.assertEqual(wire.sent(), [])
        self.assertTrue(wire.closed)

    def test_haveUpdatesSplit(self) -> None:
        """
        An update of more ranges than one Have frame may carry is sent as
        several frames.
        """
        served = FakeServedFile(content(4000 * BLOCK), authoritative=False)
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, "v1"))
        wire.sent()
        [callback] = served.watchers
        callback([(i * 2, 1) for i in range(codec.MAX_HAVE_RANGES + 5)])
        haves = wire.sent()
        self.assertEqual([len(h.ranges) for h in haves], [codec.MAX_HAVE_RANGES, 5])


class ClientTests(SynchronousTestCase, ErrorAssertions):
    """
    Asking the other node: L{SPPProtocol.open} and L{RemoteFile}.
    """

    def _remote(
        self,
        size: int = 3 * BLOCK - 100,
        authoritative: bool = True,
    ) -> tuple[Wire, RemoteFile]:
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        self.assertEqual(wire.sent(), [codec.Open(1, URL, "")])
        wire.feed(codec.Opened(1, size, BLOCK, authoritative, "sha256", "v1"))
        return wire, self.successResultOf(d)

    def test_requestsAfterClose(self) -> None:
        """
        A closed remote file sends no more requests: they fail at once.
        """
        wire, remote = self._remote()
        remote.close()
        wire.sent()
        self.failureResultOf(remote.getBlock(0), ConnectionGone)
        self.failureResultOf(remote.getDigests(0, 1), ConnectionGone)
        self.failureResultOf(remote.getPeers(), ConnectionGone)
        self.assertEqual(wire.sent(), [])

    def test_open(self) -> None:
        """
        Open's answer gives a L{RemoteFile} with the file's metadata.
        """
        wire, remote = self._remote(authoritative=False)
        self.assertEqual(remote.handle, 1)  # the Open's request id
        self.assertEqual(
            remote.meta, FileMeta(URL, 3 * BLOCK - 100, BLOCK, "sha256", "v1")
        )
        self.assertFalse(remote.authoritative)
        self.assertEqual(remote.name, "10.0.0.2:40000")
        self.assertIs(remote.connection, wire.protocol)

    def test_openAsksEarly(self) -> None:
        """
        Open can ask at once, behind the Open, for the first digests, some
        blocks and peers; the remote file hands their answers to the first
        matching requests without asking again. A digest count past the end
        matches the count cut at the end.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=64, blocks=(0,), peers=True)
        self.assertEqual(
            wire.sent(),
            [
                codec.Open(1, URL, ""),
                codec.GetDigests(2, 1, 0, 64),
                codec.GetBlock(3, 1, 0),
                codec.GetPeers(4, 1),
            ],
        )
        data = content(3 * BLOCK - 100)
        digests = b"".join(
            hashlib.sha256(data[i : i + BLOCK]).digest()
            for i in range(0, len(data), BLOCK)
        )
        peers = (codec.Peer("10.0.0.7", 1111),)
        wire.feed(
            codec.Opened(1, len(data), BLOCK, True, "sha256", "v1"),
            codec.Digests(2, 0, digests),
            codec.Block(3, 0, data[:BLOCK]),
            codec.Peers(4, peers),
        )
        remote = self.successResultOf(d)
        self.assertEqual(self.successResultOf(remote.getDigests(0, 3)), digests)
        self.assertEqual(self.successResultOf(remote.getBlock(0)), data[:BLOCK])
        self.assertEqual(tuple(self.successResultOf(remote.getPeers())), peers)
        self.assertEqual(wire.sent(), [])
        remote.getBlock(0)
        remote.getPeers()
        self.assertEqual(wire.sent(), [codec.GetBlock(5, 1, 0), codec.GetPeers(6, 1)])

    def test_earlyUnclaimed(self) -> None:
        """
        Early requests nobody claims are cancelled when the file is closed,
        and their answers, good or bad, are dropped quietly.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=4, blocks=(0, 1), peers=True)
        wire.sent()
        wire.feed(
            codec.Opened(1, 3 * BLOCK, BLOCK, True, "sha256", "v1"),
            codec.Error(2, ErrorCode.INTERNAL, "no"),
        )
        remote = self.successResultOf(d)
        remote.close()
        self.assertEqual(
            wire.sent(),
            [codec.Cancel(3), codec.Cancel(4), codec.Cancel(5), codec.Close(1)],
        )
        wire.feed(
            codec.Block(3, 0, content(BLOCK)),
            codec.Error(4, ErrorCode.CANCELLED, "cancelled"),
        )
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_earlyAfterFailedOpen(self) -> None:
        """
        When the Open fails, its early requests fail too, quietly; the open
        fails with the Open's error.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=4, blocks=(0,))
        wire.sent()
        wire.feed(
            codec.Error(1, ErrorCode.NOT_FOUND, "no such file"),
            codec.Error(2, ErrorCode.NOT_FOUND, "no open handle 1"),
            codec.Error(3, ErrorCode.NOT_FOUND, "no open handle 1"),
        )
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.NOT_FOUND
        )
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_earlyAnswerBeforeOpened(self) -> None:
        """
        An answer to an early request before its file's Opened is a protocol
        error.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, blocks=(0,))
        wire.sent()
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, ConnectionGone)

    def test_openVersion(self) -> None:
        """
        Open sends the version asked for, and accepts an answer for it.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, "v1")
        self.assertEqual(wire.sent(), [codec.Open(1, URL, "v1")])
        wire.feed(codec.Opened(1, 10, BLOCK, False, "sha256", "v1"))
        self.assertEqual(self.successResultOf(d).meta.version, "v1")

    def test_openOtherVersion(self) -> None:
        """
        An answer for another version than the one asked for fails with
        CHANGED, and the handle is closed.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, "v1")
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, False, "sha256", "v2"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.CHANGED
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])
        self.assertFalse(wire.closed)

    def test_openUnknownDigest(self) -> None:
        """
        An answer with a digest this node does not know fails, and the
        handle is closed.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, True, "nosuchhash", "v1"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.BAD_REQUEST
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])

    def test_openBadDigestSize(self) -> None:
        """
        A digest whose size is outside 16 to 64 bytes (a variable-length
        SHAKE, digest size 0) is refused like an unknown one.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, True, "shake_128", "v1"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.BAD_REQUEST
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])

    def test_openError(self) -> None:
        """
        An Error answering Open fails it with that code; the connection
        stays open.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.feed(codec.Error(1, ErrorCode.NOT_FOUND, "not here"))
        failure = self.failureResultOf(d, SPPError)
        self.assertEqual((failure.value.code, failure.value.message), (2, "not here"))
        self.assertFalse(wire.closed)

    def test_unencodableRequest(self) -> None:
        """
        A request that cannot be encoded (a URL over the limit) fails at
        once, sends nothing and leaves nothing outstanding.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open("spp://origin:1111/" + "x" * codec.MAX_URL)
        self.failureResultOf(d, ValueError)
        self.assertEqual(wire.transport.value(), b"")
        wire.lose()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_requestIds(self) -> None:
        """
        Request ids start at 1 and are not reused while outstanding.
        """
        wire, remote = self._remote()
        remote.getBlock(0)
        remote.getDigests(0, 3)
        remote.getPeers()
        remote.getBlock(1)
        self.assertEqual(
            wire.sent(),
            [
                codec.GetBlock(2, 1, 0),
                codec.GetDigests(3, 1, 0, 3),
                codec.GetPeers(4, 1),
                codec.GetBlock(5, 1, 1),
            ],
        )

    def test_getBlock(self) -> None:
        """
        L{RemoteFile.getBlock} fires with the block's bytes.
        """
        wire, remote = self._remote()
        d = remote.getBlock(2)
        data = content(BLOCK - 100)
        wire.feed(codec.Block(2, 2, data))
        self.assertEqual(self.successResultOf(d), data)
        self.assertFalse(wire.closed)

    def test_answersInAnyOrder(self) -> None:
        """
        Answers may come in any order; each fires its own request.
        """
        wire, remote = self._remote()
        ds = [remote.getBlock(i) for i in range(3)]
        blocks = [content(BLOCK, b"0"), content(BLOCK, b"1"), content(BLOCK - 100)]
        wire.feed(codec.Block(4, 2, blocks[2]), codec.Block(2, 0, blocks[0]))
        wire.feed(codec.Block(3, 1, blocks[1]))
        self.assertEqual([self.successResultOf(d) for d in ds], blocks)

    def test_getDigests(self) -> None:
        """
        L{RemoteFile.getDigests} fires with the concatenated digests.
        """
        wire, remote = self._remote()
        d = remote.getDigests(1, 2)
        wire.feed(codec.Digests(2, 1, b"d" * 64))
        self.assertEqual(self.successResultOf(d), b"d" * 64)

    def test_getPeers(self) -> None:
        """
        L{RemoteFile.getPeers} fires with the peers.
        """
        wire, remote = self._remote()
        d = remote.getPeers()
        peers = (codec.Peer("10.0.0.3", 1111), codec.Peer("::1", 80, True))
        wire.feed(codec.Peers(2, peers))
        self.assertEqual(tuple(self.successResultOf(d)), peers)

    def test_errorAnswer(self) -> None:
        """
        An Error answering GetBlock fails it with that code only.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.feed(codec.Error(2, ErrorCode.UNAVAILABLE, "no"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.UNAVAILABLE
        )
        self.assertFalse(wire.closed)

    def test_cancelGetBlock(self) -> None:
        """
        Cancelling a getBlock Deferred sends Cancel; the late Block answering
        it is ignored without closing the connection.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(wire.sent(), [codec.Cancel(2)])
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_cancelThenErrorCancelled(self) -> None:
        """
        After Cancel, the answer Error CANCELLED is ignored.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        wire.sent()
        wire.feed(codec.Error(2, ErrorCode.CANCELLED, "cancelled"))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancelAnswered(self) -> None:
        """
        Cancelling a request that was already answered sends nothing.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        wire.sent()
        d.cancel()
        self.assertEqual(wire.sent(), [])

    def test_cancelledOpenClosesHandle(self) -> None:
        """
        When an Open that was cancelled is answered anyway, the handle is
        closed at once, so the other node does not keep it open for nobody.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(wire.sent(), [codec.Open(1, URL, ""), codec.Cancel(1)])
        wire.feed(codec.Opened(1, 10, BLOCK, True, "sha256", "v1"))
        self.assertEqual(wire.sent(), [codec.Close(1)])
        self.assertFalse(wire.closed)

    def test_blockForNoRequest(self) -> None:
        """
        A Block answering no outstanding request closes the connection; the
        outstanding request then fails.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        wire.feed(codec.Block(99, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, ConnectionGone)

    def test_blockOtherIndex(self) -> None:
        """
        A Block with another index than the one asked for closes the
        connection and fails the request.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        wire.feed(codec.Block(2, 1, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.failureResultOf(d, SPPError)

    def test_blockWrongLength(self) -> None:
        """
        A Block of the wrong length closes the connection and fails the
        request.
        """
        wire, remote = self._remote()
        d = remote.getBlock(2)
        wire.sent()
        wire.feed(codec.Block(2, 2, content(BLOCK)))  # the last block is short
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.failureResultOf(d, SPPError)

    def test_answerOfWrongKind(self) -> None:
        """
        A Block answering a GetDigests closes the connection, and the
        GetDigests fails rather than waiting forever.
        """
        wire, remote = self._remote()
        d = remote.getDigests(0, 1)
        wire.sent()
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, SPPError, ConnectionGone)

    def test_wrongDigests(self) -> None:
        """
        Digests for other blocks, or of the wrong length, close the
        connection and fail the request.
        """
        for answer in (codec.Digests(2, 1, b"d" * 32), codec.Digests(2, 0, b"d" * 31)):
            wire, remote = self._remote()
            d = remote.getDigests(0, 1)
            wire.sent()
            wire.feed(answer)
            self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
            self.failureResultOf(d, SPPError)

    def test_errorForNoRequest(self) -> None:
        """
        An Error naming no outstanding request is a protocol error.
        """
        wire, remote = self._remote()
        wire.feed(codec.Error(42, ErrorCode.NOT_FOUND, "?"))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_connectionError(self) -> None:
        """
        An Error with request 0 closes the connection, without an answer.
        """
        wire, remote = self._remote()
        wire.feed(codec.Error(0, ErrorCode.TIMEOUT, "idle"))
        self.assertTrue(wire.closed)
        self.assertEqual(wire.sent(), [])

    def test_have(self) -> None:
        """
        Have marks blocks of a non-authoritative file as held and calls
        C{onHave}; a Have for a handle not open is ignored.
        """
        wire, remote = self._remote(size=20 * BLOCK, authoritative=False)
        announced: list[Any] = []
        remote.onHave = announced.append
        self.assertFalse(remote.has(0))
        wire.feed(codec.Have(1, ((0, 2), (10, 3))), codec.Have(9, ((5, 1),)))
        self.assertEqual([i for i in range(20) if remote.has(i)], [0, 1, 10, 11, 12])
        self.assertEqual(announced, [((0, 2), (10, 3))])
        self.assertFalse(wire.closed)

    def test_hasAuthoritative(self) -> None:
        """
        A file the node believes authoritative holds every block, and only
        those.
        """
        wire, remote = self._remote(size=3 * BLOCK)
        remote.believe()
        self.assertEqual([i for i in range(-1, 5) if remote.has(i)], [0, 1, 2])

    def test_hasOutOfRange(self) -> None:
        """
        L{RemoteFile.has} is false for indexes outside the file, for a
        non-authoritative file too.
        """
        wire, remote = self._remote(size=8 * BLOCK, authoritative=False)
        wire.feed(codec.Have(1, ((0, 8),)))
        self.assertTrue(remote.has(7))
        self.assertFalse(remote.has(8))
        self.assertFalse(remote.has(100))
        self.assertFalse(remote.has(-1))

    def test_close(self) -> None:
        """
        L{RemoteFile.close} sends Close once; Have for it is then ignored.
        """
        wire, remote = self._remote(authoritative=False)
        remote.close()
        remote.close()
        self.assertEqual(wire.sent(), [codec.Close(1)])
        wire.feed(codec.Have(1, ((0, 1),)))
        self.assertFalse(remote.has(0))
        self.assertFalse(wire.closed)


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
        protocol = SPPProtocol(FakeNode(), task.Clock(), False)
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
        self, serverNode: FakeNode, clientNode: FakeNode
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
        served.peerList = [codec.Peer("10.0.0.3", 1111)]
        serverNode = FakeNode(OUR_ID, 1111)
        serverNode.files[URL] = served
        clientNode = FakeNode(THEIR_ID, 2222)
        client, server, pump, clock = self._connect(serverNode, clientNode)
        self.assertEqual(serverNode.ready, [server])
        self.assertEqual(clientNode.ready, [client])
        self.assertEqual(server.remoteListenPort, 2222)
        self.assertEqual(client.remoteListenPort, 1111)

        opening = client.open(URL)
        pump.flush()
        remote = self.successResultOf(opening)
        self.assertTrue(remote.claimsAuthority)
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
        self.assertEqual(list(self.successResultOf(gettingPeers)), served.peerList)
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
        serverNode, clientNode = FakeNode(OUR_ID, 1111), FakeNode(THEIR_ID, 2222)
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
        self.assertEqual((onServer.handle, onClient.handle), (1, 1))
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
            FakeNode(OUR_ID), FakeNode(THEIR_ID)
        )
        for _ in range(int(3 * IDLE_TIMEOUT // 10)):
            clock.advance(10)
            pump.flush()
        self.assertFalse(client.transport.disconnecting)
        self.assertFalse(server.transport.disconnecting)
        self.assertGreater(server.bytesReceived, 0)
