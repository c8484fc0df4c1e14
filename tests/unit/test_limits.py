"""
Tests for the bounds no peer can push a node past: the memory an SPP
connection holds for frames still arriving (L{p2pd.spp.framing}) and the
descriptors of files served to peers (L{p2pd.engine.serving}).

Each limit is tested just at it and just past it.
"""

import gc
import os
import resource
import struct
import sys
import weakref

from hypothesis import given
from hypothesis import strategies as st
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from p2pd import listener
from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.peers import MAX_PEERS, Peer
from p2pd.engine.serving import (
    CACHED_FILE_DESCRIPTORS,
    MAX_DESCRIPTORS,
    SERVED_FILES_SHARE,
    CachedServedFile,
    Counters,
    PublishedServedFile,
    ServedFiles,
    descriptorLimit,
)
from p2pd.spp import codec
from p2pd.store.published import PublicDirectory
from tests.fakes import FakeServedFile
from tests.unit.test_node import BLOCK as NODE_BLOCK
from tests.unit.test_node import URL as NODE_URL
from tests.unit.test_node import NodeFixture, fakeConnection, writeFile
from tests.unit.test_protocol import (
    BLOCK,
    URL,
    ErrorAssertions,
    Wire,
    content,
    frame,
    ready,
)
from tests.unit.test_spec import SPEC, _section, _size, _tableRows


def header(length: int, messageType: int | None = None) -> bytes:
    """
    A frame's length prefix, and its type byte if given.
    """
    prefix = struct.pack("!I", length)
    return prefix if messageType is None else prefix + bytes([messageType])


class CodecLimitTests(SynchronousTestCase):
    """
    The frame limits hold every message that may come under them.
    """

    def test_helloAndErrorFitBeforeHello(self) -> None:
        """
        The largest Hello and the largest Error fit in
        L{codec.MAX_HELLO_FRAME}: they are all that may come before a Hello.
        """
        for message in [
            codec.Hello(0xFF, 0xFFFF, b"\xff" * 16, "a" * codec.MAX_AGENT),
            codec.Error(0xFFFFFFFF, 0xFFFF, "m" * codec.MAX_ERROR_MESSAGE),
        ]:
            self.assertLessEqual(len(codec.encode(message)), codec.MAX_HELLO_FRAME)  # type: ignore[arg-type]

    def test_smallFrames(self) -> None:
        """
        Every message but Block and Digests, at its largest, fits in
        L{codec.MAX_SMALL_FRAME}.
        """
        for message in [
            codec.Open(0xFFFFFFFF, "u" * codec.MAX_URL, "v" * codec.MAX_VERSION_STAMP),
            codec.Opened(
                1,
                codec.MAX_BLOCK_SIZE * codec.MAX_BLOCKS,
                codec.MAX_BLOCK_SIZE,
                True,
                "n" * codec.MAX_DIGEST_NAME,
                "v" * codec.MAX_VERSION_STAMP,
            ),
            codec.Have(1, ((0, 1),) * codec.MAX_HAVE_RANGES),
            codec.Peers(1, (Peer("::1", 1, True),) * MAX_PEERS),
            codec.GetDigests(1, 1, 0, codec.MAX_DIGESTS_PER_REQUEST),
        ]:
            self.assertLessEqual(len(codec.encode(message)), codec.MAX_SMALL_FRAME)  # type: ignore[arg-type]


class DocumentedTests(SynchronousTestCase):
    """
    docs/protocol.md states the frame limits the code enforces.
    """

    def test_frameLimits(self) -> None:
        """
        The limits table gives L{codec.MAX_HELLO_FRAME} and
        L{codec.MAX_SMALL_FRAME}.
        """
        text = SPEC.getContent().decode("utf-8")
        limits = {row[0]: row[1] for row in _tableRows(_section(text, "Limits"))}
        self.assertEqual(_size(limits["frame before the Hello"]), codec.MAX_HELLO_FRAME)
        self.assertEqual(
            _size(limits["frame but an asked-for Block or Digests"]),
            codec.MAX_SMALL_FRAME,
        )


class BoundsDocumentedTests(SynchronousTestCase):
    """
    docs/security.md's Bounds section names every cap with its value.
    """

    def test_bounds(self) -> None:
        """
        Each row of the Bounds table names its constant, and the shares and
        numbers it gives are the code's.
        """
        path = SPEC.sibling("security.md")
        bounds = _section(path.getContent().decode("utf-8"), "Bounds")
        rows = {row[0]: " ".join(row[1:]) for row in _tableRows(bounds)}
        spp = rows["memory for an SPP frame still arriving"]
        self.assertIn(f"{codec.MAX_HELLO_FRAME // 1024} KiB before the Hello", spp)
        self.assertIn(f"{codec.MAX_SMALL_FRAME // 1024} KiB after it", spp)
        files = rows["files open for peers"]
        self.assertIn(f"N/{SERVED_FILES_SHARE} descriptors", files)
        self.assertIn(f"a cached one {CACHED_FILE_DESCRIPTORS}", files)
        self.assertIn(f"N/{listener.CONNECTIONS_SHARE}", rows["connections at once"])
        perAddress = rows["connections from one address at once, SPP and HTTP"]
        self.assertIn(f"{listener.MAX_PER_ADDRESS} ", perAddress)
        self.assertEqual(listener.HTTP_SHARE, 4)
        self.assertIn("a quarter", rows["HTTP connections at once"])
        self.assertIn(f"at most {MAX_DESCRIPTORS}", bounds)
        self.assertIn(f"Retry-After: {listener.RETRY_AFTER}", bounds)
        limits = {
            row[0]: row[1]
            for row in _tableRows(_section(SPEC.getContent().decode(), "Limits"))
        }
        self.assertTrue(
            limits["connections a node accepts from one address"].startswith(
                f"{listener.MAX_PER_ADDRESS} "
            )
        )


class BeforeHelloTests(SynchronousTestCase, ErrorAssertions):
    """
    Before the Hello a frame may be at most L{codec.MAX_HELLO_FRAME} bytes.
    """

    def test_atTheLimit(self) -> None:
        """
        A length of exactly L{codec.MAX_HELLO_FRAME} is waited for: the
        limit is on the length, the 4 bytes of the length not counted.
        """
        wire = Wire()
        wire.feedRaw(codec.MAGIC + header(codec.MAX_HELLO_FRAME) + b"\x01" * 100)
        self.assertFalse(wire.closed)
        self.assertEqual(wire.protocol.bufferedBytes, 4 + 100)

    def test_pastTheLimit(self) -> None:
        """
        One byte more gets Error BAD_REQUEST and a close as soon as the
        length is in, on either side of the handshake.
        """
        responder = Wire()
        responder.feedRaw(codec.MAGIC + header(codec.MAX_HELLO_FRAME + 1))
        self.assertClosedWith(responder, ErrorCode.BAD_REQUEST)
        self.assertEqual(responder.protocol.bufferedBytes, 0)
        initiator = Wire(initiator=True)
        initiator.feedRaw(header(codec.MAX_HELLO_FRAME + 1))
        self.assertClosedWith(initiator, ErrorCode.BAD_REQUEST)

    def test_requestsBehindHelloMayBeLarge(self) -> None:
        """
        Frames right behind the Hello, in the same read, are held to the
        limits after the Hello.
        """
        wire = Wire()
        wire.node.files[URL] = FakeServedFile(content(10))
        url = URL + "?" + "x" * (codec.MAX_HELLO_FRAME + 10 - len(URL))
        wire.node.files[url] = FakeServedFile(content(10))
        wire.feedRaw(
            codec.MAGIC
            + frame(codec.Hello(1, 0, b"\x02" * 16, "x"))
            + frame(codec.Open(1, url, ""))
        )
        self.assertIsInstance(wire.sent()[1], codec.Opened)
        self.assertFalse(wire.closed)

    def test_busyBeforeHello(self) -> None:
        """
        An initiator refused with Error BUSY (request 0) instead of a Hello
        closes without answering, and its handshake fails.
        """
        wire = Wire(initiator=True)
        wire.feed(codec.Error(0, ErrorCode.BUSY, "too many connections"))
        self.assertEqual(wire.sent(), [])
        self.assertTrue(wire.closed)
        wire.lose()
        [result] = wire.readyResults
        self.assertIsInstance(result, Failure)
        result.trap(SPPError)
        self.assertEqual(result.value.code, ErrorCode.BUSY)
        self.assertEqual(wire.node.ready, [])


class AfterHelloTests(SynchronousTestCase, ErrorAssertions):
    """
    After the Hello a frame may be at most L{codec.MAX_SMALL_FRAME} bytes,
    unless it is a Block or Digests answering an outstanding request.
    """

    def test_smallAtTheLimit(self) -> None:
        """
        An Open of exactly L{codec.MAX_SMALL_FRAME} bytes is waited for.
        """
        wire = ready()
        wire.feedRaw(header(codec.MAX_SMALL_FRAME, codec.Open.TYPE) + b"\x00" * 9)
        self.assertFalse(wire.closed)

    def test_smallPastTheLimit(self) -> None:
        """
        One byte more gets Error BAD_REQUEST and a close once the type byte
        is in; the length alone is waited on.
        """
        wire = ready()
        wire.feedRaw(header(codec.MAX_SMALL_FRAME + 1))
        self.assertFalse(wire.closed)
        self.assertEqual(wire.protocol.bufferedBytes, 4)
        wire.feedRaw(bytes([codec.Open.TYPE]))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.assertEqual(wire.protocol.bufferedBytes, 0)

    def test_unaskedBlock(self) -> None:
        """
        A Block or Digests over the small limit that answers nothing this
        side asked for is refused at its type byte.
        """
        for answer in (codec.Block.TYPE, codec.Digests.TYPE):
            wire = ready(initiator=True)
            wire.feedRaw(header(codec.MAX_SMALL_FRAME + 1, answer))
            self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_otherAnswerAsked(self) -> None:
        """
        An outstanding GetDigests does not let a large Block in.
        """
        wire = ready(initiator=True)
        wire.protocol.request(codec.GetDigests(0, 1, 0, 1), None)
        wire.feedRaw(header(codec.MAX_SMALL_FRAME + 1, codec.Block.TYPE))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_askedBlock(self) -> None:
        """
        With a GetBlock outstanding, a Block of up to L{codec.MAX_FRAME}
        bytes is waited for; one byte more is refused.
        """
        wire = ready(initiator=True)
        wire.protocol.request(codec.GetBlock(0, 1, 0), None)
        wire.feedRaw(header(codec.MAX_FRAME, codec.Block.TYPE))
        self.assertFalse(wire.closed)
        wire = ready(initiator=True)
        wire.protocol.request(codec.GetBlock(0, 1, 0), None)
        wire.feedRaw(header(codec.MAX_FRAME + 1))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_askedDigests(self) -> None:
        """
        With a GetDigests outstanding, a large Digests is waited for.
        """
        wire = ready(initiator=True)
        wire.protocol.request(codec.GetDigests(0, 1, 0, 4096), None)
        wire.feedRaw(header(codec.MAX_SMALL_FRAME + 1, codec.Digests.TYPE))
        self.assertFalse(wire.closed)


class PartialFrameTests(SynchronousTestCase):
    """
    A frame still arriving costs the bytes that arrived, not the length it
    announces, and nothing once the connection is gone.
    """

    def test_costsWhatArrived(self) -> None:
        """
        A Block announcing 4 MiB, trickled a byte at a time, holds a buffer
        of about the bytes received.
        """
        wire = ready(initiator=True)
        wire.protocol.request(codec.GetBlock(0, 1, 0), None)
        wire.feedRaw(header(codec.MAX_FRAME, codec.Block.TYPE))
        wire.feedRaw(b"\x00" * 3000, chunk=1)
        self.assertEqual(wire.protocol.bufferedBytes, 5 + 3000)
        self.assertLess(sys.getsizeof(wire.protocol.frames.buffer), 2 * 3005)

    def test_releasedOnClose(self) -> None:
        """
        The bytes of a partial frame are let go when the connection closes.
        """
        wire = ready(initiator=True)
        asked = wire.protocol.request(codec.GetBlock(0, 1, 0), None)
        wire.feedRaw(header(codec.MAX_FRAME, codec.Block.TYPE) + b"\x00" * 65536)
        wire.lose()
        self.failureResultOf(asked)
        self.assertEqual(wire.protocol.bufferedBytes, 0)

    def test_connectionCollected(self) -> None:
        """
        A connection closed with a partial frame in it leaves nothing that
        keeps it, or its buffer, alive.
        """
        wire = ready()
        wire.feedRaw(header(codec.MAX_SMALL_FRAME, codec.Open.TYPE) + b"\x00" * 8000)
        wire.lose()
        gone = weakref.ref(wire.protocol)
        del wire
        gc.collect()
        self.assertIsNone(gone())

    @given(
        opens=st.lists(st.integers(1, 0xFFFFFFFF), min_size=1, max_size=8, unique=True),
        cuts=st.lists(st.integers(1, 200), max_size=40),
    )
    def test_anyChunking(self, opens: list[int], cuts: list[int]) -> None:
        """
        However a stream of frames is cut into reads, every frame is acted
        on once, in order, and no more than a frame and a read are held.
        """
        wire = ready()
        wire.node.files[URL] = FakeServedFile(content(2 * BLOCK))
        stream = b"".join(frame(codec.Open(r, URL, "")) for r in opens)
        position = 0
        for cut in [*cuts, len(stream)]:
            chunk = stream[position : position + cut]
            position += len(chunk)
            wire.feedRaw(chunk)
            self.assertLessEqual(wire.protocol.bufferedBytes, len(chunk) + 100)
        self.assertEqual([url for url, _, _ in wire.node.opens], [URL] * len(opens))
        self.assertEqual(
            [m.request for m in wire.sent() if isinstance(m, codec.Opened)], opens
        )
        self.assertEqual(wire.protocol.bufferedBytes, 0)
        self.assertFalse(wire.closed)


def openDescriptors() -> int:
    """
    How many descriptors this process has open.
    """
    return len(os.listdir("/proc/self/fd"))


class ServedFilesTests(SynchronousTestCase):
    """
    L{ServedFiles} holds each file once and keeps to its budget.
    """

    def test_defaultBudget(self) -> None:
        """
        By default the budget is a share of the descriptor limit, which is
        the process's soft C{RLIMIT_NOFILE}.
        """
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.assertLessEqual(descriptorLimit(), soft)
        self.assertEqual(ServedFiles().budget, descriptorLimit() // SERVED_FILES_SHARE)

    def test_oneFileManyHandles(self) -> None:
        """
        Handles of one file cost its descriptors once; they are given back
        when the last handle is released.
        """
        files = ServedFiles(budget=10)
        for _ in range(100):
            files.hold("a", 3)
        self.assertEqual(files.used, 3)
        for _ in range(99):
            files.release("a")
        self.assertEqual(files.used, 3)
        files.release("a")
        self.assertEqual(files.used, 0)

    def test_budget(self) -> None:
        """
        Files fit up to the budget exactly; one descriptor more is BUSY,
        but more handles of a file already held are not.
        """
        files = ServedFiles(budget=4)
        files.hold("a", 3)
        files.hold("b", 1)
        with self.assertRaises(SPPError) as raised:
            files.hold("c", 1)
        self.assertEqual(raised.exception.code, ErrorCode.BUSY)
        files.hold("a", 3)
        files.release("b")
        files.hold("c", 1)
        self.assertEqual(files.used, 4)


class SharedDescriptorTests(NodeFixture):
    """
    Files served to peers share one open file however many handles they
    have, and an Open past the budget is BUSY.
    """

    def test_manyHandlesOneDescriptor(self) -> None:
        """
        A hundred handles of one published file, each reading a block, open
        it once; closing them all closes it.
        """
        before = openDescriptors()
        handles = [self.node.open(NODE_URL, "", fakeConnection({})) for _ in range(100)]
        for served in handles:
            self.assertTrue(self.successResultOf(served.readBlock(1)))
        self.assertEqual(openDescriptors(), before + 1)
        for served in handles:
            served.close()
        self.assertEqual(openDescriptors(), before)
        self.assertEqual(self.node.servedFiles.used, 0)

    def test_publishedBusy(self) -> None:
        """
        With the budget full, opening another published file is BUSY; once
        a file is closed there is room again.
        """
        public = PublicDirectory(self.publicDir)
        writeFile(os.path.join(self.publicDir, "other.ts"), b"other" * 100)
        files = ServedFiles(budget=1)

        def served(name: str) -> PublishedServedFile:
            return PublishedServedFile(
                public.lookup([name.encode()]),
                self.digestIndex,
                self.tracker,
                Counters(),
                files,
            )

        first = served("movie.ts")
        with self.assertRaises(SPPError) as raised:
            served("other.ts")
        self.assertEqual(raised.exception.code, ErrorCode.BUSY)
        served("movie.ts").close()
        first.close()
        served("other.ts").close()

    def test_cachedCounted(self) -> None:
        """
        Handles of a cached version count its descriptors once; past the
        budget the Open is BUSY and the cache handle it was given is closed.
        """
        meta = FileMeta(NODE_URL, 2 * NODE_BLOCK, NODE_BLOCK, "sha256", "v1")
        files = ServedFiles(budget=CACHED_FILE_DESCRIPTORS)
        served = [
            CachedServedFile(self.cache.open(meta), None, Counters(), files)
            for _ in range(5)
        ]
        self.assertEqual(files.used, CACHED_FILE_DESCRIPTORS)
        other = self.cache.open(FileMeta(NODE_URL + "2", 1, NODE_BLOCK, "sha256", "v"))
        with self.assertRaises(SPPError) as raised:
            CachedServedFile(other, None, Counters(), files)
        self.assertEqual(raised.exception.code, ErrorCode.BUSY)
        self.assertRaises(ValueError, other.has, 0)
        for handle in served:
            handle.close()
            handle.close()
        self.assertEqual(files.used, 0)
