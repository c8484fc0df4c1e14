# -*- test-case-name: tests.unit.test_download -*-
"""
One download: a file version fetched block by block from several sources,
verified, stored, and handed to readers in order.

A reader says "bytes from X on, in order". The download wants the blocks just
ahead of every reader (nearest first), the head and tail of the file early
(players probe both), and every digest eventually, so playback can finish
from peers if the origin goes away. What to ask of whom is the scheduling
policy's (L{p2pd.engine.scheduling}); the download runs its passes, and
keeps the books: its sources and their requests (L{p2pd.engine.sources}),
blocks checked against digests (L{p2pd.engine.verification}), its readers
(L{p2pd.engine.reading}). A source that lags has its urgent blocks asked of
another; a source that sends a bad block is dropped and not asked again.

When the store refuses a block (a full or failing disk), the stream goes on
from memory: the download then asks only for the few blocks just ahead of
its readers (L{MEMORY_BYTES} each), keeps them (and any it asked for before,
up to L{scheduling.READAHEAD_BYTES} ahead) until read, and asks for nothing
when no reader wants anything, until the store takes a block again. Memory
follows what readers ask for, never the size the origin announces.
"""

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from p2pd.core.errors import ErrorCode, errorCode
from p2pd.core.meta import FileMeta
from p2pd.engine import scheduling
from p2pd.engine.interfaces import ISource
from p2pd.engine.memory import RecentBlocks
from p2pd.engine.reading import Reader
from p2pd.engine.scheduling import URGENT_BLOCKS, Ask, Wants
from p2pd.engine.sources import Sources, SourceState
from p2pd.engine.verification import Digests, Verifier

# How often sources are checked for lagging.
CHECK_INTERVAL = 0.5
# A peer that cannot serve this many blocks it announced is dropped.
MAX_MISSES = 8
# The recent blocks a download keeps in memory (per reader while the store
# refuses blocks).
MEMORY_BYTES = 4 * 1024 * 1024
# What the cache never evicts ahead of each reader: its own block and the
# blocks of this many bytes after it (the store's pins).
PIN_AHEAD_BYTES = 2 * 1024 * 1024
# How long a new download's first block is asked for alone, at most.
FIRST_BLOCK_ALONE = 0.005
# Nothing wanted yet.
NOTHING = Wants([], frozenset())


class DownloadFailed(Exception):
    """
    No source can provide what a reader needs.
    """


class IBlockStore(Protocol):
    """
    Where verified blocks and the origin's digests are kept (a cached file).
    C{write} raises L{OSError} when the disk refuses the block; C{digest}
    may forget a digest it was given (and not yet put on disk).
    """

    def has(self, index: int) -> bool: ...
    def read(self, index: int) -> bytes | None: ...
    def write(self, index: int, data: bytes) -> None: ...
    def digest(self, index: int) -> bytes | None: ...
    def setDigests(self, first: int, digests: bytes) -> None: ...
    def held(self) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


class Download:
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

    # -- sources

    @property
    def sources(self) -> list[ISource]:
        return self._sources.sources

    def addSource(self, source: ISource) -> bool:
        """
        Use C{source}; False if it was banned for a bad block.
        """
        if source.name in self._banned or source in self._sources or self._closed:
            return False
        self._sources.add(source)
        source.onHave = lambda ranges: self._scheduleSoon()
        source.onLost = lambda reason: self._sourceLost(source, reason)
        self.schedule()
        return True

    def _sourceLost(self, source: ISource, reason: Failure) -> None:
        if self._sources.remove(source) is None:
            return
        self._log.info(
            "{url}: source {source} gone: {reason}",
            url=self.meta.url,
            source=source.name,
            reason=reason.getErrorMessage(),
        )
        self.schedule()

    def dropSource(self, source: ISource, why: str) -> None:
        """
        Stop using C{source} (it lags, or misbehaves) and close it.
        """
        if self._sources.remove(source) is None:
            return
        self._log.info(
            "{url}: dropping source {source}: {why}",
            url=self.meta.url,
            source=source.name,
            why=why,
        )
        source.onLost = None
        source.onHave = None
        source.close()
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

    def _have(self, index: int) -> bool:
        """
        Whether block C{index} is here: stored, or in memory.
        """
        return index in self._recent or self.store.has(index)

    def readerMoved(self) -> None:
        """
        A reader has taken bytes: the next pass may want other blocks.
        """
        self._moved = True

    def blockData(self, index: int) -> bytes | None:
        """
        A verified block: from the recent blocks in memory, else from the
        store (which checks it against its digest if this process has not).
        """
        data = self._recent.recall(index)
        if data is not None:
            return data
        if not self.store.has(index):
            return None
        data = self.store.read(index)
        if data is not None:
            self._remember(index, data)
        return data

    def _remember(self, index: int, data: bytes) -> None:
        """
        Keep block C{index} in memory: a few MiB, per reader while the store
        refuses blocks.
        """
        limit = self._recentBlocks
        if self._unstored:
            limit *= max(1, len(self.readers))
        self._recent.keep(index, data, limit, self._wants.kept, self.store.has)

    def pinned(self, first: int, end: int) -> bool:
        """
        Whether a reader reads one of blocks C{first} to C{end - 1}, or will
        within L{PIN_AHEAD_BYTES}: the store must not evict them.
        """
        ahead = PIN_AHEAD_BYTES // self.meta.blockSize
        for reader in self.readers:
            block = self.meta.blockAt(reader.position)
            if block < end and first <= block + ahead:
                return True
        return False

    @property
    def complete(self) -> bool:
        held = self.store.held()
        return held == [(0, self.meta.blocks)] or self.meta.blocks == 0

    # -- announcements to peers

    def watch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)

    # -- what to fetch

    def _wanted(self) -> list[tuple[int, int]]:
        """
        (urgency, block) pairs, most urgent first, less those held.
        """
        have = self._have
        return [pair for pair in self._wantsNow().order if not have(pair[1])]

    def _wantsNow(self) -> Wants:
        """
        What readers want: worked out again only when a reader has moved to
        another block (or come, or gone), or the store has refused a block
        or taken one again, not for every pass.
        """
        blockAt = self.meta.blockAt
        readers = tuple(
            (blockAt(reader.position), blockAt(reader.stop - 1))
            for reader in self.readers
            if reader.position < reader.stop
        )
        key = (readers, self._unstored, self._deserted)
        if key != self._wantsFor:
            self._wantsFor = key
            self._wants = scheduling.wanted(
                readers,
                self._edges,
                self.meta.blockSize,
                self._recentBlocks,
                self._unstored,
                self._deserted,
            )
        return self._wants

    def _scheduleSoon(self) -> None:
        """
        Schedule once this reactor turn is over: announcements arrive in
        bursts from many peers, and one pass serves them all.
        """
        if self._soon is None and not self._closed:
            self._soon = self.clock.callLater(0, self._scheduleNow)

    def _scheduleNow(self) -> None:
        self._soon = None
        self.schedule()

    def schedule(self) -> None:
        """
        Give every source with room the most urgent blocks it can serve.

        Answers can arrive while this runs (a source that answers at once);
        they ask for another pass instead of recursing.
        """
        if self._scheduling:
            self._rescheduled = True
            return
        self._scheduling = True
        try:
            while not self._closed:
                self._rescheduled = False
                self._assign()
                if not self._rescheduled:
                    break
        finally:
            self._scheduling = False

    def _assign(self) -> None:
        """
        One scheduling pass: send what L{scheduling.plan} asks for, until a
        source answers at once (the next pass goes on).
        """
        self._moved = False
        if not self._sources:
            # Nothing can be asked of anyone: readers only learn whether
            # waiting is any use.
            self._checkExhausted()
            return
        wants = self._wantsNow()
        self._cancelUnwanted(wants)
        order = wants.order
        if self._alone is not None:
            waited = {r.block for r in self.readers if r.waiting}
            order = [pair for pair in order if pair[1] in waited]
        origin = next(
            (s.source for s in self._sources if s.source.authoritative),
            None,
        )
        if origin is not None:
            # The rest of the digests only once a first block is in (the
            # answer would otherwise queue in front of that block on the
            # connection), only while the store keeps them, and only while
            # somebody reads (a 16 TiB file's are 256 MiB).
            self._digests.fetch(
                origin,
                (index for _, index in order),
                self._have,
                self._blocksIn and not self._unstored and not self._deserted,
            )
        if self._rescheduled:
            # Digests came at once and verified blocks: the next pass sees
            # them.
            return
        now = self.clock.seconds()
        state = scheduling.State(
            order,
            self._busy,
            [source.view() for source in self._sources],
            self.searching,
            now,
            self._originAfter,
            self._wake.getTime() if self._wake and self._wake.active() else None,
        )
        for step in scheduling.plan(state, self.rng):
            if isinstance(step, Ask):
                self._sources.ask(step.source, step.block)
                if self._rescheduled:
                    return
            else:
                self._originAfter[step.block] = step.until
                if step.until > now:
                    self._wakeAt(step.until, now)
        self._checkExhausted()
        self._armTimer()

    def _busy(self, index: int) -> bool:
        """
        Whether block C{index} needs no request: asked for, being verified,
        or here (as L{_have}, inline: this runs for every wanted block of
        every pass).
        """
        return (
            index in self._sources.inflight
            or self._verifier.pending(index)
            or index in self._recent
            or self.store.has(index)
        )

    def _wakeAt(self, when: float, now: float) -> None:
        """
        Plan again at C{when} (a block held back for peers may then go to
        the origin).
        """
        if self._wake is None or not self._wake.active():
            self._wake = self.clock.callLater(when - now, self._scheduleNow)
        elif self._wake.getTime() > when:
            self._wake.reset(when - now)

    def _cancelUnwanted(self, wants: Wants) -> None:
        """
        Cancel requests for blocks no reader wants any more.
        """
        have = self._have
        unwanted = scheduling.unwanted(self._sources.inflight, wants.kept, have)
        if unwanted:
            self._sources.cancel(unwanted)
        if self._originAfter:
            kept = wants.kept
            for index in [i for i in self._originAfter if i not in kept or have(i)]:
                del self._originAfter[index]

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

    # -- requests

    def _refused(self, reason: Failure, state: SourceState) -> None:
        """
        C{state}'s source failed a request.
        """
        if errorCode(reason) == ErrorCode.UNAVAILABLE:
            state.misses += 1
            if state.misses > MAX_MISSES:
                self.dropSource(state.source, "announces blocks it cannot serve")
                return
        elif errorCode(reason) == ErrorCode.CHANGED:
            self.fail(reason)
            return
        elif errorCode(reason) == ErrorCode.BUSY:
            pass
        else:
            self.dropSource(state.source, reason.getErrorMessage())
            return
        self.schedule()

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

    # -- lagging sources

    def _armTimer(self) -> None:
        busy = any(s.inflight for s in self._sources)
        if busy and self._timer is None:
            self._timer = self.clock.callLater(CHECK_INTERVAL, self._check)

    def _check(self) -> None:
        """
        Move urgent blocks away from lagging sources; drop silent ones.
        """
        self._timer = None
        urgent = {i for u, i in self._wanted() if u < URGENT_BLOCKS}
        self._sources.relieve(
            self.clock.seconds(), urgent, self.meta.blockSize, self._silent
        )
        self.schedule()
        self._armTimer()

    def _silent(self, state: SourceState, quiet: float) -> None:
        self.dropSource(state.source, f"no data for {quiet:.0f} s")

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
        for reader in list(self.readers):
            reader.fail(Failure(DownloadFailed("download closed")))
        self._recent.clear()
        self._verifier.clear()
        self._wants, self._wantsFor = NOTHING, None
        if not self._delivering:
            self.store.close()
