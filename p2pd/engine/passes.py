# -*- test-case-name: tests.unit.test_download -*-
"""
A download's scheduling passes: what its readers want, and the requests the
scheduling policy (L{p2pd.engine.scheduling}) plans, sent to its sources.

A pass runs when something changes (a reader comes or waits, a source comes
or announces blocks, a block arrives), at most one at a time: answers that
come while it runs ask for another pass instead of recursing.
"""

import random
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from p2pd.core.meta import FileMeta
from p2pd.engine import scheduling
from p2pd.engine.holding import IBlockStore
from p2pd.engine.memory import RecentBlocks
from p2pd.engine.reading import Reader
from p2pd.engine.scheduling import Ask, Wants
from p2pd.engine.sources import Sources
from p2pd.engine.verification import Digests, Verifier

# Nothing wanted yet.
NOTHING = Wants([], frozenset())


class Passes:
    """
    The part of L{p2pd.engine.download.Download} that decides what to fetch
    and asks for it. The download's C{__init__} sets the state named here.
    """

    meta: FileMeta
    store: IBlockStore
    clock: IReactorTime
    rng: random.Random
    readers: set[Reader]
    searching: bool
    _sources: Sources
    _verifier: Verifier
    _digests: Digests
    _unstored: bool
    _blocksIn: bool
    _soon: IDelayedCall | None
    _wake: IDelayedCall | None
    _originAfter: dict[int, float]
    _alone: IDelayedCall | None
    _closed: bool
    _scheduling: bool
    _rescheduled: bool
    _wants: Wants
    _wantsFor: object
    _deserted: bool
    _moved: bool
    _recent: RecentBlocks
    _recentBlocks: int
    _edges: list[int]
    # Of the download's other parts.
    _have: Callable[[int], bool]
    _checkExhausted: Callable[[], None]
    _armTimer: Callable[[], None]

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
