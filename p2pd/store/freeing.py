# -*- test-case-name: tests.unit.test_cachelimit -*-
"""
Evicted blocks freed on disk: journaled as not held first, then their
bytes freed (a hole punched in the sparse C{data} file), so that after a
crash at any moment a block is either held with its bytes or known absent.
A file system that cannot punch holes keeps the bytes until the version
is removed, and the node says so in its log.
"""

import os

from twisted.logger import Logger

from p2pd.core.meta import FileMeta
from p2pd.store import fileio
from p2pd.store.cachelayout import identity
from p2pd.store.journal import Journal

_log = Logger()


def free(fd: int, start: int, length: int, url: str) -> None:
    """
    Free C{length} bytes at C{start} of the data file C{fd} of C{url}.
    """
    try:
        fileio.punchHole(fd, start, length)
    except OSError as e:
        _log.warn(
            "cannot free {length} bytes of {url}: {why}",
            length=length,
            url=url,
            why=str(e),
        )


def dropClosed(directory: str, meta: FileMeta, first: int, end: int) -> int:
    """
    Evict blocks C{first} to C{end - 1} of the version in C{directory},
    which nobody has open, without reading its journal.

    @return: the journal's length after.
    @raise OSError: the journal refused; the blocks are still held.
    """
    journal = Journal(identity(meta))
    journal.attach(os.path.join(directory, "journal"))
    try:
        journal.forgetAll(range(first, end))
        size = journal.size
    finally:
        journal.close()
    start = meta.blockStart(first)
    try:
        fd = os.open(os.path.join(directory, "data"), os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        _log.warn("cannot free blocks of {url}: {why}", url=meta.url, why=str(e))
        return size
    try:
        free(fd, start, min(meta.size, meta.blockStart(end)) - start, meta.url)
    finally:
        os.close(fd)
    return size
