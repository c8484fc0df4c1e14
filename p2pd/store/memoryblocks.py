# -*- test-case-name: tests.unit.test_cachelimit -*-
"""
Verified cached blocks kept in memory for serving them again (C{-M}): the
least recently used go first, and the bytes held never pass the capacity.

Blocks are keyed by their version's key in the store and their index; the
store discards a block here before it stops holding it, so a block evicted
from the disk is never served from memory either.
"""

from collections import OrderedDict


class MemoryBlocks:
    """
    At most C{capacity} bytes of blocks (0: none).

    @ivar size: the bytes held now.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        # The indices held of each version, to forget a version at once.
        self._byVersion: dict[str, set[int]] = {}

    def get(self, key: str, index: int) -> bytes | None:
        """
        Block C{index} of the version C{key}, if held; it is then the most
        recently used.
        """
        data = self._blocks.get((key, index))
        if data is not None:
            self._blocks.move_to_end((key, index))
        return data

    def put(self, key: str, index: int, data: bytes) -> None:
        """
        Keep a verified block, making room for it; one larger than the
        capacity is not kept.
        """
        if len(data) > self.capacity or (key, index) in self._blocks:
            return
        while self.size + len(data) > self.capacity:
            (oldKey, oldIndex), old = self._blocks.popitem(last=False)
            self._untrack(oldKey, oldIndex, len(old))
        self._blocks[(key, index)] = data
        self._byVersion.setdefault(key, set()).add(index)
        self.size += len(data)

    def discard(self, key: str, first: int, end: int) -> None:
        """
        Forget blocks C{first} to C{end - 1} of C{key}.
        """
        held = self._byVersion.get(key)
        if not held:
            return
        # Whichever is fewer: a segment's blocks, or those held.
        among = range(first, end) if end - first < len(held) else list(held)
        for index in [i for i in among if first <= i < end and i in held]:
            self._untrack(key, index, len(self._blocks.pop((key, index))))

    def discardVersion(self, key: str) -> None:
        """
        Forget every block of C{key}.
        """
        for index in list(self._byVersion.get(key, ())):
            self._untrack(key, index, len(self._blocks.pop((key, index))))

    def _untrack(self, key: str, index: int, length: int) -> None:
        self.size -= length
        held = self._byVersion[key]
        held.discard(index)
        if not held:
            del self._byVersion[key]
