# -*- test-case-name: tests.test_download -*-
"""
The blocks a download keeps in memory for its readers.
"""

from collections import OrderedDict
from collections.abc import Callable, Container


class RecentBlocks:
    """
    Blocks just verified or read, so readers close behind the download (the
    usual case) get them without reading them back. A few MiB do: blocks
    this process verified are read back without hashing, and every stream's
    memory counts against a viewer's. While the store refuses blocks, this
    is all readers have: it keeps a few MiB per reader, and the blocks they
    still want.
    """

    def __init__(self) -> None:
        self._blocks: OrderedDict[int, bytes] = OrderedDict()

    def __contains__(self, index: int) -> bool:
        return index in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, index: int) -> bytes | None:
        """
        Block C{index}, if it is here; it is then the last to go.
        """
        data = self._blocks.get(index)
        if data is not None:
            self._blocks.move_to_end(index)
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
        blocks = self._blocks
        blocks[index] = data
        blocks.move_to_end(index)
        excess = len(blocks) - limit
        for old in list(blocks) if excess > 0 else ():
            if old not in wanted or stored(old):
                del blocks[old]
                excess -= 1
                if not excess:
                    break

    def clear(self) -> None:
        self._blocks.clear()
