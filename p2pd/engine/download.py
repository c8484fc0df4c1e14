# -*- test-case-name: tests.unit.test_download -*-
"""
One download: a file version fetched block by block from several sources,
verified, stored, and handed to readers in order.

A reader says "bytes from X on, in order". The download wants the blocks just
ahead of every reader (nearest first), the head and tail of the file early
(players probe both), and every digest eventually, so playback can finish
from peers if the origin goes away. What to ask of whom is the scheduling
policy's (L{p2pd.engine.scheduling}); the download runs its passes
(L{p2pd.engine.passes}), and keeps the books: the blocks it holds
(L{p2pd.engine.holding}), its sources (L{p2pd.engine.sourcing}) and their
requests (L{p2pd.engine.sources}), blocks checked against digests
(L{p2pd.engine.verification}), its readers (L{p2pd.engine.reading}). A
source that lags has its urgent blocks asked of another; a source that sends
a bad block is dropped and not asked again.
"""

import random
from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from p2pd.core.errors import ErrorCode, errorCode
from p2pd.core.meta import FileMeta
from p2pd.engine import scheduling
from p2pd.engine.holding import MEMORY_BYTES, Holding, IBlockStore
from p2pd.engine.interfaces import ISource
from p2pd.engine.memory import RecentBlocks
from p2pd.engine.passes import NOTHING, Passes
from p2pd.engine.reading import Reader
from p2pd.engine.sources import Sources, SourceState
from p2pd.engine.sourcing import Sourcing
from p2pd.engine.verification import Digests, Verifier

# How long a new download's first block is asked for alone, at most.
FIRST_BLOCK_ALONE = 0.005


class DownloadFailed(Exception):
    """
    No source can provide what a reader needs.
    """


class Download(Holding, Passes, Sourcing):
    """
    One version of one file, fetched from many sources for many readers.

    @ivar searching: whether more sources may still come (the node is
        looking for peers or connecting). While it is, blocks only an origin
        holds are fetched only when urgent, since a peer may hold them; when
        it is not and no source holds a block a reader waits for, the
        reader fails.
    """

    _log = Logger()

    def __init__(
        self,
        meta: FileMeta,
        store: IBlockStore,
        clock: IReactorTime,
        rng: random.Random | None = None,
        memoryBytes: int = MEMORY_BYTES,
        hashing: ThreadPool | None = None,
    ) -> None:
        self.meta = meta
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.readers: set[Reader] = set()
        self.searching = True
        self.failure: Failure | None = None
        self.onBadSource: Callable[[ISource], None] | None = None
        self.bytesBySource: dict[str, int] = {}
        self._sources = Sources(clock, self._arrived, self._refused)
        self._banned: set[str] = set()
        self._verifier = Verifier(meta, store, clock, hashing, self._checked)
        self._digests = Digests(meta, store, self._digestsArrived, self._digestsFailed)
        # Whether the store refused the last block it was given.
        self._unstored = False
        self._blocksIn = any(count for _, count in store.held())
        self._soon: IDelayedCall | None = None
        self._wake: IDelayedCall | None = None
        self._originAfter: dict[int, float] = {}
        self._watchers: list[Callable[[Sequence[tuple[int, int]]], None]] = []
        self._timer: IDelayedCall | None = None
        self._alone: IDelayedCall | None = None
        self._closed = False
        self._delivering = False
        self._scheduling = False
        self._rescheduled = False
        # What readers want, and the readers' blocks it was worked out for.
        self._wants = NOTHING
        self._wantsFor: object = None
        # Every reader it had has closed: it fetches nothing for itself.
        self._deserted = False
        # Whether a reader has moved since the last scheduling pass.
        self._moved = False
        self._recent = RecentBlocks()
        self._recentBlocks = max(2, memoryBytes // meta.blockSize)
        self._edges = scheduling.headAndTail(meta.blocks, meta.blockSize)

    def firstBlockAlone(self, seconds: float = FIRST_BLOCK_ALONE) -> None:
        """
        Until a first block is in, or for C{seconds}, ask for nothing but the
        blocks readers wait for and their digests. For a new download the
        first block's request went out with the Open: on a fast link that
        block is in before anything more could be of use, and more requests
        would only compete with it for the origin's time; on a slow link the
        rest is asked long before it is in.
        """
        if not self._blocksIn and self._alone is None and not self._closed:
            self._alone = self.clock.callLater(seconds, self._notAlone)

    def _notAlone(self) -> None:
        self._alone = None
        self.schedule()

    def setSearching(self, searching: bool) -> None:
        """
        Whether the node may still find more sources (L{searching}).
        """
        if searching != self.searching:
            self.searching = searching
            self.schedule()

    # -- readers

    def read(self, start: int = 0, stop: int | None = None) -> Reader:
        """
        A reader of bytes C{start} to C{stop} (default: the end).
        """
        reader = Reader(self, start, self.meta.size if stop is None else stop)
        self.readers.add(reader)
        self._deserted = False
        self.schedule()
        return reader

    def readerClosed(self, reader: Reader) -> None:
        """
        C{reader} is done: what only it wanted is not fetched any more.
        """
        self.readers.discard(reader)
        if not self.readers:
            # Nobody plays it now: its blocks in memory (megabytes for large
            # blocks) go back, and are read from the store if asked again;
            # nor are its head and tail fetched any more.
            self._recent.clear()
            self._deserted = True
        self.schedule()

    def readerMoved(self) -> None:
        """
        A reader has taken bytes: the next pass may want other blocks.
        """
        self._moved = True

    # -- failing

    def _checkExhausted(self) -> None:
        """
        Fail readers waiting for a block that no source holds, or whose
        digest nobody can give any more, once the node has stopped looking
        for sources.
        """
        if self.searching:
            return
        authority = any(s.source.authoritative for s in self._sources)
        for reader in list(self.readers):
            if not reader.waiting:
                continue
            index = reader.block
            if not self._digests.known(index) and not authority:
                reader.fail(
                    Failure(DownloadFailed(f"no source of the digest of block {index}"))
                )
            elif self._verifier.pending(index) or index in self._sources.inflight:
                continue
            elif not any(s.source.has(index) for s in self._sources):
                reader.fail(Failure(DownloadFailed(f"no source holds block {index}")))

    def fail(self, reason: Failure) -> None:
        """
        Give up: every waiting reader fails with C{reason}.
        """
        self.failure = reason
        for reader in list(self.readers):
            reader.fail(reason)

    # -- blocks in

    def _arrived(self, state: SourceState, index: int, data: bytes) -> None:
        name = state.source.name
        self.bytesBySource[name] = self.bytesBySource.get(name, 0) + len(data)
        if not self._have(index):
            self._verify(state.source, index, data)
        self.schedule()

    def _verify(self, source: ISource, index: int, data: bytes) -> None:
        """
        Check a block against its digest, then keep it (L{_checked}); at
        once if a reader waits for it.
        """
        waitedFor = any(r.waiting and r.block == index for r in self.readers)
        if not self._verifier.check(source, index, data, waitedFor):
            # Asked for by the next pass, should the store have forgotten it.
            self._digests.forget(index)

    def _checked(self, good: bool, source: ISource, index: int, data: bytes) -> None:
        """
        Block C{index} from C{source} is checked: keep it and hand it to
        readers, or drop the source that sent it corrupt.
        """
        if self._closed or self._have(index):
            return
        if not good:
            self._log.warn(
                "{url}: block {index} from {source} fails its digest",
                url=self.meta.url,
                index=index,
                source=source.name,
            )
            self._banned.add(source.name)
            self.dropSource(source, "sent a corrupt block")
            if self.onBadSource is not None:
                self.onBadSource(source)
            return
        # Readers first, then the disk, then peers (which read it back). A
        # reader may close the download as it takes the last block: the
        # store is closed once the block is in it.
        self._remember(index, data)
        first = not self._blocksIn
        self._blocksIn = True
        if self._alone is not None:
            self._alone.cancel()
            self._alone = None
        self._delivering = True
        try:
            for reader in list(self.readers):
                reader.available(index)
        finally:
            self._delivering = False
        unstored = self._unstored
        try:
            self.store.write(index, data)
        except OSError:
            # The cache has logged why: the block stays in memory. Were it
            # the file's head or tail, it is not fetched again only for
            # being one.
            self._unstored = True
            if index in self._edges:
                self._edges.remove(index)
        else:
            self._unstored = False
        if self._closed:
            self.store.close()
            return
        if not self._unstored:
            for callback in list(self._watchers):
                callback([(index, 1)])
        # A reader that took the block and waits for the next has had the
        # pass it needs already.
        if unstored != self._unstored or (
            self._verifier.hashing is not None and (self._moved or first)
        ):
            self.schedule()

    # -- digests

    def _digestsArrived(self, first: int, count: int) -> None:
        for source, index, data in self._verifier.release(first, count):
            if not self._have(index):
                self._verify(source, index, data)
        self.schedule()

    def _digestsFailed(self, reason: Failure, source: ISource) -> None:
        if errorCode(reason) == ErrorCode.CHANGED:
            self.fail(reason)
            return
        self.dropSource(source, f"digests failed: {reason.getErrorMessage()}")

    def close(self) -> None:
        """
        Stop everything: cancel requests and release sources.
        """
        self._closed = True
        for call in (self._timer, self._soon, self._wake, self._alone):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._soon = self._wake = self._alone = None
        self._digests.close()
        for state in self._sources:
            self._sources.remove(state.source)
            state.source.onLost = None
            state.source.onHave = None
            state.source.close()
        if self.failure is None:
            # Readers that read again fail too, and never touch the store.
            self.failure = Failure(DownloadFailed("download closed"))
        for reader in list(self.readers):
            reader.fail(self.failure)
        self._recent.clear()
        self._verifier.clear()
        self._wants, self._wantsFor = NOTHING, None
        if not self._delivering:
            self.store.close()
