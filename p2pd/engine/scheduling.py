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
  - L{readahead}, L{originReach}: how far ahead of its readers a download
    fetches, and asks the origin, from the readers' rates; L{pipeline}: how
    many requests a source may have in flight, from its rate.
  - L{unwanted}: requests to cancel; L{measured}: a source's rate;
    L{eta}: when a source should deliver one more block.

Peers are preferred; the origin (and mirrors) serve what no peer holds and
anything urgent. The origin's uplink is the swarm's scarce resource: once
readers' rates are known, with peers about, a block no peer holds is asked
of the origin only within L{ORIGIN_SECONDS} of a reader (its reach), and
the rest of the read-ahead (L{READAHEAD_SECONDS} of each reader) waits for
peers. Urgent blocks go to the peer holding them that should deliver them
soonest (L{eta}), to the origin only when no peer holds them; a block a
reader waits for is asked of a second source when the first lags (see
L{p2pd.engine.sources}); within the origin's reach, a block held only by
peers too busy for it (by their rates) goes to the origin if it should
deliver it sooner, else to the soonest of those peers. While the node
may still find peers, blocks only an origin holds are asked for only when
urgent. Once it has stopped looking, each such block waits a random while
(up to L{ORIGIN_DELAY}) when peers are about, so nodes reading in step do
not all ask the origin for the same block; then they are drawn in random
order, so such nodes fetch different blocks and trade them.
"""

import math
import random
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

# How far ahead of a reader blocks are fetched: this many seconds at the
# rate its player takes them, at most READAHEAD_BYTES (all of it until the
# rate is known).
READAHEAD_SECONDS = 20.0
READAHEAD_BYTES = 16 * 1024 * 1024
# Once every reader's rate is known and peers are about, a block no peer
# holds is asked of the origin only this many seconds ahead of a reader:
# the origin's uplink is the swarm's scarce resource, and peers fetch the
# rest from each other.
ORIGIN_SECONDS = 4.0
# The origin's reach, in blocks, for a reader whose rate is not known yet.
COLD_REACH = 8
# Blocks this close to a reader are urgent: asked for at once, past a
# source's pipeline, and of the origin though a peer may yet offer them.
URGENT_BLOCKS = 4
# The head and tail of a file fetched early: this many bytes at each end,
# at most EDGE_MAX_BLOCKS blocks.
EDGE_BYTES = 512 * 1024
EDGE_MAX_BLOCKS = 4
# Requests a source may have in flight, besides urgent ones: a second's
# worth at its measured rate, from PIPELINE_MIN to PIPELINE (PIPELINE until
# the rate is known). More would only queue at its uplink, in front of the
# blocks this node will need next.
PIPELINE = 8
PIPELINE_MIN = 2
PIPELINE_SECONDS = 1.0
# Blocks that are not urgent are given to a source only once this many of
# its pipeline are free, all in one pass: fewer, larger writes.
REQUEST_BATCH = 4
# A block a reader has waited for this long is asked of a second source
# too, if one should deliver it sooner than the first (which lags); a source
# whose rate is not known yet is taken to send a block in this time.
LAG_MIN = 1.0
# A source that sends nothing for this long has its requests asked again
# of others; after MAX_SILENCES such silences in a row it is dropped.
SOURCE_TIMEOUT = 10.0
MAX_SILENCES = 3
# An urgent block goes to an origin rather than a peer only when the
# origin should deliver it this many times sooner.
ORIGIN_FACTOR = 2.0
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
    @ivar pipeline: the requests it may have in flight (L{pipeline}).
    """

    key: K
    authoritative: bool
    has: Callable[[int], bool]
    inflight: int
    rate: float
    pipeline: int = PIPELINE


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
    @ivar blockSize: the file's block size.
    @ivar originReach: blocks no peer holds are asked of an origin only at
        an urgency below this (L{ORIGIN_SECONDS}), when peers are about;
        None: at any.
    """

    wanted: Sequence[tuple[int, int]]
    busy: Callable[[int], bool]
    sources: Sequence[Source[K]]
    searching: bool
    now: float
    originAfter: Mapping[int, float]
    due: float | None
    originReach: int | None = None
    blockSize: int = 1 << 18


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
    reach = state.originReach
    peers = [s for s in sources if not s.authoritative]
    free = {s: s.pipeline - s.inflight for s in sources}
    # Blocks that are not urgent go to a source only in batches.
    room = {s: n if n >= min(REQUEST_BATCH, s.pipeline) else 0 for s, n in free.items()}
    anyRoom = any(room.values())
    originOnly: list[int] = []
    blockSize = state.blockSize

    def delivery(s: Source[K]) -> float:
        # L{eta}, counting the requests this pass gave it.
        return eta(s, blockSize, s.pipeline - free[s])

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
            # Urgent blocks are asked for at once, of the peer holding them
            # that should deliver them soonest (the origin when none holds
            # them: it is the scarce resource, and a block a reader ends up
            # waiting for is asked of it too if the peer lags), and may go
            # past a source's pipeline, so the head and tail fetched early
            # never delay the block a player waits for.
            need = 1 - URGENT_BLOCKS
            candidates = [
                s for s in (holders or sources) if free[s] >= need and s.has(index)
            ]
            if candidates:
                candidates = [min(candidates, key=delivery)]
        elif holders:
            # A busy peer is still preferred to the origin, except within
            # the origin's reach: there a block goes to the peer that
            # should deliver it soonest if that is before the reader gets
            # there, else to the origin, rather than wait for peers whose
            # uplinks are full (as their measured rates say).
            candidates = [s for s in holders if room[s] > 0]
            if not candidates and reach is not None and urgency < reach:
                # A peer whose rate is not known yet gets the block when it
                # has room; the origin gets it only if it should deliver it
                # sooner than the best peer (its time counted double).
                best = min(holders, key=delivery)
                if best.rate and delivery(best) <= urgency * ORIGIN_SECONDS / reach:
                    candidates = [best]
                elif best.rate:
                    # Not while the node searches: more peers may come.
                    candidates = [
                        s
                        for s in sources
                        if s.authoritative
                        and not searching
                        and room[s] > 0
                        and delivery(s) < delivery(best)
                    ] or [best]
        else:
            if reach is not None and urgency >= reach and peers:
                # Too far ahead for the origin: a peer may fetch it first.
                continue
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
            source = min(candidates, key=delivery)
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


def readahead(rate: float | None, blockSize: int) -> int:
    """
    How many blocks ahead of a reader taking C{rate} bytes per second
    (None: not known yet) are fetched: L{READAHEAD_SECONDS} of it, never
    more than L{READAHEAD_BYTES}.
    """
    most = max(URGENT_BLOCKS + 1, READAHEAD_BYTES // blockSize)
    if rate is None:
        return most
    return max(
        URGENT_BLOCKS + 1, min(most, math.ceil(rate * READAHEAD_SECONDS / blockSize))
    )


def originReach(rates: Iterable[float | None], blockSize: int) -> int:
    """
    How far ahead of its readers, taking C{rates} bytes per second each
    (None: not known yet, taken as L{COLD_REACH} blocks), a download asks
    an origin for blocks no peer holds (L{State.originReach}).
    """
    reach = URGENT_BLOCKS
    for rate in rates:
        if rate is None:
            reach = max(reach, COLD_REACH)
        else:
            reach = max(reach, math.ceil(rate * ORIGIN_SECONDS / blockSize))
    return reach


def pipeline(rate: float, blockSize: int) -> int:
    """
    The requests a source sending C{rate} bytes per second may have in
    flight (L{PIPELINE_SECONDS} of blocks).
    """
    if not rate:
        return PIPELINE
    blocks = round(rate * PIPELINE_SECONDS / blockSize)
    return min(PIPELINE, max(PIPELINE_MIN, blocks))


def eta(source: Source[K], blockSize: int, inflight: int | None = None) -> float:
    """
    When C{source} should deliver one more block, in seconds: after those
    asked of it already (C{inflight}, by default its L{Source.inflight}),
    at its measured rate (at one block per L{LAG_MIN} while that is not
    known). An origin's time counts L{ORIGIN_FACTOR} times: its uplink is
    the swarm's scarce resource.
    """
    rate = source.rate or blockSize / LAG_MIN
    if inflight is None:
        inflight = source.inflight
    seconds = (inflight + 1) * blockSize / rate
    return seconds * ORIGIN_FACTOR if source.authoritative else seconds


def soonest(sources: Iterable[Source[K]], blockSize: int) -> Source[K]:
    """
    The source that should deliver one more block soonest (L{eta}; the
    first of equals).
    """
    return min(sources, key=lambda s: eta(s, blockSize))


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
