# -*- test-case-name: tests.test_node -*-
"""
The node: serves files to other nodes, and runs this node's downloads.

It answers SPP requests (published files as their origin, cached blocks as a
peer), keeps one download per file shared by all its readers, and finds the
sources for each: the origin, the peers the origin names, mirrors, and nodes
that open the same file on us.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from p2pd.engine.download import DIGEST_CHUNK, Download
from p2pd.engine.interfaces import (
    IServedFile,
    ISource,
    ISPPNode,
    SPPError,
    errorCode,
)
from p2pd.engine.serving import (
    CachedServedFile,
    Counters,
    PublishedServedFile,
    ServedFiles,
)
from p2pd.engine.tracker import Tracker
from p2pd.spp.codec import ErrorCode
from p2pd.spp.url import BadURL, parse
from p2pd.store.published import NotPublished, PublicDirectory

PEER_INTERVAL = 5.0
MAX_PEERS_PER_DOWNLOAD = 16
IDLE_DOWNLOAD = 60.0
LOG_DELAY = 0.05


class IConnection(Protocol):
    """
    What the node needs of an SPP connection (L{p2pd.spp.protocol.SPPProtocol}).
    """

    remoteHost: str
    remoteListenPort: int
    remoteName: str

    def open(
        self, url: str, version: str = "", digests: int = 0, blocks: Sequence[int] = ()
    ) -> "defer.Deferred[Any]": ...


class IConnector(Protocol):
    def connect(self, host: str, port: int) -> "defer.Deferred[Any]": ...


class _Swarm:
    """
    The node's bookkeeping for one download: who it came from and which
    connections already serve it.
    """

    def __init__(self, url: str, origin: tuple[str, int], download: Download) -> None:
        self.url = url
        self.origin = origin
        self.download = download
        self.peerConnections: set[Any] = set()
        self.connecting: set[tuple[str, int]] = set()
        self.lookingUp = False
        self.timer: IDelayedCall | None = None
        self.idleSince: float | None = None


@implementer(ISPPNode)
class Node:
    """
    One p2pd node.

    @ivar listenPort: the port others reach this node's SPP on; set when the
        listener starts, 0 until then (and for nodes that do not listen).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        connector: IConnector,
        cache: Any,
        public: PublicDirectory | None = None,
        digestIndex: Any = None,
        tracker: Tracker | None = None,
        nodeId: bytes | None = None,
        hashing: ThreadPool | None = None,
    ) -> None:
        self.clock = clock
        self.connector = connector
        self.cache = cache
        self.public = public
        self.digestIndex = digestIndex
        self.tracker = tracker or Tracker()
        self.nodeId = nodeId or os.urandom(16)
        self.hashing = hashing
        self.listenPort = 0
        self.counters = Counters()
        self.servedFiles = ServedFiles()
        self._connections: dict[tuple[str, int], Any] = {}
        self._connecting: dict[tuple[str, int], defer.Deferred[Any]] = {}
        self._swarms: dict[str, _Swarm] = {}
        self._opening: dict[str, list[defer.Deferred[Download]]] = {}
        self._banned: set[tuple[str, int]] = set()

    # -- ISPPNode: answering other nodes

    def open(self, url: str, version: str, connection: Any) -> IServedFile:
        try:
            parsed = parse(url)
        except BadURL as e:
            raise SPPError(ErrorCode.BAD_REQUEST, str(e)) from None
        if self.public is not None and self.digestIndex is not None:
            try:
                published = self.public.lookup(parsed.segments)
            except NotPublished:
                published = None
            if published is not None and version in ("", published.version):
                return PublishedServedFile(
                    published,
                    self.digestIndex,
                    self.tracker,
                    self.counters,
                    self.servedFiles,
                )
            if published is not None and parsed.port == self.listenPort:
                raise SPPError(ErrorCode.CHANGED, "the file has changed")
        key = str(parsed)
        if not version:
            raise SPPError(ErrorCode.NOT_FOUND, "not published here")
        swarm = self._swarms.get(key)
        if swarm is not None and swarm.download.meta.version == version:
            self._offerSource(swarm, connection)
            store: Any = swarm.download.store
            return CachedServedFile(
                store, swarm.download, self.counters, self.servedFiles
            )
        cached = self.cache.find(key, version) if self.cache is not None else None
        if cached is not None:
            return CachedServedFile(cached, None, self.counters, self.servedFiles)
        raise SPPError(ErrorCode.NOT_FOUND, "not held here")

    def connectionReady(self, connection: Any) -> None:
        if connection.remoteListenPort:
            address = (connection.remoteHost, connection.remoteListenPort)
            self._connections.setdefault(address, connection)

    def connectionGone(self, connection: Any) -> None:
        for address, known in list(self._connections.items()):
            if known is connection:
                del self._connections[address]
        for swarm in self._swarms.values():
            swarm.peerConnections.discard(connection)

    # -- connections

    def _connect(self, host: str, port: int) -> "defer.Deferred[Any]":
        """
        A ready connection to the node at C{host}:C{port}, reusing one.
        """
        known = self._connections.get((host, port))
        if known is not None:
            return defer.succeed(known)
        pending = self._connecting.get((host, port))
        if pending is None:
            pending = self.connector.connect(host, port)
            self._connecting[(host, port)] = pending

            def connected(connection: Any) -> Any:
                self._connecting.pop((host, port), None)
                self._connections.setdefault((host, port), connection)
                return connection

            def failed(reason: Failure) -> Failure:
                self._connecting.pop((host, port), None)
                return reason

            pending.addCallbacks(connected, failed)
        result: defer.Deferred[Any] = defer.Deferred()
        pending.addBoth(_forward(result))
        return result

    # -- downloads

    def download(self, url: str) -> "defer.Deferred[Download]":
        """
        The download of C{url}, shared with every other reader of it. Fails
        with L{BadURL}, a connection error, or L{SPPError} from the origin.
        """
        try:
            parsed = parse(url)
        except BadURL as e:
            return defer.fail(e)
        key = str(parsed)
        swarm = self._swarms.get(key)
        if swarm is not None and swarm.download.failure is None:
            swarm.idleSince = None
            return defer.succeed(swarm.download)
        result: defer.Deferred[Download] = defer.Deferred()
        waiting = self._opening.get(key)
        if waiting is not None:
            waiting.append(result)
            return result
        self._opening[key] = [result]
        origin = (parsed.host, parsed.port)
        d = self._connect(*origin)
        # The first digests and block and the first peers travel with the
        # Open (and the Open behind the Hello): a player's first bytes come
        # one round trip after the connection is made, with nothing else
        # asked meanwhile. A cached file may hold that block.
        cached = self.cache is not None and self.cache.hasAnyVersion(key)
        first = () if cached else (0,)
        d.addCallback(
            lambda connection: connection.open(
                key, "", digests=DIGEST_CHUNK, blocks=first, peers=True
            )
        )
        d.addCallbacks(
            self._opened,
            self._openFailed,
            callbackArgs=(key, origin),
            errbackArgs=(key,),
        )
        return result

    def _opened(self, remoteFile: Any, key: str, origin: tuple[str, int]) -> None:
        meta = remoteFile.meta
        old = self._swarms.pop(key, None)
        if old is not None:
            self._closeSwarm(old)
        try:
            store = self.cache.open(meta)
        except OSError:
            remoteFile.close()
            for waiting in self._opening.pop(key, []):
                waiting.errback()
            return
        download = Download(meta, store, self.clock, hashing=self.hashing)
        download.onBadSource = self._badSource
        download.firstBlockAlone()
        swarm = _Swarm(key, origin, download)
        self._swarms[key] = swarm
        # Logged a moment later: writing a log line takes a fifth of a
        # millisecond, and the first block is on its way to a player.
        self.clock.callLater(
            LOG_DELAY,
            self._log.info,
            "{url}: version {version}, {size} bytes, {held} of {blocks} blocks cached",
            url=key,
            version=meta.version,
            size=meta.size,
            held=store.heldCount,
            blocks=meta.blocks,
        )
        # Callers first, then the source: a player's first byte came 0.8 ms
        # sooner this way (cold viewers through the proxy, 10 samples each).
        for waiting in self._opening.pop(key, []):
            waiting.callback(download)
        self._addSource(swarm, remoteFile)
        self._maintain(swarm)

    def _openFailed(self, reason: Failure, key: str) -> None:
        waiting = self._opening.pop(key, [])
        if not reason.check(SPPError) and self.cache is not None:
            cached = self.cache.find(key)
            if cached is not None:
                self._log.info(
                    "{url}: origin unreachable ({why}); playing from the cache",
                    url=key,
                    why=reason.getErrorMessage(),
                )
                download = Download(
                    cached.meta, cached, self.clock, hashing=self.hashing
                )
                download.searching = False
                parsed = parse(key)
                swarm = _Swarm(key, (parsed.host, parsed.port), download)
                self._swarms[key] = swarm
                # Keep trying the origin, and close the download when idle.
                swarm.timer = self.clock.callLater(PEER_INTERVAL, self._maintain, swarm)
                for w in waiting:
                    w.callback(download)
                return
        for w in waiting:
            w.errback(reason)

    def _addSource(self, swarm: _Swarm, remoteFile: ISource) -> None:
        connection = getattr(remoteFile, "connection", None)
        if swarm.download.addSource(remoteFile):
            swarm.peerConnections.add(connection)
        else:
            remoteFile.close()

    def _offerSource(self, swarm: _Swarm, connection: Any) -> None:
        """
        A node opened our download's file on us: use it as a source too.
        """
        if connection in swarm.peerConnections:
            return
        swarm.peerConnections.add(connection)
        d = connection.open(swarm.url, swarm.download.meta.version)
        d.addCallbacks(
            lambda remoteFile: self._addSource(swarm, remoteFile),
            lambda reason: swarm.peerConnections.discard(connection),
        )

    def _badSource(self, source: ISource) -> None:
        connection = getattr(source, "connection", None)
        if connection is not None:
            self._banned.add((connection.remoteHost, connection.remoteListenPort))
            connection.transport.loseConnection()

    def _maintain(self, swarm: _Swarm) -> None:
        """
        Every few seconds: reconnect to the origin if it went away, ask it
        for peers, connect to new ones; close the download when idle.
        """
        swarm.timer = None
        if self._swarms.get(swarm.url) is not swarm:
            return
        download = swarm.download
        if download.failure is not None:
            return
        if not download.readers:
            now = self.clock.seconds()
            if swarm.idleSince is None:
                swarm.idleSince = now
            elif now - swarm.idleSince >= IDLE_DOWNLOAD:
                self._log.info("{url}: idle, closing download", url=swarm.url)
                del self._swarms[swarm.url]
                self._closeSwarm(swarm)
                return
        else:
            swarm.idleSince = None
        authorities = [s for s in download.sources if s.authoritative]
        if not authorities:
            self._reconnectOrigin(swarm)
        elif not swarm.lookingUp:
            swarm.lookingUp = True
            d = authorities[0].getPeers()
            d.addCallbacks(lambda peers: self._connectPeers(swarm, peers), _ignore)
            d.addBoth(self._lookedUp, swarm)
        self._updateSearching(swarm)
        swarm.timer = self.clock.callLater(PEER_INTERVAL, self._maintain, swarm)

    def _reconnectOrigin(self, swarm: _Swarm) -> None:
        if swarm.origin in swarm.connecting:
            return
        swarm.connecting.add(swarm.origin)
        d = self._connect(*swarm.origin)
        d.addCallback(lambda c: c.open(swarm.url, swarm.download.meta.version))

        def opened(remoteFile: Any) -> None:
            self._addSource(swarm, remoteFile)

        def failed(reason: Failure) -> None:
            if errorCode(reason) == ErrorCode.CHANGED:
                swarm.download.fail(reason)

        d.addCallbacks(opened, failed)
        d.addBoth(lambda _: self._doneConnecting(swarm, swarm.origin))

    def _connectPeers(self, swarm: _Swarm, peers: Any) -> None:
        for peer in peers:
            address = (peer.host, peer.port)
            if len(swarm.peerConnections) >= MAX_PEERS_PER_DOWNLOAD:
                break
            known = self._connections.get(address)
            if (
                address in self._banned
                or address in swarm.connecting
                or (known is not None and known in swarm.peerConnections)
            ):
                continue
            swarm.connecting.add(address)
            d = self._connect(*address)

            def opened(connection: Any) -> Any:
                if connection in swarm.peerConnections:
                    return None
                swarm.peerConnections.add(connection)
                o = connection.open(swarm.url, swarm.download.meta.version)
                o.addCallback(lambda remoteFile: self._addSource(swarm, remoteFile))
                o.addErrback(lambda _: swarm.peerConnections.discard(connection))
                return o

            d.addCallback(opened)
            d.addErrback(_ignore)
            d.addBoth(self._connectedPeer, swarm, address)
        self._updateSearching(swarm)

    def _connectedPeer(
        self, result: object, swarm: _Swarm, address: tuple[str, int]
    ) -> None:
        self._doneConnecting(swarm, address)

    def _lookedUp(self, result: object, swarm: _Swarm) -> None:
        swarm.lookingUp = False
        self._updateSearching(swarm)

    def _doneConnecting(self, swarm: _Swarm, address: tuple[str, int]) -> None:
        swarm.connecting.discard(address)
        self._updateSearching(swarm)

    def _updateSearching(self, swarm: _Swarm) -> None:
        searching = bool(swarm.connecting) or swarm.lookingUp
        if swarm.download.searching != searching:
            swarm.download.searching = searching
            swarm.download._schedule()

    def _closeSwarm(self, swarm: _Swarm) -> None:
        if swarm.timer is not None and swarm.timer.active():
            swarm.timer.cancel()
        swarm.download.close()

    def downloads(self) -> list[Download]:
        return [s.download for s in self._swarms.values()]

    def stop(self) -> None:
        """
        Close every download (the node is shutting down).
        """
        for swarm in list(self._swarms.values()):
            self._closeSwarm(swarm)
        self._swarms.clear()


def _forward(target: "defer.Deferred[Any]") -> Callable[[Any], None]:
    def forward(result: Any) -> Any:
        if isinstance(result, Failure):
            target.errback(result)
            return None
        target.callback(result)
        return result

    return forward


def _ignore(reason: Failure) -> None:
    return None
