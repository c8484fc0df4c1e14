# -*- test-case-name: tests.unit.test_cachelimit -*-
"""
The disk cache's limit (C{-C}): what the cache holds, charged in bytes as
the disk allocates them, and segments evicted before a store would pass the
limit.

What is charged, each file's bytes rounded up to L{ALLOCATION}:

  - every block held, its length (blocks start on a multiple of it), and
    L{EXTENT_BYTES} for where the file system maps it: a sparse file with
    holes punched in it needs more room for its map than a whole one
    (ext4: 12 bytes per run of blocks, in 4 KiB blocks);
  - every version, L{VERSION_OVERHEAD} (its two directories, C{meta.json},
    the first block of the map of its sparse C{data}), its journal, and
    the pages of its C{digests} file written.

The unit of eviction is a segment, L{SEGMENT_BLOCKS} blocks of one version;
which to evict first is L{p2pd.store.eviction.newPolicy}'s choice. Never
evicted: a segment a pin holds (a player reads it, or will soon:
L{VersionAccount.pin}), and the segment a store is making room for. The
first and last segment of each version are passed over, up to
L{EDGE_PASSES} of them per eviction, so a file's head and tail stay longer
than its middle.

Eviction runs inside the store that needs the room, and evicts what that
store needs and L{AHEAD_BYTES} of room ahead (at most 1/L{AHEAD_SHARE} of
the limit): a few segments, so each reactor turn does bounded work. An
evicted segment's bytes stay charged until its hole is punched
(L{p2pd.store.freeing}, in a thread while the node runs), so the disk never
holds more than the limit; the room made ahead lets the next stores fit
while the holes are punched, and a store that comes before they are is
refused, as when the cache is full of pinned blocks. When a restart finds
more than the limit on disk, everything over it is evicted before the node
serves.
"""

from collections.abc import Callable

from twisted.logger import Logger

from p2pd.store.eviction import SEGMENT_BLOCKS, Segment, newPolicy

ALLOCATION = 4096
VERSION_OVERHEAD = 4 * ALLOCATION
EXTENT_BYTES = 16
# How many heads and tails of versions one eviction passes over (each then
# waits another round of the policy's queue) before it evicts them too.
EDGE_PASSES = 64
# The room a store makes ahead for those after it, while the holes it
# punched are freed (blocks stored meanwhile, at the disk's pace), and the
# most of the limit that may be.
AHEAD_BYTES = 32 * 1024 * 1024
AHEAD_SHARE = 32

# Whether any of blocks C{first} to C{end - 1} of a version is pinned.
Pin = Callable[[int, int], bool]


def allocated(length: int) -> int:
    """
    The bytes the disk takes for C{length} bytes: whole allocation units.
    """
    return -(-length // ALLOCATION) * ALLOCATION


class VersionAccount:
    """
    One cached version's charges, pins and segments, in its L{CacheLimit}.
    """

    def __init__(self, limit: "CacheLimit", key: str, blocks: int) -> None:
        self.limit = limit
        self.key = key
        self.lastSegment = max(0, blocks - 1) // SEGMENT_BLOCKS
        self.metadataBytes = 0
        self.digestsBytes = 0
        self.segments: dict[int, int] = {}
        self.pins: list[Pin] = []
        self._lastRead = -1
        # Whether some of its blocks were evicted.
        self.evicted = False
        # Whether it is still charged (a version removed is not).
        self.live = True
        # Segments evicted whose holes are not punched yet.
        self.unpunched: set[int] = set()
        # What a version removed while holes were punched in it still
        # takes on disk, until the last one is: the punches hold its file.
        self.keptUntilFreed = 0

    def room(self, need: int, index: int | None = None) -> bool:
        """
        Evict until C{need} more bytes fit in the limit, never the segment
        of block C{index} of this version; whether they fit.
        """
        keep = None if index is None else (self.key, index // SEGMENT_BLOCKS)
        return self.limit.makeRoom(need, keep)

    def stored(self, index: int, length: int) -> None:
        """
        Block C{index}, of C{length} bytes, is held now.
        """
        self._change(index // SEGMENT_BLOCKS, allocated(length) + EXTENT_BYTES)

    def forgotten(self, index: int, length: int) -> None:
        """
        Block C{index}, of C{length} bytes, is not held any more.
        """
        self._change(index // SEGMENT_BLOCKS, -allocated(length) - EXTENT_BYTES)

    def beingFreed(self, index: int) -> bool:
        """
        Whether block C{index} was evicted and its hole is not punched yet:
        it must not be stored again until it is.
        """
        return index // SEGMENT_BLOCKS in self.unpunched

    def read(self, index: int) -> None:
        """
        Block C{index} was read: its segment is worth more, once per visit
        (a reader moving into it), not once per block.
        """
        segment = index // SEGMENT_BLOCKS
        size = self.segments.get(segment)
        if segment == self._lastRead or size is None:
            return
        self._lastRead = segment
        if self.limit.policy is not None:
            self.limit.policy.touch((self.key, segment), size)

    def files(self, journalSize: int, digestsBytes: int) -> None:
        """
        The version's journal is C{journalSize} bytes long, and its digests
        take C{digestsBytes}: charge its metadata.
        """
        if not self.live:
            return
        self.digestsBytes = digestsBytes
        size = VERSION_OVERHEAD + allocated(journalSize) + digestsBytes
        self.limit.used += size - self.metadataBytes
        self.metadataBytes = size

    def pin(self, pinned: Pin) -> None:
        """
        Never evict the segments C{pinned} says are pinned, until
        L{unpin}ned.
        """
        self.pins.append(pinned)

    def unpin(self, pinned: Pin) -> None:
        self.pins.remove(pinned)

    def isEdge(self, segment: int) -> bool:
        """
        Whether C{segment} is the first or last of the version.
        """
        return segment in (0, self.lastSegment)

    def pinned(self, segment: int) -> bool:
        first = segment * SEGMENT_BLOCKS
        return any(pin(first, first + SEGMENT_BLOCKS) for pin in self.pins)

    def _change(self, segment: int, delta: int) -> None:
        if not self.live:
            return
        size = self.segments.get(segment, 0) + delta
        self.limit.used += delta
        policy = self.limit.policy
        if size > 0:
            self.segments[segment] = size
            if policy is not None:
                policy.touch((self.key, segment), size)
        else:
            self.segments.pop(segment, None)
            if policy is not None:
                policy.forget((self.key, segment))


class _Pinned:
    """
    Which segments one eviction pass must pass over: C{keep}, the pinned
    ones, and the first C{edges} heads or tails of versions it meets (then
    they may go too: the work of one eviction stays bounded however many
    files the cache holds).
    """

    def __init__(
        self, versions: dict[str, VersionAccount], keep: Segment | None, edges: int
    ) -> None:
        self._versions = versions
        self._keep = keep
        self._edgesLeft = edges

    def __call__(self, segment: Segment) -> bool:
        account = self._versions.get(segment[0])
        if segment == self._keep or account is None:
            return segment == self._keep
        if account.pinned(segment[1]):
            return True
        if self._edgesLeft and account.isEdge(segment[1]):
            self._edgesLeft -= 1
            return True
        return False


class CacheLimit:
    """
    The bytes a cache holds, and at most C{capacity} of them (L{None}: no
    limit, nothing evicted).

    @param drop: frees a segment's blocks (journaled as gone first, then
        a hole punched), and says whether it could; it calls the function
        it is given once the hole is punched, and the segment's charges are
        then taken off here.
    @param emptied: called with a version's key when its last segment is
        evicted.
    @ivar used: the bytes charged now.
    @ivar freeing: the bytes of C{used} that holes still to be punched
        will free.
    @ivar accounts: the versions charged (and those opened, until closed),
        by key.
    """

    _log = Logger()

    def __init__(
        self,
        capacity: int | None,
        drop: Callable[[Segment, Callable[[], None]], bool],
        emptied: Callable[[str], None],
    ) -> None:
        self.capacity = capacity
        self.policy = None if capacity is None else newPolicy(capacity)
        self.used = 0
        self.freeing = 0
        # Whether the last store found no room, even once the holes being
        # punched are freed.
        self._full = False
        self._drop = drop
        self._emptied = emptied
        self.accounts: dict[str, VersionAccount] = {}

    def account(self, key: str, blocks: int) -> VersionAccount:
        """
        The account of the version C{key} of C{blocks} blocks, made if new.
        """
        account = self.accounts.get(key)
        if account is None:
            account = self.accounts[key] = VersionAccount(self, key, blocks)
        return account

    def remove(self, key: str) -> None:
        """
        The version C{key} is gone from the disk: nothing of it is charged
        but what holes still to be punched in it keep on disk.
        """
        account = self.accounts.pop(key, None)
        if account is None:
            return
        account.live = False
        held = 0
        for segment, size in account.segments.items():
            held += size
            if self.policy is not None:
                self.policy.forget((key, segment))
        self.used -= account.metadataBytes
        if account.unpunched:
            account.keptUntilFreed = held
            self.freeing += held
        else:
            self.used -= held

    def fits(self, need: int) -> bool:
        """
        Whether C{need} more bytes fit now.
        """
        return self.capacity is None or self.used + need <= self.capacity

    def _willFit(self, need: int) -> bool:
        """
        Whether C{need} more bytes fit once the holes being punched are.
        """
        return self.capacity is None or self.used - self.freeing + need <= self.capacity

    def makeRoom(self, need: int, keep: Segment | None = None) -> bool:
        """
        Evict segments until C{need} more bytes fit, and for a store
        (C{need} above 0) L{AHEAD_BYTES} more once the holes being punched
        are; never C{keep} nor a pinned one, the heads and tails of versions
        passed over L{EDGE_PASSES} times first. Whether C{need} fits now.
        """
        if self.capacity is None:
            return True
        ahead = min(AHEAD_BYTES, self.capacity // AHEAD_SHARE) if need else 0
        self._evictFor(need, ahead, keep)
        # Not even once the holes are punched: the rest is pinned.
        room = self._willFit(need)
        if room == self._full:
            self._full = not room
            if self._full:
                self._log.warn(
                    "the disk cache is full of pinned blocks ({used} of {capacity}"
                    " bytes): streaming from memory until room comes back",
                    used=self.used,
                    capacity=self.capacity,
                )
            else:
                self._log.info("the disk cache has room again")
        return self.fits(need)

    def _evictFor(self, need: int, ahead: int, keep: Segment | None) -> None:
        # Should the heads and tails passed over be all there is to evict,
        # a second pass takes them, for what the store needs alone.
        for edgePasses, wanted in ((EDGE_PASSES, need + ahead), (0, need)):
            if self._willFit(wanted) or self.policy is None:
                continue
            gone: list[Segment] = []
            for segment in self.policy.victims(
                _Pinned(self.accounts, keep, edgePasses)
            ):
                if self._evict(segment):
                    gone.append(segment)
                if self._willFit(wanted):
                    break
            for segment in gone:
                self.policy.forget(segment)

    def _evict(self, segment: Segment) -> bool:
        """
        Drop C{segment}, its charge taken off once its hole is punched;
        whether it was dropped.
        """
        key, number = segment
        account = self.accounts.get(key)
        if account is None or number not in account.segments:
            return True
        size = account.segments[number]
        # Counted before the drop: without a thread, the hole is punched
        # (and freed called) inside it.
        self.freeing += size
        account.unpunched.add(number)
        if not self._drop(segment, lambda: self._freed(account, number, size)):
            self.freeing -= size
            account.unpunched.discard(number)
            # Still held: tracked again.
            if self.policy is not None:
                self.policy.touch(segment, size)
            return False
        del account.segments[number]
        if not account.segments:
            self._emptied(key)
        return True

    def _freed(self, account: VersionAccount, number: int, size: int) -> None:
        """
        The hole of segment C{number} of C{account}'s version, C{size}
        bytes charged, is punched: take its charge off (and, that version
        removed meanwhile, what the punches kept of it).
        """
        account.unpunched.discard(number)
        released = size
        if not account.live and not account.unpunched:
            released += account.keptUntilFreed
            account.keptUntilFreed = 0
        self.freeing -= released
        self.used -= released
