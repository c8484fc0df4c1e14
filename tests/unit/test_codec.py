# -*- test-case-name: tests.unit.test_codec -*-
"""
Tests for L{p2pd.spp.codec}: SPP v1 frames to and from plain values.
"""

import struct
import typing

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.peers import MAX_PEERS, Peer
from p2pd.spp import codec
from p2pd.spp.codec import DecodeError

_u8 = st.integers(0, 0xFF)
_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFFFFFF)
_printableASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def _ascii(minSize: int, maxSize: int) -> st.SearchStrategy[str]:
    return st.text(_printableASCII, min_size=minSize, max_size=maxSize)


def _utf8(minSize: int, maxBytes: int) -> st.SearchStrategy[str]:
    """
    Text whose UTF-8 encoding has at most C{maxBytes} bytes (a character is
    at most four bytes).
    """
    return st.text(min_size=minSize, max_size=maxBytes // 4)


_blockSizes = st.sampled_from(
    [2**n for n in range(14, 23)]  # 16 KiB to 4 MiB
)


@st.composite
def _openedMessages(draw: st.DrawFn) -> codec.Opened:
    blockSize = draw(_blockSizes)
    return codec.Opened(
        request=draw(_u32),
        size=draw(st.integers(0, blockSize * codec.MAX_BLOCKS)),
        blockSize=blockSize,
        authoritative=draw(st.booleans()),
        digestName=draw(_ascii(0, codec.MAX_DIGEST_NAME)),
        version=draw(_ascii(1, codec.MAX_VERSION_STAMP)),
    )


_ranges = st.integers(0, codec.MAX_BLOCKS - 1).flatmap(
    lambda first: st.tuples(st.just(first), st.integers(1, codec.MAX_BLOCKS - first))
)


def _peer() -> st.SearchStrategy[Peer]:
    return st.builds(
        Peer,
        host=st.ip_addresses().map(str),
        port=st.integers(1, 0xFFFF),
        server=st.booleans(),
    )


STRATEGIES: dict[type, st.SearchStrategy[typing.Any]] = {
    codec.Hello: st.builds(
        codec.Hello,
        version=_u8,
        listenPort=_u16,
        nodeId=st.binary(min_size=16, max_size=16),
        agent=_utf8(0, codec.MAX_AGENT),
    ),
    codec.Error: st.builds(
        codec.Error,
        request=_u32,
        code=_u16,
        message=_utf8(0, codec.MAX_ERROR_MESSAGE),
    ),
    codec.Open: st.builds(
        codec.Open,
        request=_u32,
        url=_utf8(1, codec.MAX_URL),
        version=_ascii(0, codec.MAX_VERSION_STAMP),
    ),
    codec.Opened: _openedMessages(),
    codec.Close: st.builds(codec.Close, handle=_u32),
    codec.GetDigests: st.builds(
        codec.GetDigests,
        request=_u32,
        handle=_u32,
        first=_u32,
        count=st.integers(1, codec.MAX_DIGESTS_PER_REQUEST),
    ),
    codec.Digests: st.builds(
        codec.Digests, request=_u32, first=_u32, digests=st.binary(max_size=640)
    ),
    codec.GetBlock: st.builds(codec.GetBlock, request=_u32, handle=_u32, index=_u32),
    codec.Block: st.builds(
        codec.Block, request=_u32, index=_u32, data=st.binary(max_size=2048)
    ),
    codec.Cancel: st.builds(codec.Cancel, request=_u32),
    codec.Have: st.builds(
        codec.Have,
        handle=_u32,
        ranges=st.lists(_ranges, max_size=40).map(tuple),
    ),
    codec.GetPeers: st.builds(codec.GetPeers, request=_u32, handle=_u32),
    codec.Peers: st.builds(
        codec.Peers,
        request=_u32,
        peers=st.lists(_peer(), max_size=MAX_PEERS).map(tuple),
    ),
    codec.KeepAlive: st.just(codec.KeepAlive()),
}

messages = st.one_of(*STRATEGIES.values())


def frame(message: codec.Message) -> bytes:
    """
    A whole frame on the wire: the length prefix and the body.
    """
    body = codec.encode(message)
    return struct.pack("!I", len(body)) + body


def _decodes(test: SynchronousTestCase, body: bytes) -> None:
    """
    Decode C{body}, accepting success or L{DecodeError} and nothing else.
    """
    try:
        codec.decode(body)
    except DecodeError:
        pass
    except Exception as e:  # pragma: no cover - the failure being tested for
        test.fail(f"decode({body!r}) raised {e!r}")


class RoundTripTests(SynchronousTestCase):
    """
    Every valid message decodes back to itself.
    """

    def test_everyTypeHasAStrategy(self) -> None:
        """
        The strategies below cover every message type the codec knows, so a
        new type cannot go untested.
        """
        self.assertEqual(set(STRATEGIES), set(typing.get_args(codec.Message)))

    def test_typeCodesDistinct(self) -> None:
        """
        No two message types share a type code.
        """
        codes = [cls.TYPE for cls in typing.get_args(codec.Message)]
        self.assertEqual(len(codes), len(set(codes)))

    @given(messages)
    def test_roundTrip(self, message: codec.Message) -> None:
        """
        C{decode(encode(m)) == m} for every message type, and the first byte
        of the body is the type code.
        """
        body = codec.encode(message)
        self.assertEqual(body[0], message.TYPE)
        self.assertEqual(codec.decode(body), message)

    @given(STRATEGIES[codec.Hello])
    def test_hello(self, message: codec.Hello) -> None:
        """
        Hello round-trips.
        """
        self.assertEqual(codec.decode(codec.encode(message)), message)

    @given(STRATEGIES[codec.Opened])
    def test_opened(self, message: codec.Opened) -> None:
        """
        Opened round-trips, including the authoritative flag and the
        largest sizes.
        """
        self.assertEqual(codec.decode(codec.encode(message)), message)

    @given(STRATEGIES[codec.Have])
    def test_have(self, message: codec.Have) -> None:
        """
        Have round-trips with any number of ranges within the limit.
        """
        self.assertEqual(codec.decode(codec.encode(message)), message)

    @given(STRATEGIES[codec.Peers])
    def test_peers(self, message: codec.Peers) -> None:
        """
        Peers round-trips IPv4 and IPv6 addresses and the mirror flag.
        """
        self.assertEqual(codec.decode(codec.encode(message)), message)

    def test_largestValues(self) -> None:
        """
        Messages at every limit at once still round-trip.
        """
        for message in [
            codec.Open(1, "u" * codec.MAX_URL, "v" * codec.MAX_VERSION_STAMP),
            codec.Hello(0xFF, 0xFFFF, b"\xff" * 16, "a" * codec.MAX_AGENT),
            codec.Error(0xFFFFFFFF, 0xFFFF, "m" * codec.MAX_ERROR_MESSAGE),
            codec.Have(1, ((0, 1),) * codec.MAX_HAVE_RANGES),
            codec.Have(1, ((0, codec.MAX_BLOCKS),)),
            codec.Peers(1, (Peer("::1", 1, True),) * MAX_PEERS),
            codec.GetDigests(1, 1, 0, codec.MAX_DIGESTS_PER_REQUEST),
            codec.Digests(
                1, 0, b"d" * codec.MAX_DIGESTS_PER_REQUEST * codec.MAX_DIGEST_SIZE
            ),
            codec.Block(1, 0, b"b" * codec.MAX_BLOCK_SIZE),
            codec.Opened(
                1,
                codec.MAX_BLOCK_SIZE * codec.MAX_BLOCKS,
                codec.MAX_BLOCK_SIZE,
                True,
                "n" * codec.MAX_DIGEST_NAME,
                "v" * codec.MAX_VERSION_STAMP,
            ),
        ]:
            self.assertEqual(codec.decode(codec.encode(message)), message)  # type: ignore[arg-type]

    def test_largestFrameWithinLimit(self) -> None:
        """
        A Block of the largest block size fits in L{codec.MAX_FRAME}.
        """
        body = codec.encode(codec.Block(0xFFFFFFFF, 0, b"b" * codec.MAX_BLOCK_SIZE))
        self.assertLessEqual(len(body), codec.MAX_FRAME)

    def test_errorMessageTruncated(self) -> None:
        """
        An Error's message is cut to L{codec.MAX_ERROR_MESSAGE} bytes when
        encoded, so the frame still decodes.
        """
        decoded = codec.decode(codec.encode(codec.Error(1, 2, "x" * 1000)))
        self.assertEqual(decoded, codec.Error(1, 2, "x" * codec.MAX_ERROR_MESSAGE))

    def test_errorUnknownCode(self) -> None:
        """
        An Error with a code this node does not know still decodes, so newer
        peers' errors are reported rather than dropping the connection.
        """
        self.assertEqual(
            codec.decode(codec.encode(codec.Error(3, 999, "new"))),
            codec.Error(3, 999, "new"),
        )

    def test_openedFlagsOtherBits(self) -> None:
        """
        Flag bits other than bit 0 are ignored.
        """
        body = bytearray(codec.encode(codec.Opened(1, 3, 2**14, False, "n", "v")))
        body[1 + 16] = 0xFE  # the flags byte, after request/size/block size
        self.assertFalse(codec.decode(bytes(body)).authoritative)  # type: ignore[union-attr]


class SpecExampleTests(SynchronousTestCase):
    """
    The byte example at the end of docs/protocol.md is what the encoder
    produces.
    """

    def test_openExample(self) -> None:
        """
        The first Open of the example is C{00 00 00 20 03 00 00 00 01 00
        73 70 70 3a 2f 2f ...}: length 32, type 3, request 1, empty version,
        the 26 bytes of the URL.
        """
        url = "spp://origin:1111/movie.ts"
        wire = frame(codec.Open(1, url, ""))
        self.assertEqual(
            wire[:16],
            bytes.fromhex("00 00 00 20 03 00 00 00 01 00 73 70 70 3a 2f 2f"),
        )
        self.assertEqual(wire[10:], url.encode("ascii"))
        self.assertEqual(len(url), 26)
        self.assertEqual(len(wire), 4 + 32)

    def test_magic(self) -> None:
        """
        The magic is C{89 53 50 50}, and its first byte is not printable
        ASCII so a shared port can tell SPP from HTTP.
        """
        self.assertEqual(codec.MAGIC, bytes.fromhex("89 53 50 50"))
        self.assertGreater(codec.MAGIC[0], 0x7E)


class FuzzTests(SynchronousTestCase):
    """
    L{codec.decode} raises nothing but L{DecodeError}, whatever it is given.
    """

    @given(st.binary(max_size=300))
    def test_arbitraryBytes(self, body: bytes) -> None:
        """
        Arbitrary bytes decode or raise L{DecodeError}.
        """
        _decodes(self, body)

    @given(st.integers(0, 0x10), st.binary(max_size=300))
    def test_arbitraryFields(self, messageType: int, fields: bytes) -> None:
        """
        Arbitrary fields after a known (or nearly known) type code decode or
        raise L{DecodeError}.
        """
        _decodes(self, bytes([messageType]) + fields)

    @given(messages, st.data())
    def test_flippedByte(self, message: codec.Message, data: st.DataObject) -> None:
        """
        A valid frame with one byte changed decodes or raises L{DecodeError}.
        """
        body = bytearray(codec.encode(message))
        where = data.draw(st.integers(0, len(body) - 1))
        body[where] ^= data.draw(st.integers(1, 0xFF))
        _decodes(self, bytes(body))

    @given(messages, st.data())
    def test_truncated(self, message: codec.Message, data: st.DataObject) -> None:
        """
        A valid frame cut short decodes or raises L{DecodeError}.
        """
        body = codec.encode(message)
        _decodes(self, body[: data.draw(st.integers(0, len(body) - 1))])

    @given(messages, st.binary(min_size=1, max_size=64))
    def test_extended(self, message: codec.Message, extra: bytes) -> None:
        """
        A valid frame with bytes added at the end decodes or raises
        L{DecodeError}.
        """
        _decodes(self, codec.encode(message) + extra)

    @given(
        st.one_of(
            *(
                STRATEGIES[cls]
                for cls in (
                    codec.Hello,
                    codec.Opened,
                    codec.Close,
                    codec.GetDigests,
                    codec.GetBlock,
                    codec.Cancel,
                    codec.GetPeers,
                    codec.KeepAlive,
                )
            )
        ),
        st.binary(min_size=1, max_size=16),
    )
    def test_trailingBytes(self, message: codec.Message, extra: bytes) -> None:
        """
        Messages without a C{rest} field reject any byte after their last
        field.
        """
        self.assertRaises(DecodeError, codec.decode, codec.encode(message) + extra)

    @given(
        st.one_of(
            *(
                STRATEGIES[cls]
                for cls in (
                    codec.Hello,
                    codec.Opened,
                    codec.Close,
                    codec.GetDigests,
                    codec.GetBlock,
                    codec.Cancel,
                    codec.GetPeers,
                )
            )
        ),
        st.data(),
    )
    def test_shortFixedFields(
        self, message: codec.Message, data: st.DataObject
    ) -> None:
        """
        Messages without a C{rest} field reject any truncation.
        """
        body = codec.encode(message)
        cut = data.draw(st.integers(1, len(body) - 1))
        self.assertRaises(DecodeError, codec.decode, body[:cut])


def _open(url: bytes, version: bytes = b"") -> bytes:
    return b"\x03" + struct.pack("!IB", 1, len(version)) + version + url


def _opened(
    size: int = 100,
    blockSize: int = 2**14,
    digest: bytes = b"sha256",
    version: bytes = b"v1",
) -> bytes:
    return (
        b"\x04"
        + struct.pack("!IQIB", 1, size, blockSize, 1)
        + bytes([len(digest)])
        + digest
        + bytes([len(version)])
        + version
    )


def _have(*ranges: tuple[int, int]) -> bytes:
    return (
        b"\x0b"
        + struct.pack("!I", 1)
        + b"".join(struct.pack("!II", *r) for r in ranges)
    )


def _peer4(kind: int = 4, port: int = 1111) -> bytes:
    return bytes([kind]) + bytes([127, 0, 0, 1]) + struct.pack("!H", port)


def _peers(*entries: bytes) -> bytes:
    return b"\x0d" + struct.pack("!I", 1) + b"".join(entries)


def _getDigests(count: int) -> bytes:
    return b"\x06" + struct.pack("!IIII", 1, 1, 0, count)


class LimitTests(SynchronousTestCase):
    """
    Every limit of the specification is enforced by the decoder, and the
    value at the limit itself is accepted.
    """

    def test_emptyFrame(self) -> None:
        """
        A frame with no type byte is an error.
        """
        self.assertRaises(DecodeError, codec.decode, b"")

    def test_unknownType(self) -> None:
        """
        Type codes outside the message table are errors.
        """
        for messageType in (0x00, 0x0F, 0x7F, 0xFF):
            self.assertRaises(DecodeError, codec.decode, bytes([messageType]))

    def test_trailingBytes(self) -> None:
        """
        Bytes after the last field of a fixed message are an error.
        """
        self.assertRaises(
            DecodeError, codec.decode, codec.encode(codec.Close(1)) + b"\0"
        )
        self.assertRaises(DecodeError, codec.decode, b"\x0e\x00")

    def test_shortFrame(self) -> None:
        """
        A frame ending inside a field is an error.
        """
        self.assertRaises(DecodeError, codec.decode, b"\x05\x00\x00\x00")

    def test_urlTooLong(self) -> None:
        """
        An Open URL of more than L{codec.MAX_URL} bytes is an error; exactly
        that many is fine.
        """
        self.assertRaises(DecodeError, codec.decode, _open(b"u" * (codec.MAX_URL + 1)))
        decoded = codec.decode(_open(b"u" * codec.MAX_URL))
        self.assertEqual(decoded, codec.Open(1, "u" * codec.MAX_URL, ""))

    def test_urlEmpty(self) -> None:
        """
        An Open with an empty URL is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _open(b""))

    def test_urlNotUTF8(self) -> None:
        """
        An Open URL that is not UTF-8 is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _open(b"spp://h/\xff"))

    def test_urlTooLongToEncode(self) -> None:
        """
        The encoder refuses a URL over the limit rather than sending a frame
        the other side rejects.
        """
        self.assertRaises(
            ValueError, codec.encode, codec.Open(1, "u" * (codec.MAX_URL + 1), "")
        )

    def test_versionTooLong(self) -> None:
        """
        A version stamp of more than L{codec.MAX_VERSION_STAMP} bytes is an
        error in Open and in Opened.
        """
        long = b"v" * (codec.MAX_VERSION_STAMP + 1)
        self.assertRaises(DecodeError, codec.decode, _open(b"spp://h/", long))
        self.assertRaises(DecodeError, codec.decode, _opened(version=long))
        self.assertRaises(
            ValueError, codec.encode, codec.Open(1, "spp://h/", long.decode())
        )

    def test_versionNotPrintableASCII(self) -> None:
        """
        A version stamp with non-ASCII bytes or control characters is an
        error.
        """
        self.assertRaises(DecodeError, codec.decode, _open(b"spp://h/", b"v\xe9"))
        self.assertRaises(DecodeError, codec.decode, _open(b"spp://h/", b"v\n"))
        self.assertRaises(DecodeError, codec.decode, _opened(version=b"v\x00"))

    def test_openedEmptyVersion(self) -> None:
        """
        Opened always names the concrete version it answers with.
        """
        self.assertRaises(DecodeError, codec.decode, _opened(version=b""))

    def test_digestNameTooLong(self) -> None:
        """
        A digest name over L{codec.MAX_DIGEST_NAME} bytes is an error.
        """
        name = b"n" * (codec.MAX_DIGEST_NAME + 1)
        self.assertRaises(DecodeError, codec.decode, _opened(digest=name))

    def test_agentTooLong(self) -> None:
        """
        A Hello agent over L{codec.MAX_AGENT} bytes is an error.
        """
        body = (
            b"\x01"
            + struct.pack("!BH16s", 1, 1, b"n" * 16)
            + bytes([codec.MAX_AGENT + 1])
            + b"a" * (codec.MAX_AGENT + 1)
        )
        self.assertRaises(DecodeError, codec.decode, body)

    def test_errorMessageTooLong(self) -> None:
        """
        An Error message over L{codec.MAX_ERROR_MESSAGE} bytes is an error.
        """
        body = b"\x02" + struct.pack("!IH", 1, 1) + b"m" * (codec.MAX_ERROR_MESSAGE + 1)
        self.assertRaises(DecodeError, codec.decode, body)

    def test_tooManyHaveRanges(self) -> None:
        """
        More than L{codec.MAX_HAVE_RANGES} ranges in one Have is an error,
        for the decoder and for the encoder.
        """
        ranges = ((0, 1),) * (codec.MAX_HAVE_RANGES + 1)
        self.assertRaises(DecodeError, codec.decode, _have(*ranges))
        self.assertRaises(ValueError, codec.encode, codec.Have(1, ranges))
        self.assertEqual(
            len(codec.decode(_have(*ranges[1:])).ranges),  # type: ignore[union-attr]
            codec.MAX_HAVE_RANGES,
        )

    def test_haveEmptyRange(self) -> None:
        """
        A Have range with count 0 is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _have((5, 0)))

    def test_haveRangePastLastBlock(self) -> None:
        """
        A Have range reaching past the largest possible file is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _have((codec.MAX_BLOCKS, 1)))
        self.assertRaises(DecodeError, codec.decode, _have((0xFFFFFFFF, 0xFFFFFFFF)))

    def test_havePartialRange(self) -> None:
        """
        A Have whose ranges are not whole eight-byte pairs is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _have((0, 1)) + b"\0\0\0")

    def test_tooManyPeers(self) -> None:
        """
        More than L{MAX_PEERS} entries in Peers is an error, for the
        decoder and for the encoder.
        """
        self.assertRaises(
            DecodeError, codec.decode, _peers(*[_peer4()] * (MAX_PEERS + 1))
        )
        self.assertRaises(
            ValueError,
            codec.encode,
            codec.Peers(1, (Peer("127.0.0.1", 1),) * (MAX_PEERS + 1)),
        )
        decoded = codec.decode(_peers(*[_peer4()] * MAX_PEERS))
        self.assertEqual(len(decoded.peers), MAX_PEERS)  # type: ignore[union-attr]

    def test_peerPortZero(self) -> None:
        """
        A peer with port 0 is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _peers(_peer4(port=0)))

    def test_unknownAddressKind(self) -> None:
        """
        Address kinds other than 4 and 6 (with or without the mirror bit)
        are errors.
        """
        for kind in (0, 5, 0x44, 0x85, 0xFF):
            self.assertRaises(DecodeError, codec.decode, _peers(_peer4(kind=kind)))

    def test_peerKinds(self) -> None:
        """
        Kind 4 is an IPv4 address, 6 an IPv6 address, and bit 7 marks a
        mirror.
        """
        v6 = bytes([0x86]) + b"\0" * 15 + b"\1" + struct.pack("!H", 80)
        self.assertEqual(
            codec.decode(_peers(_peer4(), v6)),
            codec.Peers(
                1,
                (Peer("127.0.0.1", 1111, False), Peer("::1", 80, True)),
            ),
        )

    def test_peerTruncated(self) -> None:
        """
        A peer entry cut short is an error.
        """
        self.assertRaises(DecodeError, codec.decode, _peers(_peer4()[:-1]))
        self.assertRaises(DecodeError, codec.decode, _peers(b"\x06" + b"\0" * 10))

    def test_digestCount(self) -> None:
        """
        GetDigests asks for 1 to L{codec.MAX_DIGESTS_PER_REQUEST} digests.
        """
        self.assertRaises(DecodeError, codec.decode, _getDigests(0))
        self.assertRaises(
            DecodeError, codec.decode, _getDigests(codec.MAX_DIGESTS_PER_REQUEST + 1)
        )
        self.assertEqual(codec.decode(_getDigests(1)), codec.GetDigests(1, 1, 0, 1))
        self.assertEqual(
            codec.decode(_getDigests(codec.MAX_DIGESTS_PER_REQUEST)),
            codec.GetDigests(1, 1, 0, codec.MAX_DIGESTS_PER_REQUEST),
        )

    def test_digestsTooLong(self) -> None:
        """
        A Digests answer longer than the largest request can need is an
        error.
        """
        body = b"\x07" + struct.pack("!II", 1, 0)
        limit = codec.MAX_DIGESTS_PER_REQUEST * codec.MAX_DIGEST_SIZE
        self.assertRaises(DecodeError, codec.decode, body + b"d" * (limit + 1))

    def test_blockTooLong(self) -> None:
        """
        A Block with more than L{codec.MAX_BLOCK_SIZE} bytes is an error.
        """
        body = b"\x09" + struct.pack("!II", 1, 0) + b"b" * (codec.MAX_BLOCK_SIZE + 1)
        self.assertRaises(DecodeError, codec.decode, body)

    def test_blockSizeOutOfRange(self) -> None:
        """
        Block sizes below L{codec.MIN_BLOCK_SIZE} or above
        L{codec.MAX_BLOCK_SIZE} are errors; both ends are accepted.
        """
        for blockSize in (0, 1, codec.MIN_BLOCK_SIZE // 2, codec.MAX_BLOCK_SIZE * 2):
            self.assertRaises(DecodeError, codec.decode, _opened(blockSize=blockSize))
        for blockSize in (codec.MIN_BLOCK_SIZE, codec.MAX_BLOCK_SIZE):
            decoded = codec.decode(_opened(blockSize=blockSize))
            self.assertEqual(decoded.blockSize, blockSize)  # type: ignore[union-attr]

    def test_blockSizeNotPowerOfTwo(self) -> None:
        """
        The block size is a power of two; anything else is an error.
        """
        for blockSize in (codec.MIN_BLOCK_SIZE + 1, 3 * codec.MIN_BLOCK_SIZE):
            self.assertRaises(DecodeError, codec.decode, _opened(blockSize=blockSize))

    def test_tooManyBlocks(self) -> None:
        """
        A file of more than L{codec.MAX_BLOCKS} blocks is an error; exactly
        that many is fine.
        """
        blockSize = codec.MIN_BLOCK_SIZE
        self.assertRaises(
            DecodeError,
            codec.decode,
            _opened(size=blockSize * codec.MAX_BLOCKS + 1, blockSize=blockSize),
        )
        decoded = codec.decode(
            _opened(size=blockSize * codec.MAX_BLOCKS, blockSize=blockSize)
        )
        self.assertEqual(decoded.size, blockSize * codec.MAX_BLOCKS)  # type: ignore[union-attr]

    def test_emptyFile(self) -> None:
        """
        A file of size 0 (no blocks) is valid.
        """
        self.assertEqual(codec.decode(_opened(size=0)).size, 0)  # type: ignore[union-attr]

    def test_helloShortNodeId(self) -> None:
        """
        A Hello whose node id is cut short is an error.
        """
        body = b"\x01" + struct.pack("!BH", 1, 1) + b"n" * 10
        self.assertRaises(DecodeError, codec.decode, body)
