# -*- test-case-name: tests.unit.test_node,tests.unit.test_authority -*-
"""
The SPP connections a node holds, and which of them may reach whom.

A connection the node dialed is kept by the address it dialed, and how
(plain, TLS, TLS verified for a host name): the only kind an origin or a
mirror is reached by. One it accepted is kept by the remote address and the
listen port its Hello claims, which its other end chose, and whether it is
encrypted: a peer only (docs/security.md).
"""

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pd.core.errors import SelfConnection, SPPError
from p2pd.core.net import PEER_TLS, PLAIN, Security
from p2pd.engine.backoff import Address, PeerBackoff
from p2pd.engine.interfaces import IConnection, IConnector

# A connection's key: the address dialed (or accepted from), and how.
_Key = tuple[Address, Security]


class Connections:
    """
    The node's connections, dialed and accepted.

    @ivar connector: makes new connections.
    @ivar gone: called with a dialed connection whose handshake failed.
    """

    _log = Logger()

    def __init__(
        self,
        connector: IConnector,
        backoff: PeerBackoff,
        gone: Callable[[IConnection], None],
    ) -> None:
        self.connector = connector
        self.backoff = backoff
        self.gone = gone
        self._dialed: dict[_Key, IConnection] = {}
        self._accepted: dict[_Key, IConnection] = {}
        self._connecting: dict[_Key, list[defer.Deferred[IConnection]]] = {}

    def dialed(
        self, address: Address, security: Security = PLAIN
    ) -> IConnection | None:
        """
        The connection this node dialed to C{address} as C{security} says,
        if any.
        """
        return self._dialed.get((address, security))

    def known(
        self, address: Address, peer: bool, security: Security = PLAIN
    ) -> IConnection | None:
        """
        A connection to the node at C{address}, made as C{security} says:
        one this node dialed or, for a C{peer}, one it accepted from there.
        """
        known = self._dialed.get((address, security))
        if known is None and peer:
            known = self._accepted.get((address, security))
        return known

    def connect(
        self, host: str, port: int, peer: bool = False, security: Security = PLAIN
    ) -> "defer.Deferred[IConnection]":
        """
        A connection to the node at C{host}:C{port}, made as C{security}
        says: one this node dialed there, or a new one. For a C{peer}, a
        connection it accepted from that address will do too; never for an
        origin or a mirror, as the other end of an accepted connection is
        whoever it says it is.
        """
        address = (host, port)
        key = (address, security)
        known = self.known(address, peer, security)
        if known is not None:
            return defer.succeed(known)
        result: defer.Deferred[IConnection] = defer.Deferred()
        waiting = self._connecting.get(key)
        if waiting is not None:
            waiting.append(result)
            return result
        self._connecting[key] = [result]

        def done(outcome: IConnection | Failure) -> None:
            waiting = self._connecting.pop(key, [])
            if isinstance(outcome, Failure):
                for d in waiting:
                    d.errback(outcome)
                return
            self._dialed.setdefault(key, outcome)
            outcome.ready.addErrback(self._handshakeFailed, address, outcome)
            for d in waiting:
                d.callback(outcome)

        self.connector.connect(host, port, security).addBoth(done)
        return result

    def ready(self, connection: IConnection) -> None:
        """
        C{connection} finished its handshake: one accepted from a node that
        listens is kept for that node as a peer.
        """
        if not connection.initiator and connection.remoteListenPort:
            address = (connection.remoteHost, connection.remoteListenPort)
            security = PEER_TLS if connection.encrypted else PLAIN
            self._accepted.setdefault((address, security), connection)

    def forget(self, connection: object) -> None:
        """
        C{connection} closed.
        """
        for table in (self._dialed, self._accepted):
            for address, known in list(table.items()):
                if known is connection:
                    del table[address]

    def _handshakeFailed(
        self, reason: Failure, address: Address, connection: IConnection
    ) -> None:
        """
        A node dialed accepted the connection but did not speak SPP (or was
        this very node, or refused us as busy): its requests fail with the
        connection, which is forgotten even if it closed before it was
        handed over.
        """
        self.gone(connection)
        if reason.check(SPPError):
            # A node that refused us (BUSY) speaks SPP: try it again later.
            self.backoff.failed(address)
            return
        self.backoff.notSPP(address)
        if reason.check(SelfConnection):
            return  # a URL naming this very node: its callers handle that
        self._log.info(
            "{host}:{port} does not speak SPP: {why}",
            host=address[0],
            port=address[1],
            why=reason.getErrorMessage(),
        )
