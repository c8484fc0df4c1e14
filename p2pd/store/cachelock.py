# -*- test-case-name: tests.unit.test_cachelock -*-
"""
The lock on a cache directory: one process changes a cache at a time.

A running node holds it for as long as it runs, so a second node on the
same directory refuses to start; C{p2pd cache} takes it to change a cache
no node runs on, and otherwise asks the node that holds it.

The lock is an C{flock} on C{DIR/node.lock}: unlike a POSIX record lock it
is kept across twistd's fork into the background, and two opens in one
process exclude each other. The file also says who holds it, as JSON of at
most L{MAX_HOLDER} bytes: the pid and, for a node, the loopback address of
its control listener and the token that listener asks for (the file is
private to the user, like the directory). The file is never removed: a
process that opened it just before the removal would lock a name nobody
else sees.
"""

import errno
import fcntl
import json
import os
from dataclasses import dataclass

LOCK_NAME = "node.lock"
# The most bytes of the lock file read: what one holder writes, padded.
MAX_HOLDER = 512


@dataclass(frozen=True)
class Holder:
    """
    Who holds a cache directory's lock: C{pid}, and for a node, its control
    address (C{HOST:PORT}) and token; any of them L{None} when the file does
    not say (a process still starting, or a damaged file).
    """

    pid: int | None = None
    control: str | None = None
    token: str | None = None


class CacheBusy(Exception):
    """
    Another process holds the lock of C{directory}.
    """

    def __init__(self, directory: str, holder: Holder) -> None:
        super().__init__(directory, holder)
        self.directory = directory
        self.holder = holder

    def __str__(self) -> str:
        who = f"pid {self.holder.pid}" if self.holder.pid else "pid unknown"
        return f"{self.directory} is in use by another p2pd ({who})"


class CacheLock:
    """
    The lock of one cache directory, held by this process until
    L{release}d.
    """

    def __init__(self, directory: str, fd: int) -> None:
        self.directory = directory
        self._fd = fd

    @classmethod
    def take(cls, directory: str) -> "CacheLock":
        """
        Take the lock of C{directory}, saying this process's pid.

        @raise CacheBusy: another process holds it.
        @raise OSError: the lock file cannot be made or opened.
        """
        fd = os.open(
            os.path.join(directory, LOCK_NAME),
            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            found = _read(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise CacheBusy(directory, found) from None
            raise
        lock = cls(directory, fd)
        try:
            lock.say()
        except OSError:
            lock.release()
            raise
        return lock

    def say(self, control: str | None = None, token: str | None = None) -> None:
        """
        Write who holds the lock: this process, and its control address and
        token if it has them. One write of a fixed size, so that a reader
        never sees half of it.

        @raise OSError: the disk refused.
        """
        content = json.dumps(
            {"pid": os.getpid(), "control": control, "token": token}
        ).encode("ascii")
        if len(content) > MAX_HOLDER:
            raise ValueError(f"a holder of {len(content)} bytes")
        os.pwrite(self._fd, content.ljust(MAX_HOLDER), 0)
        os.ftruncate(self._fd, MAX_HOLDER)

    def release(self) -> None:
        """
        Let the lock go, saying nobody holds it; releasing it again does
        nothing.
        """
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # what it says is only believed while it is locked
        os.close(fd)


def holder(directory: str) -> Holder | None:
    """
    Who holds the lock of C{directory} now, or L{None} if nobody does.

    @raise OSError: the lock file exists but cannot be read.
    """
    try:
        fd = os.open(os.path.join(directory, LOCK_NAME), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            return _read(fd)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> Holder:
    """
    What the lock file at C{fd} says, as far as it says it.
    """
    try:
        raw = json.loads(os.pread(fd, MAX_HOLDER, 0))
    except (OSError, ValueError):
        return Holder()
    if not isinstance(raw, dict):
        return Holder()
    pid, control, token = raw.get("pid"), raw.get("control"), raw.get("token")
    return Holder(
        pid if type(pid) is int and pid > 0 else None,
        control if isinstance(control, str) else None,
        token if isinstance(token, str) else None,
    )
