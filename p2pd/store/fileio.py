# -*- test-case-name: tests.unit.test_cache,tests.integration.test_cache,tests.unit.test_digests -*-
"""
Whole reads and writes at an offset: the system calls may do part of one.

The cache's modules call these through this module (C{fileio.writeAll}),
so that a test can make every write of the cache fail in one place.
"""

import ctypes
import errno
import os

# Files being written in place of another end with this until renamed; a
# store removes any it finds when it starts.
TEMP_SUFFIX = ".tmp"


# fallocate(2)'s flags: free the range, keep the file's length.
_PUNCH_HOLE = 0x02
_KEEP_SIZE = 0x01
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


def punchHole(fd: int, offset: int, length: int) -> None:
    """
    Free the disk space of C{length} bytes at C{offset}, which then read as
    zeros; the file keeps its length.

    @raise OSError: the file system cannot (C{EOPNOTSUPP}), or failed.
    """
    if _fallocate is None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not available")
    if _fallocate(fd, _PUNCH_HOLE | _KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def readAll(fd: int, length: int, offset: int) -> bytes:
    """
    C{length} bytes at C{offset}, or fewer at the end of the file.
    """
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def writeAll(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def appendAll(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
