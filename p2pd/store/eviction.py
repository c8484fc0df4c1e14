# -*- test-case-name: tests.unit.test_eviction -*-
"""
Which cached segments go first when the cache is over its limit: the
eviction policy, pure (no I/O, no clock), so a benchmark can replay a
trace against it and a table test can drive it.

The unit is a segment, C{SEGMENT_BLOCKS} consecutive blocks of one file
version: fine enough that a film's unwatched middle goes before its
often-played start, coarse enough that the policy tracks thousands of
entries, not millions.

The policy is S3-FIFO (Yang et al., "FIFO queues are all you need for cache
eviction", SOSP 2023), in bytes: a small FIFO queue (C{SMALL_SHARE} of the
capacity) where new segments wait, a main FIFO queue for segments asked
for again, and a ghost queue remembering the keys recently evicted from the
small one. A segment read again while in the small queue moves to the main
one when it reaches the queue's head; one that leaves unread is evicted,
and its key goes to the ghost queue, so that a segment asked for again soon
after enters the main queue directly. In the main queue a segment read
since it last passed the head is put back at the tail, at most
C{MAX_FREQUENCY} times: one-hit wonders (a viewer sampling a film and
leaving) leave quickly and a popular start of a film stays.

p2pd adds what a viewing workload tells beyond single segments: every
viewer of a film reads its first segment, so how often that segment is read
lately says how hot the whole film is. A hot film's segments are kept as if
read once more (L{HotFilesS3FIFO}): a new film becoming popular, whose
middle is read once by each of its few first viewers, is kept before it
has been read twice, and one no longer watched cools down within a turnover
of the cache. On the benchmark's workloads (docs/performance.md, "The
cache's eviction policy") this is what keeps p2pd ahead of LRU when
popularity changes, where plain S3-FIFO falls back close to it.
"""

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

Segment = tuple[str, int]
"""The store's key of a file version, and the index of a segment in it."""

SEGMENT_BLOCKS = 16
"""Blocks per segment, the unit of eviction (4 MiB of 256 KiB blocks)."""

SMALL_SHARE = 0.1
"""The small queue's share of the capacity, in bytes (the paper's 10%)."""

MAX_FREQUENCY = 3
"""The most reads a segment's counter keeps (two bits, as in the paper)."""

HOT_READS = 2
"""
Reads of a file's first segment (counts halved at each turnover of the
cache) from which the file is hot.
"""

MIN_TURNOVER = 100
"""The fewest touches between two halvings, however few segments held."""

MOVES_PER_VICTIM = 256
"""
The most segments one victim may cost moving between or within the queues
(about 100 microseconds); past it the next unpinned one is the victim.
"""

GHOST_ENTRIES = 50_000
"""
The most keys the ghost queue remembers, whatever the capacity: about 4 MB
of memory. It also remembers no more bytes than the main queue's share of
the capacity, as in the paper.
"""


class EvictionPolicy(Protocol):
    """
    What the store needs of an eviction policy.
    """

    def touch(self, segment: Segment, size: int) -> None:
        """
        A segment was stored or read; C{size} is the bytes it holds now.
        Call it once per visit (a reader moving into the segment, blocks
        stored in it), not once per block: a touch that finds the segment
        held and no larger counts as one read.
        """

    def forget(self, segment: Segment) -> None:
        """
        The segment is gone (its file was removed); no-op if unknown.
        """

    def victims(self, pinned: Callable[[Segment], bool]) -> Iterator[Segment]:
        """
        Segments to evict, best first, never a pinned one; the caller pulls
        until it has freed enough and must then call C{forget()} on each it
        evicted. Bounded work per item pulled (no full scans).
        """

    def __len__(self) -> int: ...

    def __contains__(self, segment: object) -> bool: ...


@dataclass(slots=True)
class _Entry:
    size: int
    frequency: int = 0
    spared: bool = False
    """Kept at the main queue's head since last read, as a hot file's."""


class S3FIFO:
    """
    S3-FIFO in bytes (the module's docstring). A segment the iterator of
    L{victims} yields is no longer tracked from then on (its key is in the
    ghost queue); C{forget()} on it is a no-op, and a C{touch()} brings it
    back as a new segment.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._smallTarget = int(capacity * SMALL_SHARE)
        self._small: OrderedDict[Segment, _Entry] = OrderedDict()
        self._main: OrderedDict[Segment, _Entry] = OrderedDict()
        self._ghost: OrderedDict[Segment, int] = OrderedDict()
        self._smallBytes = 0
        self._mainBytes = 0
        self._ghostBytes = 0

    def __len__(self) -> int:
        return len(self._small) + len(self._main)

    def __contains__(self, segment: object) -> bool:
        return segment in self._small or segment in self._main

    @property
    def ghosts(self) -> int:
        """
        How many keys the ghost queue remembers.
        """
        return len(self._ghost)

    def touch(self, segment: Segment, size: int) -> None:
        entry = self._small.get(segment)
        if entry is not None:
            self._smallBytes += size - entry.size
        else:
            entry = self._main.get(segment)
            if entry is not None:
                self._mainBytes += size - entry.size
        if entry is not None:
            if size <= entry.size:
                entry.frequency = min(entry.frequency + 1, MAX_FREQUENCY)
                entry.spared = False
            entry.size = size
            return
        remembered = self._ghost.pop(segment, None)
        if remembered is not None:
            self._ghostBytes -= remembered
            self._main[segment] = _Entry(size)
            self._mainBytes += size
        else:
            self._small[segment] = _Entry(size)
            self._smallBytes += size

    def forget(self, segment: Segment) -> None:
        entry = self._small.pop(segment, None)
        if entry is not None:
            self._smallBytes -= entry.size
            return
        entry = self._main.pop(segment, None)
        if entry is not None:
            self._mainBytes -= entry.size

    def victims(self, pinned: Callable[[Segment], bool]) -> Iterator[Segment]:
        # Skips count the pinned segments met since the last victim, per
        # queue: once a queue has been gone round, it has nothing to give.
        # Moves count the segments moved on or put back: past MOVES_PER_VICTIM
        # the next one met goes, whatever its reads.
        smallSkips = mainSkips = moves = 0
        while True:
            smallOpen = smallSkips < len(self._small)
            mainOpen = mainSkips < len(self._main)
            patient = moves < MOVES_PER_VICTIM
            if smallOpen and (self._smallBytes > self._smallTarget or not mainOpen):
                segment, entry = self._small.popitem(last=False)
                if pinned(segment):
                    self._small[segment] = entry
                    smallSkips += 1
                elif patient and self._promote(segment, entry):
                    entry.frequency = 0
                    self._smallBytes -= entry.size
                    self._main[segment] = entry
                    self._mainBytes += entry.size
                    moves += 1
                else:
                    self._smallBytes -= entry.size
                    self._remember(segment, entry.size)
                    smallSkips = mainSkips = moves = 0
                    yield segment
            elif mainOpen:
                segment, entry = self._main.popitem(last=False)
                if pinned(segment):
                    self._main[segment] = entry
                    mainSkips += 1
                elif patient and self._keep(segment, entry):
                    self._main[segment] = entry
                    moves += 1
                else:
                    self._mainBytes -= entry.size
                    smallSkips = mainSkips = moves = 0
                    yield segment
            else:
                return

    def _promote(self, segment: Segment, entry: _Entry) -> bool:
        """
        Whether a segment leaving the small queue moves on to the main one
        (rather than being evicted): when it was read there.
        """
        return entry.frequency > 0

    def _keep(self, segment: Segment, entry: _Entry) -> bool:
        """
        Whether a segment at the main queue's head goes back to its tail
        (rather than being evicted): when read since it was last there, its
        count of reads going down by one.
        """
        if entry.frequency > 0:
            entry.frequency -= 1
            return True
        return False

    def _remember(self, segment: Segment, size: int) -> None:
        """
        Put C{segment} in the ghost queue, dropping its oldest keys to stay
        within its bounds.
        """
        self._ghost[segment] = size
        self._ghostBytes += size
        limit = self._capacity - self._smallTarget
        while len(self._ghost) > GHOST_ENTRIES or self._ghostBytes > limit:
            _, size = self._ghost.popitem(last=False)
            self._ghostBytes -= size


class HotFilesS3FIFO(S3FIFO):
    """
    S3-FIFO that also keeps the segments of the files watched most
    lately (the module's docstring): a file is hot while its first
    segment has been read at least C{HOT_READS} times, counts halved each
    time the visits (touches but those of blocks stored in a segment held)
    since the last halving reach the number of segments held or
    C{MIN_TURNOVER}, so a film no longer watched cools down within
    about one turnover of the cache. A hot file's segment leaving the
    small queue unread moves on to the main queue; one at the main queue's
    head with its reads used up goes back to the tail once more, until it
    is read again.

    Each touch adds at most one to the counts, and each halving halves
    their sum: at most twice as many files have a count as there are
    touches between two halvings, that is about twice the segments held (or
    C{MIN_TURNOVER}).
    """

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self._heat: dict[str, int] = {}
        self._touches = 0

    def touch(self, segment: Segment, size: int) -> None:
        entry = self._small.get(segment) or self._main.get(segment)
        # Blocks stored in a segment held are not a visit: the store touches
        # a segment for each.
        if entry is None or size <= entry.size:
            key, index = segment
            if index == 0:
                self._heat[key] = self._heat.get(key, 0) + 1
            self._touches += 1
            if self._touches >= max(len(self), MIN_TURNOVER):
                self._touches = 0
                self._heat = {k: n // 2 for k, n in self._heat.items() if n > 1}
        super().touch(segment, size)

    def heat(self, key: str) -> int:
        """
        The (halved) count of reads of file C{key}'s first segment.
        """
        return self._heat.get(key, 0)

    @property
    def counted(self) -> int:
        """
        How many files have a count.
        """
        return len(self._heat)

    def _promote(self, segment: Segment, entry: _Entry) -> bool:
        return entry.frequency > 0 or self.heat(segment[0]) >= HOT_READS

    def _keep(self, segment: Segment, entry: _Entry) -> bool:
        if super()._keep(segment, entry):
            return True
        if not entry.spared and self.heat(segment[0]) >= HOT_READS:
            entry.spared = True
            return True
        return False


def newPolicy(capacity: int) -> EvictionPolicy:
    """
    The policy p2pd uses, for a cache of C{capacity} bytes.
    """
    return HotFilesS3FIFO(capacity)
