# -*- test-case-name: tests.unit.test_cacheview -*-
"""
What a cache directory holds, read without its lock and without changing
it, while a node may be writing to it: for C{p2pd cache ls}, C{du} and
C{verify}.

A version's files are read as the node leaves them between writes
(L{p2pd.store.cachelayout}): a block is journaled after its bytes are
written, and its digest is on disk before it, so a block the journal
names has both, unless the disk lost them, which L{badBlocks} finds.
"""

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.store import fileio
from p2pd.store.cachelayout import directoryName, identity, lastUsed, readMeta
from p2pd.store.journal import Journal
from p2pd.store.records import DigestRecords

# Blocks whose digests are read at once when verifying.
_CHUNK = 1024
_NAME = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Version:
    """
    One cached file version: its metadata, the blocks held, and when it
    was last used (seconds since the epoch).
    """

    directory: str
    meta: FileMeta
    held: BlockRuns
    lastUsed: float

    @property
    def heldBlocks(self) -> int:
        return self.held.count

    @property
    def heldBytes(self) -> int:
        """
        The bytes of the blocks held (the last block may be short).
        """
        meta = self.meta
        total = self.held.count * meta.blockSize
        if meta.blocks and meta.blocks - 1 in self.held:
            total -= meta.blockSize - meta.blockLength(meta.blocks - 1)
        return total

    @property
    def diskBytes(self) -> int:
        """
        What its files take on disk (its data file is sparse).
        """
        return _diskUsage(self.directory)


@dataclass(frozen=True)
class Damaged:
    """
    Something in the cache that is not a readable version, and why: debris
    of a crash, or a damaged file.
    """

    path: str
    reason: str


def versions(root: str) -> Iterator[Version | Damaged]:
    """
    Every version in the cache's block directory C{root}, and everything
    there that is not one, in the order of their directory names.

    @raise OSError: C{root} cannot be listed.
    """
    for urlName in sorted(os.listdir(root)):
        urlDirectory = os.path.join(root, urlName)
        if not _NAME.match(urlName) or not os.path.isdir(urlDirectory):
            yield Damaged(urlDirectory, "not a cached file's directory")
            continue
        try:
            names = sorted(os.listdir(urlDirectory))
        except OSError as e:
            yield Damaged(urlDirectory, f"cannot be read: {e.strerror or e}")
            continue
        for name in names:
            yield _version(os.path.join(urlDirectory, name), urlName, name)


def _version(directory: str, urlName: str, name: str) -> Version | Damaged:
    meta = readMeta(directory)
    if meta is None:
        return Damaged(directory, "no valid meta.json (debris of a crash?)")
    if (directoryName(meta.url), directoryName(meta.version)) != (urlName, name):
        return Damaged(directory, f"its meta.json names another file ({meta.url})")
    try:
        held = Journal(identity(meta)).read(
            os.path.join(directory, "journal"), meta.blocks
        )
    except OSError as e:
        return Damaged(directory, f"its journal cannot be read: {e.strerror or e}")
    return Version(directory, meta, held, lastUsed(directory))


def badBlocks(
    version: Version, checked: Callable[[int], object] = lambda length: None
) -> Iterator[tuple[int, str]]:
    """
    The held blocks of C{version} whose bytes on disk do not match their
    digests, each with why, in order; C{checked} is called with the length
    of each block checked, good or bad.

    @raise OSError: its files cannot be read.
    """
    meta = version.meta
    records = DigestRecords(meta.digestSize, identity(meta), b"p2pd-cache-dg")
    data = _openOrNone(os.path.join(version.directory, "data"))
    digests = _openOrNone(os.path.join(version.directory, "digests"))
    try:
        for first, count in version.held.ranges():
            for start in range(first, first + count, _CHUNK):
                number = min(_CHUNK, first + count - start)
                raw = b""
                if digests is not None:
                    size = records.recordSize
                    raw = fileio.readAll(digests, number * size, start * size)
                expected = records.unpack(start, raw, number)
                for index, digest in enumerate(expected, start):
                    why = _check(meta, data, index, digest)
                    checked(meta.blockLength(index))
                    if why is not None:
                        yield index, why
    finally:
        for fd in (data, digests):
            if fd is not None:
                os.close(fd)


def _check(
    meta: FileMeta, data: int | None, index: int, digest: bytes | None
) -> str | None:
    """
    Why block C{index} in the file at C{data} is bad, or L{None} if it
    matches C{digest}.
    """
    if digest is None:
        return "its digest is lost"
    length = meta.blockLength(index)
    block = (
        b"" if data is None else fileio.readAll(data, length, meta.blockStart(index))
    )
    if len(block) != length:
        return "it is cut short"
    if meta.digest(block) != digest:
        return "it does not match its digest"
    return None


def _openOrNone(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _diskUsage(directory: str) -> int:
    """
    The bytes the files in C{directory} take on disk.
    """
    total = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        try:
            total += os.lstat(os.path.join(directory, name)).st_blocks * 512
        except OSError:
            pass
    return total
