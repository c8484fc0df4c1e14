# -*- test-case-name: tests.test_meta -*-
"""
What the origin says about a file version, and the block arithmetic on it.
"""

import hashlib
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
