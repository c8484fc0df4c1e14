"""
Tests for L{p2pd.store.cachelock}: one process at a time changes a cache
directory, and others learn who it is.
"""

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.store.cachelock import (
    LOCK_NAME,
    MAX_HOLDER,
    CacheBusy,
    CacheLock,
    Holder,
    holder,
)


class CacheLockTests(SynchronousTestCase):
    """
    L{CacheLock} and L{holder} on a fresh directory.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)

    def take(self) -> CacheLock:
        lock = CacheLock.take(self.directory)
        self.addCleanup(lock.release)
        return lock

    def test_nobody(self) -> None:
        """
        A directory without a lock file, or whose lock file nobody holds,
        has no holder.
        """
        self.assertIsNone(holder(self.directory))
        self.take().release()
        self.assertIsNone(holder(self.directory))

    def test_holderSaysPid(self) -> None:
        """
        The holder's pid is known to others while it holds the lock.
        """
        self.take()
        self.assertEqual(holder(self.directory), Holder(os.getpid(), None, None))

    def test_control(self) -> None:
        """
        A node adds its control address and token once it has them.
        """
        lock = self.take()
        lock.say("127.0.0.1:4242", "secret")
        self.assertEqual(
            holder(self.directory), Holder(os.getpid(), "127.0.0.1:4242", "secret")
        )

    def test_secondRefused(self) -> None:
        """
        A second taker (another open, even in the same process) gets
        L{CacheBusy}, naming the holder's pid; after a release it may take
        the lock.
        """
        lock = self.take()
        with self.assertRaises(CacheBusy) as caught:
            CacheLock.take(self.directory)
        self.assertEqual(caught.exception.holder.pid, os.getpid())
        self.assertEqual(
            str(caught.exception),
            f"{self.directory} is in use by another p2pd (pid {os.getpid()})",
        )
        lock.release()
        self.take()

    def test_releaseTwice(self) -> None:
        """
        Releasing a lock twice does nothing the second time.
        """
        lock = self.take()
        lock.release()
        lock.release()
        self.assertIsNone(holder(self.directory))

    def test_damagedFile(self) -> None:
        """
        A held lock whose file says nothing readable has a holder all of
        whose fields are unknown, and a busy lock then says the pid is
        unknown.
        """
        lock = self.take()
        with open(os.path.join(self.directory, LOCK_NAME), "r+b") as f:
            f.write(b"\xff[not json")
        self.assertEqual(holder(self.directory), Holder())
        with open(os.path.join(self.directory, LOCK_NAME), "r+b") as f:
            f.write(b'{"pid": "12", "control": 7}'.ljust(MAX_HOLDER))
        self.assertEqual(holder(self.directory), Holder())
        with self.assertRaises(CacheBusy) as caught:
            CacheLock.take(self.directory)
        self.assertIn("(pid unknown)", str(caught.exception))
        lock.release()

    def test_fileIsPrivate(self) -> None:
        """
        The lock file, which holds the control token, is readable by its
        owner only, and stays after release.
        """
        self.take().release()
        mode = os.stat(os.path.join(self.directory, LOCK_NAME)).st_mode
        self.assertEqual(mode & 0o077, 0)

    def test_missingDirectory(self) -> None:
        """
        A directory that does not exist cannot be locked: an L{OSError}.
        """
        self.assertRaises(
            OSError, CacheLock.take, os.path.join(self.directory, "missing")
        )

    def test_holderTooLong(self) -> None:
        """
        A holder that does not fit in L{MAX_HOLDER} bytes is refused.
        """
        lock = self.take()
        self.assertRaises(ValueError, lock.say, "127.0.0.1:1", "x" * MAX_HOLDER)

    @settings(max_examples=50, deadline=None)
    @given(st.binary(max_size=MAX_HOLDER + 16))
    def test_anyContent(self, content: bytes) -> None:
        """
        Whatever a held lock file holds, its holder is read without an
        error: each field of its type, or unknown.
        """
        lock = CacheLock.take(self.directory)
        try:
            with open(os.path.join(self.directory, LOCK_NAME), "wb") as f:
                f.write(content)
            found = holder(self.directory)
        finally:
            lock.release()
        assert found is not None
        self.assertTrue(found.pid is None or (type(found.pid) is int and found.pid > 0))
        self.assertTrue(found.control is None or isinstance(found.control, str))
        self.assertTrue(found.token is None or isinstance(found.token, str))
