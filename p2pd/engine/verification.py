# -*- test-case-name: tests.test_download -*-
"""
Checking a download's blocks against the origin's digests: in the hashing
threads if there are any (hashing is the biggest cost of a download), and
blocks that came before their digest kept until it comes.
"""

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from p2pd.engine.interfaces import ISource
from p2pd.engine.meta import FileMeta


class IDigests(Protocol):
    """
    Where the origin's digests are kept (the download's block store).
    """

    def digest(self, index: int) -> bytes | None: ...


Checked = Callable[[bool, ISource, int, bytes], None]


class Verifier:
    """
    Checks blocks from sources; calls C{checked(good, source, index, data)}
    for each once it is checked.
    """

    def __init__(
        self,
        meta: FileMeta,
        digests: IDigests,
        clock: IReactorTime,
        hashing: ThreadPool | None,
        checked: Checked,
    ) -> None:
        self.meta = meta
        self.digests = digests
        self.clock = clock
        self.hashing = hashing
        self.checked = checked
        self._verifying: set[int] = set()
        self._unverified: dict[int, tuple[ISource, bytes]] = {}

    def check(self, source: ISource, index: int, data: bytes, waitedFor: bool) -> bool:
        """
        Check block C{index} from C{source}; at once if a reader waits for
        it (C{waitedFor}). False if its digest is not here: the block waits
        for it (see L{release}).
        """
        digest = self.digests.digest(index)
        if digest is None:
            self._unverified[index] = (source, data)
            return False
        if self.hashing is None or waitedFor:
            # A block a player waits for is hashed at once rather than
            # queued behind others in the threads.
            self._verifying.discard(index)
            self.checked(self.meta.digest(data) == digest, source, index, data)
            return True
        self._verifying.add(index)
        reactor: Any = self.clock  # the reactor, when there are threads
        hashed = deferToThreadPool(reactor, self.hashing, self.meta.digest, data)
        hashed.addCallback(self._hashed, digest, source, index, data)
        return True

    def _hashed(
        self, actual: bytes, digest: bytes, source: ISource, index: int, data: bytes
    ) -> None:
        self._verifying.discard(index)
        self.checked(actual == digest, source, index, data)

    def pending(self, index: int) -> bool:
        """
        Whether block C{index} is here but not checked yet: being hashed,
        or waiting for its digest.
        """
        return index in self._unverified or index in self._verifying

    def release(self, first: int, count: int) -> Iterator[tuple[ISource, int, bytes]]:
        """
        The blocks waiting for the digests of blocks C{first} to
        C{first + count}, which have come: C{(source, index, data)} each,
        to be checked now. One at a time: checking one can hand it to a
        reader, who asks for more, and the others must still count as here.
        """
        for index, (source, data) in list(self._unverified.items()):
            if first <= index < first + count and index in self._unverified:
                del self._unverified[index]
                yield source, index, data

    def clear(self) -> None:
        """
        Forget the blocks waiting for their digests.
        """
        self._unverified.clear()
