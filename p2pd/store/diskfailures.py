# -*- test-case-name: tests.unit.test_disk -*-
"""
What the cache does when its disk refuses a write (ENOSPC, EDQUOT, EIO,
EROFS: any C{OSError}): it logs one line, tries no write for L{STORE_RETRY}
seconds (writes raise at once meanwhile), and tries again with the next
one. A block stored ends the episode, with one more line.
"""

from collections.abc import Callable

from twisted.logger import Logger

STORE_RETRY = 30.0


class DiskFailures:
    """
    Whether the cache's disk under C{root} takes writes, timed by C{now}.
    """

    _log = Logger()

    def __init__(self, root: str, now: Callable[[], float]) -> None:
        self.root = root
        self._now = now
        self._failure: OSError | None = None
        self._retryAt = 0.0

    def check(self) -> None:
        """
        @raise OSError: the last refusal, while no write is to be tried.
        """
        if self._failure is not None and self._now() < self._retryAt:
            raise OSError(self._failure.errno, self._failure.strerror)

    @property
    def ready(self) -> bool:
        """
        Whether a write may be tried now.
        """
        return self._failure is None or self._now() >= self._retryAt

    def refused(self, error: OSError) -> None:
        """
        The disk refused a write: no other is tried for L{STORE_RETRY}
        seconds.
        """
        if self._failure is None:
            self._log.warn(
                "cannot store in the cache {root}: {why}; streaming from memory,"
                " trying again every {retry:.0f} s",
                root=self.root,
                why=error.strerror or str(error),
                retry=STORE_RETRY,
            )
        self._failure = error
        self._retryAt = self._now() + STORE_RETRY

    def stored(self) -> None:
        """
        A block was stored: the disk takes writes again.
        """
        if self._failure is not None:
            self._failure = None
            self._log.info("storing in the cache {root} again", root=self.root)
