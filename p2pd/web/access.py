# -*- test-case-name: tests.unit.test_gateway,tests.integration.test_gateway,tests.unit.test_proxy -*-
"""
Who may make this node fetch, and where it may be made to connect.

The local host (a client on a loopback address) may use the proxy, the
gateway and C{/.status}; other hosts only from granted subnets (-n). With
-A, only the listed origin hosts are fetched or forwarded, by the proxy and
the gateway alike. A granted host that is not the local host cannot make
the node connect to its own loopback or link-local addresses, nor to the
address it reached the node on: services listening there trust the node's
host, not the subnet. A target named by host name is resolved before it is
judged.
"""

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IReactorPluggableNameResolver,
    IResolutionReceiver,
)
from zope.interface import implementer

from p2pd.core.net import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Resolves a host name (and port) to the addresses a connection would try.
Resolver = Callable[[str, int], "Deferred[list[str]]"]


def parseAddress(host: str) -> Address | None:
    """
    C{host} as an IP address (a zone dropped, an IPv4-mapped IPv6 address
    as its IPv4 address), or None if it is not one.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def isLocalHost(host: str) -> bool:
    """
    Whether a client at C{host} is on this very host: a loopback address.
    """
    address = parseAddress(host)
    return address is not None and address.is_loopback


def granted(host: str, grants: Sequence[Network]) -> bool:
    """
    Whether the client at C{host} may make this node fetch for it: the local
    host always, others when inside a granted subnet.
    """
    address = parseAddress(host)
    if address is None:
        return False
    if address.is_loopback:
        return True
    return any(address.version == n.version and address in n for n in grants)


def internal(address: Address, own: str) -> bool:
    """
    Whether C{address} reaches this node's host itself: loopback,
    link-local, unspecified (which connects to the local host), or C{own},
    the address the client reached the node on.
    """
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address == parseAddress(own)
    )


@implementer(IResolutionReceiver)
class _Collect:
    """
    Gathers the addresses of one name resolution.
    """

    def __init__(self) -> None:
        self.addresses: list[str] = []
        self.done: Deferred[list[str]] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        pass

    def addressResolved(self, address: IAddress) -> None:
        if isinstance(address, (IPv4Address, IPv6Address)):
            self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        self.done.callback(self.addresses)


def resolverFor(reactor: IReactorPluggableNameResolver) -> Resolver:
    """
    A L{Resolver} using C{reactor}'s name resolver (the one TCP connections
    by name use).
    """

    def resolve(host: str, port: int) -> "Deferred[list[str]]":
        collect = _Collect()
        reactor.nameResolver.resolveHostName(collect, host, port)
        return collect.done

    return resolve


@dataclass(frozen=True)
class Verdict:
    """
    Whether a client may make the node connect to a host.

    @ivar refusal: why not, or None if it may.
    @ivar addresses: what the host's name resolved to when it was judged
        (empty if it was not resolved): a connection made to one of them
        reaches what was judged, whatever the name resolves to later.
    """

    refusal: str | None
    addresses: tuple[str, ...] = ()


class Access:
    """
    The node's rules on who may make it fetch, from where.

    @ivar grants: subnets whose hosts may (-n).
    @ivar allowHosts: if not empty, the only origin hosts (-A).
    """

    def __init__(
        self,
        resolve: Resolver,
        grants: Sequence[Network] = (),
        allowHosts: Sequence[str] = (),
    ) -> None:
        self.resolve = resolve
        self.grants = list(grants)
        self.allowHosts = {h.lower() for h in allowHosts}

    def granted(self, client: str) -> bool:
        return granted(client, self.grants)

    def policyRefusal(self, client: str, host: str) -> str | None:
        """
        Why the client at C{client} may not make the node fetch from
        C{host} by grants and -A alone, or None.
        """
        if not self.granted(client):
            return (
                f"{client} may not use this proxy or gateway: only this host "
                "and granted subnets (-n) may"
            )
        if self.allowHosts and host.lower() not in self.allowHosts:
            return f"{host} is not an allowed origin on this node (-A)"
        return None

    def refusal(
        self, client: str, own: str, host: str, port: int
    ) -> "Deferred[str | None]":
        """
        Why the client at C{client}, which reached the node at C{own}, may
        not make it connect to C{host:port}; None if it may.
        """
        return self.judge(client, own, host, port).addCallback(
            lambda verdict: verdict.refusal
        )

    def judge(
        self, client: str, own: str, host: str, port: int
    ) -> "Deferred[Verdict]":
        """
        The L{Verdict} on the client at C{client}, which reached the node at
        C{own}, making it connect to C{host:port}.

        @return: fires at once unless C{host} is a name to resolve. A name
            that does not resolve is let through: connecting fails anyway.
        """
        refusal = self.policyRefusal(client, host)
        if refusal is not None or isLocalHost(client):
            return succeed(Verdict(refusal))
        literal = parseAddress(host)
        if literal is not None:
            return succeed(Verdict(self._internal(host, [literal], own)))

        def judge(found: list[str]) -> Verdict:
            addresses = [a for a in map(parseAddress, found) if a is not None]
            return Verdict(
                self._internal(host, addresses, own),
                tuple(str(a) for a in addresses),
            )

        judged: Deferred[Verdict] = self.resolve(host, port).addCallback(judge)
        return judged.addErrback(lambda _: Verdict(None))

    def _internal(self, host: str, addresses: list[Address], own: str) -> str | None:
        if any(internal(a, own) for a in addresses):
            return (
                f"{host} is this node's own host: only the local host may "
                "reach its loopback and link-local addresses"
            )
        return None
