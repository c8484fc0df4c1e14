# -*- test-case-name: tests.unit.test_tracker -*-
"""
The origin's record of which nodes fetch which file, and the peer lists it
hands to new downloaders.

A node is recorded while its connection holds the file open and forgotten when
it closes the file or goes away, so lists hold live nodes only.
"""

import ipaddress
from collections.abc import Sequence

from p2pd.core.net import Network
from p2pd.core.peers import MAX_PEERS, Peer


class Tracker:
    """
    Nodes per file key (the published name).

    @ivar localNets: subnets whose nodes count as near each other (-N).
    @ivar mirrors: servers publishing identical content (-l), offered to
        every downloader.
    """

    def __init__(
        self, localNets: Sequence[Network] = (), mirrors: Sequence[Peer] = ()
    ) -> None:
        self.localNets = list(localNets)
        self.mirrors = list(mirrors)
        self._nodes: dict[str, dict[tuple[str, int], int]] = {}

    def record(self, key: str, host: str, port: int) -> None:
        host = _canonical(host)
        nodes = self._nodes.setdefault(key, {})
        nodes[(host, port)] = nodes.get((host, port), 0) + 1

    def forget(self, key: str, host: str, port: int) -> None:
        host = _canonical(host)
        nodes = self._nodes.get(key)
        if not nodes or (host, port) not in nodes:
            return
        nodes[(host, port)] -= 1
        if nodes[(host, port)] <= 0:
            del nodes[(host, port)]
        if not nodes:
            del self._nodes[key]

    def nodes(self, key: str) -> list[tuple[str, int]]:
        return list(self._nodes.get(key, {}))

    def peersFor(self, key: str, host: str, port: int) -> list[Peer]:
        """
        Peers for the node at C{host}:C{port}: nodes on its own local
        subnet first, then nodes on any local subnet, then the rest, newest
        first within each group; mirrors at the end.
        """
        host = _canonical(host)
        requester = _network(host, self.localNets)
        others = [
            (h, p) for (h, p) in reversed(self.nodes(key)) if (h, p) != (host, port)
        ]

        def distance(node: tuple[str, int]) -> int:
            network = _network(node[0], self.localNets)
            if network is not None and network == requester:
                return 0
            return 1 if network is not None else 2

        others.sort(key=distance)
        room = MAX_PEERS - len(self.mirrors)
        peers = [Peer(h, p) for h, p in others[: max(0, room)]]
        mirrors = [Peer(m.host, m.port, True) for m in self.mirrors]
        return (peers + mirrors)[:MAX_PEERS]


def _canonical(host: str) -> str:
    """
    C{host}, with an IPv4-mapped IPv6 address (how a node listening on
    C{::} sees IPv4 peers, C{::ffff:a.b.c.d}) as the IPv4 address it is.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return host


def _network(host: str, networks: Sequence[Network]) -> Network | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    for network in networks:
        if address.version == network.version and address in network:
            return network
    return None
