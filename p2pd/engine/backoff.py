# -*- test-case-name: tests.unit.test_node -*-
"""
When the node may dial an address from a peer list again, so that a peer
list naming some other service makes it knock there once per period, not
every few seconds (docs/security.md).
"""

from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime

# An address from a peer list is tried at most once per period, which
# doubles with each failure; one that accepted TCP but did not speak SPP is
# left alone for an hour. Only the latest addresses are remembered.
PEER_RETRY = 5.0
PEER_RETRY_MAX = 600.0
NOT_SPP_RETRY = 3600.0
MAX_PEER_ADDRESSES = 4096

Address = tuple[str, int]


class PeerBackoff:
    """
    When each address from a peer list may be tried again, so that a peer
    list naming some other service makes this node knock there once per
    period, not every few seconds.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        # address -> (failures in a row, time it may be tried again)
        self._entries: OrderedDict[Address, tuple[int, float]] = OrderedDict()

    def mayTry(self, address: Address) -> bool:
        entry = self._entries.get(address)
        return entry is None or self.clock.seconds() >= entry[1]

    def tried(self, address: Address) -> None:
        failures = self._failures(address)
        self._set(address, failures, self.clock.seconds() + _period(failures))

    def failed(self, address: Address) -> None:
        failures = self._failures(address) + 1
        self._set(address, failures, self.clock.seconds() + _period(failures))

    def notSPP(self, address: Address) -> None:
        """
        C{address} accepted a connection but did not speak SPP.
        """
        failures = self._failures(address) + 1
        self._set(address, failures, self.clock.seconds() + NOT_SPP_RETRY)

    def worked(self, address: Address) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            self._entries[address] = (0, entry[1])

    def _failures(self, address: Address) -> int:
        return self._entries.get(address, (0, 0.0))[0]

    def _set(self, address: Address, failures: int, until: float) -> None:
        until = max(until, self._entries.get(address, (0, 0.0))[1])
        self._entries[address] = (failures, until)
        self._entries.move_to_end(address)
        while len(self._entries) > MAX_PEER_ADDRESSES:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _period(failures: int) -> float:
    return min(PEER_RETRY * (1 << min(failures, 32)), PEER_RETRY_MAX)
