"""
Tests for L{p2pd.store.eviction}: which cached segments go first.
"""

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.store.eviction import (
    GHOST_ENTRIES,
    HOT_READS,
    MIN_TURNOVER,
    MOVES_PER_VICTIM,
    S3FIFO,
    EvictionPolicy,
    HotFilesS3FIFO,
    Segment,
    newPolicy,
)

SIZE = 100


def never(segment: Segment) -> bool:
    return False


def evict(
    policy: EvictionPolicy, count: int, pinned: Callable[[Segment], bool] = never
) -> list[Segment]:
    """
    Pull up to C{count} victims and forget them, as the store does.
    """
    evicted = []
    for segment in policy.victims(pinned):
        evicted.append(segment)
        if len(evicted) == count:
            break
    for segment in evicted:
        policy.forget(segment)
    return evicted


def segments(count: int, key: str = "film") -> list[Segment]:
    return [(key, index) for index in range(count)]


class S3FIFOTests(SynchronousTestCase):
    """
    The S3-FIFO policy, one behaviour at a time.
    """

    def test_newSegmentsLeaveInOrder(self) -> None:
        """
        Segments stored once and never read again leave first in, first
        out.
        """
        policy = S3FIFO(10 * SIZE)
        for segment in segments(5):
            policy.touch(segment, SIZE)
        self.assertEqual(evict(policy, 3), segments(3))
        self.assertEqual(len(policy), 2)

    def test_readSegmentStays(self) -> None:
        """
        A segment read again after it was stored goes to the main queue and
        outlives the segments stored after it but never read.
        """
        policy = S3FIFO(10 * SIZE)
        for segment in segments(5):
            policy.touch(segment, SIZE)
        policy.touch(("film", 0), SIZE)
        self.assertEqual(evict(policy, 3), segments(4)[1:])
        self.assertIn(("film", 0), policy)

    def test_growingIsNotARead(self) -> None:
        """
        A touch that finds a segment larger (blocks stored in it) does not
        count as a read: the segment still leaves first.
        """
        policy = S3FIFO(10 * SIZE)
        policy.touch(("film", 0), SIZE // 2)
        policy.touch(("film", 1), SIZE)
        policy.touch(("film", 0), SIZE)
        self.assertEqual(evict(policy, 1), [("film", 0)])

    def test_ghostGoesToMain(self) -> None:
        """
        A segment evicted unread and stored again soon after enters the
        main queue: it outlives segments new to the cache.
        """
        policy = S3FIFO(10 * SIZE)
        policy.touch(("old", 0), SIZE)
        self.assertEqual(evict(policy, 1), [("old", 0)])
        self.assertEqual(policy.ghosts, 1)
        policy.touch(("old", 0), SIZE)
        for segment in segments(3):
            policy.touch(segment, SIZE)
        # The small queue is over its share until two have left.
        self.assertEqual(evict(policy, 4), segments(2) + [("old", 0), ("film", 2)])
        self.assertEqual(policy.ghosts, 3)

    def test_mainReinsertsReadSegments(self) -> None:
        """
        In the main queue a segment read since it last reached the head is
        put back at the tail, so an unread one behind it goes first.
        """
        policy = S3FIFO(10 * SIZE)
        for segment in segments(4):
            policy.touch(segment, SIZE)
        policy.touch(("film", 0), SIZE)
        policy.touch(("film", 1), SIZE)
        # 0 and 1 move on to the main queue, 2 leaves the small one.
        self.assertEqual(evict(policy, 1), [("film", 2)])
        policy.touch(("film", 0), SIZE)
        self.assertEqual(evict(policy, 1), [("film", 1)])
        self.assertEqual(evict(policy, 1), [("film", 0)])

    def test_smallQueueFirstWhenOverItsShare(self) -> None:
        """
        While the small queue holds more than its share of the capacity,
        victims come from it even if the main queue holds older segments.
        """
        policy = S3FIFO(10 * SIZE)
        policy.touch(("main", 0), SIZE)
        policy.touch(("main", 0), SIZE)
        policy.touch(("new", 0), SIZE)
        policy.touch(("new", 1), SIZE)
        # ("main", 0) moves on to the main queue on the way.
        self.assertEqual(evict(policy, 1), [("new", 0)])
        policy.touch(("new", 2), SIZE)
        self.assertEqual(evict(policy, 1), [("new", 1)])
        self.assertEqual(evict(policy, 1), [("main", 0)])

    def test_pinnedNeverReturned(self) -> None:
        """
        A pinned segment is skipped, and once everything left is pinned the
        victims run out instead of going round for ever.
        """
        policy = S3FIFO(10 * SIZE)
        for segment in segments(4):
            policy.touch(segment, SIZE)
        policy.touch(("film", 3), SIZE)
        pins = {("film", 0), ("film", 2)}
        evicted = evict(policy, 10, pins.__contains__)
        self.assertEqual(evicted, [("film", 1), ("film", 3)])
        self.assertIn(("film", 0), policy)
        self.assertIn(("film", 2), policy)
        self.assertEqual(len(policy), 2)

    def test_forget(self) -> None:
        """
        A forgotten segment is no longer held or offered; forgetting an
        unknown one changes nothing.
        """
        policy = S3FIFO(10 * SIZE)
        policy.touch(("film", 0), SIZE)
        policy.touch(("film", 1), SIZE)
        policy.forget(("film", 0))
        policy.forget(("other", 7))
        self.assertNotIn(("film", 0), policy)
        self.assertIn(("film", 1), policy)
        self.assertEqual(evict(policy, 10), [("film", 1)])
        self.assertEqual(len(policy), 0)

    def test_ghostEntriesBounded(self) -> None:
        """
        However many segments are evicted, the ghost queue keeps at most
        C{GHOST_ENTRIES} keys.
        """
        policy = S3FIFO(10**15)
        for segment in segments(GHOST_ENTRIES + 1):
            policy.touch(segment, SIZE)
        evict(policy, GHOST_ENTRIES + 1)
        self.assertEqual(policy.ghosts, GHOST_ENTRIES)
        # The oldest key went: that segment comes back as a new one, to
        # the small queue, the next one to the main queue.
        policy.touch(("film", 0), SIZE)
        policy.touch(("film", 1), SIZE)
        self.assertEqual(evict(policy, 2), [("film", 1), ("film", 0)])

    def test_ghostBytesBounded(self) -> None:
        """
        The ghost queue remembers no more bytes than the main queue's share
        of the capacity.
        """
        policy = S3FIFO(10 * SIZE)
        for segment in segments(20):
            policy.touch(segment, SIZE)
        evict(policy, 20)
        self.assertEqual(policy.ghosts, 9)

    def test_movesPerVictimBounded(self) -> None:
        """
        However many segments have reads left, one victim costs at most
        C{MOVES_PER_VICTIM} moves: then the next segment met goes.
        """
        count = 2 * MOVES_PER_VICTIM
        policy = S3FIFO(10 * SIZE)
        for segment in segments(count):
            policy.touch(segment, SIZE)
            policy.touch(segment, SIZE)
        self.assertEqual(evict(policy, 1), [("film", MOVES_PER_VICTIM)])
        self.assertEqual(len(policy), count - 1)


class HotFilesTests(SynchronousTestCase):
    """
    p2pd's policy: S3-FIFO keeping the segments of files watched lately.
    """

    def heat(self, policy: S3FIFO, key: str, reads: int) -> None:
        """
        Read C{key}'s first segment C{reads} times (stored by the first).
        """
        for _ in range(reads):
            policy.touch((key, 0), SIZE)

    def test_newPolicy(self) -> None:
        """
        The policy p2pd uses is S3-FIFO keeping hot files.
        """
        self.assertIsInstance(newPolicy(SIZE), HotFilesS3FIFO)

    def test_hotFileMovesOn(self) -> None:
        """
        A segment of a file whose first segment was read C{HOT_READS}
        times moves on to the main queue unread; a cold file's is evicted.
        """
        policy = HotFilesS3FIFO(10 * SIZE)
        self.heat(policy, "hot", HOT_READS)
        self.heat(policy, "cold", HOT_READS - 1)
        self.assertEqual(policy.heat("hot"), HOT_READS)
        self.assertEqual(policy.heat("cold"), HOT_READS - 1)
        policy.touch(("hot", 5), SIZE)
        for index in (5, 6, 7):
            policy.touch(("cold", index), SIZE)
        self.assertEqual(evict(policy, 2), [("cold", 0), ("cold", 5)])
        self.assertIn(("hot", 5), policy)

    def test_storingIsNotARead(self) -> None:
        """
        Blocks stored in a file's first segment (the segment growing) do
        not warm the file.
        """
        policy = HotFilesS3FIFO(10 * SIZE)
        for size in range(1, 5):
            policy.touch(("film", 0), size)
        self.assertEqual(policy.heat("film"), 1)

    def test_hotFileSparedOnceInMain(self) -> None:
        """
        At the main queue's head with its reads used up, a hot file's
        segment goes back to the tail once; a cold file's goes.
        """
        policy = HotFilesS3FIFO(10 * SIZE)
        self.heat(policy, "hot", HOT_READS)
        policy.touch(("cold", 1), SIZE)
        policy.touch(("cold", 1), SIZE)
        policy.touch(("cold", 2), SIZE)
        # ("hot", 0) then ("cold", 1) move on to the main queue, unread
        # there; the hot one is spared.
        self.assertEqual(evict(policy, 1), [("cold", 1)])
        self.assertEqual(evict(policy, 1), [("hot", 0)])

    def test_readRenewsTheSpare(self) -> None:
        """
        A hot file's segment read again after it was spared may be spared
        again.
        """
        policy = HotFilesS3FIFO(10 * SIZE)
        self.heat(policy, "hot", HOT_READS)
        for index in (1, 2):
            policy.touch(("cold", index), SIZE)
            policy.touch(("cold", index), SIZE)
        policy.touch(("cold", 3), SIZE)
        self.assertEqual(evict(policy, 1), [("cold", 1)])
        policy.touch(("hot", 0), SIZE)
        # Kept for the read, then spared again: ("cold", 2) goes first.
        self.assertEqual(evict(policy, 1), [("cold", 2)])

    def test_turnoverCools(self) -> None:
        """
        Counts are halved each time the touches reach the number of
        segments held (at least C{MIN_TURNOVER}), and a file counting 1 at a
        halving is dropped: a film no longer watched cools down.
        """
        policy = HotFilesS3FIFO(10**9)
        self.heat(policy, "film", 4)
        self.assertEqual(policy.heat("film"), 4)
        heats = []
        for index in range(3 * MIN_TURNOVER):
            policy.touch(("other", index % 10), SIZE)
            heats.append(policy.heat("film"))
        self.assertEqual(heats, sorted(heats, reverse=True))
        self.assertEqual(sorted(set(heats), reverse=True), [4, 2, 1, 0])

    def test_storingDoesNotCool(self) -> None:
        """
        Blocks stored in a segment held, one touch each, do not count
        towards a halving: only visits do.
        """
        policy = HotFilesS3FIFO(10**9)
        self.heat(policy, "film", 4)
        policy.touch(("other", 1), 1)
        for size in range(2, 4 * MIN_TURNOVER):
            policy.touch(("other", 1), size)
        self.assertEqual(policy.heat("film"), 4)

    def test_countsBounded(self) -> None:
        """
        Files read once are dropped at the next halving: the counts kept
        follow the files watched lately (at most one per touch since the
        last halving, and those still counting 2 or more), not every file
        ever seen.
        """
        policy = HotFilesS3FIFO(10**9)
        for index in range(1000):
            policy.touch((f"film{index}", 0), SIZE)
        # All but those before the first halving (at MIN_TURNOVER touches).
        self.assertEqual(policy.counted, 1000 - MIN_TURNOVER)
        for index in range(2000):
            policy.touch(("other", 1 + index % 10), SIZE)
        self.assertEqual(policy.counted, 0)


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("touch"),
            st.integers(0, 3),
            st.integers(0, 20),
            st.integers(1, 3 * SIZE),
        ),
        st.tuples(st.just("forget"), st.integers(0, 3), st.integers(0, 20)),
        st.tuples(st.just("pin"), st.integers(0, 3), st.integers(0, 20)),
    ),
    max_size=300,
)


class S3FIFOPropertyTests(SynchronousTestCase):
    """
    Random sequences of touches, forgets and pins, with the store's loop
    evicting down to the capacity after every touch.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        operations, st.integers(1, 20 * SIZE), st.sampled_from([S3FIFO, HotFilesS3FIFO])
    )
    def test_storeLoop(self, ops, capacity, kind) -> None:
        """
        Victims are held and unpinned, each offered once per pass; the
        store stays within its capacity unless all it holds is pinned; the
        policy tracks exactly what the store holds; the ghost queue stays
        within its bounds.
        """
        policy = kind(capacity)
        held: dict[Segment, int] = {}
        pins: set[Segment] = set()
        for op in ops:
            segment = (f"file{op[1]}", op[2])
            if op[0] == "touch":
                policy.touch(segment, op[3])
                held[segment] = op[3]
                used = sum(held.values())
                evicted: list[Segment] = []
                for victim in policy.victims(pins.__contains__):
                    self.assertIn(victim, held)
                    self.assertNotIn(victim, pins)
                    self.assertNotIn(victim, evicted)
                    evicted.append(victim)
                    used -= held[victim]
                    if used <= capacity:
                        break
                for victim in evicted:
                    policy.forget(victim)
                    del held[victim]
                if used > capacity:
                    self.assertLessEqual(set(held), pins)
            elif op[0] == "forget":
                policy.forget(segment)
                held.pop(segment, None)
            else:
                pins ^= {segment}
            self.assertEqual(len(policy), len(held))
            for key in held:
                self.assertIn(key, policy)
            self.assertLessEqual(policy.ghosts, GHOST_ENTRIES)
