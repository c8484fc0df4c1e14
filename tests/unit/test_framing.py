# -*- test-case-name: tests.unit.test_framing -*-
"""
Tests for L{p2pd.spp.framing}: frames out of a byte stream, on their own
and as an SPP connection reads them.
"""

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode
from p2pd.spp import codec
from p2pd.spp.framing import HEADER, FrameReader, FrameTooLarge, frameHeader
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

SMALL = 100
LARGE = 1000
LARGE_TYPE = 9


class Limits:
    """
    Frames of up to L{SMALL} bytes of any type, and of up to L{LARGE} bytes
    of type L{LARGE_TYPE}.
    """

    def smallFrameLimit(self) -> int:
        return SMALL

    def largeFrameAllowed(self, length: int, kind: int | None) -> bool:
        return length <= LARGE and kind in (None, LARGE_TYPE)


def framed(body: bytes) -> bytes:
    """
    C{body} with its length prefix.
    """
    return len(body).to_bytes(HEADER, "big") + body


def feedAll(reader: FrameReader, data: bytes) -> list[bytes]:
    """
    The bodies of the frames C{data} completes, copied.
    """
    return [bytes(body) for body in reader.feed(data)]


bodies = st.one_of(
    st.binary(max_size=SMALL),
    st.binary(min_size=1, max_size=LARGE).map(lambda b: bytes([LARGE_TYPE]) + b[1:]),
)


class FrameReaderTests(SynchronousTestCase):
    """
    L{FrameReader} on its own, with limits that do not change.
    """

    @given(st.lists(bodies, max_size=10), st.lists(st.integers(1, 300), max_size=30))
    def test_anyChunking(self, frames: list[bytes], cuts: list[int]) -> None:
        """
        However a stream of frames is cut into reads, each frame comes out
        once, whole and in order, and the reader holds no more than a
        frame's bytes.
        """
        reader = FrameReader(Limits())
        stream = b"".join(framed(body) for body in frames)
        got: list[bytes] = []
        position = 0
        for cut in [*cuts, len(stream)]:
            chunk = stream[position : position + cut]
            position += len(chunk)
            got += feedAll(reader, chunk)
            self.assertLessEqual(len(reader.buffer), HEADER + LARGE)
        self.assertEqual(got, frames)
        self.assertEqual(reader.buffer, b"")

    @given(st.binary(max_size=2000), st.integers(1, 64))
    def test_anyBytes(self, stream: bytes, chunk: int) -> None:
        """
        Whatever comes, the reader hands out frames within the limits or
        raises L{FrameTooLarge}, and holds no more than the largest frame.
        """
        reader = FrameReader(Limits())
        try:
            for start in range(0, len(stream), chunk):
                for body in reader.feed(stream[start : start + chunk]):
                    self.assertLessEqual(len(body), LARGE)
                    if len(body) > SMALL:
                        self.assertEqual(body[0], LARGE_TYPE)
                self.assertLessEqual(len(reader.buffer), HEADER + LARGE)
        except FrameTooLarge as e:
            self.assertGreater(e.length, SMALL)

    def test_smallLimit(self) -> None:
        """
        A frame of the small limit, of any type, comes out; one byte more
        of another type is refused at its type byte.
        """
        reader = FrameReader(Limits())
        self.assertEqual(feedAll(reader, framed(b"\x01" * SMALL)), [b"\x01" * SMALL])
        self.assertEqual(feedAll(reader, frameHeader(SMALL + 1, 1)[:HEADER]), [])
        self.assertEqual(len(reader.buffer), HEADER)
        error = self.assertRaises(FrameTooLarge, feedAll, reader, b"\x01")
        self.assertEqual(error.length, SMALL + 1)
        self.assertEqual(reader.buffer, b"")

    def test_largeLimit(self) -> None:
        """
        A frame of the type allowed more comes out up to its limit; one
        byte more is refused at its length, before its type byte.
        """
        reader = FrameReader(Limits())
        body = bytes([LARGE_TYPE]) * LARGE
        self.assertEqual(feedAll(reader, framed(body)), [body])
        self.assertRaises(
            FrameTooLarge, feedAll, reader, (LARGE + 1).to_bytes(HEADER, "big")
        )

    def test_costsWhatArrived(self) -> None:
        """
        A frame still arriving holds the bytes that arrived, not the length
        it announces.
        """
        reader = FrameReader(Limits())
        self.assertEqual(feedAll(reader, frameHeader(LARGE, LARGE_TYPE)), [])
        self.assertEqual(feedAll(reader, b"x" * 10), [])
        self.assertEqual(len(reader.buffer), HEADER + 1 + 10)
        reader.clear()
        self.assertEqual(reader.buffer, b"")

    def test_stopEarly(self) -> None:
        """
        A reader that stops taking frames, as a closed connection does,
        keeps none of the rest of the stream.
        """
        reader = FrameReader(Limits())
        stream = framed(b"\x01") + framed(b"\x02") + framed(b"\x03")[:3]
        for body in reader.feed(stream):
            self.assertEqual(bytes(body), b"\x01")
            break
        self.assertEqual(reader.buffer, b"")
        self.assertEqual(feedAll(reader, framed(b"\x04")), [b"\x04"])

    def test_frameHeader(self) -> None:
        """
        L{frameHeader} is the length prefix and the type byte.
        """
        self.assertEqual(frameHeader(258, 9), b"\x00\x00\x01\x02\x09")


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
            client.feedRaw(frame(codec.Block(request.request, index, block)), chunk)  # type: ignore[union-attr]
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
