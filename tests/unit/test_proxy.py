# -*- test-case-name: tests.unit.test_proxy -*-
"""
Tests for L{p2pd.web.proxy}: the viewer's proxy on the node's shared port.

Raw HTTP is fed to the node's real HTTP channel (L{p2pd.services.NodeSite}, whose
requests are L{p2pd.web.proxy.NodeRequest}s) over a L{StringTransport}. The
node is a fake whose C{download(url)} gives a real
L{p2pd.engine.download.Download} over a block store in memory, fed by a fake
origin that answers at once or when the test says so. Forwarded requests go
to a L{MemoryReactorClock}; the test plays the origin server on the
connection it was asked to make.
"""

import ipaddress
import random
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, error, task
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.engine.download import DownloadFailed
from p2pd.services import NodeSite
from p2pd.web.access import Access
from p2pd.web.firstcontact import FIRST_CONTACT_GRACE
from p2pd.web.forward import HOP_BY_HOP, endToEnd
from p2pd.web.proxy import NodeRequest, ProxyConfig
from p2pd.web.root import SERVER
from tests.fakes import FakeWebNode

BLOCK = 16 * 1024
CONTENT = random.Random(7).randbytes(20 * BLOCK - 100)
SIZE = len(CONTENT)

ORIGIN = "127.0.0.1:1111"
SPP_URL = f"spp://{ORIGIN}/movie.ts"
# An origin elsewhere on the network, for granted hosts that are not the
# local host (they may not reach the node's loopback addresses).
REMOTE_SPP_URL = "spp://192.0.2.10:1111/movie.ts"

VIEWER = IPv4Address("TCP", "127.0.0.2", 1111)
LOCAL_CLIENT = IPv4Address("TCP", "127.0.0.2", 40000)
STRANGER = IPv4Address("TCP", "10.1.2.3", 40000)


class OwnPage(Resource):
    """
    The node's own resources: every path answers with its name.
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain")
        return b"own page " + request.path


@dataclass
class Response:
    """
    One response parsed from the bytes a channel wrote.
    """

    version: bytes
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def parseResponses(raw: bytes, head: bool = False) -> list[Response]:
    """
    The responses in C{raw}, one after another; bodies framed by
    C{Content-Length} or chunked (C{head}: none has a body). A body cut
    short is returned as far as it goes.
    """
    responses = []
    while raw:
        top, sep, raw = raw.partition(b"\r\n\r\n")
        assert sep, f"no end of headers in {top!r}"
        statusLine, *lines = top.split(b"\r\n")
        version, code, _ = statusLine.split(b" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if head:
            body = b""
        elif headers.get(b"transfer-encoding") == b"chunked":
            chunks = []
            while True:
                sizeLine, _, raw = raw.partition(b"\r\n")
                length = int(sizeLine, 16)
                chunks.append(raw[:length])
                raw = raw[length + 2 :]
                if length == 0:
                    break
            body = b"".join(chunks)
        else:
            length = int(headers.get(b"content-length", b"0"))
            body, raw = raw[:length], raw[length:]
        responses.append(Response(version, int(code), headers, body))
    return responses


def get(url: str, *headerLines: str, method: str = "GET", version="1.1") -> bytes:
    """
    A raw request for C{url} (an absolute URI, or a path) with
    C{headerLines}.
    """
    lines = [f"{method} {url} HTTP/{version}", *headerLines, "", ""]
    return "\r\n".join(lines).encode("ascii")


class OriginTransport(StringTransport):
    """
    The proxy's connection to an origin server: like a TCP transport,
    C{stopProducing} closes it, after which C{resumeProducing} does nothing.
    """

    def stopProducing(self):
        super().stopProducing()
        self.loseConnection()

    def resumeProducing(self):
        if not self.disconnecting:
            super().resumeProducing()


class SendingTransport(StringTransport):
    """
    A transport that records what it held each time it was told to send.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sends: list[bytes] = []

    def doWrite(self):
        self.sends.append(self.value())


class ProxyHarness:
    """
    A node's real HTTP side (L{NodeSite} with a L{ProxyConfig}) around a
    L{FakeWebNode}, for raw connections.
    """

    def __init__(self, testCase, node=None, grants=(), allowHosts=()):
        self.testCase = testCase
        self.node = node or FakeWebNode(CONTENT, BLOCK)
        self.reactor = MemoryReactorClock()
        self.resolved = {}
        self.access = Access(self.resolve, grants, allowHosts)
        self.config = ProxyConfig(self.node, self.reactor, self.access)
        self.site = NodeSite(OwnPage(), False, self.reactor, self.config)

    def resolve(self, host, port):
        """
        Names resolve as the test set them in C{resolved}; others do not.
        """
        if host in self.resolved:
            return defer.succeed(self.resolved[host])
        return defer.fail(error.DNSLookupError(host))

    def connect(self, peer=LOCAL_CLIENT, transport=None):
        """
        A server-side channel on a fresh transport from C{peer}; the test's
        cleanup closes it.

        @return: the channel and its transport.
        """
        channel = self.site.buildProtocol(peer)
        if transport is None:
            transport = StringTransport(hostAddress=VIEWER, peerAddress=peer)
        channel.makeConnection(transport)
        self.testCase.addCleanup(self.close, channel, transport)
        return channel, transport

    def close(self, channel, transport):
        """
        The client's connection is lost (if it was not yet).
        """
        if transport.connected:
            transport.connected = False
            channel.connectionLost(Failure(error.ConnectionDone()))

    def exchange(self, data, peer=LOCAL_CLIENT, head=False):
        """
        Send C{data} on a fresh connection.

        @return: the responses written, and the transport.
        """
        channel, transport = self.connect(peer)
        channel.dataReceived(data)
        return parseResponses(transport.value(), head), transport

    def one(self, data, peer=LOCAL_CLIENT, head=False):
        """
        The one response to C{data} on a fresh connection.
        """
        responses, _ = self.exchange(data, peer, head)
        self.testCase.assertEqual(len(responses), 1, responses)
        return responses[0]

    def answerForward(self, raw, index=-1):
        """
        Play the origin server on the forwarded connection number C{index}:
        write C{raw} to the proxy.

        @return: the origin-side protocol and transport; what the proxy
            sent is in the transport.
        """
        self.reactor.advance(FIRST_CONTACT_GRACE)  # a first contact waits
        host, port, factory, _, _ = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = OriginTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        if raw:
            protocol.dataReceived(raw)
        return protocol, transport


class SPPContentTests(SynchronousTestCase):
    """
    Absolute URIs for content of a p2pd node (C{spp://} URLs and
    C{/.direct/} fallback URLs) are answered from the download engine, with
    the Range behaviour of a file.
    """

    def setUp(self):
        self.proxy = ProxyHarness(self)
        self.node = self.proxy.node

    def test_sppURL(self):
        """
        GET of an C{spp://} URL gets 200 with the whole content, its length,
        media type and C{Accept-Ranges}; the node is asked for that URL.
        """
        response = self.proxy.one(get(SPP_URL))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)
        self.assertEqual(response.headers[b"content-length"], b"%d" % SIZE)
        self.assertEqual(response.headers[b"content-type"], b"video/mp2t")
        self.assertEqual(response.headers[b"accept-ranges"], b"bytes")
        self.assertEqual(self.node.urls, [SPP_URL])

    def test_serverHeader(self):
        """
        The proxy's own answers, content and errors, carry
        C{Server: p2pd/VERSION}, as every answer of the node.
        """
        ok = self.proxy.one(get(SPP_URL))
        bad = self.proxy.one(get("spp://127.0.0.2:1111/"))
        for response in (ok, bad):
            self.assertEqual(response.headers[b"server"], SERVER)

    def test_directURL(self):
        """
        GET of a node's C{/.direct/NAME} fallback URL is served over SPP
        from C{spp://HOST:PORT/NAME}, not forwarded.
        """
        response = self.proxy.one(get(f"http://{ORIGIN}/.direct/movie.ts"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)
        self.assertEqual(self.node.urls, [SPP_URL])
        self.assertEqual(self.proxy.reactor.tcpClients, [])

    def test_directURLEncoded(self):
        """
        A percent-encoded name in a fallback URL keeps its encoding in the
        C{spp://} URL, and the decoded name chooses the media type.
        """
        response = self.proxy.one(get(f"http://{ORIGIN}/.direct/my%20film.mp4"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers[b"content-type"], b"video/mp4")
        self.assertEqual(self.node.urls, [f"spp://{ORIGIN}/my%20film.mp4"])

    def test_sppDefaultPort(self):
        """
        An C{spp://} URL without a port names port 1111.
        """
        self.proxy.one(get("spp://origin.example/movie.ts"))
        self.assertEqual(self.node.urls, ["spp://origin.example:1111/movie.ts"])

    def test_openRange(self):
        """
        C{bytes=a-} gets 206 with the rest of the content from C{a} and its
        C{Content-Range}.
        """
        start = 3 * BLOCK + 17
        response = self.proxy.one(get(SPP_URL, f"Range: bytes={start}-"))
        self.assertEqual(response.status, 206)
        self.assertEqual(
            response.headers[b"content-range"],
            b"bytes %d-%d/%d" % (start, SIZE - 1, SIZE),
        )
        self.assertEqual(response.headers[b"content-length"], b"%d" % (SIZE - start))
        self.assertEqual(response.body, CONTENT[start:])

    def test_closedRange(self):
        """
        C{bytes=a-b} across block boundaries gets exactly bytes C{a} to
        C{b}, and the reader asks for no more.
        """
        start, last = BLOCK - 10, 3 * BLOCK + 9
        response = self.proxy.one(get(SPP_URL, f"Range: bytes={start}-{last}"))
        self.assertEqual(response.status, 206)
        self.assertEqual(
            response.headers[b"content-range"],
            b"bytes %d-%d/%d" % (start, last, SIZE),
        )
        self.assertEqual(response.body, CONTENT[start : last + 1])

    def test_suffixRange(self):
        """
        C{bytes=-n} gets the last C{n} bytes.
        """
        response = self.proxy.one(get(SPP_URL, "Range: bytes=-100"))
        self.assertEqual(response.status, 206)
        self.assertEqual(
            response.headers[b"content-range"],
            b"bytes %d-%d/%d" % (SIZE - 100, SIZE - 1, SIZE),
        )
        self.assertEqual(response.body, CONTENT[-100:])

    def test_rangePastEndClipped(self):
        """
        A range whose end is past the end of the content is clipped to it.
        """
        response = self.proxy.one(get(SPP_URL, f"Range: bytes={SIZE - 5}-{SIZE + 50}"))
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, CONTENT[-5:])

    def test_rangeFromFirstByte(self):
        """
        C{bytes=0-}, the first request of mpv, ffmpeg and VLC, gets 206 with
        the whole content.
        """
        response = self.proxy.one(get(SPP_URL, "Range: bytes=0-"))
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, CONTENT)

    def test_rangeAtEnd(self):
        """
        C{bytes=SIZE-} (VLC's probe of an MP4) gets 416 with
        C{Content-Range: bytes */SIZE}, an empty body of length 0, and no
        reader; the connection stays open for the next request.
        """
        responses, transport = self.proxy.exchange(
            get(SPP_URL, f"Range: bytes={SIZE}-") + get(SPP_URL, "Range: bytes=0-9")
        )
        first, second = responses
        self.assertEqual(first.status, 416)
        self.assertEqual(first.headers[b"content-range"], b"bytes */%d" % SIZE)
        self.assertEqual(first.headers.get(b"content-length"), b"0")
        self.assertEqual(first.body, b"")
        self.assertEqual(second.status, 206)
        self.assertEqual(second.body, CONTENT[:10])
        self.assertFalse(transport.disconnecting)

    def test_rangePastEnd(self):
        """
        A range starting past the end (mplayer's overshoot) gets 416 too.
        """
        response = self.proxy.one(
            get(SPP_URL, f"Range: bytes={SIZE + 100}-{SIZE + 200}")
        )
        self.assertEqual(response.status, 416)
        self.assertEqual(response.headers[b"content-range"], b"bytes */%d" % SIZE)
        self.assertEqual(self.node.made[SPP_URL].readers, set())

    def test_malformedRangeIgnored(self):
        """
        A malformed Range header is ignored: 200 with the whole content.
        """
        response = self.proxy.one(get(SPP_URL, "Range: bytes=x-y"))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)

    def test_head(self):
        """
        HEAD gets the headers of a GET (length, type, ranges) and no body;
        no reader is made.
        """
        response = self.proxy.one(get(SPP_URL, method="HEAD"), head=True)
        _, transport = self.proxy.exchange(get(SPP_URL, method="HEAD"), head=True)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers[b"content-length"], b"%d" % SIZE)
        self.assertEqual(response.headers[b"content-type"], b"video/mp2t")
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))
        self.assertEqual(self.node.made[SPP_URL].readers, set())

    def test_headRange(self):
        """
        HEAD with a Range gets the 206 headers of that range.
        """
        response = self.proxy.one(
            get(SPP_URL, "Range: bytes=10-19", method="HEAD"), head=True
        )
        self.assertEqual(response.status, 206)
        self.assertEqual(response.headers[b"content-length"], b"10")
        self.assertEqual(response.headers[b"content-range"], b"bytes 10-19/%d" % SIZE)

    def test_http10(self):
        """
        An HTTP/1.0 request (mplayer, VLC's fallback module) gets an
        HTTP/1.0 response with the whole content, then the connection is
        closed.
        """
        responses, transport = self.proxy.exchange(get(SPP_URL, version="1.0"))
        (response,) = responses
        self.assertEqual(response.version, b"HTTP/1.0")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)
        self.assertTrue(transport.disconnecting)

    def test_keepAlive(self):
        """
        HTTP/1.1: two requests on one connection, the second sent after the
        first was answered, both get their bytes; the connection stays open.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(SPP_URL, "Range: bytes=0-99"))
        channel.dataReceived(get(f"http://{ORIGIN}/.direct/movie.ts"))
        first, second = parseResponses(transport.value())
        self.assertEqual(first.body, CONTENT[:100])
        self.assertEqual(second.body, CONTENT)
        self.assertFalse(transport.disconnecting)

    def test_pipelined(self):
        """
        Two requests arriving together (pipelined) are answered in order.
        """
        first, second = self.proxy.exchange(
            get(SPP_URL, "Range: bytes=-10") + get(SPP_URL, "Range: bytes=0-9")
        )[0]
        self.assertEqual(first.body, CONTENT[-10:])
        self.assertEqual(second.body, CONTENT[:10])

    def test_connectionClose(self):
        """
        C{Connection: close} (libavformat) gets its answer, then the
        connection is closed.
        """
        responses, transport = self.proxy.exchange(
            get(SPP_URL, "Connection: close", "Icy-MetaData: 1")
        )
        (response,) = responses
        self.assertEqual(response.body, CONTENT)
        self.assertTrue(transport.disconnecting)

    def test_readerClosedAtEnd(self):
        """
        Once the body is sent, the reader is closed: the download has no
        readers left.
        """
        self.proxy.one(get(SPP_URL))
        self.assertEqual(self.node.made[SPP_URL].readers, set())

    def test_sppPostRefused(self):
        """
        Only GET and HEAD are served for an C{spp://} URL: POST gets 405.
        """
        response = self.proxy.one(get(SPP_URL, "Content-Length: 0", method="POST"))
        self.assertEqual(response.status, 405)
        self.assertEqual(self.node.urls, [])

    def test_malformedURI(self):
        """
        An absolute URI with a bad port gets 400 and nothing is fetched.
        """
        response = self.proxy.one(get("spp://127.0.0.1:99999/movie.ts"))
        self.assertEqual(response.status, 400)
        self.assertEqual(self.node.urls, [])

    def test_noFileInURL(self):
        """
        An C{spp://} URL naming no file gets 400 with the engine's reason.
        """
        response = self.proxy.one(get(f"spp://{ORIGIN}/"))
        self.assertEqual(response.status, 400)
        self.assertIn(b"names no file", response.body)


class OriginFormTests(SynchronousTestCase):
    """
    Requests with a path (origin form) are for the node itself, not the
    proxy.
    """

    def test_ownResources(self):
        """
        C{GET /path} and C{GET /.direct/NAME} go to the node's resources;
        nothing is fetched or forwarded.
        """
        proxy = ProxyHarness(self)
        for path in (b"/page", b"/.direct/movie.ts"):
            response = proxy.one(get(path.decode()))
            self.assertEqual(response.status, 200)
            self.assertEqual(response.body, b"own page " + path)
        self.assertEqual(proxy.node.urls, [])
        self.assertEqual(proxy.reactor.tcpClients, [])

    def test_withoutProxy(self):
        """
        A site of L{NodeRequest}s without a proxy setting sends absolute
        URIs to its own resources too.
        """
        site = Site(OwnPage(), reactor=MemoryReactorClock())
        site.requestFactory = NodeRequest  # type: ignore[assignment]
        channel = site.buildProtocol(LOCAL_CLIENT)
        transport = StringTransport(hostAddress=VIEWER, peerAddress=LOCAL_CLIENT)
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, Failure(error.ConnectionDone()))
        channel.dataReceived(get(SPP_URL))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"own page " + SPP_URL.encode())


class AccessTests(SynchronousTestCase):
    """
    Only this host and granted subnets (-n) may make the node fetch; with
    -A, only the listed origins are fetched or forwarded.
    """

    def assertRefused(self, proxy, url, peer, reason):
        response = proxy.one(get(url), peer)
        self.assertEqual(response.status, 403)
        self.assertIn(reason.encode(), response.body)
        self.assertEqual(
            response.headers[b"content-type"], b"text/plain; charset=utf-8"
        )
        self.assertEqual(proxy.node.urls, [])
        self.assertEqual(proxy.reactor.tcpClients, [])

    def test_strangerRefused(self):
        """
        A client outside the local host and the grants gets 403 saying why,
        for SPP content and for forwarding, and the node neither fetches
        nor connects anywhere.
        """
        proxy = ProxyHarness(self)
        why = "10.1.2.3 may not use this proxy"
        self.assertRefused(proxy, SPP_URL, STRANGER, why)
        self.assertRefused(proxy, "http://example.org/", STRANGER, why)

    def test_strangerHead(self):
        """
        A refused HEAD gets the 403 headers without a body.
        """
        proxy = ProxyHarness(self)
        responses, transport = proxy.exchange(
            get(SPP_URL, method="HEAD"), STRANGER, head=True
        )
        self.assertEqual(responses[0].status, 403)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))

    def test_grantedSubnet(self):
        """
        A client in a granted subnet is served.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        response = proxy.one(get(REMOTE_SPP_URL), STRANGER)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)

    def test_otherSubnet(self):
        """
        A grant of another subnet does not let the client in.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.2.0.0/16")])
        self.assertRefused(proxy, SPP_URL, STRANGER, "may not use this proxy")

    def test_loopback(self):
        """
        Every loopback client is the local host, over IPv4, IPv6 and
        IPv4-mapped IPv6, without grants.
        """
        proxy = ProxyHarness(self)
        for peer in (
            IPv4Address("TCP", "127.0.0.3", 40000),
            IPv6Address("TCP", "::1", 40000),
            IPv6Address("TCP", "::ffff:127.0.0.1", 40000),
        ):
            self.assertEqual(proxy.one(get(SPP_URL), peer).status, 200, peer)

    def test_mappedStranger(self):
        """
        An IPv4-mapped address is judged as the IPv4 address it maps.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        inside = IPv6Address("TCP", "::ffff:10.1.2.3", 40000)
        outside = IPv6Address("TCP", "::ffff:10.9.2.3", 40000)
        self.assertEqual(proxy.one(get(REMOTE_SPP_URL), inside).status, 200)
        self.assertEqual(proxy.one(get(REMOTE_SPP_URL), outside).status, 403)

    def test_allowHost(self):
        """
        With -A, content of an allowed origin is served (the host compared
        without case), and any other origin gets 403 naming it.
        """
        proxy = ProxyHarness(self, allowHosts=["origin.example"])
        response = proxy.one(get("spp://Origin.Example:1111/movie.ts"))
        self.assertEqual(response.status, 200)
        self.assertEqual(proxy.node.urls, ["spp://origin.example:1111/movie.ts"])
        proxy.node.urls.clear()
        why = "other.example is not an allowed origin"
        self.assertRefused(
            proxy, "spp://other.example:1111/movie.ts", LOCAL_CLIENT, why
        )
        self.assertRefused(
            proxy, "http://other.example/.direct/movie.ts", LOCAL_CLIENT, why
        )
        self.assertRefused(proxy, "http://other.example/page", LOCAL_CLIENT, why)


    def test_ownHostRefused(self):
        """
        A granted host that is not the local host cannot make the proxy
        fetch or forward from the node's loopback or link-local addresses,
        directly or by a name resolving to one: 403, no SPP download and no
        connection.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        proxy.resolved["localhost"] = ["::1", "127.0.0.1"]
        for url in (
            "http://127.0.0.1:8080/",
            "http://localhost:8080/admin",
            "http://[::1]:631/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1%25eth0]:80/",
            "spp://127.0.0.1:1111/movie.ts",
            "http://127.0.0.1:1111/.direct/movie.ts",
        ):
            self.assertRefused(proxy, url, STRANGER, "this node's own host")

    def test_ownHostHead(self):
        """
        A HEAD so refused gets 403 without a body.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        responses, transport = proxy.exchange(
            get("http://127.0.0.1:8080/", method="HEAD"), STRANGER, head=True
        )
        self.assertEqual(responses[0].status, 403)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))

    def test_unresolvedNamePasses(self):
        """
        A name that resolves to no address is not refused: the connection
        then fails as it would anyway.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        response = proxy.one(get("spp://nowhere.example:1111/movie.ts"), STRANGER)
        self.assertEqual(response.status, 200)
        self.assertEqual(proxy.node.urls, ["spp://nowhere.example:1111/movie.ts"])

    def test_resolvedElsewhere(self):
        """
        A name resolving only to other hosts' addresses is fetched.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        proxy.resolved["origin.example"] = ["192.0.2.10"]
        response = proxy.one(get("spp://origin.example:1111/movie.ts"), STRANGER)
        self.assertEqual(response.status, 200)

    def test_forwardPinned(self):
        """
        A name judged for a granted host is forwarded to the address it was
        judged by, with the name in C{Host}: a second resolution cannot
        lead elsewhere.
        """
        proxy = ProxyHarness(self, grants=[ipaddress.ip_network("10.1.0.0/16")])
        proxy.resolved["origin.example"] = ["192.0.2.10"]
        proxy.node.failure = error.ConnectionRefusedError()
        channel, transport = proxy.connect(STRANGER)
        channel.dataReceived(get("http://origin.example:8080/page.html"))
        _, origin = proxy.answerForward(b"")
        host, port = proxy.reactor.tcpClients[0][:2]
        self.assertEqual((host, port), ("192.0.2.10", 8080))
        self.assertIn(b"\r\nHost: origin.example:8080\r\n", origin.value())

    def test_localHostReachesLoopback(self):
        """
        The local host may still use the proxy for loopback origins.
        """
        proxy = ProxyHarness(self)
        self.assertEqual(proxy.one(get(SPP_URL)).status, 200)


class EndToEndTests(SynchronousTestCase):
    """
    L{p2pd.web.forward.endToEnd}: the headers a proxy passes on.
    """

    @settings(deadline=None, max_examples=200)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        b"Connection",
                        b"connection",
                        b"Keep-Alive",
                        b"TE",
                        b"Upgrade",
                        b"X-A",
                        b"x-b",
                        b"Cookie",
                        b"Proxy-Connection",
                    ]
                ),
                st.lists(
                    st.sampled_from([b"x-a", b"X-B", b"close", b"", b" ", b"te"]),
                    max_size=3,
                ).map(b",".join),
            ),
            max_size=8,
        )
    )
    def test_noHopByHop(self, pairs):
        """
        Whatever the headers, none that is hop-by-hop or named by
        C{Connection} or C{Proxy-Connection} is kept, and every other one
        is kept with all its values.
        """
        headers = Headers()
        for name, value in pairs:
            headers.addRawHeader(name, value)
        named = set()
        for name, value in pairs:
            if name.lower() in (b"connection", b"proxy-connection"):
                named |= {t.strip().lower() for t in value.split(b",")}
        kept = endToEnd(headers)
        for name, values in headers.getAllRawHeaders():
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in named:
                self.assertFalse(kept.hasHeader(name), name)
            else:
                self.assertEqual(kept.getRawHeaders(name), values)


class FailureTests(SynchronousTestCase):
    """
    A download that cannot start gets the status L{stream.failureStatus}
    gives; one that fails mid-stream closes the connection.
    """

    def failWith(self, exception, method="GET"):
        proxy = ProxyHarness(self)
        proxy.node.failure = exception
        return proxy.one(get(SPP_URL, method=method), head=method == "HEAD")

    def test_notFound(self):
        """
        The origin's NOT_FOUND gets 404 with its reason.
        """
        response = self.failWith(SPPError(ErrorCode.NOT_FOUND, "no movie.ts"))
        self.assertEqual(response.status, 404)
        self.assertIn(b"no movie.ts", response.body)

    def test_busy(self):
        """
        BUSY (the origin's, or too many files waiting for a handle on its
        connection) gets 503: the player may try again.
        """
        response = self.failWith(SPPError(ErrorCode.BUSY, "too many"))
        self.assertEqual(response.status, 503)
        self.assertIn(b"busy", response.body)

    def test_forbidden(self):
        """
        The origin's FORBIDDEN gets 403.
        """
        response = self.failWith(SPPError(ErrorCode.FORBIDDEN, "not for you"))
        self.assertEqual(response.status, 403)
        self.assertIn(b"not for you", response.body)

    def test_unreachable(self):
        """
        An origin refusing the connection, or an unknown host, gets 502.
        """
        response = self.failWith(error.ConnectionRefusedError())
        self.assertEqual(response.status, 502)
        self.assertIn(b"refused the connection", response.body)
        response = self.failWith(error.DNSLookupError("origin.example"))
        self.assertEqual(response.status, 502)
        self.assertIn(b"unknown host", response.body)

    def test_failureHead(self):
        """
        A failed HEAD gets the status without a body.
        """
        response = self.failWith(SPPError(ErrorCode.NOT_FOUND, "gone"), "HEAD")
        self.assertEqual(response.status, 404)

    def test_clientGoneBeforeStart(self):
        """
        A download that starts after its client has gone makes no reader
        and writes nothing.
        """
        proxy = ProxyHarness(self)
        proxy.node.pending = True
        channel, transport = proxy.connect()
        channel.dataReceived(get(SPP_URL))
        proxy.close(channel, transport)
        proxy.node.waiting[0].callback(proxy.node.make(SPP_URL))
        self.assertEqual(proxy.node.made[SPP_URL].readers, set())
        self.assertEqual(transport.value(), b"")

    def test_failureMidStream(self):
        """
        When the download fails after part of the body was sent, the
        connection is aborted (the player sees a short body and retries with
        a Range) and the reader is closed.
        """
        proxy = ProxyHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = proxy.connect()
        channel.dataReceived(get(SPP_URL))
        download = proxy.node.made[SPP_URL]
        proxy.node.origins[SPP_URL].answer(0)
        download.fail(Failure(DownloadFailed("no source holds block 1")))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT[:BLOCK])
        self.assertTrue(transport.disconnected)
        self.assertEqual(download.readers, set())


class PausingTransport(StringTransport):
    """
    A transport that, like a TCP transport with a full buffer, pauses its
    producer once more than C{limit} bytes are buffered, and records the
    most it ever buffered.
    """

    def __init__(self, limit, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit
        self.most = 0
        self.received = b""

    def write(self, data):
        super().write(data)
        buffered = len(self.value())
        self.most = max(self.most, buffered)
        if buffered > self.limit and self.producerState == "producing":
            self.producerState = "paused"
            self.producer.pauseProducing()  # type: ignore[union-attr]

    def drain(self):
        """
        The client reads everything buffered; the transport resumes its
        producer.
        """
        self.received += self.value()
        self.clear()
        if self.producerState == "paused":
            self.producerState = "producing"
            self.producer.resumeProducing()  # type: ignore[union-attr]


class StreamingTests(SynchronousTestCase):
    """
    The body is streamed from a reader only as fast as the client reads,
    and a client that goes away releases its reader.
    """

    def test_pausedStopsReading(self):
        """
        While the transport has paused the response, no read is outstanding
        on the reader and no more bytes are written, however many blocks
        arrive; when it resumes, the rest follows.
        """
        proxy = ProxyHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = proxy.connect()
        channel.dataReceived(get(SPP_URL))
        origin = proxy.node.origins[SPP_URL]
        (reader,) = proxy.node.made[SPP_URL].readers
        reads = []
        read = reader.read
        reader.read = lambda: reads.append(reader.position) or read()  # type: ignore[method-assign,func-returns-value]
        origin.answer(0)
        self.assertEqual(reads, [BLOCK])
        transport.producer.pauseProducing()
        written = len(transport.value())
        while origin.requests:  # the engine reads ahead, bounded
            origin.answer(min(origin.requests))
        self.assertEqual(reads, [BLOCK])
        self.assertIsNone(reader._waiting)
        self.assertEqual(len(transport.value()), written + BLOCK)
        transport.producer.resumeProducing()
        self.assertEqual(reads[1], 2 * BLOCK)
        while origin.requests:
            origin.answer(min(origin.requests))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, CONTENT)

    def test_firstBytesSentAtOnce(self):
        """
        A response's head and first block are handed to the socket as soon
        as the block is verified, not when the reactor next goes round its
        sockets; later blocks are left to the reactor.
        """
        proxy = ProxyHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        transport = SendingTransport(hostAddress=VIEWER, peerAddress=LOCAL_CLIENT)
        channel, _ = proxy.connect(transport=transport)
        channel.dataReceived(get(SPP_URL, "Range: bytes=%d-" % (4 * BLOCK)))
        origin = proxy.node.origins[SPP_URL]
        self.assertEqual(transport.sends, [])
        origin.answer(4)
        head, block = transport.sends
        self.assertTrue(head.startswith(b"HTTP/1.1 206 "), head)
        self.assertTrue(head.endswith(b"\r\n\r\n"), head)
        self.assertEqual(block, head + CONTENT[4 * BLOCK : 5 * BLOCK])
        origin.answer(5)
        self.assertEqual(len(transport.sends), 2)

    def test_slowClientBounded(self):
        """
        With every block at hand, a client that reads slowly never has more
        than one block beyond the transport's buffer limit written for it.
        """
        proxy = ProxyHarness(self)
        limit = 64 * 1024
        transport = PausingTransport(
            limit, hostAddress=VIEWER, peerAddress=LOCAL_CLIENT
        )
        channel, _ = proxy.connect(transport=transport)
        channel.dataReceived(get(SPP_URL))
        for _ in range(100):
            if not transport.value():
                break
            self.assertLessEqual(transport.most, limit + BLOCK + 1024)
            transport.drain()
        (response,) = parseResponses(transport.received)
        self.assertEqual(response.body, CONTENT)

    def test_clientGoneClosesReader(self):
        """
        A client that disconnects mid-body releases its reader: the download
        has no readers, and requests only that reader needed are cancelled.
        """
        proxy = ProxyHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = proxy.connect()
        channel.dataReceived(get(SPP_URL, "Range: bytes=%d-" % (8 * BLOCK)))
        download = proxy.node.made[SPP_URL]
        origin = proxy.node.origins[SPP_URL]
        origin.answer(8)
        self.assertEqual(len(download.readers), 1)
        proxy.close(channel, transport)
        self.assertEqual(download.readers, set())
        self.assertIn(9, origin.cancelled)

    def test_twoClientsOneDownload(self):
        """
        Two clients of the same content read the same download, each with
        its own reader, and each gets its own range.
        """
        proxy = ProxyHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        first, firstTransport = proxy.connect()
        second, secondTransport = proxy.connect()
        first.dataReceived(get(SPP_URL, "Range: bytes=0-9"))
        second.dataReceived(get(f"http://{ORIGIN}/.direct/movie.ts", "Range: bytes=-5"))
        self.assertEqual(len(proxy.node.made[SPP_URL].readers), 2)
        origin = proxy.node.origins[SPP_URL]
        origin.answer(0)
        origin.answer(19)
        self.assertEqual(parseResponses(firstTransport.value())[0].body, CONTENT[:10])
        self.assertEqual(parseResponses(secondTransport.value())[0].body, CONTENT[-5:])


P2PD_ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: p2pd/1.0\r\n"
    b"Content-Type: application/x-spp-playlist\r\nContent-Length: 11\r\n\r\n"
    b"[playlist]\n"
)


class ForwardTests(SynchronousTestCase):
    """
    Other http URLs are forwarded as by an ordinary proxy, unless the answer
    shows a p2pd node: then its content comes over SPP. The first request
    for a file of an unknown C{host:port} also opens it over SPP at once
    (the test fires those opens from C{node.waiting}).
    """

    def setUp(self):
        self.proxy = ProxyHarness(self)
        self.proxy.node.pending = True

    def test_forwarded(self):
        """
        A request for an ordinary site is sent on in origin form with the
        client's headers except hop-by-hop ones; the answer's status,
        headers and body come back unchanged, with no Content-Type added.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(
            get(
                "http://127.0.0.5:8080/page.html?x=1",
                "Host: 127.0.0.5:8080",
                "Proxy-Connection: Keep-Alive",
                "User-Agent: player/1.0",
            )
        )
        self.proxy.reactor.advance(FIRST_CONTACT_GRACE)
        self.assertEqual(self.proxy.reactor.tcpClients[0][1], 8080)
        _, origin = self.proxy.answerForward(
            b"HTTP/1.1 404 Not Found\r\nX-Origin: yes\r\nContent-Length: 4\r\n\r\nnope"
        )
        sent = origin.value()
        self.assertTrue(sent.startswith(b"GET /page.html?x=1 HTTP/1.1\r\n"), sent)
        self.assertIn(b"\r\nUser-Agent: player/1.0\r\n", sent)
        self.assertIn(b"\r\nHost: 127.0.0.5:8080\r\n", sent)
        self.assertNotIn(b"Proxy-Connection", sent)
        self.assertIn(b"\r\nVia: 1.1 p2pd\r\n", sent)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 404)
        self.assertEqual(response.headers[b"x-origin"], b"yes")
        self.assertNotIn(b"content-type", response.headers)
        self.assertNotIn(b"server", response.headers)
        self.assertEqual(response.body, b"nope")
        self.assertEqual(self.proxy.node.urls, ["spp://127.0.0.5:8080/page.html"])

    def test_ordinarySiteTriedOnce(self):
        """
        An ordinary site's answer is relayed even while the SPP attempt is
        still on its way (it then fails unseen); that site is not tried
        over SPP again for a while.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/a.html"))
        self.proxy.answerForward(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        self.assertEqual(parseResponses(transport.value())[0].body, b"a")
        self.proxy.node.waiting[0].errback(error.ConnectionDone())
        self.assertEqual(parseResponses(transport.value())[0].body, b"a")
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/b.html"))
        self.proxy.answerForward(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
        self.assertEqual(parseResponses(transport.value())[0].body, b"b")
        self.assertEqual(self.proxy.node.urls, ["spp://127.0.0.5:8080/a.html"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_sppOpenedFirst(self):
        """
        When the SPP open succeeds before the forwarded request is answered,
        the content comes over SPP and the forwarded connection is dropped;
        later requests to that node are not forwarded.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/movie.ts", "Range: bytes=0-9"))
        _, forwarded = self.proxy.answerForward(b"")
        self.proxy.node.waiting[0].callback(self.proxy.node.make(SPP_URL))
        (response,) = parseResponses(transport.value())
        self.assertEqual((response.status, response.body), (206, CONTENT[:10]))
        self.assertTrue(forwarded.disconnecting)
        self.proxy.node.pending = False
        self.assertEqual(self.proxy.one(get(f"http://{ORIGIN}/movie.ts")).body, CONTENT)
        self.assertEqual(len(self.proxy.reactor.tcpClients), 1)

    def test_openedBeforeForwarding(self):
        """
        An SPP open that succeeds within the grace a first contact gives it
        means the request is never forwarded.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/movie.ts"))
        self.proxy.reactor.advance(FIRST_CONTACT_GRACE * 0.9)
        self.assertEqual(self.proxy.reactor.tcpClients, [])
        self.proxy.node.waiting[0].callback(self.proxy.node.make(SPP_URL))
        self.assertEqual(parseResponses(transport.value())[0].body, CONTENT)
        self.proxy.reactor.advance(FIRST_CONTACT_GRACE)
        self.assertEqual(self.proxy.reactor.tcpClients, [])

    def test_sppFailureForwardsAtOnce(self):
        """
        An SPP attempt that fails within the grace (an ordinary server
        closes on it) has the request forwarded at once.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/a.html"))
        self.assertEqual(self.proxy.reactor.tcpClients, [])
        self.proxy.node.waiting[0].errback(error.ConnectionDone())
        self.assertEqual(len(self.proxy.reactor.tcpClients), 1)
        self.proxy.answerForward(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        self.assertEqual(parseResponses(transport.value())[0].body, b"a")
        self.assertEqual(len(self.proxy.reactor.tcpClients), 1)

    def test_sppFailsOrdinaryAnswer(self):
        """
        When the SPP open fails first, the forwarded answer decides.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/a.html"))
        self.proxy.node.waiting[0].errback(error.ConnectionDone())
        self.assertEqual(transport.value(), b"")
        self.proxy.answerForward(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
        self.assertEqual(parseResponses(transport.value())[0].body, b"a")

    def test_sppFailsAfterP2pdAnswer(self):
        """
        When a p2pd node answers but its file cannot be opened over SPP, the
        client gets the SPP error's status.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/movie.ts"))
        self.proxy.answerForward(P2PD_ANSWER)
        self.assertEqual(transport.value(), b"")
        self.proxy.node.waiting[0].errback(SPPError(ErrorCode.NOT_FOUND, "gone"))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 404)

    def test_forwardedPost(self):
        """
        A POST is forwarded with its body, and the answer comes back.
        """
        clock = Clock()
        cooperator = task.Cooperator(scheduler=lambda work: clock.callLater(0, work))
        self.patch(task, "_theCooperator", cooperator)
        channel, transport = self.proxy.connect()
        channel.dataReceived(
            get("http://127.0.0.5:8080/form", "Content-Length: 5", method="POST")
            + b"a=b&c"
        )
        protocol, origin = self.proxy.answerForward(b"")
        while clock.getDelayedCalls():
            clock.advance(0)
        sent = origin.value()
        self.assertTrue(sent.startswith(b"POST /form HTTP/1.1\r\n"), sent)
        self.assertIn(b"\r\nContent-Length: 5\r\n", sent)
        self.assertTrue(sent.endswith(b"\r\n\r\na=b&c"), sent)
        protocol.dataReceived(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
        (response,) = parseResponses(transport.value())
        self.assertEqual((response.status, response.body), (201, b"ok"))

    def test_hopByHopDropped(self):
        """
        A forwarded request carries none of the client's hop-by-hop headers
        (the standard set and those its C{Connection} names), one
        C{Content-Length}, one C{Host} from the URI, and the end-to-end
        headers unchanged; the answer's standard hop-by-hop headers are
        dropped too.
        """
        clock = Clock()
        cooperator = task.Cooperator(scheduler=lambda work: clock.callLater(0, work))
        self.patch(task, "_theCooperator", cooperator)
        channel, transport = self.proxy.connect()
        channel.dataReceived(
            get(
                "http://127.0.0.5:8080/form",
                "Host: elsewhere.example",
                "Content-Length: 3",
                "Connection: keep-alive, X-Session",
                "X-Session: secret",
                "Keep-Alive: timeout=5",
                "Proxy-Authorization: Basic dXNlcjpwYXNz",
                "Proxy-Connection: keep-alive, X-Other",
                "X-Other: 1",
                "TE: trailers",
                "Trailer: X-Checksum",
                "Upgrade: h2c",
                "Cookie: a=1",
                method="POST",
            )
            + b"a=1"
        )
        protocol, origin = self.proxy.answerForward(b"")
        while clock.getDelayedCalls():
            clock.advance(0)
        head, _, body = origin.value().partition(b"\r\n\r\n")
        lines = [line.lower() for line in head.split(b"\r\n")[1:]]
        names = [line.split(b":", 1)[0] for line in lines]
        self.assertEqual(body, b"a=1")
        self.assertEqual(names.count(b"content-length"), 1)
        self.assertIn(b"content-length: 3", lines)
        self.assertEqual(names.count(b"host"), 1)
        self.assertIn(b"host: 127.0.0.5:8080", lines)
        self.assertIn(b"cookie: a=1", lines)
        self.assertLessEqual(names.count(b"connection"), 1)
        for name in (
            b"x-session",
            b"x-other",
            b"keep-alive",
            b"proxy-authorization",
            b"proxy-connection",
            b"te",
            b"trailer",
            b"upgrade",
        ):
            self.assertNotIn(name, names)
        protocol.dataReceived(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5"
            b"\r\nUpgrade: h2c\r\nX-End: 2\r\nContent-Length: 2\r\n\r\nok"
        )
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, b"ok")
        self.assertEqual(response.headers[b"x-end"], b"2")
        for name in (b"connection", b"keep-alive", b"upgrade"):
            self.assertNotIn(name, response.headers)

    def test_p2pdAnswerSwitchesToSPP(self):
        """
        When the answer comes from a p2pd node (C{Server: p2pd/...}), its
        body (a playlist) is dropped and the client gets the content over
        SPP, with its Range; later requests to that node skip forwarding.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/movie.ts", "Range: bytes=100-199"))
        self.proxy.answerForward(P2PD_ANSWER)
        self.assertEqual(transport.value(), b"")
        self.proxy.node.waiting[0].callback(self.proxy.node.make(SPP_URL))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, CONTENT[100:200])
        self.assertEqual(self.proxy.node.urls, [SPP_URL])
        self.proxy.node.pending = False
        response = self.proxy.one(get(f"http://{ORIGIN}/movie.ts"))
        self.assertEqual(response.body, CONTENT)
        self.assertEqual(len(self.proxy.reactor.tcpClients), 1)

    def test_p2pdErrorRelayed(self):
        """
        A p2pd node's error (404 for a missing file) is passed on as it is.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/missing.ts"))
        self.proxy.answerForward(
            b"HTTP/1.1 404 Not Found\r\nServer: p2pd/1.0\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 12\r\n\r\nno such file"
        )
        (response,) = parseResponses(transport.value())
        self.assertEqual((response.status, response.body), (404, b"no such file"))

    def test_p2pdOwnPathsForwarded(self):
        """
        A p2pd node's own paths (C{/.status}) are forwarded even once the
        node is known.
        """
        self.proxy.node.pending = False
        self.proxy.one(get(f"http://{ORIGIN}/.direct/movie.ts"))
        channel, transport = self.proxy.connect()
        channel.dataReceived(get(f"http://{ORIGIN}/.status"))
        self.proxy.answerForward(
            b"HTTP/1.1 200 OK\r\nServer: p2pd/1.0\r\nContent-Length: 2\r\n\r\n{}"
        )
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, b"{}")

    def test_originUnreachable(self):
        """
        A forwarded request whose origin cannot be reached gets 502.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/page.html"))
        self.proxy.reactor.advance(FIRST_CONTACT_GRACE)
        _, _, factory, _, _ = self.proxy.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))  # type: ignore[arg-type]
        self.proxy.reactor.advance(1)
        self.assertEqual(transport.value(), b"")  # the SPP attempt may yet work
        self.proxy.node.waiting[0].errback(error.ConnectionRefusedError())
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 502)
        self.assertEqual(response.body, b"the origin refused the connection\n")

    def test_originUnreachableCached(self):
        """
        A forwarded request whose origin cannot be reached, for a file the
        cache holds, is answered from that copy over the download engine.
        """
        self.proxy.config.learn("127.0.0.5", 8080, False)
        self.proxy.node.pending = False
        url = "spp://127.0.0.5:8080/movie.ts"
        self.proxy.node.copies.add(url)
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/movie.ts"))
        _, _, factory, _, _ = self.proxy.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))  # type: ignore[arg-type]
        self.proxy.reactor.advance(1)
        (response,) = parseResponses(transport.value())
        self.assertEqual((response.status, response.body), (200, CONTENT))
        self.assertEqual(self.proxy.node.urls, [url])

    def test_originUnreachableNotCached(self):
        """
        Without a cached copy, the same request gets 502 and nothing is
        opened over SPP.
        """
        self.proxy.config.learn("127.0.0.5", 8080, False)
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/movie.ts"))
        _, _, factory, _, _ = self.proxy.reactor.tcpClients[0]
        factory.clientConnectionFailed(None, Failure(error.ConnectionRefusedError()))  # type: ignore[arg-type]
        self.proxy.reactor.advance(1)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 502)
        self.assertEqual(self.proxy.node.urls, [])

    def test_truncatedAnswer(self):
        """
        An answer cut short by the origin is not passed on as complete: the
        client's connection is closed after the bytes that came.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/big"))
        protocol, _ = self.proxy.answerForward(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
        )
        protocol.connectionLost(Failure(error.ConnectionLost()))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, b"12345")
        self.assertTrue(transport.disconnecting)

    def test_unknownLengthAnswer(self):
        """
        An answer without a length, ended by the origin closing, reaches an
        HTTP/1.1 client complete (chunked).
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/stream"))
        protocol, _ = self.proxy.answerForward(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
        )
        protocol.connectionLost(Failure(error.ConnectionDone()))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, b"all of it")
        self.assertFalse(transport.disconnecting)

    def test_slowClientPausesOrigin(self):
        """
        While the client's transport is paused, so is the origin's.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/big"))
        protocol, origin = self.proxy.answerForward(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
        )
        transport.producer.pauseProducing()
        self.assertEqual(origin.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(origin.producerState, "producing")
        protocol.dataReceived(b"67890")
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, b"1234567890")

    def test_clientGoneStopsOrigin(self):
        """
        A client that goes away mid-answer stops the origin's connection.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("http://127.0.0.5:8080/big"))
        protocol, origin = self.proxy.answerForward(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"
        )
        self.proxy.close(channel, transport)
        self.assertTrue(origin.disconnecting)
