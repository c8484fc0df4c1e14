"""
A process for the crash tests of L{tests.integration.test_cache}, which kill
it with SIGKILL at a chosen point of a cache write.

Usage: C{python crashwriter.py ROOT MODE COUNT}

It opens the cache at ROOT for L{META}, stores every digest and writes
blocks 0 to COUNT - 1 (L{blockData}), then, by MODE:

  - C{clean}: prints C{written};
  - C{torn-data}: starts writing block COUNT, writes half of its bytes to
    the data file, and prints C{torn};
  - C{unjournaled}: writes block COUNT's bytes, and prints C{torn} just
    before journaling it;
  - C{torn-journal}: writes block COUNT's bytes, half of its journal record,
    and prints C{torn};
  - C{torn-digests}: (before writing any block) writes half of the digest
    records, and prints C{torn};
  - C{no-space}: starts writing block COUNT, writes half of its bytes and
    fails with ENOSPC, as a disk that fills up does, then half of block
    COUNT + 1's journal record, failing again; prints C{refused};

and then waits, reading its standard input, to be killed.
"""

import errno
import hashlib
import os
import sys
from typing import TYPE_CHECKING

from p2pd.core.meta import FileMeta

if TYPE_CHECKING:
    from p2pd.store.cachedfile import CachedFile

BLOCK_SIZE = 4096
META = FileMeta(
    url="spp://origin.example:1111/crash/movie.mp4",
    size=20 * BLOCK_SIZE + 1000,
    blockSize=BLOCK_SIZE,
    digestName="sha256",
    version="1a2b-51e8-17f0",
)


def blockData(index: int) -> bytes:
    """
    The content of block C{index} of L{META}.
    """
    length = META.blockLength(index)
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.sha512(b"%d/%d" % (index, counter)).digest()
        counter += 1
    return bytes(out[:length])


def allDigests() -> bytes:
    """
    Every block's digest, concatenated.
    """
    return b"".join(META.digest(blockData(i)) for i in range(META.blocks))


def _waitToBeKilled(message: bytes) -> None:
    sys.stdout.buffer.write(message + b"\n")
    sys.stdout.buffer.flush()
    sys.stdin.buffer.read()
    os._exit(3)  # only if the test closed our input instead of killing us


def main(root: str, mode: str, count: int) -> None:
    from p2pd.store.cache import BlockCache

    cached = BlockCache(root).open(META)
    if mode == "torn-digests":
        realPwrite = os.pwrite

        def tornPwrite(fd: int, data: bytes, offset: int) -> int:
            realPwrite(fd, bytes(data[: len(data) // 2]), offset)
            _waitToBeKilled(b"torn")
            return 0

        os.pwrite = tornPwrite  # type: ignore[assignment]
    cached.setDigests(0, allDigests())
    for index in range(count):
        cached.write(index, blockData(index))
    if mode == "clean":
        _waitToBeKilled(b"written")
    elif mode == "torn-data":
        realPwrite = os.pwrite

        def tornPwrite(fd: int, data: bytes, offset: int) -> int:
            realPwrite(fd, bytes(data[: len(data) // 2]), offset)
            _waitToBeKilled(b"torn")
            return 0

        os.pwrite = tornPwrite  # type: ignore[assignment]
    elif mode in ("unjournaled", "torn-journal"):
        realWrite = os.write
        keep = 0 if mode == "unjournaled" else 8

        def tornWrite(fd: int, data: bytes) -> int:
            realWrite(fd, bytes(data[:keep]))
            _waitToBeKilled(b"torn")
            return 0

        os.write = tornWrite  # type: ignore[assignment]
    elif mode == "no-space":
        _refuseWrites(cached, count)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    cached.write(count, blockData(count))
    raise SystemExit("the write finished")


def _refuseWrites(cached: "CachedFile", count: int) -> None:
    """
    Write half of block C{count} and fail, then (with no pause after a
    refusal) half of block C{count + 1}'s journal record and fail.
    """
    from p2pd.store import diskfailures

    diskfailures.STORE_RETRY = 0.0
    realPwrite, realWrite = os.pwrite, os.write

    def halfPwrite(fd: int, data: bytes, offset: int) -> int:
        realPwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def halfWrite(fd: int, data: bytes) -> int:
        realWrite(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.pwrite = halfPwrite  # type: ignore[assignment]
    try:
        cached.write(count, blockData(count))
    except OSError:
        pass
    os.pwrite = realPwrite
    os.write = halfWrite  # type: ignore[assignment]
    try:
        cached.write(count + 1, blockData(count + 1))
    except OSError:
        pass
    os.write = realWrite
    _waitToBeKilled(b"refused")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
