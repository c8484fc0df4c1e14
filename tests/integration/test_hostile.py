"""
Hostile and broken peers against a real C{twistd p2pd} origin on 127.0.0.1,
over real TCP connections opened with Twisted.

Each test sends bytes no honest node would send and checks the answer the
specification asks for (docs/protocol.md): an Error frame with the right
request id and code, and a close where the connection is at fault. Then it
checks that the node shrugged it off: it still answers a well-behaved peer,
it is still running, and its log has no traceback.

The handshake and idle timeouts (10 s, 60 s, 90 s) are not waited for here:
the unit tests cover them with a fake clock.
"""

import os
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from p2pd.core.errors import ErrorCode
from p2pd.core.peers import Peer
from p2pd.spp import codec
from tests import clients
from tests.nodes import Nodes, nodeEnvironment

BLOCK = 64 * 1024
SIZE = 3 * BLOCK + 1000  # four blocks, the last one short
NAME = "clip.bin"
WAIT = 20.0  # seconds any single answer may take
MAX_HANDLES = 64  # open handles per connection


def frame(message: Any) -> bytes:
    """
    A whole frame (length prefix and body) for C{message}.
    """
    return rawFrame(codec.encode(message))


def rawFrame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def hello(
    version: int = codec.VERSION, nodeId: bytes | None = None, listenPort: int = 0
) -> bytes:
    """
    A Hello frame from a new random node (or C{nodeId}).
    """
    agent = "p2pd-hostile-test"
    return frame(codec.Hello(version, listenPort, nodeId or os.urandom(16), agent))


class Recorder(Protocol):
    """
    Records the frames a node sends, and when it closes the connection.

    @ivar frames: the decoded frames, in order.
    @ivar raw: every byte received.
    @ivar lost: fires once the connection is closed (by either side).
    """

    def __init__(self) -> None:
        self.raw = b""
        self._buffer = b""
        self.frames: list[Any] = []
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.closed = False
        self._waiting: list[tuple[int, defer.Deferred[list[Any]]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        self._buffer += data
        while len(self._buffer) >= 4:
            length = int.from_bytes(self._buffer[:4], "big")
            if len(self._buffer) < 4 + length:
                break
            body, self._buffer = (
                self._buffer[4 : 4 + length],
                self._buffer[4 + length :],
            )
            self.frames.append(codec.decode(body))
        for count, d in list(self._waiting):
            if len(self.frames) >= count:
                self._waiting.remove((count, d))
                d.callback(self.frames[:count])

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for count, d in waiting:
            d.errback(
                AssertionError(
                    f"closed after {len(self.frames)} of {count} frames: "
                    f"{self.frames!r}"
                )
            )
        self.lost.callback(None)

    def waitForFrames(self, count: int) -> "defer.Deferred[list[Any]]":
        """
        Fires with the first C{count} frames once they have arrived; fails
        if the connection closes first, or after L{WAIT} seconds.
        """
        if len(self.frames) >= count:
            return defer.succeed(self.frames[:count])
        if self.closed:
            return defer.fail(AssertionError(f"closed: {self.frames!r}"))
        d: defer.Deferred[list[Any]] = defer.Deferred()
        self._waiting.append((count, d))
        return d.addTimeout(WAIT, reactor)

    def waitForClose(self) -> "defer.Deferred[None]":
        """
        Fires once the node has closed the connection; fails after L{WAIT}
        seconds (and then closes it from this side).
        """
        if self.closed:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self.lost.addCallback(lambda _: d.callback(None) if not d.called else None)

        def timedOut(result: Any, timeout: float) -> Any:
            self.transport.abortConnection()  # type: ignore[union-attr]
            raise AssertionError(
                f"the node kept the connection open for {timeout} s; "
                f"frames: {self.frames!r}"
            )

        return d.addTimeout(WAIT, reactor, onTimeoutCancel=timedOut)

    def close(self) -> "defer.Deferred[None]":
        """
        Close from this side and wait until the connection is gone.
        """
        if not self.closed:
            self.transport.loseConnection()  # type: ignore[union-attr]
        return self.waitForClose()


@contextmanager
def descriptorLimit(soft: int | None) -> Iterator[None]:
    """
    With C{soft} as this process's soft C{RLIMIT_NOFILE} (unchanged if
    None), for the processes it starts meanwhile.
    """
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft is not None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, before[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


class HTTPRecorder(Protocol):
    """
    Records what a node answers over HTTP.

    @ivar answered: fires once a whole response head has arrived.
    @ivar lost: fires once the connection is closed.
    """

    def __init__(self) -> None:
        self.raw = b""
        self.answered: defer.Deferred[bytes] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        if b"\r\n\r\n" in self.raw and not self.answered.called:
            self.answered.callback(self.raw)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost.callback(None)


class HostileTestCase(TestCase):
    """
    An origin publishing one file, and raw connections to it.

    @ivar descriptors: the origin's soft C{RLIMIT_NOFILE}, if not this
        process's.
    """

    timeout = 120
    descriptors: int | None = None

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        self.nodes = Nodes(self)
        self.base = os.path.abspath(self.mktemp())
        self.public = os.path.join(self.base, "public")
        os.makedirs(self.public)
        self.content = os.urandom(SIZE)
        with open(os.path.join(self.public, NAME), "wb") as f:
            f.write(self.content)
        with open(os.path.join(self.base, "secret"), "wb") as f:
            f.write(b"secret")
        with descriptorLimit(self.descriptors):
            started = self.nodes.start(
                "-p", self.public, "-c", os.path.join(self.base, "cache"),
                "-b", f"{BLOCK // 1024}K",
            )  # fmt: skip
        self.origin = yield started
        self.url = self.origin.sppURLFor(NAME)

    @defer.inlineCallbacks
    def connect(self, data: bytes = b"", source: str | None = None) -> Any:
        """
        A new connection to the origin (from C{source} if given), after
        sending it C{data}; it is closed, and its end awaited, when the test
        ends.
        """
        bind = None if source is None else (source, 0)
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.origin.port, bindAddress=bind
        )
        recorder = yield connectProtocol(endpoint, Recorder())
        self.addCleanup(recorder.close)
        if data:
            recorder.transport.write(data)
        return recorder

    @defer.inlineCallbacks
    def handshake(self, data: bytes = b"", source: str | None = None) -> Any:
        """
        A connection past the handshake (magic and Hello both ways), after
        sending C{data}.
        """
        recorder = yield self.connect(codec.MAGIC + hello(), source)
        frames = yield recorder.waitForFrames(1)
        self.assertIsInstance(frames[0], codec.Hello, repr(frames[0]))
        if data:
            recorder.transport.write(data)
        return recorder

    @defer.inlineCallbacks
    def opened(self, data: bytes = b"") -> Any:
        """
        A connection with the published file open as handle
        C{recorder.handle}, after sending C{data}.
        """
        recorder = yield self.handshake(frame(codec.Open(1, self.url, "")))
        frames = yield recorder.waitForFrames(2)
        self.assertIsInstance(frames[1], codec.Opened, repr(frames[1]))
        recorder.handle = frames[1].request  # a handle is its Open's id
        if data:
            recorder.transport.write(data)
        return recorder

    def assertConnectionError(self, recorder: Recorder, code: ErrorCode) -> None:
        """
        The last frame the node sent before closing is Error C{code} about
        the connection (request 0).
        """
        self.assertTrue(recorder.frames, "no frames before the close")
        last = recorder.frames[-1]
        self.assertIsInstance(last, codec.Error, repr(last))
        self.assertEqual((last.request, ErrorCode(last.code)), (0, code), repr(last))

    @defer.inlineCallbacks
    def assertHealthy(self) -> Any:
        """
        The node still answers a well-behaved peer (block 3 of the file, byte
        for byte), is still running, and once stopped, its log holds no
        traceback and it shut down cleanly.
        """
        recorder = yield self.opened()
        recorder.transport.write(frame(codec.GetBlock(2, recorder.handle, 3)))
        frames = yield recorder.waitForFrames(3)
        self.assertIsInstance(frames[2], codec.Block, repr(frames[2]))
        self.assertTrue(frames[2].data == self.content[3 * BLOCK :], "wrong block")
        yield recorder.close()
        self.assertTrue(self.origin.running, self.origin.log)
        yield self.origin.stop()
        # twistd ends itself with the signal that stopped it, after a
        # clean shutdown.
        self.assertIn("Server Shut Down.", self.origin.log)
        self.assertNotIn("Traceback", self.origin.log)
        self.assertNotIn("Unhandled", self.origin.log)


class FramingTests(HostileTestCase):
    """
    Bytes that are not SPP, or not framed right.
    """

    @defer.inlineCallbacks
    def test_hugeFrameBeforeHello(self) -> Any:
        """
        A frame announcing 0xFFFFFFFF bytes right after the magic gets Error
        BAD_REQUEST (request 0), and the node closes the connection without
        waiting for the bytes.
        """
        recorder = yield self.connect(codec.MAGIC + b"\xff\xff\xff\xff\x02")
        yield recorder.waitForClose()
        self.assertEqual(len(recorder.frames), 1, recorder.frames)
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_hugeFrameAfterHello(self) -> Any:
        """
        The same after the handshake: Error BAD_REQUEST and a close.
        """
        recorder = yield self.handshake(b"\xff\xff\xff\xff")
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_justOverTheLimit(self) -> Any:
        """
        A frame one byte longer than C{MAX_FRAME} is refused as soon as its
        length arrives.
        """
        recorder = yield self.handshake((codec.MAX_FRAME + 1).to_bytes(4, "big"))
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_partialFrames(self) -> Any:
        """
        Frames past the limits of where they come are refused at their
        first bytes: over 1 KiB before the Hello, and over 16 KiB after it
        unless a Block or Digests the node asked for. Meanwhile twenty peers
        holding a partial frame just at the limit do not keep the node from
        serving a well-behaved peer.
        """
        small = codec.MAX_SMALL_FRAME
        refused = [
            codec.MAGIC + (codec.MAX_HELLO_FRAME + 1).to_bytes(4, "big"),
            codec.MAGIC + hello() + (small + 1).to_bytes(4, "big") + b"\x09",
            codec.MAGIC + hello() + (small + 1).to_bytes(4, "big") + b"\x03",
        ]
        for data in refused:
            recorder = yield self.connect(data)
            yield recorder.waitForClose()
            self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        partial = small.to_bytes(4, "big") + b"\x03" + b"\x00" * (small // 2)
        tricklers = []
        for _ in range(20):
            recorder = yield self.handshake(partial)
            tricklers.append(recorder)
        self.assertFalse(any(recorder.closed for recorder in tricklers))
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_badMagic(self) -> Any:
        """
        Bytes starting like SPP (0x89) but with the wrong magic are neither
        SPP nor HTTP: the node closes the connection without a word.
        """
        recorder = yield self.connect(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
        yield recorder.waitForClose()
        self.assertEqual(recorder.raw, b"")
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_binaryGarbage(self) -> Any:
        """
        Binary garbage not starting with 0x89 goes to HTTP, which answers
        400 and closes.
        """
        recorder = yield self.connect(b"\x00\x01\x02\x03\r\n\r\n" + os.urandom(64))
        yield recorder.waitForClose()
        self.assertIn(b" 400 ", recorder.raw.split(b"\r\n")[0])
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_emptyFrame(self) -> Any:
        """
        A frame of length 0 (no type byte) is a protocol error.
        """
        recorder = yield self.handshake(b"\x00\x00\x00\x00")
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_unknownType(self) -> Any:
        """
        A frame of an unknown type is a protocol error.
        """
        recorder = yield self.handshake(rawFrame(b"\x7fhello"))
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_partialFrameThenHangUp(self) -> Any:
        """
        A peer that sends half a frame and hangs up, or hangs up right after
        connecting or after the magic, leaves the node unharmed.
        """
        for data in [b"", codec.MAGIC[:2], codec.MAGIC, codec.MAGIC + hello()[:7]]:
            recorder = yield self.connect(data)
            yield recorder.close()
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_quietAfterHandshake(self) -> Any:
        """
        A peer that completes the handshake and then says nothing is not
        dropped at once: the connection still answers a request afterwards
        (it is closed only after the 90 s idle timeout).
        """
        recorder = yield self.handshake()
        self.assertFalse(recorder.closed)
        recorder.transport.write(frame(codec.Open(5, self.url, "")))
        frames = yield recorder.waitForFrames(2)
        self.assertIsInstance(frames[1], codec.Opened, repr(frames[1]))
        yield self.assertHealthy()


class HandshakeTests(HostileTestCase):
    """
    Broken or refused handshakes.
    """

    @defer.inlineCallbacks
    def test_shortHello(self) -> Any:
        """
        A Hello cut short (no node id, no agent) is a protocol error.
        """
        recorder = yield self.connect(codec.MAGIC + rawFrame(b"\x01\x01\x00"))
        yield recorder.waitForClose()
        self.assertEqual(len(recorder.frames), 1, recorder.frames)
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_helloTrailingBytes(self) -> Any:
        """
        A Hello with bytes after its last field is a protocol error.
        """
        body = codec.encode(codec.Hello(1, 0, os.urandom(16), "x")) + b"extra"
        recorder = yield self.connect(codec.MAGIC + rawFrame(body))
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_helloBadAgent(self) -> Any:
        """
        A Hello whose agent is not UTF-8, or longer than its length says, is
        a protocol error.
        """
        fixed = b"\x01\x01\x00\x00" + os.urandom(16)
        for agent in [b"\x02\xff\xfe", b"\x40abc"]:
            recorder = yield self.connect(codec.MAGIC + rawFrame(fixed + agent))
            yield recorder.waitForClose()
            self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_otherFrameFirst(self) -> Any:
        """
        A request before Hello is a protocol error.
        """
        recorder = yield self.connect(codec.MAGIC + frame(codec.Open(1, self.url, "")))
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_versionZero(self) -> Any:
        """
        A Hello for protocol version 0 gets Error UNSUPPORTED_VERSION and a
        close.
        """
        recorder = yield self.connect(codec.MAGIC + hello(version=0))
        yield recorder.waitForClose()
        self.assertEqual(len(recorder.frames), 1, recorder.frames)
        self.assertConnectionError(recorder, ErrorCode.UNSUPPORTED_VERSION)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_laterVersion(self) -> Any:
        """
        A Hello for a later version than the node speaks is accepted: both
        speak the lower one, and the node answers with its own Hello.
        """
        recorder = yield self.connect(codec.MAGIC + hello(version=200))
        frames = yield recorder.waitForFrames(1)
        self.assertEqual(frames[0].version, codec.VERSION)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_secondHello(self) -> Any:
        """
        A second Hello after the handshake is a protocol error.
        """
        recorder = yield self.handshake(hello())
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_ownNodeId(self) -> Any:
        """
        A peer claiming the node's own id (a node connected to itself) is
        refused.
        """
        first = yield self.handshake()
        nodeId = first.frames[0].nodeId
        recorder = yield self.connect(codec.MAGIC + hello(nodeId=nodeId))
        yield recorder.waitForClose()
        self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()


class RequestTests(HostileTestCase):
    """
    Well-framed requests asking for what must not be given.
    """

    @defer.inlineCallbacks
    def test_openOutside(self) -> Any:
        """
        Opening paths that leave the published directory, in any spelling,
        gets Error NOT_FOUND for that request; the connection stays usable.
        """
        authority = self.origin.authority
        paths = [
            "../secret",
            "%2e%2e/secret",
            "%2E%2E%2Fsecret",
            "..%2Fsecret",
            "..%5Csecret",
            "..\\secret",
            "%00",
            f"{NAME}%00",
            ".hidden",
            "/secret",
            f"%2F{self.base.strip('/').replace('/', '%2F')}%2Fsecret",
        ]
        data = b"".join(
            frame(codec.Open(n, f"spp://{authority}/{path}", ""))
            for n, path in enumerate(paths, 10)
        )
        recorder = yield self.handshake(data)
        frames = yield recorder.waitForFrames(1 + len(paths))
        answers = {f.request: f for f in frames[1:]}
        for n, path in enumerate(paths, 10):
            answer = answers[n]
            self.assertIsInstance(answer, codec.Error, path)
            self.assertEqual(ErrorCode(answer.code), ErrorCode.NOT_FOUND, path)
            self.assertNotIn(self.base, answer.message)
        recorder.transport.write(frame(codec.Open(99, self.url, "")))
        frames = yield recorder.waitForFrames(2 + len(paths))
        self.assertIsInstance(frames[-1], codec.Opened)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_openBadURL(self) -> Any:
        """
        An Open whose URL is not an SPP URL gets Error BAD_REQUEST for that
        request.
        """
        recorder = yield self.handshake(
            frame(codec.Open(7, f"http://{self.origin.authority}/{NAME}", ""))
        )
        frames = yield recorder.waitForFrames(2)
        self.assertEqual(
            (frames[1].request, ErrorCode(frames[1].code)),
            (7, ErrorCode.BAD_REQUEST),
        )
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_openStaleVersion(self) -> Any:
        """
        An Open naming a version the origin no longer has gets CHANGED.
        """
        recorder = yield self.handshake(frame(codec.Open(7, self.url, "1-1")))
        frames = yield recorder.waitForFrames(2)
        self.assertEqual(
            (frames[1].request, ErrorCode(frames[1].code)), (7, ErrorCode.CHANGED)
        )
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_getBlockPastTheEnd(self) -> Any:
        """
        A GetBlock past the end of the file gets Error BAD_REQUEST for that
        request; the connection stays usable.
        """
        recorder = yield self.opened()
        handle = recorder.handle
        recorder.transport.write(
            frame(codec.GetBlock(20, handle, 4))
            + frame(codec.GetBlock(21, handle, 0xFFFFFFFF))
            + frame(codec.GetBlock(22, handle, 0))
        )
        frames = yield recorder.waitForFrames(5)
        answers = {f.request: f for f in frames[2:]}
        for request in (20, 21):
            self.assertEqual(
                ErrorCode(answers[request].code), ErrorCode.BAD_REQUEST, repr(answers)
            )
        self.assertTrue(answers[22].data == self.content[:BLOCK], "wrong block")
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_getDigestsPastTheEnd(self) -> Any:
        """
        GetDigests from a block past the end gets Error BAD_REQUEST for that
        request; a count reaching past the end is cut at the end, and from
        the end itself there are none.
        """
        recorder = yield self.opened()
        handle = recorder.handle
        recorder.transport.write(
            frame(codec.GetDigests(30, handle, 5, 1))
            + frame(codec.GetDigests(31, handle, 0xFFFFFFFF, 4096))
            + frame(codec.GetDigests(32, handle, 0, 5))
        )
        frames = yield recorder.waitForFrames(5)
        for answer in frames[2:4]:
            self.assertIsInstance(answer, codec.Error, repr(answer))
            self.assertEqual(
                ErrorCode(answer.code), ErrorCode.BAD_REQUEST, repr(answer)
            )
        self.assertIsInstance(frames[4], codec.Digests, repr(frames[4]))
        self.assertEqual((frames[4].request, len(frames[4].digests)), (32, 4 * 32))
        recorder.transport.write(frame(codec.GetDigests(33, handle, 4, 1)))
        frames = yield recorder.waitForFrames(6)
        self.assertEqual(frames[5], codec.Digests(33, 4, b""))
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_unknownHandle(self) -> Any:
        """
        A request naming a handle that is not open (never opened, or its
        Open failed) gets Error NOT_FOUND; the connection stays up.
        """
        recorder = yield self.handshake(
            frame(codec.GetBlock(3, 77, 0))
            + frame(codec.Open(4, "spp://nowhere.example:1/x", ""))
            + frame(codec.GetDigests(5, 4, 0, 1))
        )
        frames = yield recorder.waitForFrames(4)
        self.assertEqual(
            [(type(f), f.request, ErrorCode(f.code)) for f in frames[1:]],
            [(codec.Error, r, ErrorCode.NOT_FOUND) for r in (3, 4, 5)],
        )
        self.assertFalse(recorder.closed)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_closedHandle(self) -> Any:
        """
        A request on a handle after closing it gets Error NOT_FOUND.
        """
        recorder = yield self.opened()
        handle = recorder.handle
        recorder.transport.write(
            frame(codec.Close(handle)) + frame(codec.GetDigests(3, handle, 0, 1))
        )
        frames = yield recorder.waitForFrames(3)
        self.assertEqual(
            (type(frames[2]), frames[2].request, ErrorCode(frames[2].code)),
            (codec.Error, 3, ErrorCode.NOT_FOUND),
        )
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_unsolicitedAnswers(self) -> Any:
        """
        Answers to requests the node never made (a Block, Digests, an Error
        with a request id) are protocol errors.
        """
        for message in [
            codec.Block(5, 0, b"x" * 100),
            codec.Digests(5, 0, b"x" * 32),
            codec.Error(5, ErrorCode.NOT_FOUND, "nope"),
            codec.Peers(5, ()),
            codec.Opened(5, 100, 16384, True, "sha256", "1-1"),
        ]:
            recorder = yield self.handshake(frame(message))
            yield recorder.waitForClose()
            self.assertConnectionError(recorder, ErrorCode.BAD_REQUEST)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_tooManyRequests(self) -> Any:
        """
        A peer pipelining hundreds of block requests at once gets exactly one
        answer for each: the block, or BUSY beyond what the node takes on;
        the connection stays open.
        """
        recorder = yield self.opened()
        handle = recorder.handle
        count = 300
        recorder.transport.write(
            b"".join(
                frame(codec.GetBlock(100 + n, handle, n % 4)) for n in range(count)
            )
        )
        frames = yield recorder.waitForFrames(2 + count)
        answers = frames[2:]
        self.assertEqual(
            sorted(f.request for f in answers), list(range(100, 100 + count))
        )
        busy = 0
        for answer in answers:
            if isinstance(answer, codec.Error):
                self.assertEqual(ErrorCode(answer.code), ErrorCode.BUSY, repr(answer))
                busy += 1
            else:
                index = (answer.request - 100) % 4
                self.assertEqual(answer.index, index)
                start = index * BLOCK
                self.assertTrue(
                    answer.data == self.content[start : start + BLOCK], "wrong block"
                )
        self.assertLess(busy, count)
        self.assertFalse(recorder.closed)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_peersRecordedAndForgotten(self) -> Any:
        """
        GetPeers records the asker at its address and the listen port of its
        Hello, and offers it to the next asker but not to itself; once the
        asker closes its handle it is offered no more.
        """
        first = yield self.connect(
            codec.MAGIC + hello(listenPort=40001) + frame(codec.Open(1, self.url, ""))
        )
        frames = yield first.waitForFrames(2)
        handle = frames[1].request
        first.transport.write(frame(codec.GetPeers(2, handle)))
        frames = yield first.waitForFrames(3)
        self.assertEqual(frames[2], codec.Peers(2, ()))
        second = yield self.connect(
            codec.MAGIC + hello(listenPort=40002) + frame(codec.Open(1, self.url, ""))
        )
        frames = yield second.waitForFrames(2)
        second.transport.write(frame(codec.GetPeers(2, frames[1].request)))
        frames = yield second.waitForFrames(3)
        self.assertEqual(frames[2], codec.Peers(2, (Peer("127.0.0.1", 40001),)))
        # Close the handle, and wait for an answer on the same connection so
        # the node has seen the Close.
        first.transport.write(
            frame(codec.Close(handle)) + frame(codec.Open(3, self.url, ""))
        )
        yield first.waitForFrames(4)
        second.transport.write(frame(codec.GetPeers(4, frames[1].request)))
        frames = yield second.waitForFrames(4)
        self.assertEqual(frames[3], codec.Peers(4, ()))
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_tooManyHandles(self) -> Any:
        """
        Opening the file more than 64 times on one connection gets BUSY for
        the extra opens.
        """
        count = 70
        recorder = yield self.handshake(
            b"".join(frame(codec.Open(n, self.url, "")) for n in range(1, count + 1))
        )
        frames = yield recorder.waitForFrames(1 + count)
        opened = [f for f in frames[1:] if isinstance(f, codec.Opened)]
        errors = [f for f in frames[1:] if isinstance(f, codec.Error)]
        self.assertEqual(len(opened), 64)
        self.assertEqual({ErrorCode(e.code) for e in errors}, {ErrorCode.BUSY})
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_handleHoarders(self) -> Any:
        """
        Sixteen peers each opening the file 64 times and reading a block
        through every handle make the node open it once, not 1024 times:
        one descriptor on the file, and one more socket per connection.
        """
        descriptors = os.path.join("/proc", str(self.origin.pid), "fd")
        published = os.path.realpath(os.path.join(self.public, NAME))

        def count() -> tuple[int, int]:
            sockets = files = 0
            for fd in os.listdir(descriptors):
                try:
                    target = os.readlink(os.path.join(descriptors, fd))
                except FileNotFoundError:
                    continue
                sockets += target.startswith("socket:")
                files += target == published
            return sockets, files

        socketsBefore, _ = count()
        hoarders = []
        for _ in range(16):
            handles = range(1, MAX_HANDLES + 1)
            recorder = yield self.handshake(
                b"".join(frame(codec.Open(n, self.url, "")) for n in handles)
                + b"".join(frame(codec.GetBlock(1000 + n, n, 0)) for n in handles)
            )
            hoarders.append(recorder)
        for recorder in hoarders:
            frames = yield recorder.waitForFrames(1 + 2 * MAX_HANDLES)
            self.assertEqual(
                sum(isinstance(f, codec.Block) for f in frames), MAX_HANDLES
            )
        sockets, files = count()
        self.assertEqual(files, 1)
        # One socket per hoarder; two more may be the node's cache-control
        # listener, which starts once the reactor runs, and the closing
        # connection of setUp's health check.
        self.assertLessEqual(sockets, socketsBefore + 16 + 2)
        yield self.assertHealthy()


class ConnectionCapTests(HostileTestCase):
    """
    Connections just past each cap of the listener get a polite refusal in
    their own protocol, and a normal client gets in once below the cap.
    With 256 descriptors the origin takes 128 connections, 32 of them HTTP,
    and 64 from one address.
    """

    descriptors = 256

    @defer.inlineCallbacks
    def http(self, request: bytes, source: str | None = None) -> Any:
        """
        A new HTTP connection to the origin, after sending it C{request}.
        """
        bind = None if source is None else (source, 0)
        endpoint = TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.origin.port, bindAddress=bind
        )
        recorder = yield connectProtocol(endpoint, HTTPRecorder())
        self.addCleanup(lambda: recorder.lost)
        self.addCleanup(recorder.transport.loseConnection)
        recorder.transport.write(request)
        return recorder

    @defer.inlineCallbacks
    def assertSPPRefused(self, source: str | None = None) -> Any:
        """
        A new SPP connection gets Error BUSY about the connection, then a
        close.
        """
        recorder = yield self.connect(codec.MAGIC + hello(), source)
        yield recorder.waitForClose()
        self.assertEqual(len(recorder.frames), 1, recorder.frames)
        self.assertConnectionError(recorder, ErrorCode.BUSY)

    @defer.inlineCallbacks
    def assertHTTPRefused(self, source: str | None = None) -> Any:
        """
        A new HTTP connection gets 503 with Retry-After, then a close.
        """
        recorder = yield self.http(self.head(), source)
        yield recorder.lost
        head = recorder.raw.split(b"\r\n\r\n")[0].split(b"\r\n")
        self.assertEqual(head[0], b"HTTP/1.1 503 Service Unavailable")
        self.assertIn(b"Connection: close", head)
        self.assertTrue(any(line.startswith(b"Retry-After: ") for line in head))

    def head(self, close: bool = False) -> bytes:
        last = "Connection: close\r\n" if close else ""
        return f"HEAD /{NAME} HTTP/1.1\r\nHost: x\r\n{last}\r\n".encode()

    @defer.inlineCallbacks
    def dismiss(self, recorder: Recorder) -> Any:
        """
        Have the origin close an SPP connection (with a protocol error): it
        has counted the connection gone by the time the close arrives here.
        """
        recorder.transport.write(rawFrame(b"\x7f"))  # type: ignore[union-attr]
        yield recorder.waitForClose()

    @defer.inlineCallbacks
    def test_perAddress(self) -> Any:
        """
        From an address with 64 connections open, a 65th SPP or HTTP
        connection is refused; closing one lets a normal client in.
        """
        held = []
        for _ in range(64):
            recorder = yield self.handshake()
            held.append(recorder)
        yield self.assertSPPRefused()
        yield self.assertHTTPRefused()
        recorder = yield self.handshake(source="127.0.0.2")
        yield recorder.close()
        yield self.dismiss(held.pop())
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_http(self) -> Any:
        """
        With 32 HTTP connections open, a 33rd is refused with a 503 while
        SPP still gets in; closing one lets a new HTTP client in.
        """
        held = []
        for _ in range(32):
            recorder = yield self.http(self.head())
            answer = yield recorder.answered
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
            held.append(recorder)
        yield self.assertHTTPRefused()
        recorder = yield self.handshake()
        yield recorder.close()
        last = held.pop()
        last.transport.write(self.head(close=True))
        yield last.lost
        recorder = yield self.http(self.head())
        answer = yield recorder.answered
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        yield self.assertHealthy()

    @defer.inlineCallbacks
    def test_total(self) -> Any:
        """
        With 128 connections open, a 129th from any address is refused;
        closing one lets a normal client in.
        """
        held = []
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(64):
                recorder = yield self.handshake(source=source)
                held.append(recorder)
        yield self.assertSPPRefused("127.0.0.4")
        yield self.assertHTTPRefused("127.0.0.4")
        yield self.dismiss(held.pop())
        yield self.assertHealthy()


class FileBudgetTests(HostileTestCase):
    """
    Files served to peers share a node-wide budget of descriptors: with 256
    descriptors, 32 files.
    """

    descriptors = 256

    @defer.inlineCallbacks
    def test_budget(self) -> Any:
        """
        Opening 40 different files gets the first 32 opened and the rest
        BUSY; once handles are closed, files open again.
        """
        names = [f"file{n}.bin" for n in range(40)]
        for name in names:
            with open(os.path.join(self.public, name), "wb") as f:
                f.write(name.encode())
        recorder = yield self.handshake(
            b"".join(
                frame(codec.Open(n, self.origin.sppURLFor(name), ""))
                for n, name in enumerate(names, 1)
            )
        )
        frames = yield recorder.waitForFrames(1 + len(names))
        answers = {f.request: f for f in frames[1:]}
        opened = [n for n, f in answers.items() if isinstance(f, codec.Opened)]
        self.assertEqual(sorted(opened), list(range(1, 33)))
        for n in range(33, 41):
            self.assertEqual(ErrorCode(answers[n].code), ErrorCode.BUSY)
        recorder.transport.write(
            b"".join(frame(codec.Close(n)) for n in opened)
            + frame(codec.Open(100, self.origin.sppURLFor(names[-1]), ""))
        )
        frames = yield recorder.waitForFrames(2 + len(names))
        self.assertIsInstance(frames[-1], codec.Opened, repr(frames[-1]))
        yield recorder.close()
        yield self.assertHealthy()


class SurvivalTests(HostileTestCase):
    """
    Everything at once, then a real download.
    """

    @defer.inlineCallbacks
    def test_fetchAfterAbuse(self) -> Any:
        """
        After many hostile connections at once (oversized frames, bad magic,
        bad Hellos, traversal attempts, requests past the end, hang-ups), the
        node still serves C{p2pd fetch} a byte-identical copy, is still
        running, and logs no traceback.
        """
        authority = self.origin.authority
        attacks = [
            codec.MAGIC + b"\xff\xff\xff\xff",
            b"\x89SPQ" + os.urandom(100),
            codec.MAGIC + hello(version=0),
            codec.MAGIC + rawFrame(b"\x01\x01"),
            codec.MAGIC + hello() + rawFrame(b"\x7f"),
            codec.MAGIC
            + hello()
            + frame(codec.Open(1, f"spp://{authority}/../secret", "")),
            codec.MAGIC + hello() + frame(codec.GetBlock(1, 1, 0)),
            b"GET /../secret HTTP/1.1\r\nHost: x\r\n\r\n",
            os.urandom(1000),
        ]
        recorders = yield defer.gatherResults(
            [self.connect(data) for data in attacks * 5]
        )
        for recorder in recorders:
            recorder.transport.loseConnection()
        yield defer.gatherResults([r.waitForClose() for r in recorders])
        output = os.path.join(self.base, "copy.bin")
        result = yield clients.run(
            [
                sys.executable, "-m", "p2pd", "fetch", "-q", "-i", "127.0.0.1",
                "-c", os.path.join(self.base, "fetch-cache"), "-o", output, self.url,
            ],
            env=nodeEnvironment(home=self.base),
            timeout=60,
        )  # fmt: skip
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the copy differs")
        yield self.assertHealthy()
