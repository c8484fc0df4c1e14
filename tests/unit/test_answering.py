# -*- test-case-name: tests.unit.test_answering -*-
"""
Tests for L{p2pd.spp.answering}: an SPP connection answering the other
node's requests.
"""

import dataclasses
import gc

from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.peers import MAX_PEERS, Peer
from p2pd.spp import answering, codec
from p2pd.spp.answering import MAX_OPEN_FILES, MAX_PENDING_REQUESTS
from tests.fakes import FakeServedFile
from tests.unit.test_protocol import (
    BLOCK,
    URL,
    ErrorAssertions,
    Wire,
    content,
    frame,
    ready,
    serving,
)


class ServingTests(SynchronousTestCase, ErrorAssertions):
    """
    Answering the other node's Open, GetDigests, GetBlock, GetPeers, Cancel
    and Close.
    """

    def test_open(self) -> None:
        """
        Open is answered with Opened: the served file's metadata. The node
        is asked with the URL, version and connection.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(
            wire.sent(), [codec.Opened(5, served.size, BLOCK, True, "sha256", "v1")]
        )
        self.assertEqual(wire.node.opens, [(URL, "v1", wire.protocol)])

    def test_handleIsOpenRequest(self) -> None:
        """
        A file's handle is the id of the Open that opened it: requests can
        name it right behind the Open. An Open whose id is an open handle
        gets Error BAD_REQUEST and leaves that handle alone.
        """
        wire, served = serving()
        wire.feed(
            codec.Open(5, URL, ""),
            codec.GetDigests(6, 5, 0, 1),
            codec.Open(5, URL, ""),
        )
        opened, digests, error = wire.sent()
        self.assertIsInstance(opened, codec.Opened)
        self.assertEqual(digests, codec.Digests(6, 0, served.digestsOf(0, 1)))
        self.assertErrorFrame(error, 5, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)
        wire.feed(codec.GetDigests(7, 5, 1, 1))
        self.assertEqual(wire.sent(), [codec.Digests(7, 1, served.digestsOf(1, 1))])

    def test_openNotFound(self) -> None:
        """
        An Open the node refuses gets an Error with the request id and its
        code; the connection stays open.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, "spp://origin:1111/nothing", ""))
        [error] = wire.sent()
        self.assertErrorFrame(error, 5, ErrorCode.NOT_FOUND)
        self.assertFalse(wire.closed)

    def test_openOtherErrors(self) -> None:
        """
        The node's error code (CHANGED, FORBIDDEN) is passed on.
        """
        for code in (ErrorCode.CHANGED, ErrorCode.FORBIDDEN):
            wire, served = serving()
            wire.node.openError = SPPError(code, "no")
            wire.feed(codec.Open(5, URL, ""))
            [error] = wire.sent()
            self.assertErrorFrame(error, 5, code)
            self.assertFalse(wire.closed)

    def test_tooManyOpen(self) -> None:
        """
        At most 64 handles are open per connection; Open beyond gets BUSY,
        and after a Close there is room again.
        """
        wire, served = serving()
        wire.feed(*[codec.Open(r, URL, "") for r in range(1, MAX_OPEN_FILES + 1)])
        self.assertEqual(len(wire.sent()), MAX_OPEN_FILES)
        wire.feed(codec.Open(100, URL, ""))
        [error] = wire.sent()
        self.assertErrorFrame(error, 100, ErrorCode.BUSY)
        wire.feed(codec.Close(3), codec.Open(101, URL, ""))
        [opened] = wire.sent()
        self.assertIsInstance(opened, codec.Opened)
        self.assertFalse(wire.closed)

    def test_haveForHeld(self) -> None:
        """
        A non-authoritative Opened is followed by Have for the blocks held.
        """
        served = FakeServedFile(
            content(10 * BLOCK), authoritative=False, held=[(0, 2), (5, 1)]
        )
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(
            wire.sent(),
            [
                codec.Opened(5, served.size, BLOCK, False, "sha256", "v1"),
                codec.Have(5, ((0, 2), (5, 1))),
            ],
        )

    def test_haveManyRanges(self) -> None:
        """
        More held ranges than fit in one Have go in several.
        """
        held = [(2 * i, 1) for i in range(codec.MAX_HAVE_RANGES + 10)]
        served = FakeServedFile(content(BLOCK), authoritative=False, held=held)
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        opened, first, second = wire.sent()
        self.assertEqual(first, codec.Have(5, tuple(held[: codec.MAX_HAVE_RANGES])))
        self.assertEqual(second, codec.Have(5, tuple(held[codec.MAX_HAVE_RANGES :])))

    def test_haveUpdates(self) -> None:
        """
        Blocks the served file gains while the handle is open are announced
        with Have; after Close they are not.
        """
        served = FakeServedFile(content(10 * BLOCK), authoritative=False)
        wire, _ = serving(served)
        wire.feed(codec.Open(5, URL, "v1"))
        self.assertEqual(len(wire.sent()), 1)
        [watcher] = served.watchers
        watcher([(3, 2)])
        self.assertEqual(wire.sent(), [codec.Have(5, ((3, 2),))])
        wire.feed(codec.Close(5))
        watcher([(7, 1)])
        self.assertEqual(wire.sent(), [])

    def test_authoritativeNoHave(self) -> None:
        """
        An authoritative answer holds every block: no Have, no watch.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, ""))
        [opened] = wire.sent()
        self.assertEqual(served.watchers, [])

    def test_peerReadingNothingDropped(self) -> None:
        """
        A peer that keeps asking while it reads nothing (its transport stays
        full) is dropped, without waiting to send what is buffered, once
        C{MAX_UNREAD} bytes were written since it last read; a peer that
        reads in between is not.
        """
        self.patch(answering, "MAX_UNREAD", 1000)
        wire, served = serving()
        missing = codec.Open(0, "spp://origin:1111/nothing", "")
        producer = wire.transport.producer
        for round_ in range(3):
            producer.pauseProducing()  # type: ignore[union-attr]  # as a full transport does
            wire.feed(*[dataclasses.replace(missing, request=r) for r in range(1, 41)])
            self.assertFalse(wire.closed, round_)
            producer.resumeProducing()  # type: ignore[union-attr]
        self.assertGreater(len(wire.transport.value()), 2000)
        wire.transport.clear()
        aborted: list[bool] = []
        wire.transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
        producer.pauseProducing()  # type: ignore[union-attr]
        wire.feed(*[dataclasses.replace(missing, request=r) for r in range(1, 81)])
        self.assertEqual(aborted, [True])
        self.assertLessEqual(len(wire.transport.value()), 1000)

    def test_close(self) -> None:
        """
        Close releases the served file and is not answered; the handle is
        then unknown.
        """
        wire, served = serving()
        wire.feed(codec.Open(5, URL, ""))
        wire.sent()
        wire.feed(codec.Close(5))
        self.assertEqual(served.closed, 1)
        self.assertEqual(wire.sent(), [])
        wire.feed(codec.GetBlock(6, 5, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 6, ErrorCode.NOT_FOUND)

    def test_closeUnknownHandle(self) -> None:
        """
        Close of a handle that is not open is ignored.
        """
        wire, served = serving()
        wire.feed(codec.Close(9))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def _opened(
        self, served: FakeServedFile | None = None
    ) -> tuple[Wire, FakeServedFile]:
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        return wire, served

    def test_getDigests(self) -> None:
        """
        GetDigests is answered with the digests of the blocks asked for.
        """
        wire, served = self._opened()
        wire.feed(codec.GetDigests(7, 1, 1, 2))
        self.assertEqual(wire.sent(), [codec.Digests(7, 1, served.digestsOf(1, 2))])

    def test_getDigestsLater(self) -> None:
        """
        Digests computed later are sent when ready, in the order they are
        ready.
        """
        wire, served = self._opened(FakeServedFile(content(3 * BLOCK), manual=True))
        wire.feed(codec.GetDigests(7, 1, 0, 1), codec.GetDigests(8, 1, 1, 2))
        self.assertEqual(wire.sent(), [])
        (first, firstValue), (second, secondValue) = served.pendingDigests
        second.callback(secondValue)
        first.callback(firstValue)
        self.assertEqual(
            wire.sent(),
            [codec.Digests(8, 1, secondValue), codec.Digests(7, 0, firstValue)],
        )

    def test_getDigestsNotAuthoritative(self) -> None:
        """
        Only authorities give digests: others answer NOT_FOUND.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), authoritative=False))
        wire.feed(codec.GetDigests(7, 1, 0, 1))
        [error] = wire.sent()
        self.assertErrorFrame(error, 7, ErrorCode.NOT_FOUND)
        self.assertFalse(wire.closed)

    def test_getDigestsPastEnd(self) -> None:
        """
        Digests asked for past the end of the file are cut at the end (an
        opener may ask before it knows the size): from the end itself there
        are none; digests from a block past the end get BAD_REQUEST for that
        request only.
        """
        wire, served = self._opened()
        wire.feed(
            codec.GetDigests(7, 1, 2, 5),
            codec.GetDigests(8, 1, 3, 1),
            codec.GetDigests(9, 1, 4, 1),
        )
        digests, none, error = wire.sent()
        self.assertEqual(digests, codec.Digests(7, 2, served.digestsOf(2, 1)))
        self.assertEqual(none, codec.Digests(8, 3, b""))
        self.assertErrorFrame(error, 9, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_getDigestsBusy(self) -> None:
        """
        Beyond 64 digest requests outstanding, GetDigests gets BUSY.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(
            *[codec.GetDigests(r, 1, 0, 1) for r in range(1, MAX_PENDING_REQUESTS + 2)]
        )
        [error] = wire.sent()
        self.assertErrorFrame(error, MAX_PENDING_REQUESTS + 1, ErrorCode.BUSY)
        for d, value in served.pendingDigests[:MAX_PENDING_REQUESTS]:
            d.callback(value)
        self.assertEqual(len(wire.sent()), MAX_PENDING_REQUESTS)
        del served.pendingDigests[:]
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_getPeers(self) -> None:
        """
        GetPeers is answered with the served file's peers, and the asker is
        recorded at its address and the listen port of its Hello.
        """
        wire, served = self._opened()
        served.peerList = [Peer("10.0.0.3", 1111), Peer("::1", 80, True)]
        wire.feed(codec.GetPeers(8, 1))
        self.assertEqual(wire.sent(), [codec.Peers(8, tuple(served.peerList))])
        self.assertEqual(served.askers, [("10.0.0.2", 2222)])

    def test_getPeersAtMost64(self) -> None:
        """
        At most 64 peers are sent, the first ones.
        """
        wire, served = self._opened()
        served.peerList = [Peer("10.0.0.3", port) for port in range(1, 100)]
        wire.feed(codec.GetPeers(8, 1))
        [peers] = wire.sent()
        self.assertEqual(peers.peers, tuple(served.peerList[: MAX_PEERS]))  # type: ignore[union-attr]

    def test_getBlock(self) -> None:
        """
        GetBlock is answered with the block's bytes, the last one short.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(9, 1, 0), codec.GetBlock(10, 1, 2))
        self.assertEqual(
            wire.sent(),
            [codec.Block(9, 0, served.block(0)), codec.Block(10, 2, served.block(2))],
        )
        self.assertEqual(len(served.block(2)), BLOCK - 100)

    def test_getBlockPastEnd(self) -> None:
        """
        A block past the end gets BAD_REQUEST for that request only.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(9, 1, 3))
        [error] = wire.sent()
        self.assertErrorFrame(error, 9, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_readFails(self) -> None:
        """
        A read failing with an SPP error sends that error; any other failure
        is logged and sent as INTERNAL.
        """
        wire, served = self._opened()
        served.readError = SPPError(ErrorCode.UNAVAILABLE, "not held")
        wire.feed(codec.GetBlock(9, 1, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 9, ErrorCode.UNAVAILABLE)
        served.readError = OSError("disk on fire")
        wire.feed(codec.GetBlock(10, 1, 0))
        [error] = wire.sent()
        self.assertErrorFrame(error, 10, ErrorCode.INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertFalse(wire.closed)

    def test_unknownHandle(self) -> None:
        """
        GetBlock, GetDigests or GetPeers naming a handle that is not open
        (it may follow an Open that failed) gets Error NOT_FOUND; the
        connection stays up.
        """
        for message in (
            codec.GetBlock(9, 7, 0),
            codec.GetDigests(9, 7, 0, 1),
            codec.GetPeers(9, 7),
        ):
            wire, served = self._opened()
            wire.feed(message)
            [error] = wire.sent()
            self.assertErrorFrame(error, 9, ErrorCode.NOT_FOUND)
            self.assertFalse(wire.closed)

    def test_pipelining(self) -> None:
        """
        Several GetBlock may be outstanding; each is answered when its block
        is read, whatever the order of the requests.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        self.assertEqual(wire.sent(), [])
        self.assertEqual(served.readIndexes, [0, 1])  # two reads at once
        served.finishRead(1)
        self.assertEqual(wire.sent(), [codec.Block(2, 1, served.block(1))])
        self.assertEqual(served.readIndexes, [0, 1, 2])
        served.finishRead(2)
        served.finishRead(0)
        self.assertEqual(
            wire.sent(),
            [codec.Block(3, 2, served.block(2)), codec.Block(1, 0, served.block(0))],
        )

    def test_tooManyBlockRequests(self) -> None:
        """
        Beyond 64 outstanding GetBlock, a request gets BUSY; the others are
        still answered.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        count = MAX_PENDING_REQUESTS + 1
        wire.feed(*[codec.GetBlock(r, 1, 0) for r in range(1, count + 1)])
        [error] = wire.sent()
        self.assertErrorFrame(error, count, ErrorCode.BUSY)
        self.assertFalse(wire.closed)
        while served.reads:
            served.finishRead(0)
        self.assertEqual(
            [m.request for m in wire.sent()],  # type: ignore[union-attr]
            list(range(1, count)),
        )

    def test_cancelQueued(self) -> None:
        """
        Cancel of a request not yet being read gets Error CANCELLED, and its
        block is neither read nor sent.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Cancel(3))
        [error] = wire.sent()
        self.assertErrorFrame(error, 3, ErrorCode.CANCELLED)
        served.finishRead(0)
        served.finishRead(1)
        self.assertEqual(
            wire.sent(),
            [codec.Block(1, 0, served.block(0)), codec.Block(2, 1, served.block(1))],
        )
        self.assertEqual(served.readIndexes, [0, 1])
        self.assertFalse(wire.closed)

    def test_cancelReading(self) -> None:
        """
        Cancel of a block being read cancels the read and sends Error
        CANCELLED; the next queued request is then read.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Cancel(1))
        self.assertEqual(served.cancelled, [0])
        [error] = wire.sent()
        self.assertErrorFrame(error, 1, ErrorCode.CANCELLED)
        self.assertEqual(served.readIndexes, [0, 1, 2])

    def test_cancelDigests(self) -> None:
        """
        Cancel of a digest request being computed sends Error CANCELLED.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(codec.GetDigests(4, 1, 0, 1), codec.Cancel(4))
        [error] = wire.sent()
        self.assertErrorFrame(error, 4, ErrorCode.CANCELLED)

    def test_cancelUnknown(self) -> None:
        """
        Cancel of a request that was already answered, or never made, is
        ignored.
        """
        wire, served = self._opened()
        wire.feed(codec.GetBlock(1, 1, 0))
        self.assertEqual(len(wire.sent()), 1)
        wire.feed(codec.Cancel(1), codec.Cancel(77))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_closeWithQueuedRequests(self) -> None:
        """
        Requests still queued when their handle is closed get Error
        NOT_FOUND, as any request naming a handle not open; reads already
        started are answered.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(
            codec.GetBlock(1, 1, 0), codec.GetBlock(2, 1, 1), codec.GetBlock(3, 1, 2)
        )
        wire.feed(codec.Close(1))
        served.finishRead(0)
        block, error = wire.sent()
        self.assertEqual(block, codec.Block(1, 0, served.block(0)))
        self.assertErrorFrame(error, 3, ErrorCode.NOT_FOUND)
        self.assertFalse(wire.closed)

    def test_producerRegistered(self) -> None:
        """
        The protocol registers a streaming producer on its transport.
        """
        wire = ready()
        self.assertIsNotNone(wire.transport.producer)
        self.assertTrue(wire.transport.streaming)

    def test_backpressure(self) -> None:
        """
        While the transport has paused the producer, queued blocks are not
        read or sent; resuming sends them, the block nearest the start of
        the file first (the one the other side's reader wants soonest), in
        the order asked among equals.
        """
        wire, served = self._opened()
        wire.transport.producer.pauseProducing()  # type: ignore[union-attr]
        wire.feed(*[codec.GetBlock(r, 1, r % 3) for r in range(1, 6)])
        self.assertEqual(wire.sent(), [])
        self.assertEqual(served.readIndexes, [])
        wire.transport.producer.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(
            wire.sent(),
            [
                codec.Block(r, r % 3, served.block(r % 3))
                for r in sorted(range(1, 6), key=lambda r: r % 3)
            ],
        )

    def test_backpressureWhileReading(self) -> None:
        """
        Blocks already being read when the producer is paused are sent, but
        no new read starts until it is resumed.
        """
        wire, served = self._opened(FakeServedFile(content(4 * BLOCK), manual=True))
        wire.feed(*[codec.GetBlock(r, 1, r - 1) for r in range(1, 5)])
        wire.transport.producer.pauseProducing()  # type: ignore[union-attr]
        served.finishRead(0)
        served.finishRead(1)
        self.assertEqual([m.request for m in wire.sent()], [1, 2])  # type: ignore[union-attr]
        self.assertEqual(served.readIndexes, [0, 1])
        wire.transport.producer.resumeProducing()  # type: ignore[union-attr]
        self.assertEqual(served.readIndexes, [0, 1, 2, 3])


class RequestAccountingTests(SynchronousTestCase, ErrorAssertions):
    """
    Request ids and limits across the kinds of request.
    """

    def _opened(
        self, served: FakeServedFile | None = None
    ) -> tuple[Wire, FakeServedFile]:
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        return wire, served

    def test_reusedRequestId(self) -> None:
        """
        A request id reused while its answer is outstanding is a protocol
        error.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(codec.GetBlock(5, 1, 0), codec.GetBlock(5, 1, 0))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_requestIdZero(self) -> None:
        """
        A request with id 0 (Open, GetDigests, GetBlock or GetPeers) is a
        protocol error: Error(0, BAD_REQUEST) and a close, never an answer.
        """
        requests: list[codec.Message] = [
            codec.Open(0, URL, ""),
            codec.GetDigests(0, 1, 0, 1),
            codec.GetBlock(0, 1, 0),
            codec.GetPeers(0, 1),
        ]
        for request in requests:
            wire, served = self._opened()
            wire.feed(request)
            self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_reusedRequestIdEveryKind(self) -> None:
        """
        Any request reusing the id of a GetBlock or GetDigests still
        unanswered is a protocol error.
        """
        requests: list[codec.Message] = [
            codec.Open(5, URL, ""),
            codec.GetDigests(5, 1, 0, 1),
            codec.GetBlock(5, 1, 0),
            codec.GetPeers(5, 1),
        ]
        for request in requests:
            wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
            wire.feed(codec.GetDigests(5, 1, 0, 1), request)
            self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_oneReadTakenWhole(self) -> None:
        """
        Of 65 GetBlock arriving in one read, even of blocks read at once,
        the 65th gets BUSY and the 64 others their blocks: every request
        of a read is taken before any block is sent.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK)))
        count = MAX_PENDING_REQUESTS + 1
        wire.feed(*[codec.GetBlock(r, 1, 0) for r in range(1, count + 1)])
        answers = wire.sent()
        self.assertEqual(len(answers), count)
        self.assertErrorFrame(answers[0], count, ErrorCode.BUSY)
        self.assertEqual(
            answers[1:], [codec.Block(r, 0, served.block(0)) for r in range(1, count)]
        )

    def test_emptyFile(self) -> None:
        """
        An empty file has no blocks: GetDigests from block 0 gets no
        digests, GetBlock of block 0 gets BAD_REQUEST, and the connection
        stays up.
        """
        wire, served = self._opened(FakeServedFile(b""))
        wire.feed(codec.GetDigests(2, 1, 0, 64), codec.GetBlock(3, 1, 0))
        digests, error = wire.sent()
        self.assertEqual(digests, codec.Digests(2, 0, b""))
        self.assertErrorFrame(error, 3, ErrorCode.BAD_REQUEST)
        self.assertFalse(wire.closed)

    def test_limitCountsEveryKind(self) -> None:
        """
        Block and digest requests share one limit of MAX_PENDING_REQUESTS.
        """
        wire, served = self._opened(FakeServedFile(content(BLOCK), manual=True))
        wire.feed(*[codec.GetBlock(r, 1, 0) for r in range(1, MAX_PENDING_REQUESTS)])
        wire.feed(codec.GetDigests(1000, 1, 0, 1))
        wire.feed(codec.GetDigests(1001, 1, 0, 1))
        errors = [m for m in wire.sent() if isinstance(m, codec.Error)]
        self.assertEqual([e.request for e in errors], [1001])
        self.assertErrorFrame(errors[0], 1001, ErrorCode.BUSY)

    def test_errorZeroStopsProcessing(self) -> None:
        """
        Frames after a connection-level Error in the same data are ignored.
        """
        wire, served = self._opened()
        wire.feedRaw(
            frame(codec.Error(0, ErrorCode.INTERNAL, "bye"))
            + frame(codec.GetBlock(2, 1, 0))
        )
        self.assertEqual(wire.sent(), [])
        self.assertTrue(wire.closed)

    def test_haveUpdatesSplit(self) -> None:
        """
        An update of more ranges than one Have frame may carry is sent as
        several frames.
        """
        served = FakeServedFile(content(4000 * BLOCK), authoritative=False)
        wire, served = serving(served)
        wire.feed(codec.Open(1, URL, "v1"))
        wire.sent()
        [callback] = served.watchers
        callback([(i * 2, 1) for i in range(codec.MAX_HAVE_RANGES + 5)])
        haves = wire.sent()
        self.assertEqual([len(h.ranges) for h in haves], [codec.MAX_HAVE_RANGES, 5])  # type: ignore[union-attr]
