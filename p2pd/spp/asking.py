# -*- test-case-name: tests.unit.test_asking -*-
"""
The asking side of an SPP connection: the requests this node makes, the
files it opened on the other node, and the answers that come back.

Every request gets exactly one answer, its reply or an Error; an answer that
matches no request of ours, or not the one it names, is a protocol error.
The side that answers other nodes is L{p2pd.spp.answering}.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet import defer
from twisted.python.failure import Failure
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.peers import Peer
from p2pd.engine.interfaces import IRemoteFile
from p2pd.spp import codec
from p2pd.spp.handles import Handles


class ConnectionGone(Exception):
    """
    The connection closed before the request was answered.
    """


class Connection(Protocol):
    """
    What the asking side needs of its connection (L{SPPProtocol}).
    """

    remoteName: str

    def send(self, message: codec.Message) -> None: ...

    def canSend(self) -> bool: ...

    def request(
        self, message: codec.Request, remoteFile: "RemoteFile | None"
    ) -> "defer.Deferred[Any]": ...

    def closeRemote(self, remoteFile: "RemoteFile") -> None: ...


@implementer(IRemoteFile)
class RemoteFile:
    """
    A file opened on the other end of a connection: an L{IRemoteFile}.

    Its handle is the id of the Open request, so requests for it can be sent
    before the Open is answered (L{Asker.open}); their Deferreds wait here
    until the download asks for the same digests or blocks.

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

    def __init__(self, connection: Connection, handle: int) -> None:
        self.connection = connection
        self.handle = handle
        self.name = connection.remoteName
        self._have: bytearray | None = None
        self._closed = False
        self._earlyBlocks: dict[int, defer.Deferred[bytes]] = {}
        self._earlyDigests: dict[int, tuple[int, defer.Deferred[bytes]]] = {}
        self._earlyPeers: defer.Deferred[Sequence[Peer]] | None = None

    def opened(self, meta: FileMeta, claimsAuthority: bool) -> None:
        """
        The other node answered the Open with C{meta}.
        """
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

    def unavailable(self, index: int) -> None:
        if self._have is not None and 0 <= index < self.meta.blocks:
            self._have[index >> 3] &= ~(1 << (index & 7))

    def announced(self, ranges: Sequence[tuple[int, int]]) -> None:
        """
        The other node said, in a Have, that it holds C{ranges} too.
        """
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
        return self.connection.request(codec.GetBlock(0, self.handle, index), self)

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        asked, early = self._earlyDigests.get(first, (0, None))
        if early is not None and count == min(asked, self.meta.blocks - first):
            del self._earlyDigests[first]
            return early
        if self._closed:
            return defer.fail(ConnectionGone("file closed"))
        return self.connection.request(
            codec.GetDigests(0, self.handle, first, count), self
        )

    def askEarly(self, digests: int, blocks: Sequence[int], peers: bool) -> None:
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
                    codec.GetDigests(0, self.handle, 0, digests), self
                ),
            )
        for index in blocks:
            self._earlyBlocks[index] = self.connection.request(
                codec.GetBlock(0, self.handle, index), self
            )
        if peers:
            self._earlyPeers = self.connection.request(
                codec.GetPeers(0, self.handle), None
            )

    def dropEarly(self) -> None:
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

    def getPeers(self) -> "defer.Deferred[Sequence[Peer]]":
        early, self._earlyPeers = self._earlyPeers, None
        if early is not None:
            return early
        if self._closed:
            return defer.fail(ConnectionGone("file closed"))
        return self.connection.request(codec.GetPeers(0, self.handle), None)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.dropEarly()
            self.connection.closeRemote(self)

    def lost(self, reason: Failure) -> None:
        """
        The connection closed.
        """
        self._closed = True
        self.dropEarly()
        if self.onLost is not None:
            onLost, self.onLost = self.onLost, None
            onLost(reason)


@dataclasses.dataclass
class _Outgoing:
    """
    A request of ours waiting for its answer.

    @ivar remoteFile: the file the request is about, if any; for an Open,
        the file it opens.
    """

    deferred: "defer.Deferred[Any]"
    message: codec.Message
    remoteFile: RemoteFile | None


# The replies to each kind of request.
_ANSWERS: dict[type[codec.Message], type[codec.Message]] = {
    codec.Opened: codec.Open,
    codec.Block: codec.GetBlock,
    codec.Digests: codec.GetDigests,
    codec.Peers: codec.GetPeers,
}


class Asker:
    """
    The requests this node makes on one connection, and the files it has
    open on the other node.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._nextRequest = 1
        self._outgoing: dict[int, _Outgoing] = {}
        self._remoteFiles: dict[int, RemoteFile] = {}
        self.handles = Handles()

    def open(
        self, url: str, version: str, digests: int, blocks: Sequence[int], peers: bool
    ) -> "defer.Deferred[IRemoteFile]":
        """
        Open C{url} on the other node, once a handle is free there, asking
        at once for what L{RemoteFile.askEarly} asks for.
        """
        d = self.handles.take()
        return d.addCallback(lambda _: self._open(url, version, digests, blocks, peers))

    def _open(
        self, url: str, version: str, digests: int, blocks: Sequence[int], peers: bool
    ) -> "defer.Deferred[IRemoteFile]":
        requestId = self._newRequestId()
        remoteFile = RemoteFile(self.connection, requestId)
        opened = self._ask(requestId, codec.Open(requestId, url, version), remoteFile)
        if opened.called and requestId not in self._outgoing:
            self.handles.give()  # not sent
        elif self.connection.canSend():
            remoteFile.askEarly(digests, blocks, peers)

        def failed(reason: Failure) -> Failure:
            remoteFile.dropEarly()
            return reason

        return opened.addErrback(failed)

    def request(
        self, message: codec.Request, remoteFile: RemoteFile | None
    ) -> "defer.Deferred[Any]":
        """
        Send a request about C{remoteFile} and return a Deferred for its
        answer; cancelling it sends Cancel.
        """
        requestId = self._newRequestId()
        return self._ask(
            requestId, dataclasses.replace(message, request=requestId), remoteFile
        )

    def awaits(self, kind: type[codec.Message]) -> bool:
        """
        Whether a request of type C{kind} waits for its answer.
        """
        return any(isinstance(out.message, kind) for out in self._outgoing.values())

    def closeRemote(self, remoteFile: RemoteFile) -> None:
        if self._remoteFiles.pop(remoteFile.handle, None) is not None:
            if self.connection.canSend():
                self.connection.send(codec.Close(remoteFile.handle))
            # After the Close: the Open a waiting one sends comes behind it.
            self.handles.give()

    def _newRequestId(self) -> int:
        requestId = self._nextRequest
        self._nextRequest = self._nextRequest % 0xFFFFFFFF + 1
        return requestId

    def _ask(
        self, requestId: int, message: codec.Message, remoteFile: RemoteFile | None
    ) -> "defer.Deferred[Any]":
        if not self.connection.canSend():
            return defer.fail(ConnectionGone("connection not ready"))

        def cancel(d: "defer.Deferred[Any]") -> None:
            if requestId in self._outgoing and self.connection.canSend():
                self.connection.send(codec.Cancel(requestId))
            # The answer (or Error CANCELLED) still arrives; keep the entry
            # so it is recognised, but the caller already has its answer.
            outgoing = self._outgoing.get(requestId)
            if outgoing is not None:
                ignored: defer.Deferred[Any] = defer.Deferred()
                ignored.addCallbacks(_release, lambda _: None)
                outgoing.deferred = ignored

        try:
            self.connection.send(message)
        except Exception:
            return defer.fail()  # unencodable: nothing was sent
        deferred: defer.Deferred[Any] = defer.Deferred(cancel)
        self._outgoing[requestId] = _Outgoing(deferred, message, remoteFile)
        return deferred

    # -- answers

    def _answer(self, requestId: int, kind: type[codec.Message]) -> _Outgoing:
        outgoing = self._outgoing.pop(requestId, None)
        if outgoing is None:
            raise SPPError(
                ErrorCode.BAD_REQUEST, f"answer to unknown request {requestId}"
            )
        if kind is not codec.Error and not isinstance(outgoing.message, _ANSWERS[kind]):
            outgoing.deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong answer"))
            raise SPPError(
                ErrorCode.BAD_REQUEST,
                f"{kind.__name__} does not answer {type(outgoing.message).__name__}",
            )
        return outgoing

    def opened(self, message: codec.Opened) -> None:
        outgoing = self._answer(message.request, codec.Opened)
        request, remoteFile = outgoing.message, outgoing.remoteFile
        assert isinstance(request, codec.Open) and remoteFile is not None
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
            self.connection.send(codec.Close(handle))
            self.handles.give()
            outgoing.deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "unknown digest"))
            return
        if request.version and request.version != message.version:
            self.connection.send(codec.Close(handle))
            self.handles.give()
            outgoing.deferred.errback(SPPError(ErrorCode.CHANGED, "other version"))
            return
        remoteFile.opened(meta, message.authoritative)
        self._remoteFiles[handle] = remoteFile
        outgoing.deferred.callback(remoteFile)

    def _openedFile(self, outgoing: _Outgoing) -> FileMeta:
        """
        The metadata of the file an answer is about, which must have been
        opened by then.
        """
        meta: FileMeta | None = getattr(outgoing.remoteFile, "meta", None)
        if meta is None:
            outgoing.deferred.errback(
                SPPError(ErrorCode.BAD_REQUEST, "answer before Opened")
            )
            raise SPPError(ErrorCode.BAD_REQUEST, "answer before its file's Opened")
        return meta

    def block(self, message: codec.Block) -> None:
        outgoing = self._answer(message.request, codec.Block)
        meta = self._openedFile(outgoing)
        request = outgoing.message
        assert isinstance(request, codec.GetBlock)
        index = request.index
        if message.index != index or len(message.data) != meta.blockLength(index):
            outgoing.deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong block"))
            raise SPPError(
                ErrorCode.BAD_REQUEST, f"block {message.index} is not what was asked"
            )
        outgoing.deferred.callback(message.data)

    def digests(self, message: codec.Digests) -> None:
        outgoing = self._answer(message.request, codec.Digests)
        meta = self._openedFile(outgoing)
        request = outgoing.message
        assert isinstance(request, codec.GetDigests)
        first = request.first
        expected = min(request.count, meta.blocks - first) * meta.digestSize
        if message.first != first or len(message.digests) != expected:
            outgoing.deferred.errback(SPPError(ErrorCode.BAD_REQUEST, "wrong digests"))
            raise SPPError(ErrorCode.BAD_REQUEST, "digests are not what was asked")
        outgoing.deferred.callback(message.digests)

    def peers(self, message: codec.Peers) -> None:
        self._answer(message.request, codec.Peers).deferred.callback(message.peers)

    def error(self, message: codec.Error) -> None:
        """
        An Error answering one of our requests (not request 0, which is
        about the connection).
        """
        outgoing = self._answer(message.request, codec.Error)
        if isinstance(outgoing.message, codec.Open):
            self.handles.give()
        outgoing.deferred.errback(SPPError(message.code, message.message))

    def have(self, message: codec.Have) -> None:
        remoteFile = self._remoteFiles.get(message.handle)
        if remoteFile is None:
            return  # closed by us while the announcement was on its way
        remoteFile.announced(message.ranges)

    # -- the end

    def failRequests(self, gone: Exception) -> None:
        """
        Fail every request still waiting for its answer with C{gone}.
        """
        self.handles.fail(gone)
        outgoing, self._outgoing = self._outgoing, {}
        for out in outgoing.values():
            # An earlier errback may have cancelled (and so fired) the rest.
            if not out.deferred.called:
                out.deferred.errback(gone)

    def lost(self, reason: Failure) -> None:
        """
        Tell the files opened on the other node that the connection closed.
        """
        remote, self._remoteFiles = self._remoteFiles, {}
        for remoteFile in remote.values():
            remoteFile.lost(reason)


def _release(answer: object) -> None:
    """
    Close a file opened by a request that was cancelled meanwhile.
    """
    if isinstance(answer, RemoteFile):
        answer.close()
