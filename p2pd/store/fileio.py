# -*- test-case-name: tests.unit.test_cache,tests.integration.test_cache,tests.unit.test_digests -*-
"""
Whole reads and writes at an offset: the system calls may do part of one.

The cache's modules call these through this module (C{fileio.writeAll}),
so that a test can make every write of the cache fail in one place.
"""

import os

# Files being written in place of another end with this until renamed; a
# store removes any it finds when it starts.
TEMP_SUFFIX = ".tmp"


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
