"""
Tests for L{p2pd.engine.download}: scheduling, verification and readers,
with fake sources on a fake clock.
"""

import random

from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.engine import reading, scheduling, sourcing, verification
from p2pd.engine.download import Download, DownloadFailed
from tests.fakes import FakeSource, MemoryStore, QueuedThreads

BLOCK = 16 * 1024


def makeDownload(blocks=40, extra=100):
    content = random.Random(1).randbytes(blocks * BLOCK - extra)
    meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
    store = MemoryStore(meta)
    clock = task.Clock()
    return Download(meta, store, clock, random.Random(2)), content, meta, clock


def readAll(reader):
    chunks = []

    def next(_=None):
        d = reader.read()

        def got(data):
            if data:
                chunks.append(data)
                return next()
            return b"".join(chunks)

        return d.addCallback(got)

    return next()


class DownloadTests(SynchronousTestCase):
    def test_singleOriginDeliversInOrder(self):
        """
        With one authoritative source, a reader gets the whole file, in
        order, each block verified.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        result = self.successResultOf(readAll(download.read(0)))
        self.assertEqual(result, content)

    def test_readerFromOffset(self):
        """
        A reader starting mid-block gets bytes from exactly there, and the
        blocks near it are asked for first.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        asked = len(origin.requested)
        reader = download.read(20 * BLOCK + 5, 21 * BLOCK + 7)
        d = readAll(reader)
        origin.answerAll()
        self.assertEqual(origin.requested[asked : asked + 2], [20, 21])
        while not d.called:
            origin.answerAll()
        self.assertEqual(
            self.successResultOf(d), content[20 * BLOCK + 5 : 21 * BLOCK + 7]
        )

    def test_headAndTailEarly(self):
        """
        The first and last blocks are requested early, since players probe
        both ends of a file.
        """
        download, content, meta, clock = makeDownload()
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(10 * BLOCK)
        self.assertIn(0, origin.requested)
        self.assertIn(meta.blocks - 1, origin.requested)

    def test_pipelineBounded(self):
        """
        No source gets more than PIPELINE requests at once, plus at most
        URGENT_BLOCKS for blocks a reader is about to need.
        """
        download, content, meta, clock = makeDownload()
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        self.assertEqual(len(origin.requests), scheduling.PIPELINE)
        download.read(20 * BLOCK)
        self.assertEqual(
            len(origin.requests), scheduling.PIPELINE + scheduling.URGENT_BLOCKS
        )
        self.assertTrue(
            set(range(20, 20 + scheduling.URGENT_BLOCKS)) <= set(origin.requests)
        )

    def test_peersPreferredForNonUrgent(self):
        """
        Blocks a peer holds beyond the urgent ones go to the peer, not the
        origin.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        peer = FakeSource("peer", content, meta, holds=range(meta.blocks))
        download.addSource(origin)
        download.addSource(peer)
        download.read(0)
        far = [i for i in origin.requested if i >= scheduling.URGENT_BLOCKS and i < 30]
        self.assertEqual(far, [])
        self.assertTrue(peer.requested)

    def test_readerRate(self):
        """
        A reader's rate is not known for its first RATE_SECONDS; then it is
        about the bytes it took over the last RATE_WINDOW seconds, per
        second.
        """
        download, content, meta, clock = makeDownload(blocks=40)
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        reader = download.read(0)
        for second in range(20):
            if second < reading.RATE_SECONDS:
                self.assertIsNone(reader.rate())
            # Two blocks a second for ten seconds, then one.
            for _ in range(2 if second < 10 else 1):
                self.successResultOf(reader.read())
            clock.advance(1)
        rate = reader.rate()
        assert rate is not None
        self.assertLess(abs(rate - BLOCK), BLOCK / 10)

    def test_readAheadFollowsRate(self):
        """
        Once a reader's rate is known, blocks are wanted READAHEAD_SECONDS
        of it ahead, not READAHEAD_BYTES (the head and tail apart).
        """
        download, content, meta, clock = makeDownload(blocks=200)
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        reader = download.read(0)
        for _ in range(10):
            self.successResultOf(reader.read())
            clock.advance(1)
        window = scheduling.readahead(reader.rate(), BLOCK)
        self.assertLess(window, scheduling.READAHEAD_BYTES // BLOCK)
        wanted = {i for _, i in download._wantsNow().order} - set(download._edges)
        self.assertEqual(max(wanted), reader.block + window - 1)

    def test_corruptSourceDropped(self):
        """
        A source that sends a block failing its digest is dropped, closed,
        not used again, and the block comes from another source.
        """
        download, content, meta, clock = makeDownload()
        bad = FakeSource("bad", content, meta, holds=range(meta.blocks), auto=True)
        bad.corrupt = True
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.addSource(bad)
        reader = download.read(0)
        d = readAll(reader)
        self.assertTrue(bad.closed)
        self.assertNotIn(bad, download.sources)
        self.assertFalse(download.addSource(bad))
        while not d.called:
            origin.answerAll()
        self.assertEqual(self.successResultOf(d), content)

    def test_slowSourceBypassed(self):
        """
        When a source lags, the block a reader waits for is asked of another
        source, and the reader gets it from there.
        """
        download, content, meta, clock = makeDownload()
        slow = FakeSource("slow", content, meta, holds=range(meta.blocks))
        download.addSource(slow)
        reader = download.read(0, BLOCK)
        d = reader.read()
        self.assertNoResult(d)
        fast = FakeSource("fast", content, meta, holds=range(meta.blocks), auto=True)
        download.addSource(fast)
        # The digests come from an authority; add one that never answers blocks.
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        clock.advance(scheduling.LAG_MIN + sourcing.CHECK_INTERVAL)
        clock.advance(sourcing.CHECK_INTERVAL)
        self.assertEqual(self.successResultOf(d), content[:BLOCK])

    def test_onlyWaitedBlockRescued(self):
        """
        Of the blocks asked of a lagging source, only the one a reader
        waits for is asked of a second source, and only once it has waited
        LAG_MIN.
        """
        download, content, meta, clock = makeDownload()
        slow = FakeSource("slow", content, meta, holds=range(meta.blocks))
        download.addSource(slow)
        reader = download.read(0)
        reader.read()
        other = FakeSource("other", content, meta, holds=range(meta.blocks))
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(other)
        download.addSource(origin)
        asked = set(other.requested) | set(origin.requested)
        clock.advance(sourcing.CHECK_INTERVAL)
        self.assertEqual(set(other.requested) | set(origin.requested), asked)
        clock.advance(scheduling.LAG_MIN)
        again = (set(other.requested) | set(origin.requested)) - asked
        self.assertEqual(again, {0})
        self.assertEqual(set(slow.requests) & asked, set())

    def test_vanishingSource(self):
        """
        A source that goes away has its requests moved to the others.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        peer = FakeSource("peer", content, meta, holds=range(meta.blocks))
        download.addSource(origin)
        download.addSource(peer)
        d = readAll(download.read(0))
        peer.lose()
        self.assertNotIn(peer, download.sources)
        while not d.called:
            origin.answerAll()
        self.assertEqual(self.successResultOf(d), content)

    def test_silentSourceDropped(self):
        """
        A source that answers nothing for SOURCE_TIMEOUT has its requests
        cancelled and asked again, and is kept; after MAX_SILENCES such
        silences in a row it is dropped.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(0)
        asked = len(origin.requested)
        period = int(scheduling.SOURCE_TIMEOUT / sourcing.CHECK_INTERVAL) + 1
        for silence in range(1, scheduling.MAX_SILENCES + 1):
            for _ in range(period):
                clock.advance(sourcing.CHECK_INTERVAL)
            if silence < scheduling.MAX_SILENCES:
                self.assertFalse(origin.closed)
                self.assertEqual(len(origin.cancelled), asked * silence)
                self.assertEqual(len(origin.requested), asked * (silence + 1))
        self.assertTrue(origin.closed)
        self.assertEqual(download.sources, [])

    def test_silencesCountedInARow(self):
        """
        A block from a source that was silent once starts its count of
        silences again.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(0)
        period = int(scheduling.SOURCE_TIMEOUT / sourcing.CHECK_INTERVAL) + 1
        for _ in range(scheduling.MAX_SILENCES - 1):
            for _ in range(period):
                clock.advance(sourcing.CHECK_INTERVAL)
            origin.answer(min(origin.requests))
        for _ in range(period):
            clock.advance(sourcing.CHECK_INTERVAL)
        self.assertFalse(origin.closed)

    def test_allSourcesGone(self):
        """
        When every source is gone and no more are coming, a waiting reader
        fails with DownloadFailed instead of hanging.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        d = download.read(0).read()
        origin.lose()
        self.assertNoResult(d)
        download.searching = False
        download.schedule()
        self.failureResultOf(d, DownloadFailed)

    def test_unavailableBlockRetried(self):
        """
        A peer that cannot serve a block it announced costs a retry
        elsewhere, and is dropped when it keeps doing so.
        """
        download, content, meta, clock = makeDownload()
        liar = FakeSource("liar", content, meta, holds=range(meta.blocks))
        download.addSource(liar)
        download.read(0)
        for _ in range(sourcing.MAX_MISSES + 1):
            if not liar.requests:
                break
            index = min(liar.requests)
            liar.requests.pop(index).errback(SPPError(ErrorCode.UNAVAILABLE, "no"))
        self.assertTrue(liar.closed)

    def test_unavailableNotAskedAgain(self):
        """
        A block a peer answers UNAVAILABLE (a cache that evicted it) is not
        asked of that peer again, but of another source.
        """
        download, content, meta, clock = makeDownload()
        peer = FakeSource("peer", content, meta, holds=range(meta.blocks))
        download.addSource(peer)
        reader = download.read(0)
        d = reader.read()
        peer.requests.pop(0).errback(SPPError(ErrorCode.UNAVAILABLE, "evicted"))
        self.assertFalse(peer.has(0))
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        self.assertIn(0, origin.requests)
        self.assertEqual(peer.requested.count(0), 1)
        origin.answer(0)
        self.assertEqual(self.successResultOf(d), content[:BLOCK])

    def test_changedFailsReaders(self):
        """
        When the origin says the file changed, readers fail: blocks of two
        versions never mix.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        d = download.read(0).read()
        index = min(origin.requests)
        origin.requests.pop(index).errback(SPPError(ErrorCode.CHANGED, "changed"))
        self.failureResultOf(d, SPPError)

    def test_closedReaderStopsWork(self):
        """
        When the last reader closes, requests for blocks only it wanted are
        not renewed.
        """
        download, content, meta, clock = makeDownload(blocks=200)
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        reader = download.read(100 * BLOCK)
        reader.close()
        origin.answerAll()
        asked = set(origin.requested)
        origin.answerAll()
        self.assertEqual(set(origin.requested), asked)

    def test_firstBlockAlone(self):
        """
        While the first block is on its way alone, only the blocks readers
        wait for (and their digests) are asked for; once it is in, the
        rest is. A reader that waits elsewhere gets its block asked for.
        """
        download, content, meta, clock = makeDownload(blocks=40)
        download.firstBlockAlone(1.0)
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        reader = download.read(0)
        d = reader.read()
        self.assertEqual(sorted(origin.requests), [0])
        other = download.read(20 * BLOCK)
        other.read()
        self.assertEqual(sorted(origin.requests), [0, 20])
        origin.answer(0)
        self.assertEqual(self.successResultOf(d), content[:BLOCK])
        self.assertEqual(sorted(origin.requests), [1, 2, 3, 4, 20, 21, 22, 23])
        self.assertNotIn(
            download._notAlone, [call.func for call in clock.getDelayedCalls()]
        )

    def test_firstBlockAloneForAWhile(self):
        """
        On a slow link the rest is asked for once the first block has been
        alone for the time given, though it is not in yet.
        """
        download, content, meta, clock = makeDownload(blocks=40)
        download.firstBlockAlone(1.0)
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(0).read()
        clock.advance(0.9)
        self.assertEqual(sorted(origin.requests), [0])
        clock.advance(0.1)
        self.assertEqual(sorted(origin.requests), [0, 1, 2, 3])

    def test_readerFirstThenStore(self):
        """
        A verified block goes to the reader waiting for it before it is
        stored; a reader that closes the download as it takes the last
        block leaves that block stored, and the store closed.
        """
        download, content, meta, clock = makeDownload(blocks=2)
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        reader = download.read(BLOCK)
        storedWhenRead = []

        def got(data):
            storedWhenRead.append(download.store.has(1))
            download.close()

        reader.read().addCallback(got)
        origin.answer(1)
        self.assertEqual(storedWhenRead, [False])
        self.assertTrue(download.store.has(1))
        self.assertTrue(download.store.closed)

    def test_sharedDownload(self):
        """
        Two readers of one download share blocks: each block is fetched once.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        a = readAll(download.read(0))
        b = readAll(download.read(0))
        self.assertEqual(self.successResultOf(a), content)
        self.assertEqual(self.successResultOf(b), content)
        self.assertEqual(len(origin.requested), len(set(origin.requested)))


class SchedulingTests(SynchronousTestCase):
    def test_searchingHoldsBackOriginOnlyBlocks(self):
        """
        While the node is still looking for peers, only urgent blocks are
        asked of the origin; once it has stopped looking, the rest of the
        read-ahead is asked of it too.
        """
        download, content, meta, clock = makeDownload(blocks=100)
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(50 * BLOCK)
        self.assertTrue(all(i < 54 or i in download._edges for i in origin.requested))
        download.searching = False
        download.schedule()
        self.assertTrue(any(54 <= i < 90 for i in origin.requested))

    def test_peerPreferredForUrgentBlocks(self):
        """
        Even an urgent block goes to a peer that holds it rather than to the
        origin when neither is known to be faster: the origin's time counts
        double (scheduling.ORIGIN_FACTOR).
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        peer = FakeSource("peer", content, meta, holds=range(meta.blocks))
        download.addSource(origin)
        download.addSource(peer)
        # The head and tail, fetched early.
        peer.answerAll()
        origin.answerAll()
        download.read(10 * BLOCK)
        self.assertIn(10, peer.requested)
        self.assertNotIn(10, origin.requested)

    def test_seekCancelsUnwantedRequests(self):
        """
        When the only reader closes and another starts far away, requests
        for blocks near the old position are cancelled.
        """
        download, content, meta, clock = makeDownload(blocks=200)
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        reader = download.read(50 * BLOCK)
        self.assertIn(50, origin.requests)
        reader.close()
        download.read(150 * BLOCK)
        self.assertIn(50, origin.cancelled)
        self.assertIn(150, origin.requests)


class RecentBlocksTests(SynchronousTestCase):
    def test_readerBehindDownloadSkipsTheStore(self):
        """
        Blocks just verified are handed to readers from memory: the store is
        not read (and the block not hashed) a second time.
        """
        download, content, meta, clock = makeDownload()
        reads = []
        original = download.store.read
        download.store.read = lambda index: reads.append(index) or original(index)  # type: ignore[func-returns-value]
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        self.assertEqual(self.successResultOf(readAll(download.read(0))), content)
        self.assertEqual(reads, [])

    def test_memoryBounded(self):
        """
        At most memoryBytes of recent blocks are kept; older ones are read
        from the store again.
        """
        content = random.Random(1).randbytes(40 * BLOCK)
        meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
        download = Download(
            meta, MemoryStore(meta), task.Clock(), memoryBytes=4 * BLOCK
        )
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        self.successResultOf(readAll(download.read(0)))
        self.assertEqual(len(download._recent), 4)
        self.assertEqual(self.successResultOf(readAll(download.read(0))), content)

    def test_lastReaderClosedFreesMemory(self):
        """
        Once its last reader closes, a download keeps no block in memory
        (with 4 MiB blocks that is megabytes a download nobody plays would
        hold); a new reader is served from the store.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        reader = download.read(0)
        self.assertEqual(self.successResultOf(readAll(reader)), content)
        self.assertNotEqual(len(download._recent), 0)
        reader.close()
        self.assertEqual(len(download._recent), 0)
        self.assertEqual(self.successResultOf(readAll(download.read(0))), content)

    def test_desertedFetchesNothing(self):
        """
        A download whose readers have all closed asks for nothing more, not
        even the head and tail it fetches early for a player; a new reader
        brings them back.
        """
        download, content, meta, clock = makeDownload()
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(20 * BLOCK, 21 * BLOCK).close()
        origin.answerAll()
        asked = len(origin.requested)
        clock.advance(sourcing.CHECK_INTERVAL * 4)
        self.assertEqual(origin.requested[asked:], [])
        self.assertFalse(download.store.has(0))
        download.read(5 * BLOCK, 6 * BLOCK)
        self.assertIn(0, origin.requested[asked:])


class DigestTests(SynchronousTestCase):
    def test_allDigestsEarly(self):
        """
        Besides the few digests a reader needs first, the digests of the
        whole file are asked for in large ranges once a first block is in (so
        they do not delay it), and blocks from peers can still be verified
        after the origin has gone.
        """
        download, content, meta, clock = makeDownload(blocks=300)
        origin = FakeSource("origin", content, meta, authoritative=True)
        asked = []
        getDigests = origin.getDigests
        origin.getDigests = lambda first, count: (  # type: ignore[method-assign]
            asked.append((first, count)) or getDigests(first, count)  # type: ignore[func-returns-value]
        )
        download.addSource(origin)
        download.read(0, 10 * BLOCK)
        self.assertTrue(all(count <= verification.DIGEST_CHUNK for _, count in asked))
        origin.answer(min(origin.requests))
        self.assertGreater(max(count for _, count in asked), verification.DIGEST_CHUNK)
        self.assertLessEqual(len(asked), 6)
        self.assertTrue(all(download.store.digest(i) for i in range(300)))

    def test_desertedAsksNoMoreDigests(self):
        """
        Once its readers have all closed, a download asks for no more of
        the file's digests in the background (those of a 16 TiB file with
        sha512 are 256 MiB); a new reader brings the background asks back.
        """
        self.patch(verification, "DIGESTS_AT_ONCE", 16)
        download, content, meta, clock = makeDownload(blocks=300)
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        pending = []
        getDigests = origin.getDigests

        def later(first, count):
            d: defer.Deferred[bytes] = defer.Deferred()
            pending.append((d, first, count))
            return d

        origin.getDigests = later  # type: ignore[method-assign]
        download.addSource(origin)
        reader = download.read(0, BLOCK)

        def answerDigests():
            for d, first, count in pending[:]:
                pending.remove((d, first, count))
                d.callback(self.successResultOf(getDigests(first, count)))

        answerDigests()
        self.assertEqual(self.successResultOf(reader.read()), content[:BLOCK])
        answerDigests()
        self.assertNotEqual(pending, [])  # the background asks go on
        reader.close()
        answerDigests()
        clock.advance(sourcing.CHECK_INTERVAL * 4)
        self.assertEqual(pending, [])
        self.assertFalse(all(download.store.digest(i) for i in range(300)))
        download.read(150 * BLOCK)
        self.assertNotEqual(pending, [])

    def test_noDigestSourceFailsReader(self):
        """
        A reader waiting for a block whose digest nobody can give (the origin
        left before sending it, no authority is coming) fails instead of
        hanging, even though a peer holds the block.
        """
        download, content, meta, clock = makeDownload()
        origin = FakeSource("origin", content, meta, authoritative=True)
        origin.getDigests = lambda first, count: defer.Deferred()  # type: ignore[method-assign]
        peer = FakeSource("peer", content, meta, holds=range(meta.blocks), auto=True)
        download.addSource(origin)
        d = download.read(0).read()
        origin.lose()
        download.addSource(peer)
        download.searching = False
        download.schedule()
        self.failureResultOf(d, DownloadFailed)


class SwarmPolicyTests(SynchronousTestCase):
    def test_announcementsCoalesced(self):
        """
        A burst of announcements from peers costs one scheduling pass, run
        once the reactor turn is over.
        """
        download, content, meta, clock = makeDownload()
        peers = [FakeSource(f"peer{n}", content, meta) for n in range(5)]
        for peer in peers:
            download.addSource(peer)
        passes = []
        assign = download._assign
        download._assign = lambda: passes.append(1) or assign()  # type: ignore[func-returns-value]
        for peer in peers:
            peer.onHave([(0, 1)])  # type: ignore[misc]
        self.assertEqual(passes, [])
        clock.advance(0)
        self.assertEqual(passes, [1])

    def test_originWaitsWhenPeersMayHelp(self):
        """
        With peers about, a block nobody needs yet and only the origin holds
        is asked of the origin only after a random wait of at most
        ORIGIN_DELAY, and only within the origin's reach of the reader; a
        peer announcing it meanwhile serves it instead. Urgent blocks never
        wait.
        """
        download, content, meta, clock = makeDownload(blocks=100)
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        peer = FakeSource("peer", content, meta)
        download.addSource(origin)
        download.addSource(peer)
        download.read(50 * BLOCK)
        urgent = set(range(50, 50 + scheduling.URGENT_BLOCKS))
        self.assertTrue(urgent <= set(origin.requested))
        self.assertFalse(set(origin.requested) - urgent - set(download._edges))
        peer.holds.add(70)
        peer.onHave([(70, 1)])  # type: ignore[misc]
        origin.answerAll()
        clock.advance(scheduling.ORIGIN_DELAY)
        self.assertIn(70, peer.requested)
        self.assertNotIn(70, origin.requested)
        # Within the origin's reach (the reader's rate is not known yet).
        reach = range(50, 50 + scheduling.COLD_REACH)
        self.assertTrue(any(i in reach for i in origin.requested))
        self.assertFalse([i for i in origin.requested if 58 <= i < 90])

    def test_noWaitWithoutPeers(self):
        """
        A node with no peers asks the origin for its whole read-ahead at once.
        """
        download, content, meta, clock = makeDownload(blocks=100)
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        download.read(50 * BLOCK)
        self.assertEqual(
            len(origin.requests), scheduling.PIPELINE + scheduling.URGENT_BLOCKS
        )


class ThreadClock(task.Clock):
    """
    A clock that is also the reactor threads report back to.
    """

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


class HashingThreadsTests(SynchronousTestCase):
    def _download(self, blocks=20):
        content = random.Random(3).randbytes(blocks * BLOCK)
        meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
        threads = QueuedThreads()
        download = Download(meta, MemoryStore(meta), ThreadClock(), hashing=threads)  # type: ignore[arg-type]
        return download, content, meta, threads

    def test_verifiedInThreads(self):
        """
        With hashing threads, a block is checked in a thread: the reader
        gets it once the check is done, and the block is not asked for again
        meanwhile.
        """
        download, content, meta, threads = self._download()
        origin = FakeSource("origin", content, meta, authoritative=True, auto=True)
        download.addSource(origin)
        d = download.read(0, BLOCK).read()
        self.assertNoResult(d)
        self.assertTrue(threads.jobs)
        threads.runAll()
        self.assertEqual(self.successResultOf(d), content[:BLOCK])
        self.assertEqual(origin.requested.count(0), 1)

    def test_corruptBlockInThreads(self):
        """
        A block that fails its check in a thread gets its source dropped and
        is fetched again from another.
        """
        download, content, meta, threads = self._download()
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        bad = FakeSource("bad", content, meta, holds=range(meta.blocks), auto=True)
        bad.corrupt = True
        download.addSource(origin)
        download.addSource(bad)
        d = readAll(download.read(0, 12 * BLOCK))
        self.assertTrue(bad.requested)
        threads.runAll()
        self.assertTrue(bad.closed)
        while not d.called:
            origin.answerAll()
            threads.runAll()
        self.assertEqual(self.successResultOf(d), content[: 12 * BLOCK])


class SchedulingCostTests(SynchronousTestCase):
    """
    The bookkeeping that keeps a scheduling pass cheap agrees with what it
    stands for.
    """

    def _inflightAgrees(self, download):
        counts: dict[int, int] = {}
        for state in download._sources:
            for index in state.inflight:
                counts[index] = counts.get(index, 0) + 1
        self.assertEqual(download._sources.inflight, counts)

    def test_inflightIndex(self):
        """
        The index of blocks in flight follows requests made, answered,
        cancelled, failed, moved off a lagging source, and lost with their
        source.
        """
        download, content, meta, clock = makeDownload(blocks=200)
        download.searching = False
        slow = FakeSource("slow", content, meta, holds=range(200))
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(slow)
        download.addSource(origin)
        reader = download.read(0)
        d = reader.read()
        self._inflightAgrees(download)
        self.assertTrue(download._sources.inflight)
        # The slow peer lags: the block the reader waits for is asked of the
        # origin too.
        clock.advance(scheduling.LAG_MIN + sourcing.CHECK_INTERVAL)
        self.assertEqual(download._sources.inflight[0], 2)
        self._inflightAgrees(download)
        origin.answer(0)
        self.assertEqual(self.successResultOf(d), content[:BLOCK])
        self.assertIn(0, slow.cancelled)
        self.assertNotIn(0, download._sources.inflight)
        self._inflightAgrees(download)
        index = min(slow.requests)
        slow.requests.pop(index).errback(SPPError(ErrorCode.BUSY, "busy"))
        self._inflightAgrees(download)
        reader.close()
        download.read(150 * BLOCK)
        self._inflightAgrees(download)
        slow.lose()
        self._inflightAgrees(download)
        download.close()
        self.assertEqual(download._sources.inflight, {})

    def test_requestsInBatches(self):
        """
        A source is given blocks read ahead only once REQUEST_BATCH of its
        pipeline is free, all in one pass; a block a reader needs soon is
        asked for at once, past the pipeline.
        """
        download, content, meta, clock = makeDownload(blocks=200)
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        reader = download.read(50 * BLOCK)
        self.assertEqual(
            len(origin.requests), scheduling.PIPELINE + scheduling.URGENT_BLOCKS
        )
        for index in range(50, 50 + scheduling.URGENT_BLOCKS):
            origin.answer(index)
        self.assertEqual(len(origin.requests), scheduling.PIPELINE)
        sent = len(origin.requested)
        ahead = sorted(origin.requests)
        for index in ahead[: scheduling.REQUEST_BATCH - 1]:
            origin.answer(index)
        self.assertEqual(len(origin.requested), sent)
        origin.answer(ahead[scheduling.REQUEST_BATCH - 1])
        self.assertEqual(len(origin.requested), sent + scheduling.REQUEST_BATCH)
        self.assertEqual(len(origin.requests), scheduling.PIPELINE)
        # The reader moves on: the blocks that turn urgent are asked for at
        # once, though the pipeline is full.
        for _ in range(scheduling.URGENT_BLOCKS):
            self.successResultOf(reader.read())
        self.assertNoResult(reader.read())
        urgent = set(range(reader.block, reader.block + scheduling.URGENT_BLOCKS))
        self.assertTrue(urgent <= set(origin.requests))
        self.assertGreater(len(origin.requests), scheduling.PIPELINE)
        self.assertLessEqual(
            len(origin.requests), scheduling.PIPELINE + scheduling.URGENT_BLOCKS
        )

    def test_orderFollowsReaders(self):
        """
        The order of wanted blocks is worked out again only when a reader
        moves to another block, and is the same as from scratch for one
        reader and for several.
        """
        download, content, meta, clock = makeDownload(blocks=200)

        def fromScratch():
            urgency: dict[int, int] = {}
            window = scheduling.READAHEAD_BYTES // BLOCK
            for r in download.readers:
                if r.position >= r.stop:
                    continue
                last = min(meta.blockAt(r.stop - 1), r.block + window - 1)
                for index in range(r.block, last + 1):
                    urgency[index] = min(urgency.get(index, 999), index - r.block)
            for index in download._edges:
                urgency.setdefault(index, scheduling.URGENT_BLOCKS)
            return sorted((u, i) for i, u in urgency.items())

        self.assertEqual(download._wantsNow().order, fromScratch())
        a = download.read(100 * BLOCK + 5, 110 * BLOCK)
        wants = download._wantsNow()
        self.assertEqual(wants.order, fromScratch())
        self.assertIs(download._wantsNow(), wants)
        a.position += 10
        self.assertIs(download._wantsNow(), wants)
        a.position = 101 * BLOCK
        self.assertEqual(download._wantsNow().order, fromScratch())
        download.read(197 * BLOCK)
        self.assertEqual(download._wantsNow().order, fromScratch())
        download.read(98 * BLOCK)
        self.assertEqual(download._wantsNow().order, fromScratch())

    def _threaded(self):
        content = random.Random(3).randbytes(40 * BLOCK)
        meta = FileMeta("spp://o:1/f", len(content), BLOCK, "sha256", "v1")
        threads = QueuedThreads()
        download = Download(meta, MemoryStore(meta), ThreadClock(), hashing=threads)  # type: ignore[arg-type]
        download.searching = False
        origin = FakeSource("origin", content, meta, authoritative=True)
        download.addSource(origin)
        passes = []
        assign = download._assign
        download._assign = lambda: passes.append(1) or assign()  # type: ignore[method-assign,func-returns-value]
        return download, content, origin, threads, passes

    def test_onePassPerVerifiedBlock(self):
        """
        A block verified in the hashing threads that a reader takes before
        waiting again costs one scheduling pass, the one the reader's wait
        asks for; a block nobody waits for costs none.
        """
        download, content, origin, threads, passes = self._threaded()
        reader = download.read(0)
        for index in range(3):
            origin.answer(index)
        received = []

        def read():
            reader.read().addCallback(lambda data: (received.append(data), read()))  # type: ignore[func-returns-value]

        read()
        threads.runOne(2)  # the first block in: the rest of the digests
        passes.clear()
        threads.runOne(1)  # nobody waits for it
        self.assertEqual((received, passes), ([], []))
        threads.runOne()  # block 0, taken with blocks 1 and 2, then a wait
        self.assertEqual(b"".join(received) == content[: 3 * BLOCK], True)
        self.assertEqual(passes, [1])

    def test_passWhenReaderStops(self):
        """
        A reader that takes a block verified in the threads and does not
        read on still gets the pass its move calls for.
        """
        download, content, origin, threads, passes = self._threaded()
        reader = download.read(0)
        origin.answer(0)
        d = reader.read()
        passes.clear()
        threads.runAll()
        self.assertEqual(self.successResultOf(d) == content[:BLOCK], True)
        self.assertEqual(passes, [1])
