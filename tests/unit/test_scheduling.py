"""
Tests for L{p2pd.engine.scheduling}: the policy on its own, as tables of
situations and the requests they call for, and as properties that hold in
any situation.
"""

import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.engine import scheduling
from p2pd.engine.scheduling import (
    ORIGIN_DELAY,
    PIPELINE,
    REQUEST_BATCH,
    URGENT_BLOCKS,
    Ask,
    Hold,
    Source,
    State,
    plan,
)

NOW = 100.0
BLOCK_SIZE = 1 << 18


def source(
    name: str,
    holds: Sequence[int] | None = None,
    inflight: int = 0,
    rate: float = 0.0,
    pipeline: int = PIPELINE,
) -> Source[str]:
    """
    An origin (holding every block) when C{holds} is None, else a peer.
    """
    held = set(holds or ())
    return Source(
        name,
        holds is None,
        (lambda i: True) if holds is None else held.__contains__,
        inflight,
        rate,
        pipeline,
    )


def run(
    sources: Sequence[Source[str]],
    wanted: Sequence[tuple[int, int]],
    busy: Sequence[int] = (),
    searching: bool = False,
    originAfter: dict[int, float] | None = None,
    seed: int = 0,
    due: float | None = None,
    originReach: int | None = None,
    blockSize: int = BLOCK_SIZE,
) -> list[Ask[str] | Hold]:
    state = State(
        wanted,
        set(busy).__contains__,
        sources,
        searching,
        NOW,
        originAfter or {},
        due,
        originReach,
        blockSize,
    )
    return list(plan(state, random.Random(seed)))


def ahead(first: int, count: int) -> list[tuple[int, int]]:
    """
    What one reader at block C{first} wants: C{count} blocks.
    """
    return [(i, first + i) for i in range(count)]


def asks(steps: Sequence[Ask[str] | Hold]) -> list[tuple[str, int]]:
    return [(s.source, s.block) for s in steps if isinstance(s, Ask)]


class PlanTableTests(SynchronousTestCase):
    """
    Situations, and the requests L{plan} makes in each.
    """

    def test_table(self) -> None:
        """
        Each row's sources, wanted blocks and flags give exactly its
        requests, in its order.
        """
        everything = range(100)
        rows: list[tuple[str, dict[str, object], list[tuple[str, int]]]] = [
            (
                "searching, origin only: only the urgent blocks",
                dict(sources=[source("o")], wanted=ahead(10, 20), searching=True),
                [("o", 10), ("o", 11), ("o", 12), ("o", 13)],
            ),
            (
                "blocks here or asked for are skipped",
                dict(
                    sources=[source("o")],
                    wanted=ahead(10, 6),
                    busy=[10, 12],
                    searching=True,
                ),
                [("o", 11), ("o", 13)],
            ),
            (
                "urgent blocks go past a full pipeline, up to URGENT_BLOCKS",
                dict(
                    sources=[source("o", inflight=PIPELINE + 2)],
                    wanted=ahead(0, 4),
                    searching=True,
                ),
                [("o", 0), ("o", 1)],
            ),
            (
                "a peer holding a block is preferred to the origin, even urgent",
                dict(
                    sources=[source("o", rate=1e9), source("p", holds=[1, 5])],
                    wanted=ahead(0, 6),
                    searching=True,
                ),
                [("o", 0), ("p", 1), ("o", 2), ("o", 3), ("p", 5)],
            ),
            (
                "the fastest of the peers that hold it",
                dict(
                    sources=[
                        source("slow", holds=everything, rate=10),
                        source("fast", holds=everything, rate=20),
                    ],
                    wanted=[(0, 0)],
                ),
                [("fast", 0)],
            ),
            (
                "no blocks read ahead to a peer with fewer than REQUEST_BATCH free",
                dict(
                    sources=[
                        source("p", holds=everything, inflight=PIPELINE - 3),
                    ],
                    wanted=[(URGENT_BLOCKS, 50), (URGENT_BLOCKS + 1, 51)],
                ),
                [],
            ),
            (
                "blocks read ahead to a peer with REQUEST_BATCH free, that many",
                dict(
                    sources=[
                        source("p", holds=everything, inflight=PIPELINE - 4),
                    ],
                    wanted=[(URGENT_BLOCKS + i, 50 + i) for i in range(6)],
                ),
                [("p", 50), ("p", 51), ("p", 52), ("p", 53)],
            ),
            (
                "the origin's room, and no peers: blocks drawn at random",
                dict(
                    sources=[source("o", inflight=PIPELINE - 4)],
                    wanted=[(URGENT_BLOCKS + i, 50 + i) for i in range(6)],
                ),
                [("o", 53), ("o", 55), ("o", 50), ("o", 51)],
            ),
            (
                "an urgent block a peer holds goes to a peer, even a slow one:"
                " a second source is asked only if the reader waits for it",
                dict(
                    sources=[source("o", rate=1e6), source("p", holds=[0], rate=1e5)],
                    wanted=ahead(0, 1),
                ),
                [("p", 0)],
            ),
            (
                "an urgent block no peer holds goes to the origin",
                dict(
                    sources=[source("o", rate=1e6), source("p", holds=[], rate=1e7)],
                    wanted=ahead(0, 1),
                ),
                [("o", 0)],
            ),
            (
                "an urgent block goes to the peer with the fewest asked of it,"
                " at equal rates",
                dict(
                    sources=[
                        source("p1", holds=[0], inflight=3, rate=1e6),
                        source("p2", holds=[0], inflight=1, rate=1e6),
                    ],
                    wanted=ahead(0, 1),
                ),
                [("p2", 0)],
            ),
            (
                "beyond the origin's reach, a block no peer holds waits for one",
                dict(
                    sources=[source("o"), source("p", holds=[])],
                    wanted=[(5, 20), (4, 19)],
                    originAfter={19: NOW - 1, 20: NOW - 1},
                    originReach=5,
                ),
                [("o", 19)],
            ),
            (
                "within the origin's reach, a block held by peers too busy for"
                " it (by their rates) goes to the origin",
                dict(
                    sources=[
                        source("o", rate=1e6),
                        source("p", holds=[10], inflight=PIPELINE, rate=1e4),
                    ],
                    wanted=[(4, 10)],
                    originReach=8,
                ),
                [("o", 10)],
            ),
            (
                "within the origin's reach, a busy peer that should still"
                " deliver in time gets it past its pipeline",
                dict(
                    sources=[
                        source("o", rate=1e6),
                        source("p", holds=[10], inflight=PIPELINE, rate=1e7),
                    ],
                    wanted=[(4, 10)],
                    originReach=8,
                ),
                [("p", 10)],
            ),
            (
                "within the origin's reach, a block held by busy peers goes to"
                " the soonest of them when the origin would be later still",
                dict(
                    sources=[
                        source("o", inflight=PIPELINE - 4, rate=1e5),
                        source("p", holds=[10], inflight=PIPELINE, rate=1e6),
                    ],
                    wanted=[(4, 10)],
                    originReach=8,
                ),
                [("p", 10)],
            ),
            (
                "a busy peer whose rate is not known yet waits for room",
                dict(
                    sources=[
                        source("o", rate=1e6),
                        source("p", holds=[10], inflight=PIPELINE),
                    ],
                    wanted=[(4, 10)],
                    originReach=8,
                ),
                [],
            ),
            (
                "a source's own pipeline bounds what is read ahead",
                dict(
                    sources=[source("o", pipeline=2)],
                    wanted=[(URGENT_BLOCKS + i, 50 + i) for i in range(6)],
                ),
                [("o", 53), ("o", 55)],
            ),
            (
                "a block only the origin holds waits its turn, with peers about",
                dict(
                    sources=[source("o"), source("p", holds=[60])],
                    wanted=[(URGENT_BLOCKS, 59), (URGENT_BLOCKS + 1, 60)],
                    originAfter={59: NOW - 1},
                ),
                [("p", 60), ("o", 59)],
            ),
        ]
        for name, arguments, expected in rows:
            with self.subTest(name):
                self.assertEqual(asks(run(**arguments)), expected)  # type: ignore[arg-type]

    def test_originWaits(self) -> None:
        """
        With peers about and none holding it, a block that is not urgent is
        held back for a random while of at most ORIGIN_DELAY, drawn once:
        the download remembers it, plans again then unless a pass is due
        before, and asks the origin once it is over.
        """
        sources = [source("o"), source("p", holds=[])]
        wanted = [(URGENT_BLOCKS, 70)]
        steps = run(sources, wanted, seed=3)
        until = NOW + random.Random(3).uniform(0, ORIGIN_DELAY)
        self.assertEqual(steps, [Hold(70, until)])
        self.assertEqual(
            run(sources, wanted, originAfter={70: until}), [Hold(70, until)]
        )
        self.assertEqual(
            run(sources, wanted, originAfter={70: until}, due=until - 0.1), []
        )
        self.assertEqual(run(sources, wanted, originAfter={70: NOW}), [Ask("o", 70)])

    def test_lazy(self) -> None:
        """
        Steps not taken draw nothing from the random generator: a download
        that stops after the first request (it was answered at once) finds
        the generator where it was.
        """
        rng = random.Random(4)
        state = State(
            ahead(0, 10), set().__contains__, [source("o")], False, NOW, {}, None
        )
        before = rng.getstate()
        self.assertEqual(next(plan(state, rng)), Ask("o", 0))
        self.assertEqual(rng.getstate(), before)


class WantedTests(SynchronousTestCase):
    """
    What readers want.
    """

    def test_oneReader(self) -> None:
        """
        One reader: the blocks ahead of it by distance, then the head and
        tail at URGENT_BLOCKS; kept, the same blocks.
        """
        wants = scheduling.wanted([(10, 13)], [0, 99], 1 << 20, 4, False, False)
        self.assertEqual(
            wants.order, [(0, 10), (1, 11), (2, 12), (3, 13), (4, 0), (4, 99)]
        )
        self.assertEqual(wants.kept, {0, 10, 11, 12, 13, 99})

    def test_unstored(self) -> None:
        """
        While the store refuses blocks: only memoryBlocks ahead of each
        reader, no head and tail, but the read-ahead asked for before kept.
        """
        wants = scheduling.wanted([(10, 90)], [0, 99], 1 << 20, 2, True, False)
        self.assertEqual(wants.order, [(0, 10), (1, 11)])
        self.assertEqual(wants.kept, set(range(10, 26)))

    def test_deserted(self) -> None:
        """
        With no readers left, nothing is wanted, not even the head and tail.
        """
        wants = scheduling.wanted([], [0, 99], 1 << 20, 4, False, True)
        self.assertEqual((wants.order, wants.kept), ([], frozenset()))

    @given(
        st.lists(
            st.tuples(st.integers(0, 60), st.integers(0, 60)).map(sorted),
            max_size=4,
        ),
        st.sampled_from([16 * 1024, 1 << 20, 4 << 20]),
        st.booleans(),
    )
    def test_fromScratch(
        self, readers: list[list[int]], blockSize: int, unstored: bool
    ) -> None:
        """
        For any readers, each block comes once, at the least distance from
        a reader's block, within the read-ahead (or memory) window.
        """
        edges = scheduling.headAndTail(61, blockSize)
        pairs = [(first, last) for first, last in readers]
        wants = scheduling.wanted(pairs, edges, blockSize, 3, unstored, False)
        window = (
            3
            if unstored
            else max(URGENT_BLOCKS + 1, scheduling.READAHEAD_BYTES // blockSize)
        )
        urgency: dict[int, int] = {}
        for first, last in pairs:
            for index in range(first, min(last, first + window - 1) + 1):
                distance = index - first
                urgency[index] = min(urgency.get(index, distance), distance)
        for index in [] if unstored else edges:
            urgency.setdefault(index, URGENT_BLOCKS)
        self.assertEqual(wants.order, sorted((u, i) for i, u in urgency.items()))
        self.assertTrue({i for _, i in wants.order} <= wants.kept)


class PolicyTests(SynchronousTestCase):
    """
    The smaller rules.
    """

    def test_headAndTail(self) -> None:
        """
        EDGE_BYTES at each end, at most EDGE_MAX_BLOCKS blocks, at least
        one; a small file's blocks once each.
        """
        self.assertEqual(scheduling.headAndTail(100, 1 << 20), [0, 99])
        self.assertEqual(
            scheduling.headAndTail(100, 16 * 1024), [0, 1, 2, 3, 96, 97, 98, 99]
        )
        self.assertEqual(scheduling.headAndTail(3, 16 * 1024), [0, 1, 2])

    def test_unwanted(self) -> None:
        """
        Requests for blocks no longer kept, or already here, are cancelled.
        """
        self.assertEqual(
            scheduling.unwanted([1, 2, 3, 4], {2, 3, 4}, lambda i: i == 3), [1, 3]
        )

    def test_readahead(self) -> None:
        """
        READAHEAD_SECONDS at a reader's rate, at least URGENT_BLOCKS + 1
        blocks, at most READAHEAD_BYTES; READAHEAD_BYTES while the rate is
        not known.
        """
        self.assertEqual(
            scheduling.readahead(None, 1 << 18), scheduling.READAHEAD_BYTES >> 18
        )
        rate = 340_000.0
        self.assertEqual(
            scheduling.readahead(rate, 1 << 18),
            -(-rate * scheduling.READAHEAD_SECONDS // (1 << 18)),
        )
        self.assertEqual(scheduling.readahead(1.0, 1 << 18), URGENT_BLOCKS + 1)
        self.assertEqual(
            scheduling.readahead(1e9, 1 << 18), scheduling.READAHEAD_BYTES >> 18
        )

    def test_originReach(self) -> None:
        """
        ORIGIN_SECONDS at the fastest reader's rate, at least URGENT_BLOCKS;
        COLD_REACH for a reader whose rate is not known.
        """
        blocks = scheduling.ORIGIN_SECONDS * 1e6 / (1 << 18)
        self.assertEqual(scheduling.originReach([1e6, 1e5], 1 << 18), -(-blocks // 1))
        self.assertEqual(scheduling.originReach([1.0], 1 << 18), URGENT_BLOCKS)
        self.assertEqual(
            scheduling.originReach([1.0, None], 1 << 18), scheduling.COLD_REACH
        )
        self.assertEqual(scheduling.originReach([], 1 << 18), URGENT_BLOCKS)

    def test_pipeline(self) -> None:
        """
        PIPELINE_SECONDS of blocks at a source's rate, from PIPELINE_MIN to
        PIPELINE; PIPELINE while the rate is not known.
        """
        block = 1 << 18
        self.assertEqual(scheduling.pipeline(0.0, block), PIPELINE)
        self.assertEqual(scheduling.pipeline(1e3, block), scheduling.PIPELINE_MIN)
        self.assertEqual(scheduling.pipeline(5 * block, block), 5)
        self.assertEqual(scheduling.pipeline(1e9, block), PIPELINE)

    def test_eta(self) -> None:
        """
        A source delivers its next block after those asked of it, at its
        rate (one block per LAG_MIN when not known), an origin's time
        counted ORIGIN_FACTOR times.
        """
        block = 1 << 18
        peer = source("p", holds=[], inflight=3, rate=block)
        self.assertEqual(scheduling.eta(peer, block), 4.0)
        self.assertEqual(scheduling.eta(peer, block, 0), 1.0)
        unknown = source("p", holds=[])
        self.assertEqual(scheduling.eta(unknown, block), scheduling.LAG_MIN)
        origin = source("o", rate=block)
        self.assertEqual(scheduling.eta(origin, block), scheduling.ORIGIN_FACTOR)


@st.composite
def situations(draw: st.DrawFn) -> tuple[State[str], int]:
    """
    Any sources, wanted blocks, busy blocks and flags; and a seed.
    """
    blocks = 40
    count = draw(st.integers(0, 4))
    sources = []
    for n in range(count):
        holds = None
        if not draw(st.booleans()):
            holds = sorted(draw(st.sets(st.integers(0, blocks - 1))))
        inflight = draw(st.integers(0, PIPELINE + URGENT_BLOCKS))
        rate = draw(st.sampled_from([0.0, 1e3, 1e6, 1e8]))
        pipeline = draw(st.integers(scheduling.PIPELINE_MIN, PIPELINE))
        sources.append(source(f"s{n}", holds, inflight, rate, pipeline))
    indexes = draw(st.lists(st.integers(0, blocks - 1), unique=True, max_size=30))
    wanted = sorted((draw(st.integers(0, 8)), i) for i in indexes)
    busy = draw(st.sets(st.integers(0, blocks - 1)))
    after = draw(
        st.dictionaries(st.integers(0, blocks - 1), st.floats(NOW - 3, NOW + 3))
    )
    due = draw(st.none() | st.floats(NOW, NOW + 3))
    reach = draw(st.none() | st.integers(URGENT_BLOCKS, 10))
    state = State(
        wanted,
        busy.__contains__,
        sources,
        draw(st.booleans()),
        NOW,
        after,
        due,
        reach,
        BLOCK_SIZE,
    )
    return state, draw(st.integers(0, 1000))


class PlanPropertyTests(SynchronousTestCase):
    """
    What holds of L{plan} in any situation.
    """

    @settings(deadline=None, max_examples=300)
    @given(situations())
    def test_properties(self, situation: tuple[State[str], int]) -> None:
        """
        Each request is for a wanted block not busy, of a source that holds
        it, once; no source goes past its pipeline but for urgent blocks,
        nor past URGENT_BLOCKS more, or for a block within the origin's
        reach to a peer whose rate says it delivers in time; blocks read
        ahead go otherwise only to a source with REQUEST_BATCH (or its
        pipeline) free, and to an origin never while the node searches,
        never beyond its reach with peers about, and when a peer holds
        them only within its reach; holds only with peers about.
        """
        state, seed = situation
        steps = list(plan(state, random.Random(seed)))
        byName = {s.key: s for s in state.sources}
        urgency = {i: u for u, i in state.wanted}
        peers = [s for s in state.sources if not s.authoritative]
        asked: list[int] = []
        added = {name: 0 for name in byName}
        for step in steps:
            if isinstance(step, Hold):
                self.assertTrue(peers and not state.searching)
                self.assertNotIn(step.block, asked)
                continue
            s, index = byName[step.source], step.block
            self.assertIn(index, urgency)
            self.assertFalse(state.busy(index))
            self.assertTrue(s.has(index))
            self.assertNotIn(index, asked)
            asked.append(index)
            added[s.key] += 1
            inflight = s.inflight + added[s.key]
            u = urgency[index]
            if u < URGENT_BLOCKS:
                self.assertLessEqual(inflight, s.pipeline + URGENT_BLOCKS)
                continue
            reach = state.originReach
            within = reach is not None and u < reach
            batch = min(REQUEST_BATCH, s.pipeline)
            if inflight > s.pipeline or s.pipeline - s.inflight < batch:
                self.assertTrue(within and not s.authoritative and s.rate)
                continue
            if s.authoritative:
                self.assertFalse(state.searching)
                if reach is not None and peers:
                    self.assertLess(u, reach)
                if any(p.has(index) for p in peers):
                    self.assertTrue(within)
