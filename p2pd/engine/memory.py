# -*- test-case-name: tests.unit.test_download -*-
"""
The blocks a download keeps in memory for its readers.
"""

from collections import OrderedDict
from collections.abc import Callable, Container


class RecentBlocks(OrderedDict[int, bytes]):
    """
    Blocks just verified or read, so readers close behind the download (the
    usual case) get them without reading them back. A few MiB do: blocks
    this process verified are read back without hashing, and every stream's
    memory counts against a viewer's. While the store refuses blocks, this
    is all readers have: it keeps a few MiB per reader, and the blocks they
    still want.
    """

    def recall(self, index: int) -> bytes | None:
        """
        Block C{index}, if it is here; it is then the last to go.
        """
        data = self.get(index)
        if data is not None:
            self.move_to_end(index)
        return data

    def keep(
        self,
        index: int,
        data: bytes,
        limit: int,
        wanted: Container[int],
        stored: Callable[[int], bool],
    ) -> None:
        """
        Keep block C{index}, and at most C{limit} blocks: the oldest go
        first, but never a block only here (not C{stored}) that a reader
        still C{wanted}.
        """
        self[index] = data
        self.move_to_end(index)
        excess = len(self) - limit
        for old in list(self) if excess > 0 else ():
            if old not in wanted or stored(old):
                del self[old]
                excess -= 1
                if not excess:
                    break
