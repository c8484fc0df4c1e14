# -*- test-case-name: tests.unit.test_download -*-
"""
The sources of a download and the blocks asked of them: the requests in
flight to each, what its answers tell of it (its rate, its misses), and
sources that lag or fall silent.
"""

from collections.abc import Callable, Container, Iterable, Iterator

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from p2pd.engine import scheduling
from p2pd.engine.interfaces import ISource
from p2pd.engine.scheduling import LAG_MIN, MAX_SILENCES, SOURCE_TIMEOUT, URGENT_BLOCKS


class SourceState:
    """
    What a download knows of one source.

    @ivar inflight: its requests in flight: their Deferreds, and when each
        was sent.
    @ivar rate: the bytes per second it has been sending (0 until known).
    @ivar lastProgress: when it last sent a block.
    @ivar misses: how many blocks it announced and could not serve.
    @ivar silences: how many times in a row it has sent nothing for
        L{SOURCE_TIMEOUT}.
    """

    def __init__(self, source: ISource, now: float, blockSize: int) -> None:
        self.source = source
        self.blockSize = blockSize
        self.inflight: dict[int, tuple[defer.Deferred[bytes], float]] = {}
        self.rate = 0.0
        self.lastProgress = now
        self.misses = 0
        self.silences = 0

    @property
    def pipeline(self) -> int:
        return scheduling.pipeline(self.rate, self.blockSize)

    @property
    def free(self) -> int:
        return self.pipeline - len(self.inflight)

    def quiet(self, now: float) -> float:
        """
        How long it has sent nothing while asked for something.
        """
        oldest = min(t for _, t in self.inflight.values())
        return now - max(self.lastProgress, oldest)

    def view(self) -> "scheduling.Source[SourceState]":
        """
        The source as the scheduling policy sees it.
        """
        source = self.source
        return scheduling.Source(
            self,
            source.authoritative,
            source.has,
            len(self.inflight),
            self.rate,
            self.pipeline,
        )


class Sources:
    """
    A download's sources, in the order they came, and its requests.

    Calls C{arrived(state, index, data)} when a block comes, and
    C{refused(reason, state, index)} when a source fails a request (not
    when the request is cancelled).

    @ivar inflight: how many sources each block is asked of (usually one),
        so scheduling need not look through every source's requests.
    """

    def __init__(
        self,
        clock: IReactorTime,
        blockSize: int,
        arrived: Callable[[SourceState, int, bytes], None],
        refused: Callable[[Failure, SourceState, int], None],
    ) -> None:
        self.clock = clock
        self.blockSize = blockSize
        self.arrived = arrived
        self.refused = refused
        self._states: dict[ISource, SourceState] = {}
        self.inflight: dict[int, int] = {}

    def __iter__(self) -> Iterator[SourceState]:
        return iter(list(self._states.values()))

    def __contains__(self, source: ISource) -> bool:
        return source in self._states

    def __bool__(self) -> bool:
        return bool(self._states)

    @property
    def sources(self) -> list[ISource]:
        return list(self._states)

    def add(self, source: ISource) -> None:
        self._states[source] = SourceState(source, self.clock.seconds(), self.blockSize)

    def remove(self, source: ISource) -> SourceState | None:
        """
        Stop using C{source}: its requests are cancelled. What was known of
        it, if it was in use.
        """
        state = self._states.pop(source, None)
        if state is not None:
            for deferred, _ in list(state.inflight.values()):
                deferred.cancel()
        return state

    def ask(self, state: SourceState, index: int) -> None:
        """
        Ask C{state}'s source for block C{index}.
        """
        deferred = state.source.getBlock(index)
        state.inflight[index] = (deferred, self.clock.seconds())
        self.inflight[index] = self.inflight.get(index, 0) + 1
        deferred.addCallbacks(
            self._answered,
            self._failed,
            callbackArgs=(state, index),
            errbackArgs=(state, index),
        )

    def cancel(self, indexes: Iterable[int]) -> None:
        """
        Cancel every request for the blocks C{indexes}.
        """
        for state in self:
            for index in indexes:
                deferred = self._untrack(state, index)
                if deferred is not None:
                    deferred.cancel()

    def relieve(
        self,
        now: float,
        waited: Container[int],
        silent: Callable[[SourceState, float], None],
    ) -> None:
        """
        Ask a block a reader has C{waited} for since L{LAG_MIN} of a second
        source (a "rescue"), when one should deliver it sooner than the
        source asked first, which lags.

        A source that has sent nothing for L{SOURCE_TIMEOUT} has its
        requests cancelled (they are asked again, of whoever has room), and
        after L{MAX_SILENCES} such silences in a row C{silent(state, quiet)}
        is called: an uplink full of others' blocks is silent for a while
        yet alive.
        """
        for state in self:
            if not state.inflight:
                continue
            quiet = state.quiet(now)
            if quiet >= SOURCE_TIMEOUT:
                state.silences += 1
                if state.silences >= MAX_SILENCES:
                    silent(state, quiet)
                else:
                    state.lastProgress = now
                    for index in list(state.inflight):
                        deferred = self._untrack(state, index)
                        if deferred is not None:
                            deferred.cancel()
                continue
            for index in [i for i in state.inflight if i in waited]:
                asked = state.inflight[index][1]
                if self.inflight[index] > 1 or now - asked < LAG_MIN:
                    continue
                # The other node sends the nearest blocks first.
                ahead = sum(1 for i in state.inflight if i <= index)
                expected = ahead * self.blockSize / state.rate if state.rate else None
                others = [
                    s.view()
                    for s in self
                    if s is not state
                    and s.free > 1 - URGENT_BLOCKS
                    and s.source.has(index)
                ]
                if not others:
                    continue
                best = scheduling.soonest(others, self.blockSize)
                # Still to wait for it, by the first source's rate: when
                # that is past, it lags behind even that.
                left = None if expected is None else expected - (now - asked)
                if (
                    left is None
                    or left <= 0
                    or scheduling.eta(best, self.blockSize) < left
                ):
                    self.ask(best.key, index)

    def _untrack(self, state: SourceState, index: int) -> defer.Deferred[bytes] | None:
        """
        Forget C{state}'s request for block C{index}; its Deferred, if it
        was still outstanding.
        """
        entry = state.inflight.pop(index, None)
        if entry is None:
            return None
        count = self.inflight[index] - 1
        if count:
            self.inflight[index] = count
        else:
            del self.inflight[index]
        return entry[0]

    def _answered(self, data: bytes, state: SourceState, index: int) -> None:
        now = self.clock.seconds()
        issued = state.inflight[index][1] if index in state.inflight else now
        self._untrack(state, index)
        elapsed = now - max(issued, state.lastProgress)
        if elapsed > 0:
            state.rate = scheduling.measured(state.rate, len(data), elapsed)
        state.lastProgress = now
        state.silences = 0
        if index in self.inflight:
            self.cancel((index,))
        self.arrived(state, index, data)

    def _failed(self, reason: Failure, state: SourceState, index: int) -> None:
        self._untrack(state, index)
        if not reason.check(defer.CancelledError):
            self.refused(reason, state, index)
