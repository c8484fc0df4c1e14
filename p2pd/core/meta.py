# -*- test-case-name: tests.unit.test_download,tests.unit.test_cache -*-
"""
What the origin says about a file version, and the block arithmetic on it.
"""

import hashlib
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True)
class FileMeta:
    """
    One version of one published file, as its origin describes it.

    @ivar url: the origin URL, C{spp://host:port/path}.
    """

    url: str
    size: int
    blockSize: int
    digestName: str
    version: str

    # Worked out once: scheduling asks for them for every block.
    @cached_property
    def blocks(self) -> int:
        return -(-self.size // self.blockSize)

    @cached_property
    def digestSize(self) -> int:
        return hashlib.new(self.digestName).digest_size

    def blockStart(self, index: int) -> int:
        return index * self.blockSize

    def blockLength(self, index: int) -> int:
        start = index * self.blockSize
        return max(0, min(self.blockSize, self.size - start))

    def blockAt(self, offset: int) -> int:
        return offset // self.blockSize

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.digestName, data).digest()


class BlockRuns:
    """
    A set of block indices kept as sorted, disjoint runs: its size follows
    the runs in it, not the file's.

    @ivar count: how many blocks are in it.
    """

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self.count = 0

    def __contains__(self, index: int) -> bool:
        return self.runAt(index) is not None

    def runAt(self, index: int) -> tuple[int, int] | None:
        """
        The run holding C{index}, as C{(first, end)}, or L{None}.
        """
        k = bisect_right(self._starts, index) - 1
        if k >= 0 and index < self._ends[k]:
            return self._starts[k], self._ends[k]
        return None

    def add(self, first: int, count: int = 1) -> None:
        """
        Add blocks C{first} to C{first + count - 1}.
        """
        end = first + count
        starts, ends = self._starts, self._ends
        # The runs that overlap or touch the new one merge with it.
        lo = bisect_left(ends, first)
        hi = bisect_right(starts, end)
        if lo < hi:
            merged = min(first, starts[lo]), max(end, ends[hi - 1])
            self.count -= sum(ends[k] - starts[k] for k in range(lo, hi))
            starts[lo:hi] = [merged[0]]
            ends[lo:hi] = [merged[1]]
            self.count += merged[1] - merged[0]
        elif count > 0:
            starts.insert(lo, first)
            ends.insert(lo, end)
            self.count += count

    def discard(self, index: int) -> None:
        starts, ends = self._starts, self._ends
        k = bisect_right(starts, index) - 1
        if k < 0 or index >= ends[k]:
            return
        self.count -= 1
        start, end = starts[k], ends[k]
        if start == index and end == index + 1:
            del starts[k], ends[k]
        elif start == index:
            starts[k] = index + 1
        elif end == index + 1:
            ends[k] = index
        else:
            ends[k] = index
            starts.insert(k + 1, index + 1)
            ends.insert(k + 1, end)

    def ranges(self) -> list[tuple[int, int]]:
        """
        The runs, as C{(first, count)}.
        """
        return [(start, end - start) for start, end in zip(self._starts, self._ends)]
