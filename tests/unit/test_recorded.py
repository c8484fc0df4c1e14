"""
What a download asks of which source, recorded: scenarios driven by seeded
random choices (answers, errors, a reader reading, time passing), each
pinned to the digest of everything the download did to its sources and what
its readers got. Recorded before the scheduling policy moved out of
L{p2pd.engine.download}, so that moving it changed no choice, and kept so
that a change of policy is a decision: one who changes it on purpose
records the new digests (L{Scenario.run} gives the events to compare).

Recorded again when the policy learned constrained links (read-ahead and
the origin's reach from each reader's rate, pipelines from each source's
rate, urgent blocks to the source that should deliver them soonest, a
second source only for the block a reader waits for, silent sources kept
for a while): every scenario asks for other blocks of other sources since.
"""

import hashlib
import random

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.engine.download import Download
from tests.fakes import MemoryStore, QueuedThreads
from tests.unit.test_download import BLOCK, FakeSource, ThreadClock


class RecordedSource(FakeSource):
    """
    A source that writes what is asked of it to a shared log.
    """

    def __init__(self, log, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log
        self.lateDigests: list[tuple[defer.Deferred[bytes], int, int]] | None = None

    def getBlock(self, index):
        self.log.append(f"{self.name} block {index}")
        d = super().getBlock(index)
        d.addErrback(self._cancelled, index)
        return d

    def _cancelled(self, reason, index):
        if reason.check(defer.CancelledError):
            self.log.append(f"{self.name} cancel {index}")
        return reason

    def getDigests(self, first, count):
        self.log.append(f"{self.name} digests {first} {count}")
        if self.lateDigests is None:
            return super().getDigests(first, count)
        late: defer.Deferred[bytes] = defer.Deferred()
        self.lateDigests.append((late, first, count))
        return late

    def answerDigests(self):
        late, first, count = self.lateDigests.pop(0)  # type: ignore[union-attr]
        self.log.append(f"{self.name} digests answered")
        super().getDigests(first, count).chainDeferred(late)

    def close(self):
        self.log.append(f"{self.name} closed")
        super().close()


class RefusingStore(MemoryStore):
    """
    A store whose disk refuses blocks while C{full}.
    """

    full = False

    def write(self, index, data):
        if self.full:
            raise OSError(28, "No space left on device")
        super().write(index, data)


class Scenario:
    """
    A download with sources, readers and a script of seeded random steps.

    @ivar peers: C{(name, holds fraction, auto)} for each peer; one named
        C{"silent"} never answers.
    @ivar lateDigests: whether the origin answers digests when the script
        says, rather than at once.
    """

    def __init__(
        self,
        seed,
        blocks=120,
        peers=(),
        searching=True,
        readers=(0,),
        steps=400,
        threads=False,
        refusing=False,
        alone=False,
        errors=False,
        corrupt=False,
        lateDigests=False,
    ):
        self.seed = seed
        self.blocks = blocks
        self.peers = peers
        self.searching = searching
        self.readers = readers
        self.steps = steps
        self.threads = threads
        self.refusing = refusing
        self.alone = alone
        self.errors = errors
        self.corrupt = corrupt
        self.lateDigests = lateDigests

    def run(self):
        """
        Play the scenario; the log of events.
        """
        log: list[str] = []
        rng = random.Random(self.seed)
        content = random.Random(1).randbytes(self.blocks * BLOCK - 100)
        meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
        store = RefusingStore(meta)
        threads = QueuedThreads() if self.threads else None
        clock = ThreadClock() if self.threads else task.Clock()
        download = Download(meta, store, clock, random.Random(2), hashing=threads)  # type: ignore[arg-type]
        download.searching = self.searching
        if self.alone:
            download.firstBlockAlone(0.3)
        origin = RecordedSource(log, "origin", content, meta, authoritative=True)
        if self.lateDigests:
            origin.lateDigests = []
        sources = [origin]
        download.addSource(origin)
        for name, fraction, auto in self.peers:
            holds = [i for i in range(meta.blocks) if rng.random() < fraction]
            peer = RecordedSource(log, name, content, meta, holds=holds, auto=auto)
            peer.corrupt = self.corrupt and name == "p1"
            sources.append(peer)
            download.addSource(peer)
        readers = [download.read(start * BLOCK) for start in self.readers]
        pending: list[defer.Deferred[bytes]] = []
        for step in range(self.steps):
            action = rng.random()
            manual = [s for s in sources if s.requests and s.name != "silent"]
            if action < 0.45 and manual:
                source = rng.choice(manual)
                index = rng.choice(sorted(source.requests))
                if self.errors and rng.random() < 0.1:
                    code = rng.choice([ErrorCode.UNAVAILABLE, ErrorCode.BUSY])
                    source.requests.pop(index).errback(SPPError(code, "no"))
                    log.append(f"{source.name} refuses {index}")
                else:
                    source.answer(index)
            elif action < 0.7 and readers:
                reader = rng.choice(readers)
                if not any(not d.called for d in pending):
                    d = reader.read()
                    d.addCallback(lambda data: log.append(f"read {len(data)}"))
                    d.addErrback(lambda f: log.append(f"failed {f.type.__name__}"))  # type: ignore[call-overload]
                    pending.append(d)
            elif action < 0.8:
                clock.advance(rng.choice([0.05, 0.3, 0.7, 1.5]))
            elif action < 0.85 and threads is not None and threads.jobs:
                threads.runAll()
            elif action < 0.88 and readers:
                reader = readers.pop(rng.randrange(len(readers)))
                reader.close()
                log.append("reader closed")
            elif action < 0.9:
                start = rng.randrange(meta.blocks)
                readers.append(download.read(start * BLOCK + rng.randrange(BLOCK)))
                log.append(f"reader at {start}")
            elif action < 0.92 and self.refusing:
                store.full = not store.full
                log.append(f"disk full {store.full}")
            elif action < 0.93 and download.searching and step > self.steps // 3:
                download.searching = False
                download.schedule()
                log.append("searching over")
            elif action < 0.96 and origin.lateDigests:
                origin.answerDigests()
        download.close()
        log.append(f"held {store.held()}")
        return log


def digest(log):
    return hashlib.sha256("\n".join(log).encode()).hexdigest()[:16]


class RecordedTests(SynchronousTestCase):
    """
    Each scenario does exactly what it did when recorded.
    """

    def check(self, scenario, expected):
        log = scenario.run()
        self.assertEqual((len(log), digest(log)), expected)

    def test_originOnly(self):
        """
        One origin, the node searching for peers for a while.
        """
        self.check(Scenario(1), (247, "e32ff658d7dc8e74"))

    def test_originOnlyNotSearching(self):
        """
        One origin and no peers to come: blocks drawn at random.
        """
        self.check(
            Scenario(2, searching=False, readers=(50, 10)), (331, "2b1034aa1f8b31fc")
        )

    def test_peers(self):
        """
        An origin and peers holding parts of the file, one of them silent,
        several readers.
        """
        peers = (("p1", 0.5, False), ("p2", 0.8, False), ("silent", 0.2, False))
        self.check(
            Scenario(3, peers=peers, readers=(0, 60), steps=600),
            (696, "334fb90b7846552e"),
        )

    def test_peersNotSearching(self):
        """
        Peers, and no more to come: the origin waits a random while.
        """
        peers = (("p1", 0.5, False), ("p2", 0.3, False))
        self.check(
            Scenario(4, peers=peers, searching=False, steps=600),
            (458, "9a3aef542c4009a0"),
        )

    def test_answeredAtOnce(self):
        """
        A peer that answers as it is asked, in the middle of a pass.
        """
        peers = (("p1", 0.6, True), ("p2", 0.5, False))
        self.check(
            Scenario(5, peers=peers, searching=False, readers=(5, 70)),
            (362, "9d1c7d5cf8f0d49c"),
        )

    def test_threadsAndFirstBlockAlone(self):
        """
        Hashing threads, and a first block asked for alone.
        """
        peers = (("p1", 0.7, False),)
        scenario = Scenario(6, peers=peers, threads=True, alone=True, steps=500)
        self.check(scenario, (327, "f95e4ba8a097a734"))

    def test_refusingDisk(self):
        """
        A disk that refuses blocks now and then.
        """
        peers = (("p1", 0.5, False),)
        scenario = Scenario(7, peers=peers, refusing=True, readers=(0, 80), steps=600)
        self.check(scenario, (477, "de37c3fcbd601968"))

    def test_errorsAndCorruptPeer(self):
        """
        Sources that refuse blocks, and a peer that sends corrupt ones.
        """
        peers = (("p1", 0.5, False), ("p2", 0.5, False))
        scenario = Scenario(8, peers=peers, errors=True, corrupt=True, steps=600)
        self.check(scenario, (440, "a9d57f04de812760"))

    def test_lateDigests(self):
        """
        Digests that come after blocks: the blocks wait for them, one
        handed to a waiting reader while the others still wait.
        """
        peers = (("p1", 0.5, False), ("p2", 0.4, True))
        scenario = Scenario(
            9, peers=peers, threads=True, lateDigests=True, readers=(0, 30), steps=600
        )
        self.check(scenario, (369, "725354dceb76a433"))

    def test_lateDigestsRefusingDisk(self):
        """
        Late digests, a large file and a disk that refuses blocks now and
        then, no peers to come.
        """
        scenario = Scenario(
            10,
            blocks=300,
            refusing=True,
            lateDigests=True,
            searching=False,
            readers=(3,),
            steps=500,
        )
        self.check(scenario, (421, "c5eb2260a70217ff"))
