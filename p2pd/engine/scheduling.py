# -*- test-case-name: tests.unit.test_scheduling -*-
"""
The scheduling policy of a download: which blocks to ask of which source.

Pure functions of a download's state, read and changed here alone; the
download (L{p2pd.engine.download}) gathers the state, sends what they ask
and keeps its books.

  - L{wanted}: the blocks readers want, most urgent first: those just ahead
    of each reader (urgency = how many blocks ahead), then the file's head
    and tail (players probe both), at urgency L{URGENT_BLOCKS}.
  - L{plan}: given what is wanted, what is already here or asked for, and
    each source's pipeline, holdings and measured rate, the requests to
    send, in order.
  - L{unwanted}: requests to cancel; L{measured}: a source's rate;
    L{lagging}: sources too slow for the urgent blocks they were asked for.

Peers are preferred; the origin (and mirrors) serve what no peer holds and
anything urgent. While the node may still find peers, blocks only an origin
holds are asked for only when urgent. Once it has stopped looking, each such
block waits a random while (up to L{ORIGIN_DELAY}) when peers are about, so
nodes reading in step do not all ask the origin for the same block; then
they are drawn in random order, so such nodes fetch different blocks and
trade them.
"""

import random
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

# How far ahead of a reader blocks are fetched.
READAHEAD_BYTES = 16 * 1024 * 1024
# Blocks this close to a reader are urgent: asked for at once, past a
# source's pipeline, and of the origin though a peer may yet offer them.
URGENT_BLOCKS = 4
# The head and tail of a file fetched early: this many bytes at each end,
# at most EDGE_MAX_BLOCKS blocks.
EDGE_BYTES = 512 * 1024
EDGE_MAX_BLOCKS = 4
# Requests a source may have in flight, besides urgent ones.
PIPELINE = 8
# Blocks that are not urgent are given to a source only once this many of
# its pipeline are free, all in one pass: fewer, larger writes.
REQUEST_BATCH = 4
# A source lags when it has sent nothing for 4 blocks' time at its measured
# rate, and at least LAG_MIN seconds: its urgent blocks are asked of another.
LAG_MIN = 1.0
# A source that sends nothing for this long is dropped.
SOURCE_TIMEOUT = 10.0
# The longest a block only the origin holds waits for a peer to offer it.
ORIGIN_DELAY = 2.0

K = TypeVar("K")


@dataclass(frozen=True)
class Wants:
    """
    What readers want.

    @ivar order: C{(urgency, block)} pairs, most urgent first, each block
        once, held or not.
    @ivar kept: the blocks kept in memory for readers when the store
        refuses them (and requests for which are not cancelled): those in
        C{order}, and while the store refuses blocks, those asked for before
        up to L{READAHEAD_BYTES} ahead.
    """

    order: list[tuple[int, int]]
    kept: frozenset[int]


def headAndTail(blocks: int, blockSize: int) -> list[int]:
    """
    The head and tail of a file of C{blocks} blocks, fetched early.
    """
    edge = min(EDGE_MAX_BLOCKS, max(1, EDGE_BYTES // blockSize))
    return list(range(min(edge, blocks))) + list(
        range(max(edge, blocks - edge), blocks)
    )


def wanted(
    readers: Sequence[tuple[int, int]],
    edges: Sequence[int],
    blockSize: int,
    memoryBlocks: int,
    unstored: bool,
    deserted: bool,
) -> Wants:
    """
    What C{readers}, C{(first block, last block)} each, want, with the
    file's C{edges}.

    While the store refuses blocks (C{unstored}), what is fetched must stay
    in memory until read: only C{memoryBlocks} ahead of each reader, and no
    edges; blocks further ahead asked for before are still taken and kept,
    not asked for again later. A C{deserted} download (every reader closed)
    fetches no edges either.
    """
    readahead = max(URGENT_BLOCKS + 1, READAHEAD_BYTES // blockSize)
    if unstored or deserted:
        window, edges = memoryBlocks, []
    else:
        window = readahead
    if len(readers) == 1:
        # One reader, the usual case: its blocks are in order already.
        first, last = readers[0]
        last = min(last, first + window - 1)
        order = [(index - first, index) for index in range(first, last + 1)]
        extra = [(URGENT_BLOCKS, i) for i in edges if not first <= i <= last]
        if extra:
            order = sorted(order + extra)
    else:
        urgency: dict[int, int] = {}
        for first, last in readers:
            last = min(last, first + window - 1)
            for distance, index in enumerate(range(first, last + 1)):
                if distance < urgency.get(index, distance + 1):
                    urgency[index] = distance
        for index in edges:
            urgency.setdefault(index, URGENT_BLOCKS)
        order = sorted((u, i) for i, u in urgency.items())
    kept = {i for _, i in order}
    if unstored:
        for first, last in readers:
            kept.update(range(first, min(last + 1, first + readahead)))
    return Wants(order, frozenset(kept))


@dataclass(eq=False, slots=True)
class Source(Generic[K]):
    """
    What scheduling knows of one source.

    @ivar key: what a request names the source by.
    @ivar authoritative: an origin or mirror (which holds every block).
    @ivar has: whether it holds a block.
    @ivar inflight: how many of its requests are in flight.
    @ivar rate: the bytes per second it has been sending (0 until known).
    """

    key: K
    authoritative: bool
    has: Callable[[int], bool]
    inflight: int
    rate: float


@dataclass(frozen=True)
class State(Generic[K]):
    """
    A download's state, as one scheduling pass sees it.

    @ivar wanted: C{(urgency, block)} pairs, most urgent first, each block
        once (L{Wants.order}).
    @ivar busy: whether a block needs no request: held, being verified, or
        asked for already.
    @ivar searching: whether the node may still find more sources.
    @ivar originAfter: when each block only an origin holds may be asked of
        it (drawn by earlier passes).
    @ivar due: when the next pass is set to run, if it is.
    """

    wanted: Sequence[tuple[int, int]]
    busy: Callable[[int], bool]
    sources: Sequence[Source[K]]
    searching: bool
    now: float
    originAfter: Mapping[int, float]
    due: float | None


class Ask(NamedTuple, Generic[K]):
    """
    Ask source C{source} for block C{block}.
    """

    source: K
    block: int


class Hold(NamedTuple):
    """
    Block C{block} is for the origin only from C{until}: the download
    remembers it, and plans again then (unless a pass is due before).
    """

    block: int
    until: float


def plan(state: State[K], rng: random.Random) -> Iterator[Ask[K] | Hold]:
    """
    The requests to send now, in the order to send them.

    Lazy: a download that sees the world change as it sends (a source that
    answers at once) stops taking steps and plans again, and the steps not
    taken have drawn nothing from C{rng}.
    """
    sources, busy, searching = state.sources, state.busy, state.searching
    now, originAfter, due = state.now, state.originAfter, state.due
    peers = [s for s in sources if not s.authoritative]
    free = {s: PIPELINE - s.inflight for s in sources}
    # Blocks that are not urgent go to a source only in batches.
    batch = min(REQUEST_BATCH, PIPELINE)
    room = {s: n if n >= batch else 0 for s, n in free.items()}
    anyRoom = any(room.values())
    originOnly: list[int] = []
    for urgency, index in state.wanted:
        urgent = urgency < URGENT_BLOCKS
        if not (urgent or (anyRoom and not searching) or peers):
            # Only origins, and none with room or peers may yet be found:
            # nothing more to ask now.
            break
        if busy(index):
            continue
        holders = [s for s in peers if s.has(index)] if peers else peers
        if urgent:
            # Urgent blocks are asked for at once, and may go past a
            # source's pipeline, so the head and tail fetched early never
            # delay the block a player waits for.
            need = 1 - URGENT_BLOCKS
            candidates = [
                s for s in (holders or sources) if free[s] >= need and s.has(index)
            ]
        elif holders:
            # A busy peer is still preferred to the origin: if it lags, the
            # lag check asks someone else.
            candidates = [s for s in holders if room[s] > 0]
        else:
            if not searching and any(s.has(index) for s in sources):
                if not peers:
                    originOnly.append(index)
                    continue
                after = originAfter.get(index)
                drawn = after is None
                if after is None:
                    after = now + rng.uniform(0, ORIGIN_DELAY)
                if after <= now:
                    if drawn:
                        yield Hold(index, after)
                    originOnly.append(index)
                elif drawn or due is None or after < due:
                    # Remembered, and a pass then, unless one is due before.
                    yield Hold(index, after)
                    if due is None or after < due:
                        due = after
            continue
        if candidates:
            source = fastest(candidates)
            yield Ask(source.key, index)
            free[source] -= 1
            room[source] = max(0, room[source] - 1)
            anyRoom = any(room.values())
    # Blocks only an origin holds, in random order; only as many are drawn
    # as the origins have room for.
    slots = sum(room[s] for s in sources if s.authoritative)
    if slots < len(originOnly):
        originOnly = rng.sample(originOnly, slots)
    else:
        rng.shuffle(originOnly)
    for index in originOnly:
        holders = [s for s in sources if room[s] > 0 and s.has(index)]
        if holders:
            source = fastest(holders)
            yield Ask(source.key, index)
            room[source] -= 1


def fastest(sources: Iterable[Source[K]]) -> Source[K]:
    """
    The source with the best measured rate (the first of equals).
    """
    return max(sources, key=lambda s: s.rate)


def unwanted(
    inflight: Iterable[int], kept: Container[int], have: Callable[[int], bool]
) -> list[int]:
    """
    The blocks in flight to cancel: no reader wants them any more (a player
    closed its connection, or seeked elsewhere), or they are here already.
    """
    return [i for i in inflight if i not in kept or have(i)]


def measured(rate: float, size: int, elapsed: float) -> float:
    """
    A source's rate, in bytes per second, once it has sent C{size} bytes in
    C{elapsed} seconds: a moving average, the first sample taken as is.
    """
    sample = size / elapsed
    return sample if not rate else 0.7 * rate + 0.3 * sample


def lagging(quiet: float, rate: float, blockSize: int) -> bool:
    """
    Whether a source that has sent nothing for C{quiet} seconds lags, at
    its measured C{rate}.
    """
    expected = blockSize / rate if rate else 0.0
    return quiet >= max(LAG_MIN, 4 * expected)
