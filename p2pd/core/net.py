# -*- test-case-name: tests.unit.test_tap,tests.unit.test_authority -*-
"""
Network helpers: subnets, C{HOST:PORT} values, how to dial a node, and
endpoints to dial.
"""

import ipaddress
from dataclasses import dataclass

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.interfaces import IReactorTCP, IStreamClientEndpoint

# The port a node listens on for HTTP and SPP, and an spp:// URL's port
# when it names none.
DEFAULT_PORT = 1111

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Security:
    """
    How an SPP connection is dialed: plain, or over TLS; and, over TLS, the
    host name the other node's certificate must be valid for (an C{spps://}
    origin or its mirror), or None (a peer: encryption only).
    """

    tls: bool = False
    verify: str | None = None


PLAIN = Security()
PEER_TLS = Security(tls=True)


def parseHostPort(value: str) -> tuple[str, int]:
    """
    C{HOST:PORT} (C{[HOST]:PORT} for IPv6) naming its host by IP address,
    as C{(host, port)}.

    @raise ValueError: if C{value} is not one.
    """
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r} must name its host by IP address") from None
    return host, int(port)


def endpointFor(
    reactor: IReactorTCP,
    host: str,
    port: int,
    timeout: float,
    bindAddress: tuple[str, int] | None = None,
) -> IStreamClientEndpoint:
    """
    A TCP endpoint for C{host:port}. An IP address needs no resolving: a
    plain endpoint connects at once, where a HostnameEndpoint goes through
    the resolver's thread first, on the way to a player's first byte.
    """
    if isIPAddress(host):
        return TCP4ClientEndpoint(
            reactor, host, port, timeout=timeout, bindAddress=bindAddress
        )
    if isIPv6Address(host):
        return TCP6ClientEndpoint(
            reactor, host, port, timeout=timeout, bindAddress=bindAddress
        )
    return HostnameEndpoint(
        reactor, host, port, timeout=timeout, bindAddress=bindAddress
    )
