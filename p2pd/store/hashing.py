# -*- test-case-name: tests.unit.test_digests -*-
"""
Hashing published files' blocks, in threads: hashing a block releases the
GIL, so the reactor goes on while a chunk of a file is hashed.

Every function here runs in a thread; it checks that the file on disk is
still the version asked about before and after reading it, and raises
L{FileChanged} if not.
"""

import hashlib
import os

from p2pd.store.fileio import readAll, writeAll
from p2pd.store.indexfile import IndexFile
from p2pd.store.published import PublishedFile
from p2pd.store.records import DigestRecords


def _hashBlock(digestName: str, data: memoryview) -> bytes:
    """
    One block's digest (the seam tests patch to watch hashing).
    """
    return hashlib.new(digestName, data).digest()


def _sameFile(st: os.stat_result, published: PublishedFile) -> bool:
    return (st.st_ino, st.st_size, st.st_mtime_ns) == (
        published.inode,
        published.size,
        published.mtimeNs,
    )


class FileChanged(Exception):
    """
    The file on disk is not (or stopped being) the version asked about.
    """


def _changed(published: PublishedFile, why: str) -> FileChanged:
    return FileChanged(f"{published.name}: {why}")


def _hashRuns(
    published: PublishedFile,
    blockSize: int,
    digestName: str,
    runs: list[tuple[int, int]],
) -> list[bytes]:
    """
    Hash the blocks of C{runs} (C{(first, count)} each) of C{published}, in
    order, reading each run at once.

    @raise FileChanged: if the file is not (or stops being, before the
        last digest is computed) the version C{published} describes.
    """
    try:
        fd = os.open(published.path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        raise _changed(published, "no longer readable") from None
    try:
        if not _sameFile(os.fstat(fd), published):
            raise _changed(published, "changed before hashing")
        digests = []
        for first, count in runs:
            offset = first * blockSize
            length = min(count * blockSize, published.size - offset)
            data = readAll(fd, length, offset)
            if len(data) != length:
                raise _changed(published, "shrank while hashing")
            view = memoryview(data)
            for i in range(count):
                digests.append(
                    _hashBlock(digestName, view[i * blockSize : (i + 1) * blockSize])
                )
        if not _sameFile(os.fstat(fd), published):
            raise _changed(published, "changed while hashing")
        return digests
    finally:
        os.close(fd)


def hashChunk(
    published: PublishedFile,
    index: IndexFile | None,
    records: DigestRecords,
    blockSize: int,
    digestName: str,
    first: int,
    count: int,
) -> tuple[bytes, str | None, bool]:
    """
    In a thread: the digests of blocks C{[first, first + count)}, taken from
    the index where it has them, computed and recorded where not.

    @return: the digests, concatenated, why recording failed (or None), and
        whether any were recorded.
    """
    known: list[bytes | None] = [None] * count
    if index is not None:
        try:
            raw = readAll(
                index.fd,
                count * records.recordSize,
                index.base + first * records.recordSize,
            )
        except OSError:
            raw = b""
        known = records.unpack(first, raw, count)
    runs: list[tuple[int, int]] = []
    for i, digest in enumerate(known):
        if digest is None:
            if runs and runs[-1][0] + runs[-1][1] == first + i:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((first + i, 1))
    if not runs:
        return _joined(known), None, False
    fresh = iter(_hashRuns(published, blockSize, digestName, runs))
    problem = None
    recorded = False
    for start, length in runs:
        computed = [next(fresh) for _ in range(length)]
        known[start - first : start - first + length] = computed
        if index is not None and problem is None:
            try:
                writeAll(
                    index.fd,
                    records.pack(start, b"".join(computed)),
                    index.base + start * records.recordSize,
                )
                recorded = True
            except OSError as e:
                problem = str(e)
    return _joined(known), problem, recorded


def _joined(digests: list[bytes | None]) -> bytes:
    parts = [d for d in digests if d is not None]
    assert len(parts) == len(digests)
    return b"".join(parts)
