# -*- test-case-name: tests.conformance.test_handshake -*-
"""
SPP as an independent implementation would write it from docs/protocol.md
alone: frames built and read with C{struct}, over a blocking socket. Nothing
of p2pd's codec or protocol is used, so a node and the specification are
checked against each other, not p2pd against itself.
"""

import socket
import ssl
import struct
from dataclasses import dataclass

MAGIC = b"\x89SPP"
VERSION = 1

# Message types (docs/protocol.md, Messages).
HELLO = 0x01
ERROR = 0x02
OPEN = 0x03
OPENED = 0x04
CLOSE = 0x05
GET_DIGESTS = 0x06
DIGESTS = 0x07
GET_BLOCK = 0x08
BLOCK = 0x09
CANCEL = 0x0A
HAVE = 0x0B
GET_PEERS = 0x0C
PEERS = 0x0D
KEEPALIVE = 0x0E

# Error codes (docs/protocol.md, Error codes).
BAD_REQUEST = 1
NOT_FOUND = 2
FORBIDDEN = 3
BUSY = 4
UNSUPPORTED_VERSION = 5
CHANGED = 6
UNAVAILABLE = 7
CANCELLED = 10

# Seconds a test waits for bytes the node owes it; only a node that breaks
# the specification makes a test wait that long.
PATIENCE = 10.0


def frame(kind: int, fields: bytes = b"") -> bytes:
    """
    One frame: the 4-byte length (type byte and fields), the type, the
    fields.
    """
    return struct.pack("!IB", 1 + len(fields), kind) + fields


def str8(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return bytes([len(data)]) + data


def hello(version: int = VERSION, port: int = 0, nodeId: bytes = b"\x42" * 16) -> bytes:
    return frame(
        HELLO, struct.pack("!BH16s", version, port, nodeId) + str8("conformance/1")
    )


def error(request: int, code: int, message: str = "") -> bytes:
    return frame(ERROR, struct.pack("!IH", request, code) + message.encode("utf-8"))


def open_(request: int, url: str, version: str = "") -> bytes:
    return frame(OPEN, struct.pack("!I", request) + str8(version) + url.encode("utf-8"))


def close(handle: int) -> bytes:
    return frame(CLOSE, struct.pack("!I", handle))


def getDigests(request: int, handle: int, first: int, count: int) -> bytes:
    return frame(GET_DIGESTS, struct.pack("!IIII", request, handle, first, count))


def getBlock(request: int, handle: int, index: int) -> bytes:
    return frame(GET_BLOCK, struct.pack("!III", request, handle, index))


def getPeers(request: int, handle: int) -> bytes:
    return frame(GET_PEERS, struct.pack("!II", request, handle))


def cancel(request: int) -> bytes:
    return frame(CANCEL, struct.pack("!I", request))


def block(request: int, index: int, data: bytes) -> bytes:
    return frame(BLOCK, struct.pack("!II", request, index) + data)


def keepAlive() -> bytes:
    return frame(KEEPALIVE)


@dataclass
class Frame:
    """
    A frame received: its type and its fields.
    """

    kind: int
    fields: bytes

    def request(self) -> int:
        """
        The request id every answer starts with.
        """
        return int(struct.unpack_from("!I", self.fields)[0])

    def error(self) -> tuple[int, int, str]:
        """
        An Error's request, code and message.
        """
        assert self.kind == ERROR, f"not an Error: {self}"
        request, code = struct.unpack_from("!IH", self.fields)
        return request, code, self.fields[6:].decode("utf-8")

    def hello(self) -> tuple[int, int, bytes, str]:
        """
        A Hello's version, listen port, node id and agent.
        """
        assert self.kind == HELLO, f"not a Hello: {self}"
        version, port, nodeId = struct.unpack_from("!BH16s", self.fields)
        agent = self.fields[20 : 20 + self.fields[19]].decode("utf-8")
        return version, port, nodeId, agent

    def opened(self) -> tuple[int, int, int, int, str, str]:
        """
        An Opened's request, size, block size, flags, digest name and
        version.
        """
        assert self.kind == OPENED, f"not an Opened: {self}"
        request, size, blockSize, flags = struct.unpack_from("!IQIB", self.fields)
        rest = self.fields[17:]
        digest = rest[1 : 1 + rest[0]].decode("ascii")
        rest = rest[1 + rest[0] :]
        return request, size, blockSize, flags, digest, rest[1 : 1 + rest[0]].decode()

    def data(self) -> tuple[int, int, bytes]:
        """
        A Block's or Digests' request, index (or first) and bytes.
        """
        assert self.kind in (BLOCK, DIGESTS), f"not a Block or Digests: {self}"
        request, index = struct.unpack_from("!II", self.fields)
        return request, index, self.fields[8:]

    def peers(self) -> list[tuple[str, int, bool]]:
        """
        A Peers answer's entries: address, port, and whether a mirror.
        """
        assert self.kind == PEERS, f"not a Peers: {self}"
        entries, rest = [], self.fields[4:]
        while rest:
            kind = rest[0]
            size = 4 if kind & 0x7F == 4 else 16
            family = socket.AF_INET if size == 4 else socket.AF_INET6
            host = socket.inet_ntop(family, rest[1 : 1 + size])
            (port,) = struct.unpack_from("!H", rest, 1 + size)
            entries.append((host, port, bool(kind & 0x80)))
            rest = rest[3 + size :]
        return entries

    def __repr__(self) -> str:
        return f"Frame(0x{self.kind:02x}, {self.fields[:40]!r}...)"


class Connection:
    """
    A TCP connection to a node, speaking SPP with the helpers above.

    @ivar received: bytes read and not yet taken as frames.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(PATIENCE)
        self.received = b""

    @classmethod
    def dial(cls, host: str, port: int, source: str | None = None) -> "Connection":
        """
        A new connection to C{host}:C{port}, from the address C{source} if
        given (any address of 127.0.0.0/8 can be bound).
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source is not None:
            sock.bind((source, 0))
        sock.connect((host, port))
        return cls(sock)

    @classmethod
    def dialTLS(cls, host: str, port: int) -> "Connection":
        """
        A new connection to C{host}:C{port} inside TLS, taking any
        certificate, as a peer does.
        """
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = socket.create_connection((host, port), PATIENCE)
        return cls(context.wrap_socket(sock))

    def send(self, *data: bytes) -> None:
        """
        Send C{data} in one write.
        """
        self.sock.sendall(b"".join(data))

    def _fill(self, need: int) -> bool:
        """
        Read until C{need} bytes are buffered; False at the end of stream.
        """
        while len(self.received) < need:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self.received += chunk
        return True

    def take(self, count: int) -> bytes:
        """
        The next C{count} bytes, outside any frame (the magic).
        """
        assert self._fill(count), "the node closed the connection"
        taken, self.received = self.received[:count], self.received[count:]
        return taken

    def next(self) -> Frame | None:
        """
        The next frame, or None if the node closed the connection first.
        """
        if not self._fill(4):
            assert not self.received, f"stream ends inside a length: {self.received!r}"
            return None
        (length,) = struct.unpack_from("!I", self.received)
        assert self._fill(4 + length), "stream ends inside a frame"
        body, self.received = self.received[4 : 4 + length], self.received[4 + length :]
        return Frame(body[0], bytes(body[1:]))

    def frame(self) -> Frame:
        """
        The next frame, which must come.
        """
        got = self.next()
        assert got is not None, "the node closed the connection"
        return got

    def handshake(
        self, version: int = VERSION, port: int = 0, nodeId: bytes = b"\x42" * 16
    ) -> Frame:
        """
        Send the magic and a Hello; the node's Hello.
        """
        self.send(MAGIC, hello(version, port, nodeId))
        answer = self.frame()
        assert answer.kind == HELLO, f"expected a Hello, got {answer}"
        return answer

    def rest(self) -> list[Frame]:
        """
        Every frame until the node closes the connection.
        """
        frames = []
        while (got := self.next()) is not None:
            frames.append(got)
        return frames

    def answers(self, count: int) -> list[Frame]:
        """
        The next C{count} frames that are not Have or KeepAlive.
        """
        frames: list[Frame] = []
        while len(frames) < count:
            got = self.frame()
            if got.kind not in (HAVE, KEEPALIVE):
                frames.append(got)
        return frames

    def stillOpen(self) -> None:
        """
        Check that the node still answers on this connection: a GetPeers
        naming no open handle gets its NOT_FOUND.
        """
        self.send(getPeers(0xFFFFFFF0, 0xFFFFFFF0))
        [answer] = self.answers(1)
        assert answer.error()[:2] == (0xFFFFFFF0, NOT_FOUND), answer

    def close(self) -> None:
        self.sock.close()
