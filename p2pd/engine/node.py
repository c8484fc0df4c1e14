# -*- test-case-name: tests.unit.test_node,tests.unit.test_control -*-
"""
The node: serves files to other nodes, and runs this node's downloads.

It answers SPP requests (published files as their origin, cached blocks as a
peer), keeps one download per file shared by all its readers, and the swarm
of each (L{p2pd.engine.swarm}): its sources, the origin, the peers the origin
names, mirrors, and nodes that open the same file on us.

Only the node decides whom it believes about a file's size, version and
digests (docs/security.md): a connection it dialed to the URL's origin, or to
a mirror that origin named (for an C{spps://} URL, over TLS with a
certificate valid for the URL's host name). Whatever a peer's Opened claims, every other
source only lends blocks, checked against those digests.
"""

import os
from collections.abc import Callable, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.net import PLAIN, Security
from p2pd.core.url import BadURL, parse
from p2pd.engine.backoff import Address, PeerBackoff
from p2pd.engine.connections import Connections
from p2pd.engine.download import Download
from p2pd.engine.interfaces import (
    ICacheControl,
    IConnection,
    IConnector,
    IRemoteFile,
    IServedFile,
    ISource,
    ISPPNode,
    IWebNode,
)
from p2pd.engine.serving import (
    CachedServedFile,
    Counters,
    PublishedServedFile,
    ServedFiles,
)
from p2pd.engine.swarm import PEER_INTERVAL, Swarm
from p2pd.engine.tracker import Tracker
from p2pd.engine.verification import DIGEST_CHUNK
from p2pd.store.cachedfile import CachedFile
from p2pd.store.digests import DigestIndex
from p2pd.store.interfaces import IBlockCache
from p2pd.store.published import NotPublished, PublicDirectory

# The files a node keeps open on one connection, at most: what the other
# node answers (MAX_OPEN_FILES in docs/protocol.md).
HANDLES_PER_CONNECTION = 64
LOG_DELAY = 0.05

# Makes the node's connector, which needs the node to answer on the
# connections it makes.
ConnectorFactory = Callable[[ISPPNode], IConnector]


@implementer(ISPPNode, IWebNode, ICacheControl)
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
        connectorFor: ConnectorFactory,
        cache: IBlockCache | None,
        public: PublicDirectory | None = None,
        digestIndex: DigestIndex | None = None,
        tracker: Tracker | None = None,
        nodeId: bytes | None = None,
        hashing: ThreadPool | None = None,
    ) -> None:
        self.clock = clock
        self.cache = cache
        self.public = public
        self.digestIndex = digestIndex
        self.tracker = tracker or Tracker()
        self.nodeId = nodeId or os.urandom(16)
        self.hashing = hashing
        self.listenPort = 0
        self.counters = Counters()
        self.servedFiles = ServedFiles()
        self.backoff = PeerBackoff(clock)
        self._swarms: dict[str, Swarm] = {}
        self._opening: dict[str, list[defer.Deferred[Download]]] = {}
        self._banned: set[tuple[str, int]] = set()
        self.connections = Connections(
            connectorFor(self), self.backoff, self.connectionGone
        )

    # -- ISPPNode: answering other nodes

    def open(self, url: str, version: str, connection: object) -> IServedFile:
        try:
            parsed = parse(url)
        except BadURL as e:
            raise SPPError(ErrorCode.BAD_REQUEST, str(e)) from None
        if parsed.secure and not IConnection(connection).encrypted:
            raise SPPError(ErrorCode.FORBIDDEN, "spps:// URLs only over TLS")
        # Published files by the path alone, whatever the host and port: a
        # mirror answers for its origin's URLs (docs/protocol.md, Open).
        published = None
        if self.public is not None and self.digestIndex is not None:
            try:
                published = self.public.lookup(parsed.segments)
            except NotPublished:
                pass
            if published is not None and version in ("", published.version):
                return PublishedServedFile(
                    published,
                    self.digestIndex,
                    self.tracker,
                    self.counters,
                    self.servedFiles,
                )
        key = str(parsed)
        if not version:
            raise SPPError(ErrorCode.NOT_FOUND, "not published here")
        swarm = self._swarms.get(key)
        cached = self.cache.find(key, version) if self.cache is not None else None
        if swarm is not None and swarm.download.meta.version == version:
            swarm.offerSource(IConnection(connection))
        else:
            swarm = None
        if cached is not None and (
            swarm is not None or cached.heldCount or cached.complete
        ):
            # A handle of its own, which outlives the download's: the
            # download may close before the peer does.
            download = swarm.download if swarm is not None else None
            return CachedServedFile(cached, download, self.counters, self.servedFiles)
        if cached is not None:
            # Every block it held was evicted.
            cached.close()
        if published is not None:
            raise SPPError(ErrorCode.CHANGED, "the file has changed")
        raise SPPError(ErrorCode.NOT_FOUND, "not held here")

    def connectionReady(self, connection: object) -> None:
        self.connections.ready(IConnection(connection))

    def connectionGone(self, connection: object) -> None:
        self.connections.forget(connection)
        for swarm in self._swarms.values():
            swarm.peerConnections.discard(connection)

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
        security = Security(True, parsed.host) if parsed.secure else PLAIN
        d = self.connections.connect(*origin, security=security)
        d.addCallback(self._makeRoom)
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
            callbackArgs=(key, origin, parsed.secure),
            errbackArgs=(key,),
        )
        return result

    def _makeRoom(self, connection: IConnection) -> IConnection:
        """
        Before another Open on C{connection}: if as many files are open on
        it as the other node allows, close downloads nobody reads, the
        longest unread first. A player fetching one short file after another
        (HLS segments, a playlist of clips) then never meets that limit.
        """
        using = [
            swarm
            for swarm in self._swarms.values()
            if any(
                getattr(source, "connection", None) is connection
                for source in swarm.download.sources
            )
        ]
        excess = len(using) - HANDLES_PER_CONNECTION + 1
        if excess <= 0:
            return connection
        now = self.clock.seconds()
        unread = sorted(
            (swarm for swarm in using if not swarm.download.readers),
            key=lambda swarm: now if swarm.idleSince is None else swarm.idleSince,
        )
        for swarm in unread[:excess]:
            del self._swarms[swarm.url]
            swarm.close()
        return connection

    def _opened(
        self,
        remoteFile: IRemoteFile,
        key: str,
        origin: tuple[str, int],
        secure: bool,
    ) -> None:
        remoteFile.believe()
        if not remoteFile.authoritative:
            remoteFile.close()
            reason = Failure(
                SPPError(ErrorCode.BAD_REQUEST, "the origin does not answer as one")
            )
            for waiting in self._opening.pop(key, []):
                waiting.errback(reason)
            return
        meta = remoteFile.meta
        old = self._swarms.pop(key, None)
        if old is not None:
            old.close()
        try:
            assert self.cache is not None, "a node that downloads has a cache"
            store = self.cache.open(meta)
        except OSError:
            remoteFile.close()
            for waiting in self._opening.pop(key, []):
                waiting.errback()
            return
        download = Download(meta, store, self.clock, hashing=self.hashing)
        store.pin(download.pinned)
        download.onBadSource = self._badSource
        download.firstBlockAlone()
        swarm = self._newSwarm(key, origin, download, store, secure)
        self._swarms[key] = swarm
        # Logged a moment later: writing a log line takes time, and the
        # first block is on its way to a player.
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
        # Callers first, then the source: the readers a player opens are
        # there before the source's first answers, which then go to it.
        for waiting in self._opening.pop(key, []):
            waiting.callback(download)
        swarm.addSource(remoteFile)
        swarm.maintain()

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
                cached.pin(download.pinned)
                download.searching = False
                parsed = parse(key)
                swarm = self._newSwarm(
                    key, (parsed.host, parsed.port), download, cached, parsed.secure
                )
                self._swarms[key] = swarm
                # Keep trying the origin, and close the download when idle.
                swarm.timer = self.clock.callLater(PEER_INTERVAL, swarm.maintain)
                for w in waiting:
                    w.callback(download)
                return
        for w in waiting:
            w.errback(reason)

    def _newSwarm(
        self,
        url: str,
        origin: Address,
        download: Download,
        store: CachedFile,
        secure: bool,
    ) -> Swarm:
        return Swarm(
            url,
            origin,
            download,
            store,
            secure,
            self.clock,
            self.connections,
            self.backoff,
            self._banned,
            self._forget,
        )

    def _forget(self, swarm: Swarm) -> None:
        del self._swarms[swarm.url]

    def _badSource(self, source: ISource) -> None:
        connection = IRemoteFile(source).connection
        self._banned.add((connection.remoteHost, connection.remoteListenPort))
        connection.drop()

    def downloads(self) -> list[Download]:
        return [s.download for s in self._swarms.values()]

    def hasCached(self, url: str) -> bool:
        """
        Whether the cache holds a version of C{url}: its download then
        starts even while the origin is unreachable.
        """
        if self.cache is None:
            return False
        cached = self.cache.find(url)
        if cached is None:
            return False
        cached.close()
        return True

    def cacheUsage(self) -> dict[str, int | None]:
        if self.cache is None:
            return {}
        return {
            "diskUsed": self.cache.limit.used,
            "diskLimit": self.cache.limit.capacity,
            "memoryUsed": self.cache.memory.size,
            "memoryLimit": self.cache.memory.capacity,
        }

    # -- ICacheControl: p2pd cache, through the control listener

    def removeCached(self, url: str) -> bool:
        swarm = self._swarms.pop(url, None)
        if swarm is not None:
            # Its sources are closed too: the origin stops listing this
            # node as a peer for the file.
            self._log.info("{url}: removed from the cache", url=url)
            swarm.close()
        return self.cache is not None and self.cache.remove(url)

    def purgeCache(self) -> int:
        if self._swarms:
            self._log.info("the cache is purged: every download closed")
        self.stop()
        return self.cache.purge() if self.cache is not None else 0

    def recheckCached(self, url: str, version: str, blocks: Sequence[int]) -> list[int]:
        return self.cache.recheck(url, version, blocks) if self.cache is not None else []

    def stop(self) -> None:
        """
        Close every download (the node is shutting down).
        """
        for swarm in list(self._swarms.values()):
            swarm.close()
        self._swarms.clear()
