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
        smallSkips = mainSkips = 0
        while True:
            smallOpen = smallSkips < len(self._small)
            mainOpen = mainSkips < len(self._main)
            if smallOpen and (self._smallBytes > self._smallTarget or not mainOpen):
                segment, entry = self._small.popitem(last=False)
                if pinned(segment):
                    self._small[segment] = entry
                    smallSkips += 1
                elif entry.frequency > 0:
                    entry.frequency = 0
                    self._smallBytes -= entry.size
                    self._main[segment] = entry
                    self._mainBytes += entry.size
                else:
                    self._smallBytes -= entry.size
                    self._remember(segment, entry.size)
                    smallSkips = mainSkips = 0
                    yield segment
            elif mainOpen:
                segment, entry = self._main.popitem(last=False)
                if pinned(segment):
                    self._main[segment] = entry
                    mainSkips += 1
                elif entry.frequency > 0:
                    entry.frequency -= 1
                    self._main[segment] = entry
                else:
                    self._mainBytes -= entry.size
                    smallSkips = mainSkips = 0
                    yield segment
            else:
                return

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


def newPolicy(capacity: int) -> EvictionPolicy:
    """
    The policy p2pd uses, for a cache of C{capacity} bytes.
    """
    return S3FIFO(capacity)
