# -*- test-case-name: tests.unit.test_codec,tests.unit.test_tracker -*-
"""
Other nodes, by their SPP address.
"""

from dataclasses import dataclass

# The most peers one list holds: one Peers frame (docs/protocol.md).
MAX_PEERS = 64


@dataclass(frozen=True)
class Peer:
    """
    A node's SPP address; C{server} marks a mirror publishing the file.
    """

    host: str
    port: int
    server: bool = False
