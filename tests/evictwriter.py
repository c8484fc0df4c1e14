"""
A process for L{tests.integration.test_cachelimit}, killed with SIGKILL
while its cache evicts.

Usage: C{python evictwriter.py ROOT LIMIT URL PATH BLOCKSIZE MODE}

It opens the cache at ROOT with a limit of LIMIT bytes and stores, round
after round, every block of the file at PATH (as the origin at URL
publishes it, with sha256 digests of BLOCKSIZE blocks) and of L{OTHERS}
files of its own, more than the limit holds: once the cache is full,
every store evicts. By MODE:

  - C{run}: prints C{stored} after each block, until killed;
  - C{between}: once the cache is full, prints C{journaled} in the middle
    of an eviction, when its blocks are journaled as gone and their bytes
    not freed yet, and waits, reading its standard input, to be killed.
"""

import hashlib
import itertools
import os
import sys

from p2pd.core.meta import FileMeta
from p2pd.core.url import parse

OTHERS = 2


def published(url: str, path: str, blockSize: int) -> FileMeta:
    """
    The file at C{path} as its origin at C{url} describes it.
    """
    st = os.stat(path)
    version = f"{st.st_size:x}-{st.st_mtime_ns:x}"
    return FileMeta(str(parse(url)), st.st_size, blockSize, "sha256", version)


def otherData(meta: FileMeta, index: int) -> bytes:
    seed = hashlib.sha512(f"{meta.url} {index}".encode()).digest()
    return (seed * (meta.blockSize // len(seed) + 1))[: meta.blockLength(index)]


def main(root: str, limit: int, url: str, path: str, blockSize: int, mode: str) -> None:
    from p2pd.store import fileio
    from p2pd.store.cache import BlockCache

    with open(path, "rb") as f:
        content = f.read()
    files = [published(url, path, blockSize)] + [
        FileMeta(f"spp://other.example:1111/{n}.bin", 3 << 20, blockSize, "sha256", "1")
        for n in range(OTHERS)
    ]

    def data(meta: FileMeta, index: int) -> bytes:
        if meta is files[0]:
            return content[index * blockSize : (index + 1) * blockSize]
        return otherData(meta, index)

    cache = BlockCache(root, capacity=limit)
    cache.enforceLimit()
    for round in itertools.count():
        for meta in files:
            cached = cache.open(meta)
            cached.setDigests(
                0, b"".join(meta.digest(data(meta, i)) for i in range(meta.blocks))
            )
            for index in range(meta.blocks):
                cached.write(index, data(meta, index))
                if mode == "run":
                    print("stored", flush=True)
            cached.close()
        if mode == "between" and round == 0:

            def journaled(fd: int, offset: int, length: int) -> None:
                print("journaled", flush=True)
                sys.stdin.buffer.read()
                os._exit(3)

            fileio.punchHole = journaled


if __name__ == "__main__":
    root, limit, url, path, blockSize, mode = sys.argv[1:]
    main(root, int(limit), url, path, int(blockSize), mode)
