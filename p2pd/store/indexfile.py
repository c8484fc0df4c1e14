# -*- test-case-name: tests.unit.test_digests -*-
"""
The digest index's files on disk: one per published path, named by the
SHA-256 of the path, so a restart does not hash unchanged files again::

    b"P2PDIDX1" | u32 header length | header | zero padding to 4096 bytes
    record 0 | record 1 | ...

The header is canonical JSON naming the path, the file version, the block
size and the digest algorithm; a file whose header differs in any byte is
replaced (written to a temporary file, synced, and renamed over it). Record
C{i} holds block C{i}'s digest followed by an 8-byte check, keyed by the
header and C{i} (see L{DigestRecords}): a record never written (zeros), torn
by a crash, or left by another version never passes the check, so it only
costs hashing the block again.
"""

import hashlib
import json
import os
import struct
import tempfile

from p2pd.store.fileio import TEMP_SUFFIX, readAll, writeAll

_U32 = struct.Struct("!I")
_MAGIC = b"P2PDIDX1"
_ALIGN = 4096


def indexName(path: str) -> str:
    """
    The name of the index file for the published file at C{path}.
    """
    return hashlib.sha256(os.fsencode(path)).hexdigest()


def indexHeader(path: str, version: str, blockSize: int, digestName: str) -> bytes:
    """
    The header of the index file of C{path} at C{version}.
    """
    return json.dumps(
        {
            "path": path,
            "version": version,
            "blockSize": blockSize,
            "digestName": digestName,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")


class IndexFile:
    """
    An index file opened for one file version: its descriptor, and where the
    records start.
    """

    def __init__(self, fd: int, base: int) -> None:
        self.fd = fd
        self.base = base


def openIndex(path: str, header: bytes) -> IndexFile:
    """
    In a thread: open the index file at C{path} if it starts with C{header},
    or replace it with an empty one that does.
    """
    head = _MAGIC + _U32.pack(len(header)) + header
    base = -(-len(head) // _ALIGN) * _ALIGN
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        pass
    else:
        try:
            if readAll(fd, len(head), 0) == head:
                return IndexFile(fd, base)
        except OSError:
            pass
        os.close(fd)
    directory, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(prefix=name + ".", suffix=TEMP_SUFFIX, dir=directory)
    try:
        writeAll(fd, head, 0)
        os.fsync(fd)
        os.replace(temp, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return IndexFile(fd, base)
