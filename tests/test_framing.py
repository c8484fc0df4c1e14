# -*- test-case-name: tests.test_framing -*-
"""
Tests for L{p2pd.spp.framing}: frames out of a byte stream, on their own
and as an SPP connection reads them.
"""

import struct

from twisted.trial.unittest import SynchronousTestCase

from p2pd.spp import codec
from p2pd.spp.codec import ErrorCode
from tests.test_protocol import (
    BLOCK,
    URL,
    ErrorAssertions,
    FakeServedFile,
    Wire,
    content,
    frame,
    ready,
    serving,
)


class FramingTests(SynchronousTestCase, ErrorAssertions):
    """
    Oversized, malformed and unknown frames.
    """

    def test_frameTooLong(self) -> None:
        """
        A length prefix over L{codec.MAX_FRAME} gets Error BAD_REQUEST and a
        close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", codec.MAX_FRAME + 1))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_hugeFrameNotBuffered(self) -> None:
        """
        After a length prefix over the limit, the protocol keeps none of the
        bytes that follow: memory stays bounded however much is sent.
        """
        for handshaken in (False, True):
            wire = ready() if handshaken else Wire()
            if not handshaken:
                wire.feedRaw(codec.MAGIC)
            wire.feedRaw(struct.pack("!I", 0xFFFFFFFF))
            for _ in range(64):
                wire.feedRaw(b"x" * 65536)
            self.assertTrue(wire.closed)
            self.assertLessEqual(wire.protocol.bufferedBytes, 4)

    def test_framesInAnyChunking(self) -> None:
        """
        Frames arrive intact however the stream is cut: a big Block split
        across many reads, and many small frames in one read.
        """
        wire, served = serving(FakeServedFile(content(4 * BLOCK)))
        wire.feed(codec.Open(1, URL, ""))
        wire.sent()
        requests = b"".join(frame(codec.GetBlock(r, 1, r % 4)) for r in range(2, 40))
        wire.feedRaw(requests)
        self.assertEqual(len(wire.sent()), 38)
        self.assertEqual(wire.protocol.bufferedBytes, 0)
        client = ready(initiator=True)
        d = client.protocol.open(URL)
        client.feed(codec.Opened(1, 4 * BLOCK, BLOCK, True, "sha256", "v1"))
        remote = self.successResultOf(d)
        client.sent()
        whole = content(4 * BLOCK)
        for index, chunk in ((1, 1), (2, 1000), (3, 65536)):
            got = remote.getBlock(index)
            [request] = client.sent()
            block = whole[index * BLOCK : (index + 1) * BLOCK]
            client.feedRaw(frame(codec.Block(request.request, index, block)), chunk)
            self.assertEqual(self.successResultOf(got), block)
            self.assertEqual(client.protocol.bufferedBytes, 0)

    def test_largestBlockAccepted(self) -> None:
        """
        A Block of the largest block size fits in a frame and is delivered.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        size = codec.MAX_BLOCK_SIZE
        wire.feed(codec.Opened(1, size, size, True, "sha256", "v1"))
        remote = self.successResultOf(d)
        got = remote.getBlock(0)
        data = b"b" * size
        wire.feedRaw(frame(codec.Block(2, 0, data)), chunk=65536)
        self.assertEqual(self.successResultOf(got), data)
        self.assertFalse(wire.closed)

    def test_malformedFrame(self) -> None:
        """
        A frame that does not decode gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 3) + b"\x08\x00\x00")
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_unknownType(self) -> None:
        """
        A frame of an unknown type gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 1) + b"\x7f")
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_emptyFrame(self) -> None:
        """
        A frame of length 0 gets Error BAD_REQUEST and a close.
        """
        wire = ready()
        wire.feedRaw(struct.pack("!I", 0))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_framesAfterErrorIgnored(self) -> None:
        """
        Frames arriving after a protocol error, even in the same chunk, are
        not acted on.
        """
        wire, served = serving()
        wire.feedRaw(struct.pack("!I", 1) + b"\x7f" + frame(codec.Open(1, URL, "")))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.node.opens, [])
