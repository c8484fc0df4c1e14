"""
Tests for L{p2pd.web.files}: one published file over HTTP, driven through a
real L{twisted.web.server.Site} in memory.
"""

import io
import os

from twisted.internet.interfaces import IConsumer, IPullProducer
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.iweb import IResponse
from zope.interface import implementer
from zope.interface.verify import verifyObject

from p2pd.store.published import PublicDirectory
from p2pd.web.files import FileProducer, PublishedFileResource
from tests.helpers import InMemoryHTTP, parseResponse

MTIME = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
DATA = bytes(i % 251 for i in range(3000))


def header(response: IResponse, name: bytes) -> bytes | None:
    values = response.headers.getRawHeaders(name)
    if values is None:
        return None
    assert len(values) == 1, values
    return values[0]


class _FileTestCase(SynchronousTestCase):
    """
    A published directory holding C{movie.mp4} (L{DATA}), served by a
    L{PublishedFileResource}.
    """

    name = "movie.mp4"
    data = DATA

    def setUp(self) -> None:
        self.root = self.mktemp()
        os.mkdir(self.root)
        self.path = os.path.join(self.root, self.name)
        with open(self.path, "wb") as f:
            f.write(self.data)
        os.utime(self.path, ns=(MTIME * 10**9 + 500, MTIME * 10**9 + 500))
        self.published = PublicDirectory(self.root).lookup([self.name.encode()])
        self.resource = PublishedFileResource(self.published)
        self.etag = b'"' + self.published.version.encode() + b'"'
        self.http = InMemoryHTTP(self, self.resource)

    def get(
        self, headers: dict[str, str | bytes] | None = None, method: str = "GET"
    ) -> tuple[IResponse, bytes]:
        return self.http.request(method, f"http://node.example/{self.name}", headers)

    def assertWhole(self, response: IResponse, body: bytes) -> None:
        """
        The response is the whole file, 200.
        """
        self.assertEqual(response.code, http.OK)
        self.assertEqual(body, self.data)
        self.assertEqual(response.length, len(self.data))
        self.assertIsNone(header(response, b"Content-Range"))

    def assertPartial(
        self, response: IResponse, body: bytes, start: int, stop: int
    ) -> None:
        """
        The response is bytes C{start} to C{stop} (exclusive), 206.
        """
        self.assertEqual(response.code, http.PARTIAL_CONTENT)
        self.assertEqual(body, self.data[start:stop])
        self.assertEqual(response.length, stop - start)
        self.assertEqual(
            header(response, b"Content-Range"),
            b"bytes %d-%d/%d" % (start, stop - 1, len(self.data)),
        )


class WholeFileTests(_FileTestCase):
    """
    A GET without conditions or ranges gets the whole file.
    """

    def test_whole(self) -> None:
        """
        The whole file comes with its length, its type, its validators and an
        offer of byte ranges.
        """
        response, body = self.get()
        self.assertWhole(response, body)
        self.assertEqual(header(response, b"Content-Type"), b"video/mp4")
        self.assertEqual(header(response, b"Accept-Ranges"), b"bytes")
        self.assertEqual(header(response, b"ETag"), self.etag)
        self.assertEqual(
            header(response, b"Last-Modified"), b"Tue, 14 Nov 2023 22:13:20 GMT"
        )

    def test_head(self) -> None:
        """
        HEAD gets the same headers as GET and no body.
        """
        response, body = self.get(method="HEAD")
        self.assertEqual(response.code, http.OK)
        self.assertEqual(body, b"")
        self.assertEqual(header(response, b"Content-Length"), b"3000")
        self.assertEqual(header(response, b"Content-Type"), b"video/mp4")
        self.assertEqual(header(response, b"Accept-Ranges"), b"bytes")
        self.assertEqual(header(response, b"ETag"), self.etag)

    def test_headRange(self) -> None:
        """
        HEAD with a Range gets the headers of the partial answer.
        """
        response, body = self.get({"Range": "bytes=10-19"}, method="HEAD")
        self.assertEqual(response.code, http.PARTIAL_CONTENT)
        self.assertEqual(body, b"")
        self.assertEqual(header(response, b"Content-Length"), b"10")
        self.assertEqual(header(response, b"Content-Range"), b"bytes 10-19/3000")

    def test_headDoesNotOpen(self) -> None:
        """
        HEAD answers from what the lookup found, without opening the file.
        """
        self.patch(
            self.published.__class__,
            "open",
            lambda published: self.fail("HEAD opened the file"),
        )
        response, body = self.get(method="HEAD")
        self.assertEqual(response.code, http.OK)

    def test_otherType(self) -> None:
        """
        The Content-Type follows the file's name.
        """
        os.rename(self.path, os.path.join(self.root, "movie.mkv"))
        published = PublicDirectory(self.root).lookup([b"movie.mkv"])
        response, body = InMemoryHTTP(self, PublishedFileResource(published)).request(
            "GET", "http://node.example/movie.mkv"
        )
        self.assertEqual(header(response, b"Content-Type"), b"video/x-matroska")
        self.assertEqual(body, DATA)


class RangeTests(_FileTestCase):
    """
    A single satisfiable Range gets 206 with exactly those bytes.
    """

    def test_closed(self) -> None:
        """
        C{a-b} gets bytes C{a} to C{b} inclusive.
        """
        response, body = self.get({"Range": "bytes=10-19"})
        self.assertPartial(response, body, 10, 20)

    def test_firstByte(self) -> None:
        """
        C{0-0} gets the first byte.
        """
        response, body = self.get({"Range": "bytes=0-0"})
        self.assertPartial(response, body, 0, 1)

    def test_open(self) -> None:
        """
        C{a-} gets everything from C{a}.
        """
        response, body = self.get({"Range": "bytes=2990-"})
        self.assertPartial(response, body, 2990, 3000)

    def test_fromStart(self) -> None:
        """
        C{0-}, as players send it, gets the whole file as a 206.
        """
        response, body = self.get({"Range": "bytes=0-"})
        self.assertPartial(response, body, 0, 3000)

    def test_suffix(self) -> None:
        """
        C{-n} gets the last C{n} bytes.
        """
        response, body = self.get({"Range": "bytes=-5"})
        self.assertPartial(response, body, 2995, 3000)

    def test_suffixLargerThanFile(self) -> None:
        """
        A suffix longer than the file gets the whole file as a 206.
        """
        response, body = self.get({"Range": "bytes=-5000"})
        self.assertPartial(response, body, 0, 3000)

    def test_clamped(self) -> None:
        """
        A last byte past the end is clamped to the end.
        """
        response, body = self.get({"Range": "bytes=2995-999999"})
        self.assertPartial(response, body, 2995, 3000)

    def test_unsatisfiableUnitOther(self) -> None:
        """
        Of two ranges one of which is unsatisfiable, the other is served.
        """
        response, body = self.get({"Range": "bytes=5000-,100-199"})
        self.assertPartial(response, body, 100, 200)

    def test_startAtEnd(self) -> None:
        """
        A range starting at the size gets 416 naming the size.
        """
        response, body = self.get({"Range": "bytes=3000-"})
        self.assertEqual(response.code, http.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.assertEqual(header(response, b"Content-Range"), b"bytes */3000")

    def test_startPastEnd(self) -> None:
        """
        A range starting past the end gets 416 naming the size.
        """
        response, body = self.get({"Range": "bytes=5000-6000"})
        self.assertEqual(response.code, http.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.assertEqual(header(response, b"Content-Range"), b"bytes */3000")
        self.assertNotIn(self.data[:10], body)

    def test_malformedIgnored(self) -> None:
        """
        A malformed Range is ignored: the whole file, 200.
        """
        for value in ["bytes=5-4", "bytes=abc", "items=0-10", "bytes=-", "0-10"]:
            response, body = self.get({"Range": value})
            self.assertWhole(response, body)

    def test_multipleRanges(self) -> None:
        """
        Several satisfiable ranges get the whole file, 200.
        """
        response, body = self.get({"Range": "bytes=0-9,20-29"})
        self.assertWhole(response, body)

    def test_pulledInBuffers(self) -> None:
        """
        A body longer than the producer's buffer arrives whole and exact.
        """
        self.patch(FileProducer, "bufferSize", 7)
        response, body = self.get({"Range": "bytes=100-2899"})
        self.assertPartial(response, body, 100, 2900)


class ConditionalTests(_FileTestCase):
    """
    Conditional requests (RFC 9110 section 13).
    """

    def assertNotModified(self, response: IResponse, body: bytes) -> None:
        self.assertEqual(response.code, http.NOT_MODIFIED)
        self.assertEqual(body, b"")
        self.assertEqual(header(response, b"ETag"), self.etag)

    def test_notModifiedLength(self) -> None:
        """
        A 304 carries no Content-Length but the one a 200 would (RFC 9110
        section 8.6), so no cache takes the file to be empty.
        """
        code, headers, body = parseResponse(
            self.http.raw(
                b"GET /movie.mp4 HTTP/1.1\r\nHost: node\r\n"
                b"If-None-Match: " + self.etag + b"\r\n\r\n"
            )
        )
        self.assertEqual((code, body), (304, b""))
        self.assertIn(headers.get(b"content-length"), (None, b"3000"))

    def test_ifNoneMatch(self) -> None:
        """
        If-None-Match naming the current tag gets 304.
        """
        self.assertNotModified(*self.get({"If-None-Match": self.etag}))

    def test_ifNoneMatchList(self) -> None:
        """
        If-None-Match with a list holding the current tag gets 304.
        """
        value = b'"other", ' + self.etag + b',"third"'
        self.assertNotModified(*self.get({"If-None-Match": value}))

    def test_ifNoneMatchWeak(self) -> None:
        """
        If-None-Match uses the weak comparison: C{W/} and the tag match.
        """
        self.assertNotModified(*self.get({"If-None-Match": b"W/" + self.etag}))

    def test_ifNoneMatchStar(self) -> None:
        """
        C{If-None-Match: *} matches any current file.
        """
        self.assertNotModified(*self.get({"If-None-Match": "*"}))

    def test_ifNoneMatchOther(self) -> None:
        """
        If-None-Match naming other tags gets the whole file.
        """
        self.assertWhole(*self.get({"If-None-Match": '"other", W/"x"'}))

    def test_ifModifiedSince(self) -> None:
        """
        If-Modified-Since at or after the file's time gets 304.
        """
        for when in [MTIME, MTIME + 3600]:
            self.assertNotModified(
                *self.get({"If-Modified-Since": http.datetimeToString(when)})
            )

    def test_modifiedSince(self) -> None:
        """
        If-Modified-Since before the file's time gets the whole file.
        """
        date = http.datetimeToString(MTIME - 1)
        self.assertWhole(*self.get({"If-Modified-Since": date}))

    def test_ifModifiedSinceBadDate(self) -> None:
        """
        An unparsable If-Modified-Since is ignored.
        """
        for value in ["yesterday", "", "Tue, 14 Foo 2023 22:13:20 GMT"]:
            self.assertWhole(*self.get({"If-Modified-Since": value}))

    def test_ifModifiedSinceIgnoredWithIfNoneMatch(self) -> None:
        """
        If-Modified-Since is ignored when If-None-Match is present (RFC 9110
        section 13.1.3).
        """
        response, body = self.get(
            {
                "If-None-Match": '"other"',
                "If-Modified-Since": http.datetimeToString(MTIME + 3600),
            }
        )
        self.assertWhole(response, body)

    def test_ifRangeMatching(self) -> None:
        """
        If-Range naming the current tag lets the Range apply.
        """
        response, body = self.get({"Range": "bytes=10-19", "If-Range": self.etag})
        self.assertPartial(response, body, 10, 20)

    def test_ifRangeStale(self) -> None:
        """
        If-Range naming another tag gets the whole file, 200.
        """
        response, body = self.get({"Range": "bytes=10-19", "If-Range": '"stale"'})
        self.assertWhole(response, body)

    def test_ifRangeWeak(self) -> None:
        """
        If-Range uses the strong comparison: a weak tag never matches.
        """
        response, body = self.get(
            {"Range": "bytes=10-19", "If-Range": b"W/" + self.etag}
        )
        self.assertWhole(response, body)

    def test_ifRangeDate(self) -> None:
        """
        If-Range with exactly the file's date lets the Range apply.
        """
        response, body = self.get(
            {"Range": "bytes=10-19", "If-Range": http.datetimeToString(MTIME)}
        )
        self.assertPartial(response, body, 10, 20)

    def test_ifRangeStaleDate(self) -> None:
        """
        If-Range with another date, or no date at all, gets the whole file.
        """
        for value in [
            http.datetimeToString(MTIME - 60),
            http.datetimeToString(MTIME + 60),
            b"not a date",
        ]:
            response, body = self.get({"Range": "bytes=10-19", "If-Range": value})
            self.assertWhole(response, body)

    def test_ifRangeUnsatisfiable(self) -> None:
        """
        A stale If-Range makes even an unsatisfiable Range get the whole
        file.
        """
        response, body = self.get({"Range": "bytes=9000-", "If-Range": '"stale"'})
        self.assertWhole(response, body)

    def test_ifMatch(self) -> None:
        """
        If-Match naming the current tag, or C{*}, lets the request through.
        """
        for value in [self.etag, b'"a", ' + self.etag, b"*"]:
            self.assertWhole(*self.get({"If-Match": value}))

    def test_ifMatchMismatch(self) -> None:
        """
        If-Match naming other tags gets 412 and no body.
        """
        response, body = self.get({"If-Match": '"other"'})
        self.assertEqual(response.code, http.PRECONDITION_FAILED)
        self.assertEqual(body, b"")

    def test_ifMatchWeak(self) -> None:
        """
        If-Match uses the strong comparison: a weak tag gets 412.
        """
        response, body = self.get({"If-Match": b"W/" + self.etag})
        self.assertEqual(response.code, http.PRECONDITION_FAILED)

    def test_ifMatchBeforeRange(self) -> None:
        """
        A failed If-Match wins over a Range.
        """
        response, body = self.get({"If-Match": '"other"', "Range": "bytes=0-9"})
        self.assertEqual(response.code, http.PRECONDITION_FAILED)


class ChangedFileTests(_FileTestCase):
    """
    A file that changes after it was looked up is never served stale.
    """

    def assertNotFound(self, headers: dict[str, str | bytes] | None = None) -> None:
        with capturedLogs() as events:
            response, body = self.get(headers)
        self.assertEqual(response.code, http.NOT_FOUND)
        self.assertNotIn(self.data[:20], body)
        # Nothing that would let a cache keep the 404 as this file.
        self.assertIsNone(header(response, b"ETag"))
        self.assertIsNone(header(response, b"Last-Modified"))
        [event] = [e for e in events if e.get("name") == self.name]
        self.assertEqual(event["log_format"], "cannot open {name}: {error}")

    def test_replaced(self) -> None:
        """
        A file replaced (renamed over) between lookup and open gets 404.
        """
        new = os.path.join(self.root, "new")
        with open(new, "wb") as f:
            f.write(b"x" * len(self.data))
        os.utime(new, ns=(MTIME * 10**9 + 500, MTIME * 10**9 + 500))
        os.replace(new, self.path)
        self.assertNotFound()

    def test_modified(self) -> None:
        """
        A file appended to between lookup and open gets 404.
        """
        with open(self.path, "ab") as f:
            f.write(b"more")
        self.assertNotFound({"Range": "bytes=0-9"})

    def test_removed(self) -> None:
        """
        A file removed between lookup and open gets 404.
        """
        os.remove(self.path)
        self.assertNotFound()

    def test_shrinksWhileServed(self) -> None:
        """
        A file truncated after it was opened ends the response by closing
        the connection: the promised length cannot be sent, and the server
        must not spin waiting for bytes that will never come.
        """
        channel, transport = self.http.connect()
        channel.dataReceived(b"GET /movie.mp4 HTTP/1.1\r\nHost: node\r\n\r\n")
        os.truncate(self.path, 0)
        with capturedLogs() as events:
            for _ in range(10):
                self.http.clock.advance(1)
        self.assertFalse(self.http.clock.getDelayedCalls())
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b"\r\n\r\n", transport.value())
        self.assertTrue(
            any(e.get("count") == 0 and e.get("size") == 3000 for e in events), events
        )


class EmptyFileTests(_FileTestCase):
    """
    An empty published file.
    """

    data = b""

    def test_get(self) -> None:
        """
        An empty file is served as an empty 200.
        """
        response, body = self.get()
        self.assertEqual(response.code, http.OK)
        self.assertEqual(body, b"")
        self.assertEqual(response.length, 0)
        self.assertEqual(header(response, b"ETag"), self.etag)

    def test_head(self) -> None:
        """
        HEAD of an empty file says its length is 0.
        """
        response, body = self.get(method="HEAD")
        self.assertEqual(response.code, http.OK)
        self.assertEqual(header(response, b"Content-Length"), b"0")

    def test_range(self) -> None:
        """
        No range of an empty file is satisfiable: 416 naming size 0.
        """
        response, body = self.get({"Range": "bytes=0-"})
        self.assertEqual(response.code, http.REQUESTED_RANGE_NOT_SATISFIABLE)
        self.assertEqual(header(response, b"Content-Range"), b"bytes */0")


@implementer(IConsumer)
class _SlowConsumer:
    """
    A request that records what it is given and never asks for more.
    """

    def __init__(self) -> None:
        self.producer: object = None
        self.streaming: bool | None = None
        self.written: list[bytes] = []
        self.finished = False
        self.lost = False

    def registerProducer(self, producer: object, streaming: bool) -> None:
        self.producer = producer
        self.streaming = streaming

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True

    def loseConnection(self) -> None:
        self.lost = True


class _CountingFile(io.BytesIO):
    """
    A file that records the size of every read.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)


class FileProducerTests(SynchronousTestCase):
    """
    L{FileProducer} is pulled: it reads one buffer each time its consumer
    asks, so memory stays bounded however slow the client.
    """

    def setUp(self) -> None:
        self.patch(FileProducer, "bufferSize", 100)
        self.consumer = _SlowConsumer()
        self.file = _CountingFile(DATA)

    def test_pullProducer(self) -> None:
        """
        The producer provides L{IPullProducer} and registers as one.
        """
        producer = FileProducer(self.consumer, self.file, 0, 10)
        verifyObject(IPullProducer, producer)
        producer.start()
        self.assertIs(self.consumer.producer, producer)
        self.assertIsNotNone(self.consumer.streaming)
        self.assertFalse(self.consumer.streaming)

    def test_startReadsNothing(self) -> None:
        """
        A consumer that never asks for data gets none, and nothing is read.
        """
        FileProducer(self.consumer, self.file, 0, len(DATA)).start()
        self.assertEqual(self.consumer.written, [])
        self.assertEqual(self.file.reads, [])

    def test_oneBufferPerPull(self) -> None:
        """
        Each C{resumeProducing} reads and writes one buffer, no more.
        """
        producer = FileProducer(self.consumer, self.file, 0, len(DATA))
        producer.start()
        producer.resumeProducing()
        self.assertEqual(self.file.reads, [100])
        self.assertEqual(self.consumer.written, [DATA[:100]])
        producer.resumeProducing()
        self.assertEqual(self.file.reads, [100, 100])
        self.assertEqual(b"".join(self.consumer.written), DATA[:200])
        self.assertFalse(self.consumer.finished)

    def test_wholeSpan(self) -> None:
        """
        Pulled until it unregisters, the producer writes exactly its span,
        finishes the request and closes the file.
        """
        producer = FileProducer(self.consumer, self.file, 250, 1000)
        producer.start()
        pulls = 0
        while self.consumer.producer is not None:
            producer.resumeProducing()
            pulls += 1
        self.assertEqual(pulls, 10)
        self.assertEqual(b"".join(self.consumer.written), DATA[250:1250])
        self.assertTrue(max(self.file.reads) <= 100)
        self.assertTrue(self.consumer.finished)
        self.assertTrue(self.file.closed)

    def test_stopProducing(self) -> None:
        """
        A client that goes away stops the producer and closes the file.
        """
        producer = FileProducer(self.consumer, self.file, 0, len(DATA))
        producer.start()
        producer.resumeProducing()
        producer.stopProducing()
        self.assertTrue(self.file.closed)
        producer.resumeProducing()
        self.assertEqual(len(self.consumer.written), 1)

    def test_fileShorterThanSpan(self) -> None:
        """
        A file that ends before the span does drops the connection and
        closes the file instead of waiting for more bytes.
        """
        producer = FileProducer(self.consumer, _CountingFile(DATA[:150]), 0, 3000)
        producer.start()
        producer.resumeProducing()
        producer.resumeProducing()
        self.assertFalse(self.consumer.lost)
        producer.resumeProducing()
        self.assertTrue(self.consumer.lost)
        self.assertFalse(self.consumer.finished)
        self.assertIsNone(self.consumer.producer)
        self.assertEqual(b"".join(self.consumer.written), DATA[:150])


class BoundedMemoryTests(_FileTestCase):
    """
    Through the real HTTP channel, the body is pulled one buffer at a time
    and not at all while the transport is full.
    """

    def test_pausedTransport(self) -> None:
        """
        While the transport has paused its producer (its buffer is full), no
        more of the file is read; when it resumes, the rest arrives exactly.
        """
        self.patch(FileProducer, "bufferSize", 100)
        channel, transport = self.http.connect()
        channel.dataReceived(b"GET /movie.mp4 HTTP/1.1\r\nHost: node\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.http.clock.advance(1)
        code, headers, body = parseResponse(transport.value())
        self.assertEqual((code, body), (200, DATA[:100]))
        self.assertEqual(headers[b"content-length"], b"3000")

        transport.producer.pauseProducing()  # type: ignore[union-attr]
        for _ in range(50):
            self.http.clock.advance(1)
        self.assertEqual(parseResponse(transport.value())[2], DATA[:100])

        transport.producer.resumeProducing()  # type: ignore[union-attr]
        self.http.drive()
        self.assertEqual(parseResponse(transport.value())[2], DATA)
