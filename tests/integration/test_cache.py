"""
Tests for L{p2pd.store.cache} across a crash: a L{tests.crashwriter} process
killed in the middle of a cache write.
"""

import os
import signal

from p2pd.store.cachedfile import CachedFile
from tests import crashwriter
from tests.nodes import startScript
from tests.unit.test_cache import _CacheTestCase


class CrashTests(_CacheTestCase):
    """
    A process killed (SIGKILL) at any point of a write never leaves a block
    that is later served unverified.
    """

    written = 5

    def crash(self, mode: str, expected: bytes) -> None:
        """
        Run L{crashwriter} in C{mode}, wait for it to print C{expected},
        and kill it.
        """
        process = startScript(
            self, crashwriter.__file__, [self.root, mode, str(self.written)]
        )
        assert process.stdout is not None
        self.assertEqual(process.stdout.readline(), expected + b"\n")
        process.send_signal(signal.SIGKILL)
        self.assertEqual(process.wait(), -signal.SIGKILL)

    def onDisk(self, index: int) -> bytes:
        """
        What the data file holds where block C{index} goes.
        """
        meta = crashwriter.META
        with open(os.path.join(self.directory(meta), "data"), "rb") as f:
            f.seek(meta.blockStart(index))
            return f.read(meta.blockLength(index))

    def reopenCrashed(self) -> CachedFile:
        """
        The crashed process's file, opened after a restart, every held block
        verified.
        """
        cached = self.reopen(crashwriter.META)
        for index in range(crashwriter.META.blocks):
            if cached.has(index):
                self.assertEqual(cached.read(index), crashwriter.blockData(index))
        return cached

    def test_killedBetweenWrites(self) -> None:
        """
        Blocks written before the kill are held and verified.
        """
        self.crash("clean", b"written")
        cached = self.reopenCrashed()
        self.assertEqual(cached.held(), [(0, self.written)])

    def test_tornDataWrite(self) -> None:
        """
        A block whose bytes were half written is not held; writing it again
        later works.
        """
        self.crash("torn-data", b"torn")
        block = crashwriter.blockData(self.written)
        half = len(block) // 2
        self.assertEqual(self.onDisk(self.written), block[:half])
        cached = self.reopenCrashed()
        self.assertEqual(cached.held(), [(0, self.written)])
        self.assertIsNone(cached.read(self.written))
        cached.write(self.written, block)
        self.assertEqual(cached.read(self.written), block)

    def test_killedAfterRefusedWrites(self) -> None:
        """
        Blocks the disk refused after writing half of them (their bytes, or
        their journal record) are not held after a restart, the journal
        stays usable, and the blocks before them are intact.
        """
        self.crash("no-space", b"refused")
        cached = self.reopenCrashed()
        self.assertEqual(cached.held(), [(0, self.written)])
        journal = os.path.join(self.directory(crashwriter.META), "journal")
        self.assertEqual(os.path.getsize(journal) % 16, 0)
        cached.write(self.written + 1, crashwriter.blockData(self.written + 1))
        self.assertEqual(self.reopenCrashed().held()[-1], (self.written + 1, 1))

    def test_killedBeforeJournal(self) -> None:
        """
        A block whose bytes were written but not journaled is not held.
        """
        self.crash("unjournaled", b"torn")
        self.assertEqual(self.onDisk(self.written), crashwriter.blockData(self.written))
        cached = self.reopenCrashed()
        self.assertEqual(cached.held(), [(0, self.written)])

    def test_tornJournalRecord(self) -> None:
        """
        A block whose journal record was half written is not held, and the
        journal stays usable.
        """
        self.crash("torn-journal", b"torn")
        journal = os.path.join(self.directory(crashwriter.META), "journal")
        self.assertEqual(os.path.getsize(journal), self.written * 16 + 8)
        cached = self.reopenCrashed()
        self.assertEqual(cached.held(), [(0, self.written)])
        self.assertEqual(os.path.getsize(journal), self.written * 16)
        cached.write(9, crashwriter.blockData(9))
        cached.close()
        self.assertEqual(self.reopenCrashed().held(), [(0, self.written), (9, 1)])

    def test_tornDigests(self) -> None:
        """
        Digests half written are each either right or unknown, never wrong.
        """
        self.crash("torn-digests", b"torn")
        cached = self.reopenCrashed()
        digests = crashwriter.allDigests()
        known = [cached.digest(i) for i in range(crashwriter.META.blocks)]
        self.assertEqual(known[:10], [digests[i * 32 : i * 32 + 32] for i in range(10)])
        self.assertEqual(known[10:], [None] * (crashwriter.META.blocks - 10))
