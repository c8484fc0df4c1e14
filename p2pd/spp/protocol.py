# -*- test-case-name: tests.test_protocol -*-
"""
The SPP connection: framing, handshake, timeouts, and the mapping between
frames and calls on the engine.

One class serves both ends, since every node both asks and answers: the
initiator sends L{codec.MAGIC} and its L{codec.Hello}; the responder checks
the magic, answers with its own Hello, and from then on either side may open
files on the other. Requests carry ids chosen by the asker; every request gets
exactly one answer, its reply or an Error.
"""

import dataclasses
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd import __version__
from p2pd.engine.interfaces import (
    IServedFile,
    ISource,
    ISPPNode,
    SelfConnection,
    SPPError,
)
from p2pd.engine.meta import FileMeta
from p2pd.spp import codec
from p2pd.spp.codec import ErrorCode

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 90.0
KEEPALIVE_INTERVAL = 30.0
MAX_OPEN_FILES = 64
MAX_PENDING_REQUESTS = 64
UPLOADS_AT_ONCE = 2
# What may be written while the other side reads nothing (the transport's
# buffer stays full) before the connection is dropped: answers to a flood of
# requests must not pile up in memory. Room for blocks of the largest size
# finishing while the buffer is full.
MAX_UNREAD = 16 * 1024 * 1024

_AWAIT_MAGIC, _AWAIT_HELLO, _READY, _CLOSED = "magic", "hello", "ready", "closed"
_HEADER = 4  # the frame length prefix


class ConnectionGone(Exception):
    """
    The connection closed before the request was answered.
    """


@implementer(ISource)
class RemoteFile:
    """
    A file opened on the other end of a connection: an L{ISource}.

    Its handle is the id of the Open request, so requests for it can be sent
    before the Open is answered (L{SPPProtocol.open}); their Deferreds wait
    here until the download asks for the same digests or blocks.

    @ivar claimsAuthority: the Opened's authoritative flag: a hint only, as
        any peer may set it.
    @ivar authoritative: whether this node believes the file's size, version
        and digests: only once the node, which knows whom it dialed, calls
        L{believe}.
    """

    onHave: Callable[[Sequence[tuple[int, int]]], None] | None = None
    onLost: Callable[[Failure], None] | None = None
    meta: FileMeta
    claimsAuthority = False
    authoritative = False

    def __init__(self, connection: "SPPProtocol", handle: int) -> None:
        self.connection = connection
        self.handle = handle
        self.name = connection.remoteName
        self._have: bytearray | None = None
        self._closed = False
        self._earlyBlocks: dict[int, defer.Deferred[bytes]] = {}
        self._earlyDigests: dict[int, tuple[int, defer.Deferred[bytes]]] = {}
        self._earlyPeers: defer.Deferred[Sequence[codec.Peer]] | None = None

    def _opened(self, meta: FileMeta, claimsAuthority: bool) -> None:
        self.meta = meta
        self.claimsAuthority = claimsAuthority

    def believe(self) -> None:
        """
        Count this file as an authority if it claimed to be one: the node
        dialed the URL's origin, or a mirror the origin named.
        """
        self.authoritative = self.claimsAuthority

    def has(self, index: int) -> bool:
        if not 0 <= index < self.meta.blocks:
            return False
        if self.authoritative:
            return True
        have = self._have
        return have is not None and bool(have[index >> 3] & (1 << (index & 7)))

    def _announced(self, ranges: Sequence[tuple[int, int]]) -> None:
        blocks = self.meta.blocks
        if self._have is None:
            self._have = bytearray((blocks + 7) // 8)
        have = self._have
        for first, count in ranges:
            for index in range(first, min(first + count, blocks)):
                have[index >> 3] |= 1 << (index & 7)
        if self.onHave is not None:
            self.onHave(ranges)

    def getBlock(self, index: int) -> "defer.Deferred[bytes]":
        early = self._earlyBlocks.pop(index, None)
        if early is not None:
            return early
        if self._closed:
            return defer.fail(ConnectionGone("file closed"))
        return self.connection.request(
            codec.GetBlock(0, self.handle, index), (self, index)
        )

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        asked, early = self._earlyDigests.get(first, (0, None))
        if early is not None and count == min(asked, self.meta.blocks - first):
            del self._earlyDigests[first]
            return early
        if self._closed:
            return defer.fail(ConnectionGone("file closed"))
        return self.connection.request(
            codec.GetDigests(0, self.handle, first, count), (self, first, count)
        )

    def _askEarly(self, digests: int, blocks: Sequence[int], peers: bool) -> None:
        """
        Ask, with the Open, for the digests of the first C{digests} blocks,
        for C{blocks} and (with C{peers}) for peers: a player's first bytes
        then come one round trip after the connection is made, and nothing
        more need be asked before they are in.
        """
        if digests:
            self._earlyDigests[0] = (
                digests,
                self.connection.request(
                    codec.GetDigests(0, self.handle, 0, digests), (self, 0, digests)
                ),
            )
        for index in blocks:
            self._earlyBlocks[index] = self.connection.request(
                codec.GetBlock(0, self.handle, index), (self, index)
            )
        if peers:
            self._earlyPeers = self.connection.request(
                codec.GetPeers(0, self.handle), None
            )

    def _dropEarly(self) -> None:
        """
        Cancel and consume early answers nobody asked for.
        """
        early: list[defer.Deferred[Any]] = list(self._earlyBlocks.values())
        early += [d for _, d in self._earlyDigests.values()]
        if self._earlyPeers is not None:
            early.append(self._earlyPeers)
        self._earlyBlocks, self._earlyDigests = {}, {}
        self._earlyPeers = None
        for deferred in early:
            deferred.addErrback(lambda _: None)
            deferred.cancel()

    def getPeers(self) -> "defer.Deferred[Sequence[codec.Peer]]":
        early, self._earlyPeers = self._earlyPeers, None
        if early is not None:
            return early
        if self._closed:
            return defer.fail(ConnectionGone("file closed"))
        return self.connection.request(codec.GetPeers(0, self.handle), None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dropEarly()
            self.connection.closeRemote(self)

    def _lost(self, reason: Failure) -> None:
        self._closed = True
        self._dropEarly()
        if self.onLost is not None:
            onLost, self.onLost = self.onLost, None
            onLost(reason)


@implementer(IPushProducer)
class _UploadPump:
    """
    Sends answered block requests only while the transport wants data, so a
    slow reader never makes this node buffer more than a few blocks.
    """

    def __init__(self, connection: "SPPProtocol") -> None:
        self.connection = connection
        self.paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.connection._writtenWhileFull = 0
        self.connection._pump()

    def stopProducing(self) -> None:
        self.paused = True


class SPPProtocol(Protocol):
    """
    One SPP connection, either end.
    """

    MAX_LENGTH = codec.MAX_FRAME
    _log = Logger()
    transport: Any

    def __init__(self, node: ISPPNode, clock: IReactorTime, initiator: bool) -> None:
        self.node = node
        self.clock = clock
        self.initiator = initiator
        self.state = _AWAIT_HELLO if initiator else _AWAIT_MAGIC
        self.remoteHost = ""
        self.remoteName = "?"
        self.remoteListenPort = 0
        self.remoteNodeId = b""
        self.ready: defer.Deferred[SPPProtocol] = defer.Deferred()
        self._magic = b""
        self._partial = bytearray()
        self._frameEnd = _HEADER
        self._toItself = False
        # The Error a busy node refused us with in place of its Hello.
        self._refused: SPPError | None = None
        # Why this side closed the connection, for the requests it fails.
        self._closedFor = ""
        self._nextRequest = 1
        # request id -> (deferred, message, context) for requests we made
        self._outgoing: dict[int, tuple[defer.Deferred[Any], codec.Message, Any]] = {}
        # handle -> file we serve; request ids -> queued block requests
        self._served: dict[int, IServedFile] = {}
        self._remoteFiles: dict[int, RemoteFile] = {}
        self._uploads: deque[codec.GetBlock] = deque()
        self._uploading: dict[int, defer.Deferred[bytes]] = {}
        self._pending: dict[int, defer.Deferred[Any]] = {}
        self._pumpProducer = _UploadPump(self)
        self._lastReceived = 0.0
        self._lastSent = 0.0
        self._timer: Any = None
        self.bytesSent = 0
        self.bytesReceived = 0
        self._writtenWhileFull = 0

    # -- connection lifetime

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.remoteHost = getattr(peer, "host", "")
        self.remoteName = f"{self.remoteHost}:{getattr(peer, 'port', '?')}"
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            # Requests and the tail of a block must not wait for the other
            # side's delayed ACK (Nagle's algorithm): up to 40 ms each.
            setNoDelay(True)
        self.transport.registerProducer(self._pumpProducer, True)
        now = self.clock.seconds()
        self._lastReceived = self._lastSent = now
        self._timer = self.clock.callLater(HANDSHAKE_TIMEOUT, self._handshakeTimedOut)
        if self.initiator:
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
        if self.state != _READY:
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
        self.state = _CLOSED
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.transport.unregisterProducer()
        outgoing, self._outgoing = self._outgoing, {}
        gone: Exception = (
            SelfConnection("connected to itself")
            if self._toItself
            else ConnectionGone(self._closedFor or str(reason.value))
        )
        for deferred, _, _ in outgoing.values():
            # An earlier errback may have cancelled (and so fired) the rest.
            if not deferred.called:
                deferred.errback(gone)
        for deferred in list(self._uploading.values()):
            deferred.cancel()
        pending, self._pending = self._pending, {}
        for deferred in pending.values():
            deferred.cancel()
        self._uploads.clear()
        self._partial = bytearray()
        served, self._served = self._served, {}
        for servedFile in served.values():
            servedFile.close()
        remote, self._remoteFiles = self._remoteFiles, {}
        for remoteFile in remote.values():
            remoteFile._lost(reason)
        if not self.ready.called:
            self.ready.errback(self._refused or gone)
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
        if self.state != _CLOSED and self.transport is not None:
            self._closedFor = f"{self.remoteName} broke SPP: {message}"
            self.send(codec.Error(0, code, message))
            self.transport.loseConnection()
            self.state = _CLOSED

    # -- framing

    def send(self, message: codec.Message) -> None:
        body = codec.encode(message)
        if self._unread(_HEADER + len(body)):
            self.transport.write(len(body).to_bytes(_HEADER, "big") + body)

    def _unread(self, length: int) -> bool:
        """
        Count C{length} bytes about to be written; False, and the connection
        dropped, if the other side has read nothing of the last
        L{MAX_UNREAD} bytes.
        """
        self.bytesSent += length
        self._lastSent = self.clock.seconds()
        if not self._pumpProducer.paused:
            return True
        self._writtenWhileFull += length
        if self._writtenWhileFull <= MAX_UNREAD:
            return True
        if self.state != _CLOSED:
            self._log.info(
                "SPP {peer}: dropping: it reads nothing of what it is sent",
                peer=self.remoteName,
            )
            self.state = _CLOSED
            # Not loseConnection: that would wait to send what is buffered.
            self.transport.abortConnection()
        return False

    def dataReceived(self, data: bytes) -> None:
        self.bytesReceived += len(data)
        self._lastReceived = self.clock.seconds()
        if self.state == _AWAIT_MAGIC:
            need = len(codec.MAGIC) - len(self._magic)
            self._magic += data[:need]
            data = data[need:]
            if not codec.MAGIC.startswith(self._magic):
                self.state = _CLOSED
                self.transport.loseConnection()
                return
            if len(self._magic) < len(codec.MAGIC):
                return
            self.state = _AWAIT_HELLO
        if data and self.state != _CLOSED:
            self._frames(data)

    @property
    def bufferedBytes(self) -> int:
        """
        Bytes received but not yet part of a complete frame.
        """
        return len(self._partial)

    def _frames(self, data: bytes) -> None:
        """
        Split the stream into frames. An incomplete frame is kept in one
        buffer that grows with the bytes that arrive, never sized by what a
        length prefix announces; complete frames in a read are parsed where
        they lie (Twisted's Int32StringReceiver copies its whole buffer for
        every chunk read, which for 256 KiB blocks costs more than hashing
        them).
        """
        buffer: bytes | bytearray = data
        if self._partial:
            self._partial += data
            if len(self._partial) < self._frameEnd:
                return
            buffer, self._partial = self._partial, bytearray()
        view = memoryview(buffer)
        offset = 0
        self._frameEnd = _HEADER
        while len(buffer) - offset >= _HEADER and self.state != _CLOSED:
            length = int.from_bytes(view[offset : offset + _HEADER], "big")
            if length > self._smallFrameLimit():
                waitForType = self.state == _READY and length <= self.MAX_LENGTH
                if waitForType and len(buffer) - offset == _HEADER:
                    self._frameEnd = _HEADER + 1  # its type decides
                    break
                if not self._largeFrameAllowed(length, view, offset):
                    self._fail(
                        ErrorCode.BAD_REQUEST, f"frame of {length} bytes over the limit"
                    )
                    return
            end = offset + _HEADER + length
            if end > len(buffer):
                self._frameEnd = end - offset
                break
            body = view[offset + _HEADER : end]
            offset = end
            self.stringReceived(body)
        if offset < len(buffer) and self.state != _CLOSED:
            self._partial = bytearray(view[offset:])

    def _smallFrameLimit(self) -> int:
        """
        The largest frame that may come now whatever its type.
        """
        if self.state == _READY:
            return codec.MAX_SMALL_FRAME
        return codec.MAX_HELLO_FRAME

    def _largeFrameAllowed(self, length: int, view: memoryview, offset: int) -> bool:
        """
        Whether a frame over the small limit may come: only a Block or
        Digests answering a request of ours, so a peer can make this side
        hold only what it asked for.
        """
        if length > self.MAX_LENGTH or self.state != _READY:
            return False
        kind = _LARGE_ANSWERS.get(view[offset + _HEADER])
        return kind is not None and any(
            isinstance(message, kind) for _, message, _ in self._outgoing.values()
        )

    def stringReceived(self, body: bytes | memoryview) -> None:
        if self.state == _CLOSED:
            return
        try:
            message = codec.decode(body)
        except codec.DecodeError as e:
            self._fail(ErrorCode.BAD_REQUEST, f"malformed frame: {e}")
            return
        if self.state == _AWAIT_HELLO:
            self._hello(message)
            return
        handler = getattr(self, "_on" + type(message).__name__, None)
        if handler is None:
            self._fail(ErrorCode.BAD_REQUEST, f"unexpected {type(message).__name__}")
            return
        try:
            handler(message)
        except SPPError as e:
            self._fail(ErrorCode(e.code), e.message)

    # -- handshake

    def _hello(self, message: codec.Message) -> None:
        if isinstance(message, codec.Error) and message.request == 0:
            # Refused, e.g. BUSY: a node that speaks SPP; it closes.
            self._refused = SPPError(message.code, message.message)
            self._onError(message)
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
            # Answer first, so the other end (this very node) learns it too.
            self._toItself = True
            if not self.initiator:
                self._sendHello()
            self._fail(ErrorCode.BAD_REQUEST, "connected to itself")
            return
        self.remoteListenPort = message.listenPort
        self.remoteNodeId = message.nodeId
        if not self.initiator:
            self._sendHello()
        self.state = _READY
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
    ) -> "defer.Deferred[RemoteFile]":
        """
        Open C{url} (an origin URL) on the other node. With C{digests},
        C{blocks} and C{peers}, also ask at once for the digests of the first
        C{digests} blocks, for C{blocks} and for peers: the file's
        L{RemoteFile} hands them out when its download asks for them.
        """
        requestId = self._newRequestId()
        remoteFile = RemoteFile(self, requestId)
        opened = self._ask(requestId, codec.Open(requestId, url, version), remoteFile)
        if self._canSend():
            remoteFile._askEarly(digests, blocks, peers)

        def failed(reason: Failure) -> Failure:
            remoteFile._dropEarly()
            return reason

        return opened.addErrback(failed)

    def request(self, message: Any, context: Any) -> "defer.Deferred[Any]":
        """
        Send a request and return a Deferred for its answer; cancelling it
        sends Cancel.
        """
        requestId = self._newRequestId()
        return self._ask(
            requestId, dataclasses.replace(message, request=requestId), context
        )

    def _newRequestId(self) -> int:
        requestId = self._nextRequest
        self._nextRequest = self._nextRequest % 0xFFFFFFFF + 1
        return requestId

    def _canSend(self) -> bool:
        """
        Whether requests may be sent: once the handshake is done, and by the
        initiator right after its Hello (the other side answers the Hello
        before it reads them).
        """
        return self.state == _READY or (self.initiator and self.state == _AWAIT_HELLO)

    def _ask(self, requestId: int, message: Any, context: Any) -> "defer.Deferred[Any]":
        if not self._canSend():
            return defer.fail(ConnectionGone("connection not ready"))

        def cancel(d: "defer.Deferred[Any]") -> None:
            if requestId in self._outgoing and self._canSend():
                self.send(codec.Cancel(requestId))
            # The answer (or Error CANCELLED) still arrives; keep the entry
            # so it is recognised, but the caller already has its answer.
            entry = self._outgoing.get(requestId)
            if entry is not None:
                ignored: defer.Deferred[Any] = defer.Deferred()
                ignored.addCallbacks(_release, lambda _: None)
                self._outgoing[requestId] = (ignored, entry[1], entry[2])

        try:
            self.send(message)
        except Exception:
            return defer.fail()  # unencodable: nothing was sent
        deferred: defer.Deferred[Any] = defer.Deferred(cancel)
        self._outgoing[requestId] = (deferred, message, context)
        return deferred

    def closeRemote(self, remoteFile: RemoteFile) -> None:
        if self._remoteFiles.pop(remoteFile.handle, None) is not None:
            if self._canSend():
                self.send(codec.Close(remoteFile.handle))

    def _answer(
        self, requestId: int, kind: type
    ) -> tuple[defer.Deferred[Any], Any, Any]:
        entry = self._outgoing.pop(requestId, None)
        if entry is None:
            raise SPPError(
                ErrorCode.BAD_REQUEST, f"answer to unknown request {requestId}"
            )
        deferred, message, context = entry
        if kind is not codec.Error and not _answers(kind, message):
            deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong answer"))
            raise SPPError(
                ErrorCode.BAD_REQUEST,
                f"{kind.__name__} does not answer {type(message).__name__}",
            )
        return deferred, message, context

    def _onOpened(self, message: codec.Opened) -> None:
        deferred, request, remoteFile = self._answer(message.request, codec.Opened)
        handle = message.request
        try:
            meta = FileMeta(
                request.url,
                message.size,
                message.blockSize,
                message.digestName,
                message.version,
            )
            if not codec.MIN_DIGEST_SIZE <= meta.digestSize <= codec.MAX_DIGEST_SIZE:
                raise ValueError(f"digest size {meta.digestSize}")
        except ValueError:
            self.send(codec.Close(handle))
            deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "unknown digest"))
            return
        if request.version and request.version != message.version:
            self.send(codec.Close(handle))
            deferred.errback(SPPError(ErrorCode.CHANGED, "other version"))
            return
        remoteFile._opened(meta, message.authoritative)
        self._remoteFiles[handle] = remoteFile
        deferred.callback(remoteFile)

    def _openedFile(self, deferred: "defer.Deferred[Any]", remoteFile: Any) -> FileMeta:
        """
        The metadata of the file an answer is about, which must have been
        opened by then.
        """
        meta: FileMeta | None = getattr(remoteFile, "meta", None)
        if meta is None:
            deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "answer before Opened"))
            raise SPPError(ErrorCode.BAD_REQUEST, "answer before its file's Opened")
        return meta

    def _onBlock(self, message: codec.Block) -> None:
        deferred, request, (remoteFile, index) = self._answer(
            message.request, codec.Block
        )
        meta = self._openedFile(deferred, remoteFile)
        if message.index != index or len(message.data) != meta.blockLength(index):
            deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong block"))
            raise SPPError(
                ErrorCode.BAD_REQUEST, f"block {message.index} is not what was asked"
            )
        deferred.callback(message.data)

    def _onDigests(self, message: codec.Digests) -> None:
        deferred, request, (remoteFile, first, count) = self._answer(
            message.request, codec.Digests
        )
        meta = self._openedFile(deferred, remoteFile)
        expected = min(count, meta.blocks - first) * meta.digestSize
        if message.first != first or len(message.digests) != expected:
            deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong digests"))
            raise SPPError(ErrorCode.BAD_REQUEST, "digests are not what was asked")
        deferred.callback(message.digests)

    def _onPeers(self, message: codec.Peers) -> None:
        deferred, _, _ = self._answer(message.request, codec.Peers)
        deferred.callback(message.peers)

    def _onError(self, message: codec.Error) -> None:
        if message.request == 0:
            self._log.info(
                "SPP {peer} closes: {code} {message}",
                peer=self.remoteName,
                code=message.code,
                message=message.message,
            )
            self.state = _CLOSED
            self.transport.loseConnection()
            return
        deferred, _, _ = self._answer(message.request, codec.Error)
        deferred.errback(SPPError(message.code, message.message))

    def _onHave(self, message: codec.Have) -> None:
        remoteFile = self._remoteFiles.get(message.handle)
        if remoteFile is None:
            return  # closed by us while the announcement was on its way
        remoteFile._announced(message.ranges)

    def _onKeepAlive(self, message: codec.KeepAlive) -> None:
        pass

    # -- answering the other node

    def _servedFile(self, message: Any) -> IServedFile | None:
        """
        The file a request names, or None once an Error has answered it: a
        request may follow an Open that failed.
        """
        served = self._served.get(message.handle)
        if served is None:
            self.send(
                codec.Error(
                    message.request,
                    ErrorCode.NOT_FOUND,
                    f"no open handle {message.handle}",
                )
            )
        return served

    def _reply(
        self,
        requestId: int,
        deferred: "defer.Deferred[Any]",
        build: Callable[[Any], codec.Message],
    ) -> None:
        """
        Send what C{deferred} gives, or its SPPError, as the answer.
        """
        if self._answering() >= MAX_PENDING_REQUESTS:
            deferred.addErrback(lambda _: None)
            deferred.cancel()
            self.send(codec.Error(requestId, ErrorCode.BUSY, "too many requests"))
            return
        self._pending[requestId] = deferred

        def done(result: Any) -> None:
            if self._pending.pop(requestId, None) is None or self.state != _READY:
                return
            self.send(build(result))

        def failed(reason: Failure) -> None:
            if self._pending.pop(requestId, None) is None or self.state != _READY:
                return
            self.send(_errorFor(requestId, reason))

        deferred.addCallbacks(done, failed)

    def _onOpen(self, message: codec.Open) -> None:
        if message.request in self._served:
            self.send(
                codec.Error(
                    message.request,
                    ErrorCode.BAD_REQUEST,
                    f"handle {message.request} is open",
                )
            )
            return
        if len(self._served) >= MAX_OPEN_FILES:
            self.send(
                codec.Error(message.request, ErrorCode.BUSY, "too many open files")
            )
            return
        try:
            served = self.node.open(message.url, message.version, self)
        except SPPError as e:
            self.send(codec.Error(message.request, e.code, e.message))
            return
        handle = message.request
        self._served[handle] = served
        self.send(
            codec.Opened(
                message.request,
                served.size,
                served.blockSize,
                served.authoritative,
                served.digestName,
                served.version,
            )
        )
        if not served.authoritative:
            held = list(served.held())
            for start in range(0, len(held), codec.MAX_HAVE_RANGES):
                self.send(
                    codec.Have(
                        handle, tuple(held[start : start + codec.MAX_HAVE_RANGES])
                    )
                )
            served.watch(lambda ranges: self._announce(handle, ranges))

    def _announce(self, handle: int, ranges: Sequence[tuple[int, int]]) -> None:
        if self.state == _READY and handle in self._served:
            ranges = list(ranges)
            for start in range(0, len(ranges), codec.MAX_HAVE_RANGES):
                chunk = ranges[start : start + codec.MAX_HAVE_RANGES]
                self.send(codec.Have(handle, tuple(chunk)))

    def _onClose(self, message: codec.Close) -> None:
        served = self._served.pop(message.handle, None)
        if served is not None:
            served.close()

    def _onGetDigests(self, message: codec.GetDigests) -> None:
        self._checkFresh(message.request)
        served = self._servedFile(message)
        if served is None:
            return
        # An opener asking before it knows the size may ask past the end.
        blocks = -(-served.size // served.blockSize)
        count = min(message.count, max(1, blocks - message.first))
        try:
            deferred = served.digests(message.first, count)
        except SPPError as e:
            self.send(codec.Error(message.request, e.code, e.message))
            return
        self._reply(
            message.request,
            deferred,
            lambda digests: codec.Digests(message.request, message.first, digests),
        )

    def _onGetPeers(self, message: codec.GetPeers) -> None:
        served = self._servedFile(message)
        if served is None:
            return
        peers = served.peers(self.remoteHost, self.remoteListenPort)
        self.send(codec.Peers(message.request, tuple(peers[: codec.MAX_PEERS])))

    def _answering(self) -> int:
        """
        How many of the other node's requests this side is still answering.
        """
        return len(self._uploads) + len(self._uploading) + len(self._pending)

    def _checkFresh(self, requestId: int) -> None:
        """
        A request id must not be reused while its answer is outstanding.
        """
        if (
            requestId in self._pending
            or requestId in self._uploading
            or any(queued.request == requestId for queued in self._uploads)
        ):
            raise SPPError(ErrorCode.BAD_REQUEST, f"request id {requestId} reused")

    def _onGetBlock(self, message: codec.GetBlock) -> None:
        self._checkFresh(message.request)
        if self._servedFile(message) is None:
            return
        if self._answering() >= MAX_PENDING_REQUESTS:
            self.send(codec.Error(message.request, ErrorCode.BUSY, "too many requests"))
            return
        self._uploads.append(message)
        self._pump()

    def _onCancel(self, message: codec.Cancel) -> None:
        for queued in self._uploads:
            if queued.request == message.request:
                self._uploads.remove(queued)
                self.send(
                    codec.Error(message.request, ErrorCode.CANCELLED, "cancelled")
                )
                return
        uploading = self._uploading.get(message.request)
        if uploading is not None:
            uploading.cancel()
            return
        pending = self._pending.get(message.request)
        if pending is not None:
            pending.cancel()

    def _pump(self) -> None:
        """
        Start reading queued blocks while the transport has room.
        """
        while (
            self._uploads
            and not self._pumpProducer.paused
            and len(self._uploading) < UPLOADS_AT_ONCE
            and self.state == _READY
        ):
            message = self._uploads.popleft()
            served = self._served.get(message.handle)
            if served is None:
                self.send(
                    codec.Error(message.request, ErrorCode.BAD_REQUEST, "closed handle")
                )
                continue
            try:
                deferred = served.readBlock(message.index)
            except SPPError as e:
                self.send(codec.Error(message.request, e.code, e.message))
                continue
            self._uploading[message.request] = deferred
            deferred.addBoth(self._uploaded, message)

    def _uploaded(self, result: Any, message: codec.GetBlock) -> None:
        self._uploading.pop(message.request, None)
        if self.state != _READY:
            return
        if isinstance(result, Failure):
            self.send(_errorFor(message.request, result))
        else:
            self._sendBlock(message.request, message.index, result)
        self._pump()

    def _sendBlock(self, requestId: int, index: int, data: bytes) -> None:
        """
        Send a Block frame without copying the data into one buffer.
        """
        header = codec.Block.HEADER.pack(requestId, index)
        length = 1 + len(header) + len(data)
        if self._unread(_HEADER + length):
            self.transport.writeSequence(
                [_frameHeader(length, codec.Block.TYPE) + header, data]
            )


def _release(answer: Any) -> None:
    """
    Close a file opened by a request that was cancelled meanwhile.
    """
    if isinstance(answer, RemoteFile):
        answer.close()


def _frameHeader(length: int, messageType: int) -> bytes:
    return length.to_bytes(4, "big") + bytes([messageType])


# The answers that may be larger than codec.MAX_SMALL_FRAME, by type byte.
_LARGE_ANSWERS = {
    codec.Block.TYPE: codec.GetBlock,
    codec.Digests.TYPE: codec.GetDigests,
}

_ANSWERS = {
    codec.Opened: codec.Open,
    codec.Block: codec.GetBlock,
    codec.Digests: codec.GetDigests,
    codec.Peers: codec.GetPeers,
}


def _answers(kind: type, request: Any) -> bool:
    return isinstance(request, _ANSWERS[kind])


def _errorFor(requestId: int, reason: Failure) -> codec.Error:
    error = reason.value
    if isinstance(error, SPPError):
        return codec.Error(requestId, error.code, error.message)
    if reason.check(defer.CancelledError):
        return codec.Error(requestId, ErrorCode.CANCELLED, "cancelled")
    SPPProtocol._log.failure("answering request {request}", reason, request=requestId)
    return codec.Error(requestId, ErrorCode.INTERNAL, "internal error")


class SPPFactory(Factory):
    """
    Builds SPP connections for a node, incoming and outgoing.
    """

    def __init__(self, node: ISPPNode, clock: IReactorTime, initiator: bool) -> None:
        self.node = node
        self.clock = clock
        self.initiator = initiator

    def buildProtocol(self, addr: Any) -> SPPProtocol:
        protocol = SPPProtocol(self.node, self.clock, self.initiator)
        protocol.factory = self
        return protocol


def newNodeId() -> bytes:
    return os.urandom(16)
