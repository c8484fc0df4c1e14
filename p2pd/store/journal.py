# -*- test-case-name: tests.unit.test_cache -*-
"""
The journal of a cached file version: which of its blocks are held.

Append-only 16-byte records C{u32 index | u8 held (1) or forgotten (0) |
3 zero bytes | 8-byte keyed check}; the last record of a block says whether
it is held. A torn trailing record is cut off when the journal is loaded; a
record that fails its check is ignored.

A block is written to C{data} first and journaled afterwards, so a crash
mid-write leaves it unjournaled. There is no fsync per block: after a power
loss the journal may name a block whose bytes never reached the disk, which
is why L{p2pd.store.cachedfile} verifies a block the first time it reads it.

Blocks evicted are journaled as forgotten before their bytes are freed, so
after a crash at any moment a block is either held with its bytes or known
absent. A journal with many more records than blocks held is rewritten
(L{Journal.compact}).
"""

import hashlib
import os
import struct
from collections.abc import Sequence

from p2pd.core.meta import BlockRuns
from p2pd.store import fileio
from p2pd.store.cachelayout import openFile, replaceFile

_JOURNAL = struct.Struct("!IB3x")
_CHECK = 8
RECORD_SIZE = _JOURNAL.size + _CHECK
# Records read at once when a journal is loaded.
_CHUNK = 4096


class Journal:
    """
    The journal of one file version, keyed by its C{identity}; not on disk
    until L{open}ed (appending fails until then).
    """

    def __init__(self, identity: bytes) -> None:
        self._key = hashlib.sha256(identity).digest()
        self._path = ""
        self._fd = -1
        self._size = 0

    def _check(self, head: bytes) -> bytes:
        return hashlib.blake2b(
            head, digest_size=_CHECK, key=self._key, person=b"p2pd-cache-jn"
        ).digest()

    def _record(self, index: int, held: bool) -> bytes:
        """
        The record saying whether block C{index} is held.
        """
        head = _JOURNAL.pack(index, 1 if held else 0)
        return head + self._check(head)

    @property
    def size(self) -> int:
        """
        The journal's length in bytes.
        """
        return self._size

    def append(self, index: int, held: bool) -> None:
        """
        Append a record; if the disk refuses, cut off what part of it was
        written, so later records stay aligned.

        @raise OSError: the disk refused it.
        """
        self._append(self._record(index, held))

    def forgetAll(self, indices: Sequence[int]) -> None:
        """
        Append, in one write, records saying C{indices} are not held.

        @raise OSError: the disk refused them (none is then appended).
        """
        self._append(b"".join(self._record(index, False) for index in indices))

    def _append(self, records: bytes) -> None:
        try:
            fileio.appendAll(self._fd, records)
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(records)

    def attach(self, path: str) -> None:
        """
        Open the journal at C{path} to append to it, without replaying it
        (for evicting blocks of a version nobody has open).
        """
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        self._size = self._cutTorn()

    def _cutTorn(self) -> int:
        """
        Cut off a torn trailing record, or every later record would be
        misaligned (on a read-only disk, none will come); the length left.
        """
        size = os.fstat(self._fd).st_size
        whole = size - size % RECORD_SIZE
        if whole != size:
            try:
                os.ftruncate(self._fd, whole)
            except OSError:
                pass
        return whole

    def open(self, path: str, blocks: int) -> BlockRuns:
        """
        Open the journal at C{path} (made if missing) and replay it.

        @return: the blocks below C{blocks} it says are held.
        """
        self._path = path
        self._fd = openFile(path, os.O_RDWR | os.O_APPEND)
        whole = self._size = self._cutTorn()
        held = self._replay(self._fd, whole, blocks)
        self.compact(held)
        return held

    def _replay(self, fd: int, size: int, blocks: int) -> BlockRuns:
        """
        The blocks below C{blocks} that the first C{size} bytes of the
        journal at C{fd} say are held.
        """
        held = BlockRuns()
        for offset in range(0, size, _CHUNK * RECORD_SIZE):
            raw = fileio.readAll(fd, min(_CHUNK * RECORD_SIZE, size - offset), offset)
            for start in range(0, len(raw) - RECORD_SIZE + 1, RECORD_SIZE):
                head = raw[start : start + _JOURNAL.size]
                check = raw[start + _JOURNAL.size : start + RECORD_SIZE]
                if check != self._check(head):
                    continue
                index, flag = _JOURNAL.unpack(head)
                if index < blocks and flag == 1:
                    held.add(index)
                elif index < blocks and flag == 0:
                    held.discard(index)
        return held

    def read(self, path: str, blocks: int) -> BlockRuns:
        """
        The blocks below C{blocks} the journal at C{path} says are held,
        read without changing it (while another process may append to it):
        a torn trailing record is left alone.

        @raise OSError: it cannot be read (a missing journal holds nothing).
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return BlockRuns()
        try:
            size = os.fstat(fd).st_size
            return self._replay(fd, size - size % RECORD_SIZE, blocks)
        finally:
            os.close(fd)

    def compact(self, held: BlockRuns) -> None:
        """
        Rewrite the journal with one record per block in C{held}, if it has
        more than twice as many records (and 1024 more); a disk that refuses
        leaves it longer, to be read again next time.
        """
        if self._size // RECORD_SIZE <= 2 * held.count + 1024:
            return
        try:
            self._rewrite(held)
        except OSError:
            pass

    def _rewrite(self, held: BlockRuns) -> None:
        content = b"".join(
            self._record(index, True)
            for first, count in held.ranges()
            for index in range(first, first + count)
        )
        replaceFile(self._path, content)
        fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        os.close(self._fd)
        self._fd = fd
        self._size = len(content)

    def close(self) -> None:
        """
        Close the journal's file, if open.
        """
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
