# -*- test-case-name: tests.unit.test_node,tests.unit.test_authority -*-
"""
The swarm of one download: the nodes its blocks come from, kept up every
few seconds. The origin is dialed again when it went away and asked for
peers; the peers it names are dialed (the mirrors it names believed as it
is); a node that opens the same file on this one is used as a peer too.
An unread download is closed when it has been idle long enough, or at the
next check once the cache has evicted every block of it (then it leaves
C{/.status}, and the origin, its handle closed, names this node to no one).
"""

from collections.abc import Callable, Sequence

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pd.core.errors import ErrorCode, errorCode
from p2pd.core.net import PEER_TLS, PLAIN, Security
from p2pd.core.peers import Peer
from p2pd.engine.backoff import Address, PeerBackoff
from p2pd.engine.connections import Connections
from p2pd.engine.download import Download
from p2pd.engine.interfaces import IConnection, IRemoteFile, ISource
from p2pd.store.cachedfile import CachedFile

PEER_INTERVAL = 5.0
MAX_PEERS_PER_DOWNLOAD = 16
IDLE_DOWNLOAD = 60.0
# Peers on ports below this are not dialed unless the origin's port is too.
PRIVILEGED_PORTS = 1024


class Swarm:
    """
    The node's bookkeeping for one download: who it came from and which
    connections already serve it.

    @ivar banned: the addresses of nodes that sent a corrupt block (shared
        by every swarm of the node): never dialed again.
    @ivar forget: called with this swarm when it closes itself, idle.
    """

    _log = Logger()

    def __init__(
        self,
        url: str,
        origin: Address,
        download: Download,
        store: CachedFile,
        secure: bool,
        clock: IReactorTime,
        connections: Connections,
        backoff: PeerBackoff,
        banned: set[Address],
        forget: Callable[["Swarm"], None],
    ) -> None:
        self.url = url
        self.origin = origin
        # How its origin and mirrors are dialed, and how its peers.
        self.authority = Security(True, origin[0]) if secure else PLAIN
        self.peers = PEER_TLS if secure else PLAIN
        self.download = download
        self.store = store
        self.clock = clock
        self.connections = connections
        self.backoff = backoff
        self.banned = banned
        self.forget = forget
        self.peerConnections: set[IConnection] = set()
        self.connecting: set[tuple[str, int]] = set()
        self.lookingUp = False
        self.timer: IDelayedCall | None = None
        self.idleSince: float | None = None
        self.closed = False

    def addSource(self, remoteFile: IRemoteFile) -> None:
        """
        Use C{remoteFile} as a source of the download, or close it if the
        download will not have it.
        """
        if self.download.addSource(remoteFile):
            self.peerConnections.add(remoteFile.connection)
        else:
            remoteFile.close()

    def offerSource(self, connection: IConnection) -> None:
        """
        A node opened our download's file on us: use it as a source too, a
        peer whatever its Opened claims.
        """
        if connection in self.peerConnections:
            return
        self.peerConnections.add(connection)
        d = connection.open(self.url, self.download.meta.version)
        d.addCallbacks(
            lambda remoteFile: self.addSource(remoteFile),
            lambda reason: self.peerConnections.discard(connection),
        )

    def maintain(self) -> None:
        """
        Every few seconds: reconnect to the origin if it went away, ask it
        for peers, connect to new ones; close the download when idle.
        """
        self.timer = None
        if self.closed:
            return
        download = self.download
        if download.failure is not None:
            return
        if not download.readers:
            now = self.clock.seconds()
            if self.idleSince is None:
                self.idleSince = now
            elif now - self.idleSince >= IDLE_DOWNLOAD or self._handleWanted():
                self._log.info("{url}: idle, closing download", url=self.url)
                self.forget(self)
                self.close()
                return
            elif self.store.emptied:
                # Nothing left to serve: the origin stops naming this node.
                self._log.info(
                    "{url}: unread, and its blocks all evicted: closing download",
                    url=self.url,
                )
                self.forget(self)
                self.close()
                return
        else:
            self.idleSince = None
        authorities = [s for s in download.sources if s.authoritative]
        origins = [s for s in authorities if self._isOrigin(s)]
        if not authorities:
            self._reconnectOrigin()
        elif not self.lookingUp:
            # Only the origin's own list names mirrors to believe.
            asked = (origins or authorities)[0]
            self.lookingUp = True
            d = asked.getPeers()
            d.addCallbacks(
                lambda peers: self._connectPeers(peers, bool(origins)), _ignore
            )
            d.addBoth(self._lookedUp)
        self._updateSearching()
        self.timer = self.clock.callLater(PEER_INTERVAL, self.maintain)

    def _handleWanted(self) -> bool:
        """
        Whether an Open waits for a handle on a connection this download
        holds one on: it is given back then, not after L{IDLE_DOWNLOAD}.
        """
        for source in self.download.sources:
            connection = getattr(source, "connection", None)
            if connection is not None and IConnection(connection).waitingOpens:
                return True
        return False

    def _reconnectOrigin(self) -> None:
        if self.origin in self.connecting:
            return
        self.connecting.add(self.origin)
        d = self.connections.connect(*self.origin, security=self.authority)
        d.addCallback(lambda c: c.open(self.url, self.download.meta.version))

        def opened(remoteFile: IRemoteFile) -> None:
            remoteFile.believe()
            self.addSource(remoteFile)

        def failed(reason: Failure) -> None:
            if errorCode(reason) == ErrorCode.CHANGED:
                self.download.fail(reason)

        d.addCallbacks(opened, failed)
        d.addBoth(lambda _: self._doneConnecting(self.origin))

    def _isOrigin(self, source: ISource) -> bool:
        connection = IRemoteFile(source).connection
        return self.connections.dialed(self.origin, self.authority) is connection

    def _connectPeers(self, peers: Sequence[Peer], fromOrigin: bool) -> None:
        """
        Open the file on the nodes of a peer list; the mirrors the origin
        itself names are believed as it is.
        """
        for peer in peers:
            address = (peer.host, peer.port)
            if len(self.peerConnections) >= MAX_PEERS_PER_DOWNLOAD:
                break
            mirror = fromOrigin and peer.server
            security = self.authority if mirror else self.peers
            known = self.connections.known(address, not mirror, security)
            if (
                address in self.banned
                or address in self.connecting
                or (known is not None and known in self.peerConnections)
                or (peer.port < PRIVILEGED_PORTS <= self.origin[1])
                or not self.backoff.mayTry(address)
            ):
                continue
            self.backoff.tried(address)
            self.connecting.add(address)
            d = self.connections.connect(*address, not mirror, security)
            d.addCallback(self._openOnPeer, address, mirror)
            d.addErrback(self._peerFailed, address)
            d.addBoth(self._connectedPeer, address)
        self._updateSearching()

    def _openOnPeer(
        self, connection: IConnection, address: Address, mirror: bool
    ) -> "defer.Deferred[None] | None":
        if connection in self.peerConnections:
            return None
        self.peerConnections.add(connection)

        def opened(remoteFile: IRemoteFile) -> None:
            if mirror:
                remoteFile.believe()
            self.backoff.worked(address)
            self.addSource(remoteFile)

        def failed(reason: Failure) -> Failure:
            self.peerConnections.discard(connection)
            return reason

        o = connection.open(self.url, self.download.meta.version)
        return o.addCallbacks(opened, failed)

    def _peerFailed(self, reason: Failure, address: Address) -> None:
        self._log.debug(
            "peer {host}:{port}: {why}",
            host=address[0],
            port=address[1],
            why=reason.getErrorMessage(),
        )
        self.backoff.failed(address)

    def _connectedPeer(self, result: object, address: tuple[str, int]) -> None:
        self._doneConnecting(address)

    def _lookedUp(self, result: object) -> None:
        self.lookingUp = False
        self._updateSearching()

    def _doneConnecting(self, address: tuple[str, int]) -> None:
        self.connecting.discard(address)
        self._updateSearching()

    def _updateSearching(self) -> None:
        self.download.setSearching(bool(self.connecting) or self.lookingUp)

    def close(self) -> None:
        """
        Stop keeping the swarm up, and close the download.
        """
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.download.close()


def _ignore(reason: Failure) -> None:
    return None
