# -*- test-case-name: tests.unit.test_download -*-
"""
The sources a download uses: added, lost, and dropped when they fail
requests, announce blocks they cannot serve, lag or fall silent. A source
that lags has the block a reader waits for asked of another
(L{Sources.relieve}); one silent for a while has its requests asked again.
"""

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pd.core.errors import ErrorCode, errorCode
from p2pd.core.meta import FileMeta
from p2pd.engine.interfaces import ISource
from p2pd.engine.reading import Reader
from p2pd.engine.scheduling import MAX_SILENCES
from p2pd.engine.sources import Sources, SourceState

# How often sources are checked for lagging.
CHECK_INTERVAL = 0.5
# A peer that cannot serve this many blocks it announced is dropped.
MAX_MISSES = 8


class Sourcing:
    """
    The part of L{p2pd.engine.download.Download} that keeps its sources. The
    download's C{__init__} sets the state named here.
    """

    _log: Logger
    meta: FileMeta
    clock: IReactorTime
    _sources: Sources
    readers: set[Reader]
    _banned: set[str]
    _closed: bool
    _timer: IDelayedCall | None
    # Of the download's other parts.
    schedule: Callable[[], None]
    _scheduleSoon: Callable[[], None]
    fail: Callable[[Failure], None]

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

    def _refused(self, reason: Failure, state: SourceState, index: int) -> None:
        """
        C{state}'s source failed its request for block C{index}.
        """
        if errorCode(reason) == ErrorCode.UNAVAILABLE:
            # Not asked for it again: another source is.
            state.source.unavailable(index)
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

    # -- lagging sources

    def _armTimer(self) -> None:
        busy = any(s.inflight for s in self._sources)
        if busy and self._timer is None:
            self._timer = self.clock.callLater(CHECK_INTERVAL, self._check)

    def _check(self) -> None:
        """
        Ask the blocks readers wait for of a second source when the first
        lags; drop sources silent too long.
        """
        self._timer = None
        waited = {r.block for r in self.readers if r.waiting}
        self._sources.relieve(self.clock.seconds(), waited, self._silent)
        self.schedule()
        self._armTimer()

    def _silent(self, state: SourceState, quiet: float) -> None:
        self.dropSource(
            state.source, f"no data for {quiet:.0f} s, {MAX_SILENCES} times in a row"
        )
