# -*- test-case-name: tests.unit.test_protocol -*-
"""
The SPP connection: its states, the handshake, timers, and which side of
the connection each frame goes to.

One class serves both ends, since every node both asks and answers: the
initiator sends L{codec.MAGIC} and its L{codec.Hello}; the responder checks
the magic, answers with its own Hello, and from then on either side may open
files on the other. What this node asks is L{p2pd.spp.asking}'s, what it
answers L{p2pd.spp.answering}'s, and the frames come out of the stream in
L{p2pd.spp.framing}; this module holds only what the connection as a whole
decides.
"""

import enum
import socket
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd import __version__
from p2pd.core.errors import ErrorCode, SelfConnection, SPPError
from p2pd.engine.interfaces import IConnection, IRemoteFile, ISPPNode
from p2pd.spp import codec
from p2pd.spp.answering import Answerer
from p2pd.spp.asking import Asker, ConnectionGone, RemoteFile
from p2pd.spp.framing import HEADER, FrameReader, FrameTooLarge, frameHeader
from p2pd.spp.tls import whyLost

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 90.0
KEEPALIVE_INTERVAL = 30.0
# The most a connection's socket holds unsent (TCP_NOTSENT_LOWAT): the
# kernel sends a socket's bytes in the order written, so a block a player
# waits for would otherwise queue behind megabytes of read-ahead.
UNSENT_BYTES = 64 * 1024
# The message of the Error a responder refuses its own Hello with: the
# initiator, the same node, learns from it that it dialed itself.
SELF_CONNECTION = "connected to itself"


def _socketUnder(transport: object) -> socket.socket | None:
    """
    The TCP socket a connection runs over, under TLS too (whose transport
    is the TCP one's protocol), or None (a UNIX socket, a test's transport).
    """
    while transport is not None:
        getHandle = getattr(transport, "getHandle", None)
        handle = getHandle() if getHandle is not None else None
        if isinstance(handle, socket.socket):
            return handle if handle.family != socket.AF_UNIX else None
        transport = getattr(transport, "transport", None)
    return None


class State(enum.Enum):
    """
    The connection states of docs/protocol.md.
    """

    CONNECTED = "connected"  # a responder waits for the magic
    AWAIT_HELLO = "await hello"
    READY = "ready"
    CLOSED = "closed"


# The answers that may be larger than codec.MAX_SMALL_FRAME, by type byte,
# and the request each answers.
_LARGE_ANSWERS: dict[int, type[codec.Message]] = {
    codec.Block.TYPE: codec.GetBlock,
    codec.Digests.TYPE: codec.GetDigests,
}


@implementer(IConnection)
class SPPProtocol(Protocol):
    """
    One SPP connection, either end.

    @ivar frames: the frames coming in.
    @ivar asker: this node's requests, and the files it opened on the other.
    @ivar answerer: the other node's requests, and the files it opened here.
    """

    _log = Logger()
    transport: Any

    def __init__(self, node: ISPPNode, clock: IReactorTime, initiator: bool) -> None:
        self.node = node
        self.clock = clock
        self.initiator = initiator
        self.state = State.CONNECTED
        self.remoteHost = ""
        self.remoteName = "?"
        self.remoteListenPort = 0
        self.remoteNodeId = b""
        self.encrypted = False
        self.ready: defer.Deferred[SPPProtocol] = defer.Deferred()
        self.frames = FrameReader(self)
        self.asker = Asker(self)
        self.answerer = Answerer(self)
        self._magic = b""
        self._toItself = False
        # The Error a busy node refused us with in place of its Hello.
        self._refused: SPPError | None = None
        # Why this side closed the connection, for the requests it fails.
        self._closedFor = ""
        self._lastReceived = 0.0
        self._lastSent = 0.0
        self._timer: IDelayedCall | None = None
        self.bytesSent = 0
        self.bytesReceived = 0
        # What each message does once READY.
        self._handlers: dict[type[codec.Message], Callable[[Any], None]] = {
            codec.Error: self._error,
            codec.KeepAlive: lambda message: None,
            codec.Opened: self.asker.opened,
            codec.Block: self.asker.block,
            codec.Digests: self.asker.digests,
            codec.Peers: self.asker.peers,
            codec.Have: self.asker.have,
            codec.Open: self.answerer.open,
            codec.Close: self.answerer.close,
            codec.GetDigests: self.answerer.getDigests,
            codec.GetBlock: self.answerer.getBlock,
            codec.GetPeers: self.answerer.getPeers,
            codec.Cancel: self.answerer.cancel,
        }

    # -- connection lifetime

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.remoteHost = getattr(peer, "host", "")
        self.remoteName = f"{self.remoteHost}:{getattr(peer, 'port', '?')}"
        self.encrypted = isinstance(self.transport, TLSMemoryBIOProtocol)
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            # Requests and the tail of a block must not wait for the other
            # side's delayed ACK (Nagle's algorithm).
            setNoDelay(True)
        handle = _socketUnder(self.transport)
        if handle is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):
            # What is queued goes out in p2pd's order, not the kernel's: the
            # socket takes no more than this unsent, the rest waits here.
            handle.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_BYTES
            )
        self.transport.registerProducer(self.answerer.backpressure, True)
        now = self.clock.seconds()
        self._lastReceived = self._lastSent = now
        self._timer = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshakeTimedOut)
        if self.initiator:
            self.state = State.AWAIT_HELLO
            self.transport.write(codec.MAGIC)
            self._sendHello()

    def _sendHello(self) -> None:
        self.send(
            codec.Hello(
                codec.VERSION,
                self.node.listenPort,
                self.node.nodeId,
                f"p2pd/{__version__}",
            )
        )

    def _handshakeTimedOut(self) -> None:
        self._timer = None
        self._fail(ErrorCode.TIMEOUT, "no handshake")

    def _tick(self) -> None:
        """
        Keepalives and the idle timeout, checked every few seconds.
        """
        self._timer = None
        if self.state is not State.READY:
            return
        now = self.clock.seconds()
        if now - self._lastReceived >= IDLE_TIMEOUT:
            self._fail(ErrorCode.TIMEOUT, "idle")
            return
        if now - self._lastSent >= KEEPALIVE_INTERVAL:
            self.send(codec.KeepAlive())
        self._timer = self.clock.callLater(KEEPALIVE_INTERVAL / 3, self._tick)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        # Not the state: a connection this side closed is no longer READY.
        # Until now, ready fires only when the handshake completes.
        wasReady = self.ready.called
        self.state = State.CLOSED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.transport.unregisterProducer()
        gone: Exception = (
            SelfConnection("connected to itself")
            if self._toItself
            else ConnectionGone(self._closedFor or whyLost(reason))
        )
        self.asker.failRequests(gone)
        self.answerer.stop()
        self.frames.clear()
        self.asker.lost(reason)
        if not self.ready.called:
            self.ready.errback(gone if self._toItself else self._refused or gone)
            if not self.initiator:
                # Nobody waits for an accepted connection's handshake: do not
                # log its failure as an unhandled error.
                self.ready.addErrback(lambda _: None)
        if wasReady or self.initiator:
            # An initiator's connection is used before its handshake ends.
            self.node.connectionGone(self)

    def _fail(self, code: ErrorCode, message: str) -> None:
        """
        Report a connection-level error and close this connection only.
        """
        self._log.info(
            "SPP {peer}: closing: {code} {message}",
            peer=self.remoteName,
            code=code.name,
            message=message,
        )
        if self.state is not State.CLOSED and self.transport is not None:
            self._closedFor = f"{self.remoteName} broke SPP: {message}"
            self.send(codec.Error(0, code, message))
            self.transport.loseConnection()
            self.state = State.CLOSED

    def canSend(self) -> bool:
        """
        Whether requests may be sent: once the handshake is done, and by the
        initiator right after its Hello (the other side answers the Hello
        before it reads them).
        """
        return self.state is State.READY or (
            self.initiator and self.state is State.AWAIT_HELLO
        )

    def canAnswer(self) -> bool:
        """
        Whether the other node's requests are still answered.
        """
        return self.state is State.READY

    # -- writing

    def send(self, message: codec.Message) -> None:
        body = codec.encode(message)
        if self._counted(HEADER + len(body)):
            self.transport.write(len(body).to_bytes(HEADER, "big") + body)

    def sendBlock(self, requestId: int, index: int, data: bytes) -> None:
        """
        Send a Block frame without copying the data into one buffer.
        """
        header = codec.Block.HEADER.pack(requestId, index)
        length = 1 + len(header) + len(data)
        if self._counted(HEADER + length):
            self.transport.writeSequence(
                [frameHeader(length, codec.Block.TYPE) + header, data]
            )

    def _counted(self, length: int) -> bool:
        """
        Count C{length} bytes about to be written; False, and the connection
        dropped, if the other side reads none of what it is sent.
        """
        self.bytesSent += length
        self._lastSent = self.clock.seconds()
        if self.answerer.backpressure.written(length):
            return True
        if self.state is not State.CLOSED:
            self._log.info(
                "SPP {peer}: dropping: it reads nothing of what it is sent",
                peer=self.remoteName,
            )
            self.state = State.CLOSED
            # Not loseConnection: that would wait to send what is buffered.
            self.transport.abortConnection()
        return False

    # -- reading

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        self._lastReceived = self.clock.seconds()
        if self.state is State.CONNECTED:
            data = self._magicReceived(data)
        if data and self.state is not State.CLOSED:
            self._framesReceived(data)

    def _magicReceived(self, data: bytes) -> bytes:
        """
        Take the magic from the start of C{data}; the bytes after it.
        """
        need = len(codec.MAGIC) - len(self._magic)
        self._magic += data[:need]
        if not codec.MAGIC.startswith(self._magic):
            self.state = State.CLOSED
            self.transport.loseConnection()
        elif len(self._magic) == len(codec.MAGIC):
            self.state = State.AWAIT_HELLO
        return data[need:]

    def _framesReceived(self, data: bytes) -> None:
        try:
            with self.answerer.reading():
                for body in self.frames.feed(data):
                    self._frameReceived(body)
                    if self.state is State.CLOSED:
                        break
        except FrameTooLarge as e:
            self._fail(ErrorCode.BAD_REQUEST, str(e))

    @property
    def waitingOpens(self) -> int:
        """
        Opens waiting for the other node to have a handle free.
        """
        return self.asker.handles.waiting

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received but not yet part of a complete frame.
        """
        return len(self.frames.buffer)

    def smallFrameLimit(self) -> int:
        """
        The largest frame that may come now whatever its type.
        """
        if self.state is State.READY:
            return codec.MAX_SMALL_FRAME
        return codec.MAX_HELLO_FRAME

    def largeFrameAllowed(self, length: int, kind: int | None) -> bool:
        """
        Whether a frame over the small limit may come: only a Block or
        Digests answering a request of ours, so a peer can make this side
        hold only what it asked for.
        """
        if length > codec.MAX_FRAME or self.state is not State.READY:
            return False
        if kind is None:
            return True  # its type decides
        request = _LARGE_ANSWERS.get(kind)
        return request is not None and self.asker.awaits(request)

    def _frameReceived(self, body: memoryview) -> None:
        try:
            message = codec.decode(body)
        except codec.DecodeError as e:
            self._fail(ErrorCode.BAD_REQUEST, f"malformed frame: {e}")
            return
        if self.state is State.AWAIT_HELLO:
            self._hello(message)
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            self._fail(ErrorCode.BAD_REQUEST, f"unexpected {type(message).__name__}")
            return
        try:
            handler(message)
        except SPPError as e:
            self._fail(ErrorCode(e.code), e.message)

    def _error(self, message: codec.Error) -> None:
        if message.request != 0:
            self.asker.error(message)
            return
        self._log.info(
            "SPP {peer} closes: {code} {message}",
            peer=self.remoteName,
            code=message.code,
            message=message.message,
        )
        self.state = State.CLOSED
        self.transport.loseConnection()

    # -- handshake

    def _hello(self, message: codec.Message) -> None:
        if isinstance(message, codec.Error) and message.request == 0:
            # Refused, e.g. BUSY: a node that speaks SPP; it closes.
            self._refused = SPPError(message.code, message.message)
            self._toItself = self.initiator and (message.code, message.message) == (
                ErrorCode.BAD_REQUEST,
                SELF_CONNECTION,
            )
            self._error(message)
            return
        if not isinstance(message, codec.Hello):
            self._fail(ErrorCode.BAD_REQUEST, "expected Hello")
            return
        if message.version < codec.VERSION:
            self._fail(
                ErrorCode.UNSUPPORTED_VERSION,
                f"version {message.version} unsupported; this node speaks {codec.VERSION}",
            )
            return
        if message.nodeId == self.node.nodeId:
            # Refused like any failed handshake, with no Hello: the Error's
            # message tells the other end (this very node) why.
            self._toItself = True
            self._fail(ErrorCode.BAD_REQUEST, SELF_CONNECTION)
            return
        self.remoteListenPort = message.listenPort
        self.remoteNodeId = message.nodeId
        if not self.initiator:
            self._sendHello()
        self.state = State.READY
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.clock.callLater(KEEPALIVE_INTERVAL / 3, self._tick)
        self.node.connectionReady(self)
        self.ready.callback(self)

    # -- asking the other node

    def open(
        self,
        url: str,
        version: str = "",
        digests: int = 0,
        blocks: Sequence[int] = (),
        peers: bool = False,
    ) -> "defer.Deferred[IRemoteFile]":
        """
        Open C{url} (an origin URL) on the other node. With C{digests},
        C{blocks} and C{peers}, also ask at once for the digests of the first
        C{digests} blocks, for C{blocks} and for peers: the file's
        L{RemoteFile} hands them out when its download asks for them.
        """
        return self.asker.open(url, version, digests, blocks, peers)

    def request(
        self, message: codec.Request, remoteFile: RemoteFile | None
    ) -> "defer.Deferred[Any]":
        """
        Send a request about C{remoteFile} and return a Deferred for its
        answer; cancelling it sends Cancel.
        """
        return self.asker.request(message, remoteFile)

    def closeRemote(self, remoteFile: RemoteFile) -> None:
        """
        Tell the other node this side is done with C{remoteFile}.
        """
        self.asker.closeRemote(remoteFile)

    def drop(self) -> None:
        """
        Close the connection: its node is not to be used again.
        """
        self.transport.loseConnection()


class SPPFactory(Factory):
    """
    Builds SPP connections for a node, incoming and outgoing.
    """

    def __init__(self, node: ISPPNode, clock: IReactorTime, initiator: bool) -> None:
        self.node = node
        self.clock = clock
        self.initiator = initiator

    def buildProtocol(self, addr: IAddress | None) -> SPPProtocol:
        protocol = SPPProtocol(self.node, self.clock, self.initiator)
        protocol.factory = self
        return protocol
