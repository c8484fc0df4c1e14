# -*- test-case-name: tests.unit.test_framing -*-
"""
Frames out of a byte stream, under limits that change as the connection
goes on.

Kept apart from the protocol so the one piece that reads untrusted lengths
can be fuzzed with nothing else around it. Twisted's C{Int32StringReceiver}
is not used: it copies its whole buffer for every chunk read, which for
256 KiB blocks costs more than hashing them, and it has one limit where SPP
has one per state and per type (docs/protocol.md, Framing).
"""

from collections.abc import Iterator
from typing import Protocol

HEADER = 4  # the frame length prefix


def frameHeader(length: int, messageType: int) -> bytes:
    """
    The length prefix and type byte of a frame whose body is C{length}
    bytes, type byte included.
    """
    return length.to_bytes(HEADER, "big") + bytes([messageType])


class FrameLimits(Protocol):
    """
    How large a frame may be now: asked again before every frame, as what
    may come changes with the frames before it.
    """

    def smallFrameLimit(self) -> int:
        """
        The largest frame that may come now, whatever its type.
        """

    def largeFrameAllowed(self, length: int, kind: int | None) -> bool:
        """
        Whether a frame of C{length} bytes, over the small limit, may come
        with the type byte C{kind}; with C{None}, before its type byte has
        arrived, whether some type could make it allowed.
        """


class FrameTooLarge(Exception):
    """
    A frame's length is over what may come now.
    """

    def __init__(self, length: int) -> None:
        super().__init__(f"frame of {length} bytes over the limit")
        self.length = length


class FrameReader:
    """
    Splits a stream into frame bodies. An incomplete frame is kept in one
    buffer that grows with the bytes that arrive, never sized by what a
    length prefix announces; complete frames in a read are handed out where
    they lie, without copying.

    @ivar buffer: the bytes of the frame still arriving.
    """

    def __init__(self, limits: FrameLimits) -> None:
        self.limits = limits
        self.buffer = bytearray()
        self._frameEnd = HEADER  # bytes the buffer needs before it is read

    def feed(self, data: bytes) -> Iterator[memoryview]:
        """
        The bodies of the frames C{data} completes, each valid until the
        next is asked for. Stopping early drops the rest of the stream, as
        when the connection closes.

        @raise FrameTooLarge: when a frame's length (and type byte, if the
            length alone does not decide) is read that is over the limits;
            the rest of the stream is dropped.
        """
        stream: bytes | bytearray = data
        if self.buffer:
            self.buffer += data
            if len(self.buffer) < self._frameEnd:
                return
            stream, self.buffer = self.buffer, bytearray()
        view = memoryview(stream)
        offset = 0
        self._frameEnd = HEADER
        while len(stream) - offset >= HEADER:
            length = int.from_bytes(view[offset : offset + HEADER], "big")
            if length > self.limits.smallFrameLimit():
                if len(stream) - offset == HEADER:
                    if not self.limits.largeFrameAllowed(length, None):
                        raise FrameTooLarge(length)
                    self._frameEnd = HEADER + 1  # its type decides
                    break
                if not self.limits.largeFrameAllowed(length, view[offset + HEADER]):
                    raise FrameTooLarge(length)
            end = offset + HEADER + length
            if end > len(stream):
                self._frameEnd = end - offset
                break
            offset = end
            yield view[end - length : end]
        if offset < len(stream):
            self.buffer = bytearray(view[offset:])

    def clear(self) -> None:
        """
        Let go of a frame still arriving.
        """
        self.buffer = bytearray()
