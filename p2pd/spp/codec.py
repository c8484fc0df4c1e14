# -*- test-case-name: tests.unit.test_codec -*-
"""
SPP v1 frames to and from plain values. Pure Python, no Twisted.

A connection starts with L{MAGIC}; after it, every frame is a 32-bit
big-endian length, then a one-byte message type, then the message's fields.
docs/protocol.md is the specification; this module must match it.
"""

import ipaddress
import struct
from dataclasses import dataclass
from typing import ClassVar, Union, get_args

from p2pd.core.peers import MAX_PEERS, Peer

MAGIC = b"\x89SPP"
VERSION = 1

MAX_BLOCK_SIZE = 4 * 1024 * 1024
MIN_BLOCK_SIZE = 16 * 1024
MAX_FRAME = MAX_BLOCK_SIZE + 64
# Before the Hello only a Hello or an Error may come: both are far smaller.
MAX_HELLO_FRAME = 1024
# Every frame but Block and Digests fits in this; those two may be larger
# only as answers to requests the receiver made.
MAX_SMALL_FRAME = 16 * 1024
MAX_URL = 2048
MAX_VERSION_STAMP = 64
MAX_DIGEST_NAME = 32
MIN_DIGEST_SIZE = 16
MAX_DIGEST_SIZE = 64
MAX_DIGESTS_PER_REQUEST = 4096
MAX_HAVE_RANGES = 1024
MAX_AGENT = 64
MAX_ERROR_MESSAGE = 512
MAX_BLOCKS = 2**22


class DecodeError(ValueError):
    """
    A frame that does not follow the specification.
    """


class _Reader:
    """
    Walks a frame's payload, raising L{DecodeError} on any shortfall.
    """

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        end = self.offset + fmt.size
        if end > len(self.data):
            raise DecodeError("frame too short")
        values = fmt.unpack_from(self.data, self.offset)
        self.offset = end
        return values

    def short(self, limit: int) -> bytes:
        """
        A string with a one-byte length prefix.
        """
        (length,) = self.unpack(_U8)
        if length > limit:
            raise DecodeError(f"string of {length} bytes over the limit of {limit}")
        return self.take(length)

    def take(self, length: int) -> bytes:
        end = self.offset + length
        if end > len(self.data):
            raise DecodeError("frame too short")
        value = bytes(self.data[self.offset : end])
        self.offset = end
        return value

    def rest(self, limit: int) -> bytes:
        length = len(self.data) - self.offset
        if length > limit:
            raise DecodeError(f"field of {length} bytes over the limit of {limit}")
        value = bytes(self.data[self.offset :])
        self.offset = len(self.data)
        return value

    def end(self) -> None:
        if self.offset != len(self.data):
            raise DecodeError("trailing bytes in frame")


_U8 = struct.Struct("!B")


def _short(value: bytes, limit: int) -> bytes:
    if len(value) > limit:
        raise ValueError(f"string of {len(value)} bytes over the limit of {limit}")
    return _U8.pack(len(value)) + value


def _ascii(raw: bytes, what: str) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not ASCII") from None
    if not text.isprintable():
        raise DecodeError(f"{what} has control characters")
    return text


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError(f"{what} is not UTF-8") from None


@dataclass(frozen=True)
class Hello:
    """
    The first frame each side sends: the highest version it speaks, the port
    it accepts SPP connections on (0: none), and a random node id.
    """

    TYPE: ClassVar[int] = 0x01
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!BH16s")
    version: int
    listenPort: int
    nodeId: bytes
    agent: str

    def payload(self) -> bytes:
        return self._FIXED.pack(self.version, self.listenPort, self.nodeId) + _short(
            self.agent.encode("utf-8"), MAX_AGENT
        )

    @classmethod
    def decode(cls, r: _Reader) -> "Hello":
        version, port, nodeId = r.unpack(cls._FIXED)
        agent = _utf8(r.short(MAX_AGENT), "agent")
        return cls(version, port, nodeId, agent)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Error:
    """
    A request failed (C{request} 0: the connection is being closed).
    """

    TYPE: ClassVar[int] = 0x02
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!IH")
    request: int
    code: int
    message: str

    def payload(self) -> bytes:
        message = self.message.encode("utf-8")[:MAX_ERROR_MESSAGE]
        return self._FIXED.pack(self.request, self.code) + message

    @classmethod
    def decode(cls, r: _Reader) -> "Error":
        request, code = r.unpack(cls._FIXED)
        message = r.rest(MAX_ERROR_MESSAGE).decode("utf-8", "replace")
        return cls(request, code, message)


@dataclass(frozen=True)
class Open:
    """
    Ask for a file by its origin URL (C{spp://host:port/path}); C{version}
    empty means "the current one" and is only answered by the origin.
    """

    TYPE: ClassVar[int] = 0x03
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!I")
    request: int
    url: str
    version: str

    def payload(self) -> bytes:
        return (
            self._FIXED.pack(self.request)
            + _short(self.version.encode("ascii"), MAX_VERSION_STAMP)
            + _checkedLength(self.url.encode("utf-8"), MAX_URL)
        )

    @classmethod
    def decode(cls, r: _Reader) -> "Open":
        (request,) = r.unpack(cls._FIXED)
        version = _ascii(r.short(MAX_VERSION_STAMP), "version")
        url = _utf8(r.rest(MAX_URL), "url")
        if not url:
            raise DecodeError("empty url")
        return cls(request, url, version)


@dataclass(frozen=True)
class Opened:
    """
    The answer to L{Open}: the file's metadata. Its handle for later requests
    is the Open's request id. C{authoritative} is set by the origin and its
    mirrors.
    """

    TYPE: ClassVar[int] = 0x04
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!IQIB")
    request: int
    size: int
    blockSize: int
    authoritative: bool
    digestName: str
    version: str

    def payload(self) -> bytes:
        return (
            self._FIXED.pack(
                self.request,
                self.size,
                self.blockSize,
                1 if self.authoritative else 0,
            )
            + _short(self.digestName.encode("ascii"), MAX_DIGEST_NAME)
            + _short(self.version.encode("ascii"), MAX_VERSION_STAMP)
        )

    @classmethod
    def decode(cls, r: _Reader) -> "Opened":
        request, size, blockSize, flags = r.unpack(cls._FIXED)
        digestName = _ascii(r.short(MAX_DIGEST_NAME), "digest name")
        version = _ascii(r.short(MAX_VERSION_STAMP), "version")
        # What a file's size and block size may be is bounded so that no
        # announcement, however absurd, costs a node more than a few MiB.
        powerOfTwo = blockSize & (blockSize - 1) == 0
        if not (MIN_BLOCK_SIZE <= blockSize <= MAX_BLOCK_SIZE and powerOfTwo):
            raise DecodeError(
                f"block size {blockSize} is not a power of two"
                f" from {MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE}"
            )
        if -(-size // blockSize) > MAX_BLOCKS:
            raise DecodeError(
                f"a size of {size} bytes is over {MAX_BLOCKS} blocks of {blockSize}"
            )
        if not version:
            raise DecodeError("empty version")
        return cls(request, size, blockSize, bool(flags & 1), digestName, version)


@dataclass(frozen=True)
class Close:
    """
    The opener is done with a handle.
    """

    TYPE: ClassVar[int] = 0x05
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!I")
    handle: int

    def payload(self) -> bytes:
        return self._FIXED.pack(self.handle)

    @classmethod
    def decode(cls, r: _Reader) -> "Close":
        (handle,) = r.unpack(cls._FIXED)
        return cls(handle)


@dataclass(frozen=True)
class GetDigests:
    """
    Ask for the digests of blocks C{first} to C{first + count - 1}.
    """

    TYPE: ClassVar[int] = 0x06
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!IIII")
    request: int
    handle: int
    first: int
    count: int

    def payload(self) -> bytes:
        return self._FIXED.pack(self.request, self.handle, self.first, self.count)

    @classmethod
    def decode(cls, r: _Reader) -> "GetDigests":
        request, handle, first, count = r.unpack(cls._FIXED)
        if not 0 < count <= MAX_DIGESTS_PER_REQUEST:
            raise DecodeError(f"digest count {count} out of range")
        return cls(request, handle, first, count)


@dataclass(frozen=True)
class Digests:
    """
    The digests of consecutive blocks from C{first}, concatenated.
    """

    TYPE: ClassVar[int] = 0x07
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!II")
    request: int
    first: int
    digests: bytes

    def payload(self) -> bytes:
        return self._FIXED.pack(self.request, self.first) + self.digests

    @classmethod
    def decode(cls, r: _Reader) -> "Digests":
        request, first = r.unpack(cls._FIXED)
        return cls(request, first, r.rest(MAX_DIGESTS_PER_REQUEST * MAX_DIGEST_SIZE))


@dataclass(frozen=True)
class GetBlock:
    """
    Ask for one block; several may be outstanding on a connection.
    """

    TYPE: ClassVar[int] = 0x08
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!III")
    request: int
    handle: int
    index: int

    def payload(self) -> bytes:
        return self._FIXED.pack(self.request, self.handle, self.index)

    @classmethod
    def decode(cls, r: _Reader) -> "GetBlock":
        request, handle, index = r.unpack(cls._FIXED)
        return cls(request, handle, index)


@dataclass(frozen=True)
class Block:
    """
    A block's bytes, answering the L{GetBlock} with the same request id.
    """

    TYPE: ClassVar[int] = 0x09
    HEADER: ClassVar[struct.Struct] = struct.Struct("!II")
    request: int
    index: int
    data: bytes

    def payload(self) -> bytes:
        return self.HEADER.pack(self.request, self.index) + self.data

    @classmethod
    def decode(cls, r: _Reader) -> "Block":
        request, index = r.unpack(cls.HEADER)
        return cls(request, index, r.rest(MAX_BLOCK_SIZE))


@dataclass(frozen=True)
class Cancel:
    """
    The requester no longer wants the answer to C{request}.
    """

    TYPE: ClassVar[int] = 0x0A
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!I")
    request: int

    def payload(self) -> bytes:
        return self._FIXED.pack(self.request)

    @classmethod
    def decode(cls, r: _Reader) -> "Cancel":
        (request,) = r.unpack(cls._FIXED)
        return cls(request)


_RANGE = struct.Struct("!II")


@dataclass(frozen=True)
class Have:
    """
    The opened side of C{handle} now holds these blocks, as
    C{(first, count)} ranges (in addition to those announced before).
    """

    TYPE: ClassVar[int] = 0x0B
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!I")
    handle: int
    ranges: tuple[tuple[int, int], ...]

    def payload(self) -> bytes:
        if len(self.ranges) > MAX_HAVE_RANGES:
            raise ValueError("too many ranges")
        return self._FIXED.pack(self.handle) + b"".join(
            _RANGE.pack(first, count) for first, count in self.ranges
        )

    @classmethod
    def decode(cls, r: _Reader) -> "Have":
        (handle,) = r.unpack(cls._FIXED)
        raw = r.rest(MAX_HAVE_RANGES * _RANGE.size)
        if len(raw) % _RANGE.size:
            raise DecodeError("partial range")
        ranges = tuple(_RANGE.iter_unpack(raw))
        if any(count == 0 or first + count > MAX_BLOCKS for first, count in ranges):
            raise DecodeError("empty or overflowing range")
        return cls(handle, ranges)


@dataclass(frozen=True)
class GetPeers:
    """
    Ask the origin for other nodes that fetch or hold C{handle}'s file. The
    asker is recorded as one of them if it listens (L{Hello.listenPort}).
    """

    TYPE: ClassVar[int] = 0x0C
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!II")
    request: int
    handle: int

    def payload(self) -> bytes:
        return self._FIXED.pack(self.request, self.handle)

    @classmethod
    def decode(cls, r: _Reader) -> "GetPeers":
        request, handle = r.unpack(cls._FIXED)
        return cls(request, handle)


_PEER_KIND_V4 = 4
_PEER_KIND_V6 = 6
_PEER_SERVER = 0x80
_PORT = struct.Struct("!H")


@dataclass(frozen=True)
class Peers:
    """
    The answer to L{GetPeers}, nearest first.
    """

    TYPE: ClassVar[int] = 0x0D
    _FIXED: ClassVar[struct.Struct] = struct.Struct("!I")
    request: int
    peers: tuple[Peer, ...]

    def payload(self) -> bytes:
        if len(self.peers) > MAX_PEERS:
            raise ValueError("too many peers")
        parts = [self._FIXED.pack(self.request)]
        for peer in self.peers:
            address = ipaddress.ip_address(peer.host)
            kind = _PEER_KIND_V4 if address.version == 4 else _PEER_KIND_V6
            flags = _PEER_SERVER if peer.server else 0
            parts.append(
                _U8.pack(kind | flags) + address.packed + _PORT.pack(peer.port)
            )
        return b"".join(parts)

    @classmethod
    def decode(cls, r: _Reader) -> "Peers":
        (request,) = r.unpack(cls._FIXED)
        peers: list[Peer] = []
        while r.offset < len(r.data):
            if len(peers) == MAX_PEERS:
                raise DecodeError("too many peers")
            (kind,) = r.unpack(_U8)
            family = kind & ~_PEER_SERVER
            if family == _PEER_KIND_V4:
                host = str(ipaddress.IPv4Address(r.take(4)))
            elif family == _PEER_KIND_V6:
                host = str(ipaddress.IPv6Address(r.take(16)))
            else:
                raise DecodeError(f"unknown address kind {kind}")
            (port,) = r.unpack(_PORT)
            if port == 0:
                raise DecodeError("peer with port 0")
            peers.append(Peer(host, port, bool(kind & _PEER_SERVER)))
        return cls(request, tuple(peers))


@dataclass(frozen=True)
class KeepAlive:
    """
    Sent when a side has sent nothing for a while, so the other side can
    tell a quiet connection from a dead one.
    """

    TYPE: ClassVar[int] = 0x0E

    def payload(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, r: _Reader) -> "KeepAlive":
        return cls()


Message = Union[
    Hello,
    Error,
    Open,
    Opened,
    Close,
    GetDigests,
    Digests,
    GetBlock,
    Block,
    Cancel,
    Have,
    GetPeers,
    Peers,
    KeepAlive,
]

# The messages that ask for an answer (Open is answered by Opened).
Request = Union[Open, GetDigests, GetBlock, GetPeers]

_TYPES: dict[int, type[Message]] = {cls.TYPE: cls for cls in get_args(Message)}


def _checkedLength(value: bytes, limit: int) -> bytes:
    if len(value) > limit:
        raise ValueError(f"field of {len(value)} bytes over the limit of {limit}")
    return value


def encode(message: Message) -> bytes:
    """
    The frame body (type byte and fields) for C{message}; the caller adds the
    length prefix.
    """
    return _U8.pack(message.TYPE) + message.payload()


def decode(body: bytes | memoryview) -> Message:
    """
    Parse a frame body (without its length prefix); a memoryview of the
    received bytes saves copying a block twice.

    @raise DecodeError: if it is not a valid SPP v1 message.
    """
    if not body:
        raise DecodeError("empty frame")
    cls = _TYPES.get(body[0])
    if cls is None:
        raise DecodeError(f"unknown message type {body[0]:#04x}")
    reader = _Reader(body)
    reader.offset = 1
    message = cls.decode(reader)
    reader.end()
    return message
