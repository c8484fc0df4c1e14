# -*- test-case-name: tests.unit.test_download -*-
"""
Checking a download's blocks against the origin's digests: getting the
digests (L{Digests}), and checking blocks (L{Verifier}) in the hashing
threads if there are any (hashing is the biggest cost of a download), blocks
that came before their digest kept until it comes.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from p2pd.core.meta import BlockRuns, FileMeta
from p2pd.engine.interfaces import ISource

# Digests asked for at once for blocks readers want (a small range, so the
# first bytes come fast), and at once for the rest of the file meanwhile.
DIGEST_CHUNK = 64
DIGESTS_AT_ONCE = 4096


class IDigests(Protocol):
    """
    Where the origin's digests are kept (the download's block store); it
    may forget a digest it was given (and not yet put on disk).
    """

    def digest(self, index: int) -> bytes | None: ...
    def setDigests(self, first: int, digests: bytes) -> None: ...


class Digests:
    """
    What a download knows of the origin's digests, and asks for.

    Calls C{arrived(first, count)} when digests have come (and are in the
    store), and C{failed(reason, source)} when C{source} could not give
    them.
    """

    def __init__(
        self,
        meta: FileMeta,
        store: IDigests,
        arrived: Callable[[int, int], None],
        failed: Callable[[Failure, ISource], None],
    ) -> None:
        self.meta = meta
        self.store = store
        self.arrived = arrived
        self.failed = failed
        self._requests: dict[tuple[int, int], defer.Deferred[bytes]] = {}
        self._background: tuple[int, int] | None = None
        self._cursor = 0
        # Blocks whose digests the store has (or had: it may forget some
        # before they are on disk), so scheduling need not ask it each pass.
        self._known = BlockRuns()

    def fetch(
        self,
        origin: ISource,
        blocks: Iterable[int],
        have: Callable[[int], bool],
        background: bool,
    ) -> None:
        """
        Ask C{origin} for the digests that C{blocks} need, those not
        C{have}, and meanwhile, if C{background}, for the rest of the file
        in large ranges, one at a time: once they are all here, playback
        can finish from peers if the origin goes away.
        """
        known = self._known
        # The wanted blocks come mostly in runs: one request found to cover
        # a block, or one run of digests known, usually covers the next ones
        # too.
        start = end = 0
        for index in blocks:
            if start <= index < end:
                continue
            run = known.runAt(index)
            if run is not None:
                start, end = run
                continue
            if have(index) or self.known(index):
                continue
            covering = self._asked(index)
            if covering is None:
                first = index - index % DIGEST_CHUNK
                count = self._ask(origin, first, DIGEST_CHUNK, False)
                covering = (first, count)
            start, end = covering[0], covering[0] + covering[1]
        if self._background is None and background:
            while self._cursor < self.meta.blocks and self.known(self._cursor):
                self._cursor += 1
            if self._cursor < self.meta.blocks:
                self._ask(origin, self._cursor, DIGESTS_AT_ONCE, background=True)

    def known(self, index: int) -> bool:
        """
        Whether the store has block C{index}'s digest, remembered here so
        scheduling does not look it up again and again.
        """
        if index in self._known:
            return True
        if self.store.digest(index) is None:
            return False
        self._known.add(index)
        return True

    def forget(self, index: int) -> None:
        """
        The store has forgotten block C{index}'s digest: ask for it again.
        """
        self._known.discard(index)

    def _asked(self, index: int) -> tuple[int, int] | None:
        """
        The digest request, C{(first, count)}, covering block C{index}, if
        one is on its way.
        """
        for first, count in self._requests:
            if first <= index < first + count:
                return first, count
        return None

    def _ask(self, source: ISource, first: int, count: int, background: bool) -> int:
        """
        Ask C{source} for C{count} digests from block C{first} (fewer at the
        end of the file); how many were asked for.
        """
        count = min(count, self.meta.blocks - first)
        deferred = source.getDigests(first, count)
        self._requests[(first, count)] = deferred
        if background:
            self._background = (first, count)
        deferred.addCallbacks(
            self._came,
            self._failed,
            callbackArgs=(first, count),
            errbackArgs=(first, count, source),
        )
        return count

    def _done(self, first: int, count: int) -> None:
        self._requests.pop((first, count), None)
        if self._background == (first, count):
            self._background = None

    def _came(self, digests: bytes, first: int, count: int) -> None:
        self._done(first, count)
        self.store.setDigests(first, digests)
        self._known.add(first, count)
        self.arrived(first, count)

    def _failed(self, reason: Failure, first: int, count: int, source: ISource) -> None:
        self._done(first, count)
        if not reason.check(defer.CancelledError):
            self.failed(reason, source)

    def close(self) -> None:
        """
        Cancel the requests on their way.
        """
        for request in list(self._requests.values()):
            request.cancel()


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
