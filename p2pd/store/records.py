# -*- test-case-name: tests.unit.test_digests -*-
"""
Digests kept on disk as fixed-size records, each with a keyed check, so
that a record never written, torn by a crash, or left by another version
reads as unknown. Both the digest index and the cache keep theirs so.
"""

import hashlib
import struct

_U64 = struct.Struct("!Q")


class DigestRecords:
    """
    Digests kept as fixed-size records, each followed by a check.

    The check is an 8-byte BLAKE2b of the record's index and digest, keyed by
    C{identity} (what the digests are of: a file version, a block size, a
    digest algorithm). A record never written, torn by a crash, or written
    for another identity or index fails the check and reads as unknown.
    """

    CHECK_SIZE = 8

    def __init__(self, digestSize: int, identity: bytes, person: bytes) -> None:
        self.digestSize = digestSize
        self.recordSize = digestSize + self.CHECK_SIZE
        self._key = hashlib.sha256(identity).digest()
        self._person = person

    def _check(self, index: int, digest: bytes | memoryview) -> bytes:
        h = hashlib.blake2b(
            _U64.pack(index),
            digest_size=self.CHECK_SIZE,
            key=self._key,
            person=self._person,
        )
        h.update(digest)
        return h.digest()

    def pack(self, first: int, digests: bytes) -> bytes:
        """
        The records of consecutive digests (concatenated), from block C{first}.
        """
        size = self.digestSize
        if len(digests) % size:
            raise ValueError(f"{len(digests)} bytes are not whole digests")
        parts = []
        for i in range(len(digests) // size):
            digest = digests[i * size : (i + 1) * size]
            parts.append(digest)
            parts.append(self._check(first + i, digest))
        return b"".join(parts)

    def unpack(self, first: int, raw: bytes, count: int) -> list[bytes | None]:
        """
        The digests in C{raw}, records of C{count} blocks from C{first}: each a
        digest, or L{None} where the record is missing or fails its check.
        """
        size, rsize = self.digestSize, self.recordSize
        view = memoryview(raw)
        result: list[bytes | None] = []
        for i in range(count):
            start = i * rsize
            record = view[start : start + rsize]
            if len(record) < rsize:
                result.append(None)
                continue
            digest = record[:size]
            if record[size:] == self._check(first + i, digest):
                result.append(bytes(digest))
            else:
                result.append(None)
        return result
