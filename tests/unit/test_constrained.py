"""
Downloads on constrained links: whole swarms of L{Download}s in memory,
each node's uplink a fixed rate on a L{task.Clock}, each viewer a player
that starts once 2 s are buffered, reads at most 10 s ahead and stalls when
its buffer runs dry (the lab's player model, benchmarks/lab/player.py).

The uplink is the bottleneck, as on home links: one block goes out at a
time, the node's connections take turns, and each connection sends the
block nearest the start of the file first, an origin the blocks it has not
sent yet before those it has (as L{p2pd.spp.answering} does).
A block already going out when its request is cancelled goes out whole.

What is asserted: where each viewer's blocks came from, that no viewer
stalls when the swarm's upload suffices, and how many copies of what was
played the origin sent. Simulated time only decides the order of events;
nothing is asserted about how long anything took.
"""

import hashlib
import random
from collections.abc import Callable, Sequence

from twisted.internet import defer, task
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from p2pd.core.meta import FileMeta
from p2pd.core.peers import Peer
from p2pd.engine.download import Download
from p2pd.engine.interfaces import ISource
from p2pd.engine.reading import Reader

# Sizes as in the lab: 256 KiB blocks, a 2.75 Mbit/s stream.
BLOCK = 256 * 1024
BITRATE = 2.75e6 / 8
M = 1e6 / 8
FILE_BLOCKS = 72
# The player model's thresholds, in seconds of media.
START_SECONDS = 2.0
READ_AHEAD_SECONDS = 10.0
# One-way latency of every link, and the step the clock advances by.
LATENCY = 0.02
STEP = 0.05

CONTENT = random.Random(13).randbytes(FILE_BLOCKS * BLOCK - 1000)
META = FileMeta("spp://origin:1111/movie.ts", len(CONTENT), BLOCK, "sha256", "v1")
DIGESTS = [
    hashlib.sha256(CONTENT[i * BLOCK : (i + 1) * BLOCK]).digest()
    for i in range(META.blocks)
]


class Request:
    """
    One block asked of a node's uplink.
    """

    def __init__(self, index: int, deferred: "defer.Deferred[bytes]") -> None:
        self.index = index
        self.deferred = deferred
        self.cancelled = False


class Uplink:
    """
    A node's uplink: C{rate} bytes per second, one block at a time, its
    connections in turn, each connection's queue in the order p2pd answers
    (L{p2pd.spp.answering}): nearest block first, and at an C{origin} the
    blocks it has not sent yet before those it has.

    @ivar sent: the bytes it has sent, cancelled blocks included.
    """

    def __init__(self, clock: task.Clock, rate: float, origin: bool) -> None:
        self.clock = clock
        self.rate = rate
        self.origin = origin
        self.queues: dict[object, list[Request]] = {}
        self.sending: Request | None = None
        self.sent = 0
        self.given: set[int] = set()

    def order(self, request: Request) -> tuple[bool, int]:
        """
        The request to send first is the least: an origin's blocks it has
        not sent yet, then the nearest.
        """
        return (self.origin and request.index in self.given, request.index)

    def enqueue(self, connection: object, request: Request) -> None:
        if request.cancelled:
            return
        self.queues.setdefault(connection, []).append(request)
        self._next()

    def remove(self, connection: object, request: Request) -> None:
        queue = self.queues.get(connection, [])
        if request in queue:
            queue.remove(request)

    def _next(self) -> None:
        if self.sending is not None:
            return
        for connection in list(self.queues):
            queue = self.queues.pop(connection)
            if not queue:
                continue
            # The connection goes to the back of the turn.
            self.queues[connection] = queue
            request = min(queue, key=self.order)
            queue.remove(request)
            self.given.add(request.index)
            self.sending = request
            self.clock.callLater(
                META.blockLength(request.index) / self.rate, self._sent
            )
            return

    def _sent(self) -> None:
        request, self.sending = self.sending, None
        assert request is not None
        self.sent += META.blockLength(request.index)
        self.clock.callLater(LATENCY, self._arrive, request)
        self._next()

    def _arrive(self, request: Request) -> None:
        if not request.cancelled:
            start = META.blockStart(request.index)
            request.deferred.callback(CONTENT[start : start + BLOCK])


class LeanStore:
    """
    A block store that remembers which blocks it holds, not their bytes
    (they are the shared content's): a swarm of viewers in little memory.
    """

    def __init__(self, complete: bool = False) -> None:
        self.blocks: set[int] = set(range(META.blocks)) if complete else set()
        self.digests: dict[int, bytes] = {}

    def has(self, index: int) -> bool:
        return index in self.blocks

    def read(self, index: int) -> bytes | None:
        if index not in self.blocks:
            return None
        start = META.blockStart(index)
        return CONTENT[start : start + BLOCK]

    def write(self, index: int, data: bytes) -> None:
        self.blocks.add(index)

    def digest(self, index: int) -> bytes | None:
        return self.digests.get(index)

    def setDigests(self, first: int, digests: bytes) -> None:
        size = len(DIGESTS[0])
        for n in range(len(digests) // size):
            self.digests[first + n] = digests[n * size : (n + 1) * size]

    def held(self) -> list[tuple[int, int]]:
        return [(i, 1) for i in sorted(self.blocks)]

    def close(self) -> None:
        pass


@implementer(ISource)
class LinkSource:
    """
    Node C{server} as a source of one download: requests go over a link
    with L{LATENCY}, and the answers out of C{server}'s uplink.
    """

    onHave: Callable[[Sequence[tuple[int, int]]], None] | None = None
    onLost: Callable[[Failure], None] | None = None

    def __init__(self, server: "Node", clock: task.Clock) -> None:
        self.server = server
        self.clock = clock
        self.name = server.name
        self.authoritative = server.origin
        self.closed = False
        # Blocks the node answered it does not hold, until it announces them.
        self.missing: set[int] = set()

    def has(self, index: int) -> bool:
        return index not in self.missing and self.server.store.has(index)

    def unavailable(self, index: int) -> None:
        if not self.authoritative:
            self.missing.add(index)

    def getBlock(self, index: int) -> "defer.Deferred[bytes]":
        uplink = self.server.uplink

        def cancel(d: "defer.Deferred[bytes]") -> None:
            request.cancelled = True
            uplink.remove(self, request)

        request = Request(index, defer.Deferred(cancel))
        self.clock.callLater(LATENCY, uplink.enqueue, self, request)
        return request.deferred

    def getDigests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        return defer.succeed(b"".join(DIGESTS[first : first + count]))

    def getPeers(self) -> "defer.Deferred[Sequence[Peer]]":
        return defer.succeed([])

    def close(self) -> None:
        self.closed = True


class Player:
    """
    The lab's player model on one reader: it reads while less than
    L{READ_AHEAD_SECONDS} are buffered, starts once L{START_SECONDS} are,
    and stalls when its buffer runs dry, until L{START_SECONDS} are again.
    """

    def __init__(self, reader: Reader, clock: task.Clock, seconds: float) -> None:
        self.reader = reader
        self.clock = clock
        self.arrived = clock.seconds()
        self.target = min(reader.stop - reader.position, int(seconds * BITRATE))
        self.received = 0
        self.played = 0.0
        self.playing = False
        self.started: float | None = None
        self.stalls = 0
        self.reading = False
        self.failure: Failure | None = None

    @property
    def done(self) -> bool:
        return self.played >= self.target

    def buffered(self) -> float:
        return (self.received - self.played) / BITRATE

    def tick(self, elapsed: float) -> None:
        """
        Play C{elapsed} seconds, if playing, and read on.
        """
        if self.done:
            return
        if self.playing:
            self.played = min(self.played + elapsed * BITRATE, self.received)
            if self.played >= self.target:
                return
            if self.played >= self.received:
                self.playing = False
                self.stalls += 1
        elif self.buffered() >= START_SECONDS or self.received >= self.target:
            self.playing = True
            if self.started is None:
                self.started = self.clock.seconds()
        self.read()

    def read(self) -> None:
        if self.reading or self.received >= self.target:
            return
        if self.buffered() >= READ_AHEAD_SECONDS:
            return
        self.reading = True
        self.reader.read().addCallbacks(self._got, self._failed)

    def _got(self, data: bytes) -> None:
        self.reading = False
        self.received += len(data)
        self.read()

    def _failed(self, reason: Failure) -> None:
        self.reading = False
        self.failure = reason


class Node:
    """
    A node of the swarm: the origin (holding every block), or a viewer with
    a download, a player, and the sources it opened on other nodes.
    """

    def __init__(
        self, name: str, clock: task.Clock, up: float, origin: bool = False
    ) -> None:
        self.name = name
        self.origin = origin
        self.uplink = Uplink(clock, up, origin)
        self.store = LeanStore(complete=origin)
        # The sources other nodes opened on this one.
        self.served: list[LinkSource] = []
        self.download: Download | None = None
        self.player: Player | None = None

    def announce(self, ranges: Sequence[tuple[int, int]]) -> None:
        for source in list(self.served):
            for first, count in ranges:
                source.missing.difference_update(range(first, first + count))
            if source.onHave is not None:
                source.onHave(ranges)


class Swarm:
    """
    An origin and viewers that come and go on a clock.
    """

    def __init__(self, originUp: float, seed: int = 0) -> None:
        self.clock = task.Clock()
        self.seed = seed
        self.origin = Node("origin", self.clock, originUp, origin=True)
        self.nodes: dict[str, Node] = {"origin": self.origin}
        self.viewers: list[Node] = []

    def seeded(self, name: str, up: float) -> Node:
        """
        A node holding the whole file already, serving only.
        """
        node = Node(name, self.clock, up)
        node.store = LeanStore(complete=True)
        self.nodes[name] = node
        return node

    def arrive(self, name: str, up: float, seconds: float) -> Node:
        """
        A viewer arrives, opens the file on every node there is (and they
        on it), and plays C{seconds} from the start.
        """
        node = Node(name, self.clock, up)
        download = Download(
            META,
            node.store,
            self.clock,
            random.Random(self.seed * 100 + len(self.viewers)),
        )
        node.download = download
        download.watch(node.announce)
        node.player = Player(download.read(0), self.clock, seconds)
        node.player.read()
        for other in list(self.nodes.values()):
            self._open(node, other)
            if other.download is not None:
                self._open(other, node)
        # As a node does once the origin has named its peers.
        download.setSearching(False)
        self.nodes[name] = node
        self.viewers.append(node)
        return node

    def _open(self, client: Node, server: Node) -> None:
        assert client.download is not None
        source = LinkSource(server, self.clock)
        server.served.append(source)
        client.download.addSource(source)

    def leave(self, node: Node) -> None:
        """
        A viewer stops playing and its node goes: its sources lose it.
        """
        assert node.download is not None and node.player is not None
        node.player.reader.close()
        node.download.close()
        del self.nodes[node.name]
        for source in node.served:
            if source.onLost is not None and not source.closed:
                source.onLost(Failure(ConnectionError("gone")))
        node.served.clear()

    def run(
        self, seconds: float, events: Sequence[tuple[float, Callable[[], object]]] = ()
    ) -> None:
        """
        Run for C{seconds}, calling each C{(when, event)} then.
        """
        for when, event in events:
            self.clock.callLater(when - self.clock.seconds(), event)
        for _ in range(round(seconds / STEP)):
            self.clock.advance(STEP)
            for node in self.viewers:
                if node.player is not None and node.name in self.nodes:
                    node.player.tick(STEP)

    def copies(self) -> float:
        """
        The origin's upload over the bytes of the file any viewer played.
        """
        played = max(v.player.played for v in self.viewers if v.player is not None)
        return self.origin.uplink.sent / played

    def fromOrigin(self, node: Node) -> float:
        """
        The share of C{node}'s blocks that came from the origin.
        """
        assert node.download is not None
        got = node.download.bytesBySource
        return got.get("origin", 0) / sum(got.values())


def stalled(viewers: Sequence[Node]) -> list[str]:
    """
    The viewers that stalled or never started.
    """
    return [
        v.name
        for v in viewers
        if v.player is not None and (v.player.stalls or v.player.started is None)
    ]


class ConstrainedTests(SynchronousTestCase):
    """
    Swarms on uplinks that are the bottleneck.
    """

    def test_slowOriginFastPeers(self) -> None:
        """
        An origin barely faster than the stream, and two peers holding the
        whole file with room to spare: the viewer plays without a stall,
        and takes nearly every block from the peers.
        """
        swarm = Swarm(originUp=4 * M)
        swarm.seeded("p1", 20 * M)
        swarm.seeded("p2", 20 * M)
        viewer = swarm.arrive("v1", 6 * M, 40.0)
        swarm.run(60.0)
        assert viewer.player is not None
        self.assertTrue(viewer.player.done)
        self.assertEqual(stalled([viewer]), [])
        self.assertLess(swarm.fromOrigin(viewer), 0.1)

    def test_peerLeaves(self) -> None:
        """
        A viewer fetching from a peer that leaves mid-stream goes on from
        the origin and the other viewers, without a stall, and asks the
        peer that left for nothing more.
        """
        swarm = Swarm(originUp=12 * M)
        first = swarm.arrive("v1", 6 * M, 40.0)
        second = swarm.arrive("v2", 6 * M, 40.0)
        swarm.run(6.0)
        third = swarm.arrive("v3", 6 * M, 40.0)
        swarm.run(8.0)
        assert third.download is not None
        before = third.download.bytesBySource.get("v1", 0)
        swarm.leave(first)
        swarm.run(50.0)
        self.assertEqual(stalled([second, third]), [])
        self.assertEqual(third.download.bytesBySource.get("v1", 0), before)
        self.assertNotIn("v1", [s.name for s in third.download.sources])

    def test_staggered(self) -> None:
        """
        Eight viewers 4 s apart, as the lab's staggered scenario (origin 12
        Mbit/s up, viewers 6): nobody stalls, the viewers after the first
        two take most of their blocks from peers, and the origin sends
        fewer than three copies of what was played (each viewer reads 20 s
        ahead, and the first can only get its blocks from the origin).
        """
        swarm = Swarm(originUp=12 * M)
        events = [
            (4.0 * n, lambda n=n: swarm.arrive(f"v{n + 1}", 6 * M, 40.0))
            for n in range(8)
        ]
        swarm.run(80.0, events)
        self.assertEqual(len(swarm.viewers), 8)
        self.assertEqual(stalled(swarm.viewers), [])
        for viewer in swarm.viewers[2:]:
            self.assertLess(swarm.fromOrigin(viewer), 0.25)
        self.assertLess(swarm.copies(), 3.0)

    def test_flashCrowd(self) -> None:
        """
        Eight viewers at once: each gets its part, at most one stalls, and
        the origin sends fewer than four copies of what was played (eight,
        every viewer stalled, when it sent the same first blocks to all).
        """
        swarm = Swarm(originUp=12 * M)
        for n in range(8):
            swarm.arrive(f"v{n + 1}", 6 * M, 40.0)
        swarm.run(60.0)
        self.assertTrue(all(v.player and v.player.done for v in swarm.viewers))
        self.assertLessEqual(len(stalled(swarm.viewers)), 1)
        self.assertLess(swarm.copies(), 4.0)
