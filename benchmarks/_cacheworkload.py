"""
The workloads of benchmarks/cache.py: viewings (a viewer playing one film
once) over a catalogue of films, as a trace of segment requests, seeded.

The catalogue holds C{titles} films (400 by default), of sizes spread evenly on a log scale
from 100 MB to 4 GB, asked for by Zipf popularity (exponent ZIPF over
their ranks). Viewers arrive one every ARRIVAL seconds on average (a
Poisson process) and play at BITRATE, so a segment of p2pd's eviction unit
(SEGMENT_BLOCKS blocks of 256 KiB, 4 MiB) lasts about 7 s, and the
viewings under way interleave their requests as they would in time. Each
viewing first reads the first and the last segment (players probe a
file's end), then, by kind:

  - sampler (SAMPLERS of them): plays from the start and leaves, after an
    exponentially distributed share of the film (mean SAMPLE_SHARE);
  - seeker (SEEKERS): plays from the start a while, then seeks 1 to 4
    times to a uniformly random point and plays a while there (each
    stretch of mean SAMPLE_SHARE / 2);
  - the rest: plays the film to its end.

With churn, a new film arrives every C{viewings / (titles * CHURN_SHARE)}
viewings (30 by default) at a random rank among the top tenth, pushing
every film below it one rank down; the last one retires. New films start
popular and fade as later ones push them down: over a run, CHURN_SHARE of
the catalogue is replaced.

A request is one viewing reading one whole segment. The cache sizes of the
benchmark are shares of the catalogue's bytes: those of the films that can
be asked at a moment (for churn, their mean over the run).
"""

import bisect
import heapq
import math
import random
from dataclasses import dataclass, field

BLOCK = 256 * 1024
SEGMENT_BLOCKS = 16
SEGMENT = SEGMENT_BLOCKS * BLOCK
MB = 1000 * 1000
SMALLEST = 100 * MB
LARGEST = 4000 * MB
ZIPF = 0.8
ARRIVAL = 10.0
BITRATE = 5 * 1000 * 1000
SEGMENT_SECONDS = SEGMENT * 8 / BITRATE
SAMPLERS = 0.5
SEEKERS = 0.35
SAMPLE_SHARE = 0.1
CHURN_SHARE = 0.5
# An identifier of a segment for libcachesim: film * SEGMENTS_PER_FILM +
# segment (a 4 GB film has 954 segments).
SEGMENTS_PER_FILM = 1024


@dataclass
class Trace:
    """
    A workload's requests, in order: each segment's key as the store knows
    it, an integer identifier (for libcachesim), and its bytes; and the
    size of each film asked for.
    """

    name: str
    keys: list[tuple[str, int]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    fileSizes: dict[str, int] = field(default_factory=dict)
    catalogueBytes: int = 0
    films: int = 0
    viewings: int = 0

    @property
    def requestedBytes(self) -> int:
        return sum(self.sizes)


def filmSize(rng: random.Random) -> int:
    return int(math.exp(rng.uniform(math.log(SMALLEST), math.log(LARGEST))))


def segmentsOf(size: int) -> int:
    return -(-size // SEGMENT)


def plan(rng: random.Random, segments: int) -> list[int]:
    """
    The segments one viewing reads, in order.
    """
    last = segments - 1

    def stretch(start: int, share: float) -> list[int]:
        length = 1 + int(rng.expovariate(1 / share) * segments)
        return list(range(start, min(start + length, segments)))

    kind = rng.random()
    reads = [0, last] if last else [0]
    if kind < SAMPLERS:
        reads += stretch(1, SAMPLE_SHARE)
    elif kind < SAMPLERS + SEEKERS:
        reads += stretch(1, SAMPLE_SHARE / 2)
        for _ in range(rng.randint(1, 4)):
            reads += stretch(rng.randrange(segments), SAMPLE_SHARE / 2)
    else:
        reads += range(1, segments)
    return reads


def makeTrace(
    churn: bool, titles: int = 400, viewings: int = 6000, seed: int = 1
) -> Trace:
    """
    The trace of C{viewings} viewings over C{titles} films, with
    or without popularity churn.
    """
    rng = random.Random(seed)
    trace = Trace("churn" if churn else "static", viewings=viewings)
    sizes: list[int] = []
    ranked = list(range(titles))
    for _ in range(titles):
        sizes.append(filmSize(rng))
    weights = [1 / (rank + 1) ** ZIPF for rank in range(titles)]
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    churnEvery = max(1, int(viewings / (titles * CHURN_SHARE))) if churn else 0
    liveBytes = sum(sizes)
    liveSum = 0
    keys: dict[int, tuple[str, int]] = {}
    # Events: (time, order, film, the viewing's reads, the next one).
    events: list[tuple[float, int, int, list[int], int]] = []
    now = 0.0
    for number in range(viewings):
        now += rng.expovariate(1 / ARRIVAL)
        if churn and number and number % churnEvery == 0:
            sizes.append(filmSize(rng))
            retired = ranked.pop()
            liveBytes += sizes[-1] - sizes[retired]
            ranked.insert(rng.randrange(titles // 10), len(sizes) - 1)
        liveSum += liveBytes
        rank = bisect.bisect(cumulative, rng.random() * total)
        film = ranked[min(rank, titles - 1)]
        reads = plan(rng, segmentsOf(sizes[film]))
        heapq.heappush(events, (now, number, film, reads, 0))
        # Play every viewing due before the next arrival.
        while events and (number == viewings - 1 or events[0][0] <= now):
            when, order, playing, reads, position = heapq.heappop(events)
            index = reads[position]
            identifier = playing * SEGMENTS_PER_FILM + index
            key = keys.get(identifier)
            if key is None:
                key = keys[identifier] = (f"film{playing}", index)
                trace.fileSizes[key[0]] = sizes[playing]
            trace.keys.append(key)
            trace.ids.append(identifier)
            size = sizes[playing]
            trace.sizes.append(min(SEGMENT, size - index * SEGMENT))
            if position + 1 < len(reads):
                nextAt = when + (SEGMENT_SECONDS if position else 0.0)
                heapq.heappush(events, (nextAt, order, playing, reads, position + 1))
    trace.catalogueBytes = liveSum // viewings
    trace.films = len(sizes)
    return trace
