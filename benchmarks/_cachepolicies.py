"""
The eviction policies benchmarks/cache.py compares p2pd's with, behind the
interface of p2pd/store/eviction.py (touch, forget, victims): plain LRU,
SIEVE (Zhang et al., NSDI 2024) and LFUDA (Squid's heap LFUDA), all in
bytes. The caller keeps the bytes; a policy only orders its segments.
A victim is untracked once yielded, as in p2pd's.
"""

import heapq
from collections import OrderedDict


class LRU:
    """
    Least recently used first.
    """

    def __init__(self, capacity):
        self._order = OrderedDict()

    def __len__(self):
        return len(self._order)

    def __contains__(self, segment):
        return segment in self._order

    def touch(self, segment, size):
        self._order[segment] = size
        self._order.move_to_end(segment)

    def forget(self, segment):
        self._order.pop(segment, None)

    def victims(self, pinned):
        skips = 0
        while skips < len(self._order):
            segment, size = self._order.popitem(last=False)
            if pinned(segment):
                self._order[segment] = size
                skips += 1
            else:
                skips = 0
                yield segment


class _Node:
    __slots__ = ("segment", "visited", "newer", "older")

    def __init__(self, segment):
        self.segment = segment
        self.visited = False
        self.newer = None
        self.older = None


class SIEVE:
    """
    SIEVE: a FIFO queue with a visited bit and a hand that walks from the
    oldest to the newest, clearing bits and evicting the first segment
    whose bit is clear; new segments enter at the newest end.
    """

    def __init__(self, capacity):
        self._nodes = {}
        self._newest = None
        self._oldest = None
        self._hand = None

    def __len__(self):
        return len(self._nodes)

    def __contains__(self, segment):
        return segment in self._nodes

    def touch(self, segment, size):
        node = self._nodes.get(segment)
        if node is not None:
            node.visited = True
            return
        node = self._nodes[segment] = _Node(segment)
        node.older = self._newest
        if self._newest is not None:
            self._newest.newer = node
        self._newest = node
        if self._oldest is None:
            self._oldest = node

    def forget(self, segment):
        node = self._nodes.pop(segment, None)
        if node is not None:
            self._unlink(node)

    def _unlink(self, node):
        if self._hand is node:
            self._hand = node.newer
        if node.older is not None:
            node.older.newer = node.newer
        else:
            self._oldest = node.newer
        if node.newer is not None:
            node.newer.older = node.older
        else:
            self._newest = node.older

    def victims(self, pinned):
        skips = 0
        while skips <= 2 * len(self._nodes) and self._nodes:
            node = self._hand or self._oldest
            self._hand = node.newer
            if pinned(node.segment):
                skips += 1
            elif node.visited:
                node.visited = False
                skips += 1
            else:
                skips = 0
                del self._nodes[node.segment]
                self._unlink(node)
                yield node.segment


class LFUDA:
    """
    Least frequently used with dynamic aging: a segment's priority is its
    reads plus the priority of the last victim when it was last read, and
    the lowest goes first (a heap, stale entries skipped and swept).
    """

    def __init__(self, capacity):
        self._entries = {}
        self._heap = []
        self._age = 0
        self._order = 0

    def __len__(self):
        return len(self._entries)

    def __contains__(self, segment):
        return segment in self._entries

    def touch(self, segment, size):
        entry = self._entries.get(segment)
        frequency = 1 if entry is None else entry[1] + 1
        self._push(segment, self._age + frequency, frequency)

    def _push(self, segment, priority, frequency):
        self._order += 1
        self._entries[segment] = (priority, frequency, self._order)
        heapq.heappush(self._heap, (priority, self._order, segment))
        if len(self._heap) > 2 * len(self._entries) + 64:
            self._heap = [
                (priority, order, key)
                for key, (priority, _, order) in self._entries.items()
            ]
            heapq.heapify(self._heap)

    def forget(self, segment):
        self._entries.pop(segment, None)

    def victims(self, pinned):
        skipped = []
        while self._heap:
            priority, order, segment = heapq.heappop(self._heap)
            entry = self._entries.get(segment)
            if entry is None or entry[2] != order:
                continue
            if pinned(segment):
                skipped.append((priority, order, segment))
                continue
            for item in skipped:
                heapq.heappush(self._heap, item)
            skipped = []
            del self._entries[segment]
            self._age = priority
            yield segment
        for item in skipped:
            heapq.heappush(self._heap, item)
