# -*- test-case-name: tests.unit.test_authority -*-
"""
Opening SPP connections to other nodes over TCP, plain or over TLS.
"""

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import wrapClientTLS
from zope.interface import implementer

from p2pd.core.net import PLAIN, Security, endpointFor
from p2pd.engine.interfaces import IConnection, IConnector, ISPPNode
from p2pd.spp.protocol import SPPFactory
from p2pd.spp.tls import ClientTLS

CONNECT_TIMEOUT = 10


@implementer(IConnector)
class TCPConnector:
    """
    Connects to C{host:port} and starts the SPP handshake; requests may be
    sent at once, behind the Hello (over TLS, they wait in memory for the
    TLS handshake, and are never sent if the certificate is refused).

    @ivar bindHost: the local address outgoing connections come from, so a
        node listening on one address of a multi-homed host (or of the
        loopback range) is seen at that address by its peers.
    """

    def __init__(
        self,
        reactor: Any,
        node: ISPPNode,
        bindHost: str | None = None,
        tls: ClientTLS | None = None,
    ) -> None:
        self.reactor = reactor
        self.node = node
        self.bindHost = bindHost or None
        self.tls = tls
        self.factory = SPPFactory(node, reactor, initiator=True)
        self.factory.noisy = False

    def connect(
        self, host: str, port: int, security: Security = PLAIN
    ) -> "defer.Deferred[IConnection]":
        bind = (self.bindHost, 0) if self.bindHost else None
        endpoint = endpointFor(self.reactor, host, port, CONNECT_TIMEOUT, bind)
        if security.tls:
            if self.tls is None:
                return defer.fail(ValueError("this node speaks no TLS"))
            if security.verify is None:
                endpoint = wrapClientTLS(self.tls.peer(), endpoint)
            else:
                endpoint = wrapClientTLS(self.tls.verifying(security.verify), endpoint)
        connected: defer.Deferred[Any] = endpoint.connect(self.factory)
        return connected
