# -*- test-case-name: tests.test_connector -*-
"""
Opening SPP connections to other nodes over TCP.
"""

from typing import Any

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)

from p2pd.engine.interfaces import ISPPNode
from p2pd.spp.protocol import SPPFactory, SPPProtocol

CONNECT_TIMEOUT = 10


class TCPConnector:
    """
    Connects to C{host:port} and completes the SPP handshake.

    @ivar bindHost: the local address outgoing connections come from, so a
        node listening on one address of a multi-homed host (or of the
        loopback range) is seen at that address by its peers.
    """

    def __init__(
        self, reactor: Any, node: ISPPNode, bindHost: str | None = None
    ) -> None:
        self.reactor = reactor
        self.node = node
        self.bindHost = bindHost or None
        self.factory = SPPFactory(node, reactor, initiator=True)
        self.factory.noisy = False

    def connect(self, host: str, port: int) -> "defer.Deferred[SPPProtocol]":
        bind = (self.bindHost, 0) if self.bindHost else None
        endpoint: Any
        if isIPAddress(host):
            # No name to resolve: a plain endpoint connects sooner (a
            # HostnameEndpoint goes through the resolver's thread first).
            endpoint = TCP4ClientEndpoint(
                self.reactor, host, port, timeout=CONNECT_TIMEOUT, bindAddress=bind
            )
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(
                self.reactor, host, port, timeout=CONNECT_TIMEOUT, bindAddress=bind
            )
        else:
            endpoint = HostnameEndpoint(
                self.reactor, host, port, timeout=CONNECT_TIMEOUT, bindAddress=bind
            )
        connected: defer.Deferred[Any] = endpoint.connect(self.factory)
        return connected.addCallback(_whenReady)


def _whenReady(protocol: SPPProtocol) -> "defer.Deferred[SPPProtocol]":
    return protocol.ready
