# -*- test-case-name: tests.unit.test_answering -*-
"""
The answering side of an SPP connection: the files this node serves to the
other node, the blocks it uploads, and the bounds on both.

Blocks go out only while the transport wants data (L{Backpressure}), so a
slow reader never makes this node buffer more than a few blocks, and a peer
that reads nothing at all is dropped. The side that makes requests is
L{p2pd.spp.asking}.
"""

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.peers import MAX_PEERS
from p2pd.engine.interfaces import IServedFile, ISPPNode
from p2pd.spp import codec

MAX_OPEN_FILES = 64
MAX_PENDING_REQUESTS = 64
UPLOADS_AT_ONCE = 2
# What may be written while the other side reads nothing (the transport's
# buffer stays full) before the connection is dropped: answers to a flood of
# requests must not pile up in memory. Room for blocks of the largest size
# finishing while the buffer is full.
MAX_UNREAD = 16 * 1024 * 1024


class Connection(Protocol):
    """
    What the answering side needs of its connection (L{SPPProtocol}).
    """

    node: ISPPNode
    remoteHost: str
    remoteListenPort: int

    def send(self, message: codec.Message) -> None: ...

    def sendBlock(self, requestId: int, index: int, data: bytes) -> None: ...

    def canAnswer(self) -> bool: ...


@implementer(IPushProducer)
class Backpressure:
    """
    The producer registered on the transport: whether it wants data now, and
    how much was written while it did not.
    """

    def __init__(self, resumed: Callable[[], None]) -> None:
        self.resumed = resumed
        self.paused = False
        self._writtenWhileFull = 0

    def written(self, length: int) -> bool:
        """
        Count C{length} bytes about to be written; False if the other side
        has read nothing of the last L{MAX_UNREAD} bytes.
        """
        if not self.paused:
            return True
        self._writtenWhileFull += length
        return self._writtenWhileFull <= MAX_UNREAD

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._writtenWhileFull = 0
        self.resumed()

    def stopProducing(self) -> None:
        self.paused = True


class Answerer:
    """
    The other node's requests on one connection, and the files it has open
    on this node.
    """

    _log = Logger()

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.backpressure = Backpressure(self.pump)
        # handle -> file we serve; request ids -> queued block requests
        self._served: dict[int, IServedFile] = {}
        self._uploads: deque[codec.GetBlock] = deque()
        self._uploading: dict[int, defer.Deferred[bytes]] = {}
        self._pending: dict[int, defer.Deferred[bytes]] = {}
        self._reading = False

    def _send(self, message: codec.Message) -> None:
        self.connection.send(message)

    def _servedFile(
        self, message: codec.GetDigests | codec.GetBlock | codec.GetPeers
    ) -> IServedFile | None:
        """
        The file a request names, or None once an Error has answered it: a
        request may follow an Open that failed.
        """
        served = self._served.get(message.handle)
        if served is None:
            self._send(
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
        deferred: "defer.Deferred[bytes]",
        build: Callable[[bytes], codec.Message],
    ) -> None:
        """
        Send what C{deferred} gives, or its SPPError, as the answer.
        """
        if self._answering() >= MAX_PENDING_REQUESTS:
            deferred.addErrback(lambda _: None)
            deferred.cancel()
            self._send(codec.Error(requestId, ErrorCode.BUSY, "too many requests"))
            return
        self._pending[requestId] = deferred

        def done(result: bytes) -> None:
            if self._pending.pop(requestId, None) is None:
                return
            if self.connection.canAnswer():
                self._send(build(result))

        def failed(reason: Failure) -> None:
            if self._pending.pop(requestId, None) is None:
                return
            if self.connection.canAnswer():
                self._send(_errorFor(requestId, reason))

        deferred.addCallbacks(done, failed)

    @contextmanager
    def reading(self) -> Iterator[None]:
        """
        Take every request of one read before sending any block: of more
        GetBlocks than L{MAX_PENDING_REQUESTS} sent at once, those past it
        get BUSY, and the rest go out nearest block first.
        """
        self._reading = True
        try:
            yield
        finally:
            self._reading = False
        self.pump()

    def open(self, message: codec.Open) -> None:
        self._checkFresh(message.request)
        if message.request in self._served:
            self._send(
                codec.Error(
                    message.request,
                    ErrorCode.BAD_REQUEST,
                    f"handle {message.request} is open",
                )
            )
            return
        if len(self._served) >= MAX_OPEN_FILES:
            self._send(
                codec.Error(message.request, ErrorCode.BUSY, "too many open files")
            )
            return
        try:
            served = self.connection.node.open(
                message.url, message.version, self.connection
            )
        except SPPError as e:
            self._send(codec.Error(message.request, e.code, e.message))
            return
        handle = message.request
        self._served[handle] = served
        self._send(
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
            self._sendHave(handle, served.held())
            served.watch(lambda ranges: self._announce(handle, ranges))

    def _sendHave(self, handle: int, ranges: Sequence[tuple[int, int]]) -> None:
        ranges = list(ranges)
        for start in range(0, len(ranges), codec.MAX_HAVE_RANGES):
            chunk = ranges[start : start + codec.MAX_HAVE_RANGES]
            self._send(codec.Have(handle, tuple(chunk)))

    def _announce(self, handle: int, ranges: Sequence[tuple[int, int]]) -> None:
        if self.connection.canAnswer() and handle in self._served:
            self._sendHave(handle, ranges)

    def close(self, message: codec.Close) -> None:
        served = self._served.pop(message.handle, None)
        if served is not None:
            served.close()

    def getDigests(self, message: codec.GetDigests) -> None:
        self._checkFresh(message.request)
        served = self._servedFile(message)
        if served is None:
            return
        # An opener asking before it knows the size may ask past the end;
        # from the end itself (an empty file's block 0) it gets no digests.
        blocks = -(-served.size // served.blockSize)
        count = min(message.count, max(0, blocks - message.first))
        try:
            deferred = served.digests(message.first, count)
        except SPPError as e:
            self._send(codec.Error(message.request, e.code, e.message))
            return
        self._reply(
            message.request,
            deferred,
            lambda digests: codec.Digests(message.request, message.first, digests),
        )

    def getPeers(self, message: codec.GetPeers) -> None:
        self._checkFresh(message.request)
        served = self._servedFile(message)
        if served is None:
            return
        peers = served.peers(
            self.connection.remoteHost, self.connection.remoteListenPort
        )
        self._send(codec.Peers(message.request, tuple(peers[: MAX_PEERS])))

    def _answering(self) -> int:
        """
        How many of the other node's requests this side is still answering.
        """
        return len(self._uploads) + len(self._uploading) + len(self._pending)

    def _checkFresh(self, requestId: int) -> None:
        """
        A request id is not 0 (an Error about request 0 is about the whole
        connection) and is not reused while its answer is outstanding.
        """
        if requestId == 0:
            raise SPPError(ErrorCode.BAD_REQUEST, "request id 0")
        if (
            requestId in self._pending
            or requestId in self._uploading
            or any(queued.request == requestId for queued in self._uploads)
        ):
            raise SPPError(ErrorCode.BAD_REQUEST, f"request id {requestId} reused")

    def getBlock(self, message: codec.GetBlock) -> None:
        self._checkFresh(message.request)
        if self._servedFile(message) is None:
            return
        if self._answering() >= MAX_PENDING_REQUESTS:
            self._send(
                codec.Error(message.request, ErrorCode.BUSY, "too many requests")
            )
            return
        self._uploads.append(message)
        if not self._reading:
            self.pump()

    def cancel(self, message: codec.Cancel) -> None:
        for queued in self._uploads:
            if queued.request == message.request:
                self._uploads.remove(queued)
                self._send(
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

    def pump(self) -> None:
        """
        Start reading queued blocks while the transport has room.
        """
        while (
            self._uploads
            and not self.backpressure.paused
            and len(self._uploading) < UPLOADS_AT_ONCE
            and self.connection.canAnswer()
        ):
            # The block nearest the start first: the other side's reader
            # wants the blocks just ahead of it soonest.
            message = min(self._uploads, key=lambda m: m.index)
            self._uploads.remove(message)
            served = self._served.get(message.handle)
            if served is None:
                self._send(
                    codec.Error(message.request, ErrorCode.NOT_FOUND, "closed handle")
                )
                continue
            try:
                deferred = served.readBlock(message.index)
            except SPPError as e:
                self._send(codec.Error(message.request, e.code, e.message))
                continue
            self._uploading[message.request] = deferred
            deferred.addBoth(self._uploaded, message)

    def _uploaded(self, result: bytes | Failure, message: codec.GetBlock) -> None:
        self._uploading.pop(message.request, None)
        if not self.connection.canAnswer():
            return
        if isinstance(result, Failure):
            self._send(_errorFor(message.request, result))
        else:
            self.connection.sendBlock(message.request, message.index, result)
        self.pump()

    def stop(self) -> None:
        """
        The connection closed: stop answering, and close the served files.
        """
        for deferred in list(self._uploading.values()):
            deferred.cancel()
        pending, self._pending = self._pending, {}
        for deferred in pending.values():
            deferred.cancel()
        self._uploads.clear()
        served, self._served = self._served, {}
        for servedFile in served.values():
            servedFile.close()


def _errorFor(requestId: int, reason: Failure) -> codec.Error:
    error = reason.value
    if isinstance(error, SPPError):
        return codec.Error(requestId, error.code, error.message)
    if reason.check(defer.CancelledError):
        return codec.Error(requestId, ErrorCode.CANCELLED, "cancelled")
    Answerer._log.failure("answering request {request}", reason, request=requestId)
    return codec.Error(requestId, ErrorCode.INTERNAL, "internal error")
