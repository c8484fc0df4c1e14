# -*- test-case-name: tests.unit.test_disk,tests.unit.test_cache -*-
"""
A cached file version's digests, in bounded memory.

Memory follows what is fetched, not what the origin announces: digests are
kept in pages of L{DIGEST_PAGE}, at most L{DIGEST_MEMORY} bytes of them per
file version, the rest in the version's C{digests} file, as fixed-size
records at C{i * recordSize} (a L{DigestRecords}: digest + keyed 8-byte
check), read back when asked for. Digests the disk refused, or the cache's
limit had no room for, are kept in memory and written before the next block
is stored.
"""

import os
from collections import OrderedDict
from collections.abc import Callable

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.store import fileio
from p2pd.store.cachelayout import openFile
from p2pd.store.diskfailures import DiskFailures
from p2pd.store.limit import ALLOCATION, EXTENT_BYTES
from p2pd.store.records import DigestRecords

DIGEST_PAGE = 1024
DIGEST_MEMORY = 1024 * 1024

# What a page knows of each block's digest.
_UNREAD, _KNOWN, _ABSENT = 0, 1, 2


class _Page:
    """
    The digests of L{DIGEST_PAGE} consecutive blocks, as far as known.

    @ivar dirty: whether some known digests here are not on disk yet.
    """

    __slots__ = ("digests", "states", "dirty")

    def __init__(self, digestSize: int) -> None:
        self.digests = bytearray(DIGEST_PAGE * digestSize)
        self.states = bytearray(DIGEST_PAGE)
        self.dirty = False

    def known(self) -> list[tuple[int, int]]:
        """
        The runs of known digests, as C{(first slot, count)}.
        """
        result: list[tuple[int, int]] = []
        position = 0
        states = self.states
        while (start := states.find(_KNOWN, position)) >= 0:
            end = start + 1
            while end < len(states) and states[end] == _KNOWN:
                end += 1
            result.append((start, end - start))
            position = end
        return result


class DigestPages:
    """
    The origin's digests of one file version, keyed by its C{identity}:
    only in memory until L{open}ed on disk.

    @param room: makes room in the cache's limit for so many more bytes, and
        says whether they fit.
    """

    def __init__(
        self,
        meta: FileMeta,
        identity: bytes,
        disk: DiskFailures,
        room: Callable[[int], bool],
    ) -> None:
        self.meta = meta
        self.disk = disk
        self._room = room
        # The disk's allocation units of the file: those found at open (in
        # bytes), and those written since.
        self._foundBytes = 0
        self._written = BlockRuns()
        self.records = DigestRecords(meta.digestSize, identity, b"p2pd-cache-dg")
        # Digests read or written lately, by page: each is looked up for
        # every block verified and stored, and for scheduling passes. A new
        # version's are only here until its directory is made.
        self._pages: OrderedDict[int, _Page] = OrderedDict()
        self._maxPages = max(2, DIGEST_MEMORY // (DIGEST_PAGE * meta.digestSize))
        self._fd = -1

    def open(self, path: str) -> None:
        """
        Keep the digests in the file at C{path} from now on (made if
        missing); those in memory are written by L{flush}.
        """
        self._fd = openFile(path, os.O_RDWR)
        found = os.fstat(self._fd).st_blocks * 512
        self._foundBytes = found + found // ALLOCATION * EXTENT_BYTES

    @property
    def diskBytes(self) -> int:
        """
        The disk space the digests file takes, at most (its map too: the
        units written may be as many runs).
        """
        return self._foundBytes + self._written.count * (ALLOCATION + EXTENT_BYTES)

    def _newUnits(self, first: int, count: int) -> list[int]:
        """
        The allocation units of the file that writing the digests of blocks
        C{first} to C{first + count - 1} would add.
        """
        size = self.records.recordSize
        start = first * size // ALLOCATION
        end = -(-(first + count) * size // ALLOCATION)
        return [unit for unit in range(start, end) if unit not in self._written]

    def pendingBytes(self) -> int:
        """
        The disk space L{flush} would add.
        """
        units: set[int] = set()
        for number, page in self._pages.items():
            if page.dirty:
                for slot, count in page.known():
                    units.update(self._newUnits(number * DIGEST_PAGE + slot, count))
        return len(units) * ALLOCATION

    def close(self) -> None:
        """
        Close the file, if open, and forget the digests in memory.
        """
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        self._pages.clear()

    def _page(self, number: int) -> _Page:
        """
        Page C{number} of the digests, made if it is not in memory. Beyond
        L{DIGEST_MEMORY}, the least recently used page goes, one whose
        digests are on disk if there is one (the others are lost: an
        authority gives them again).
        """
        page = self._pages.get(number)
        if page is not None:
            self._pages.move_to_end(number)
            return page
        if len(self._pages) >= self._maxPages:
            victim = next(
                (n for n, p in self._pages.items() if not p.dirty),
                next(iter(self._pages)),
            )
            del self._pages[victim]
        page = self._pages[number] = _Page(self.meta.digestSize)
        return page

    def digest(self, index: int) -> bytes | None:
        """
        The digest of block C{index}, if known.
        """
        if not 0 <= index < self.meta.blocks:
            return None
        page = self._page(index // DIGEST_PAGE)
        slot = index % DIGEST_PAGE
        state = page.states[slot]
        length = self.meta.digestSize
        if state == _KNOWN:
            return bytes(page.digests[slot * length : (slot + 1) * length])
        if state == _ABSENT or self._fd < 0:
            return None
        size = self.records.recordSize
        try:
            raw = fileio.readAll(self._fd, size, index * size)
        except OSError:
            return None
        digest = self.records.unpack(index, raw, 1)[0]
        if digest is None:
            page.states[slot] = _ABSENT
        else:
            page.digests[slot * length : (slot + 1) * length] = digest
            page.states[slot] = _KNOWN
        return digest

    def set(self, first: int, digests: bytes) -> None:
        """
        Keep the digests (concatenated) of blocks from C{first}: on disk if
        open and the disk takes them, else in memory.

        @raise ValueError: if they are not whole digests inside the file.
        """
        length = self.meta.digestSize
        count, extra = divmod(len(digests), length)
        if extra or first < 0 or first + count > self.meta.blocks:
            raise ValueError(f"{len(digests)} bytes of digests from block {first}")
        written = False
        need = len(self._newUnits(first, count)) * ALLOCATION if self._fd >= 0 else 0
        if self._fd >= 0 and self.disk.ready and self._room(need):
            try:
                self._write(first, digests)
                written = True
            except OSError as e:
                self.disk.refused(e)
        index = first
        while index < first + count:
            number, slot = divmod(index, DIGEST_PAGE)
            take = min(DIGEST_PAGE - slot, first + count - index)
            # Digests on disk are read back when asked for: only a page in
            # memory already is kept up to date.
            page = self._pages.get(number) if written else self._page(number)
            if page is not None:
                part = digests[
                    (index - first) * length : (index - first + take) * length
                ]
                page.digests[slot * length : (slot + take) * length] = part
                page.states[slot : slot + take] = bytes([_KNOWN]) * take
                page.dirty = page.dirty or not written
            index += take

    def _write(self, first: int, digests: bytes) -> None:
        size = self.records.recordSize
        count = len(digests) // self.meta.digestSize
        units = self._newUnits(first, count)
        fileio.writeAll(self._fd, self.records.pack(first, digests), first * size)
        for unit in units:
            self._written.add(unit)

    def flush(self) -> None:
        """
        Write the digests in memory that are not on disk yet.

        @raise OSError: the disk refused them.
        """
        length = self.meta.digestSize
        for number, page in self._pages.items():
            if not page.dirty:
                continue
            for slot, count in page.known():
                self._write(
                    number * DIGEST_PAGE + slot,
                    bytes(page.digests[slot * length : (slot + count) * length]),
                )
            page.dirty = False
