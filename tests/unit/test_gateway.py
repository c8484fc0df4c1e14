# -*- test-case-name: tests.unit.test_gateway -*-
"""
Tests for L{p2pd.web.gateway}: who may make the node fetch, the C{spp://}
URL a gateway path names, and C{/.spp/HOST:PORT/PATH} served through the
node's real HTTP channel (L{p2pd.services.NodeSite} around L{NodeRoot}) with the
fake node of L{tests.unit.test_proxy}. (A real gateway between two real
nodes: L{tests.integration.test_gateway}.)
"""

import ipaddress

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.engine.download import DownloadFailed
from p2pd.services import NodeSite
from p2pd.web.access import granted
from p2pd.web.gateway import gatewayURL
from p2pd.web.root import NodeRoot
from tests.fakes import FakeWebNode
from tests.unit.test_proxy import (
    BLOCK,
    CONTENT,
    ORIGIN,
    SIZE,
    SPP_URL,
    STRANGER,
    ProxyHarness,
    get,
    parseResponses,
)

GATEWAY_PATH = f"/.spp/{ORIGIN}/movie.ts"


def net(text):
    return ipaddress.ip_network(text)


class GrantedTests(SynchronousTestCase):
    """
    L{granted}: the local host always may use the node, others only from a
    granted subnet.
    """

    def test_loopback(self):
        """
        Every loopback address is the local host: all of 127.0.0.0/8, C{::1}
        and IPv4-mapped loopback, with no grants at all.
        """
        for host in (
            "127.0.0.1",
            "127.0.0.2",
            "127.255.0.9",
            "::1",
            "::ffff:127.0.0.1",
        ):
            self.assertTrue(granted(host, []), host)

    def test_notGranted(self):
        """
        Without grants, other addresses may not.
        """
        for host in ("10.1.2.3", "192.168.1.1", "fd00::1", "::ffff:10.1.2.3"):
            self.assertFalse(granted(host, []), host)

    def test_grantedSubnet(self):
        """
        An address in a granted subnet may, IPv4 or IPv6; one outside may
        not.
        """
        grants = [net("10.1.0.0/16"), net("fd00:1::/32")]
        self.assertTrue(granted("10.1.2.3", grants))
        self.assertTrue(granted("fd00:1::5", grants))
        self.assertFalse(granted("10.2.0.1", grants))
        self.assertFalse(granted("fd00:2::5", grants))

    def test_mapped(self):
        """
        An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4
        client) is judged as its IPv4 address.
        """
        self.assertTrue(granted("::ffff:10.1.2.3", [net("10.1.0.0/16")]))
        self.assertFalse(granted("::ffff:10.9.2.3", [net("10.1.0.0/16")]))

    def test_versionsApart(self):
        """
        An IPv4 grant admits no IPv6 address, even the whole IPv4 space.
        """
        self.assertFalse(granted("fd00::1", [net("0.0.0.0/0")]))
        self.assertFalse(granted("10.0.0.1", [net("::/0")]))

    def test_zone(self):
        """
        A link-local IPv6 address with a zone is judged by its address.
        """
        self.assertTrue(granted("fe80::1%eth0", [net("fe80::/10")]))
        self.assertFalse(granted("fe80::1%eth0", []))

    def test_notAnAddress(self):
        """
        Anything that is not an IP address (no address, a name, a UNIX
        socket's path) may not.
        """
        for host in ("", "localhost", "not an address", "/run/p2pd.sock"):
            self.assertFalse(granted(host, [net("0.0.0.0/0")]), host)


class GatewayURLTests(SynchronousTestCase):
    """
    L{gatewayURL}: the C{spp://} URL that the path segments after
    C{/.spp/} name.
    """

    def test_simple(self):
        """
        C{HOST:PORT} then the file's path.
        """
        self.assertEqual(
            gatewayURL([b"127.0.0.1:1111", b"movie.ts"]),
            "spp://127.0.0.1:1111/movie.ts",
        )

    def test_nested(self):
        """
        Several segments make a path in directories.
        """
        self.assertEqual(
            gatewayURL([b"origin.example:2222", b"films", b"2024", b"a.mp4"]),
            "spp://origin.example:2222/films/2024/a.mp4",
        )

    def test_encoded(self):
        """
        Each (decoded) segment is percent-encoded again: spaces, percent
        signs, slashes inside a segment and UTF-8 stay what they were.
        """
        self.assertEqual(
            gatewayURL([b"h:1", b"my film 100%.ts"]), "spp://h:1/my%20film%20100%25.ts"
        )
        self.assertEqual(gatewayURL([b"h:1", b"a/b.ts"]), "spp://h:1/a%2Fb.ts")
        self.assertEqual(
            gatewayURL([b"h:1", "été.ts".encode()]), "spp://h:1/%C3%A9t%C3%A9.ts"
        )

    def test_noFile(self):
        """
        A path without a file, or with an empty segment, names no file.
        """
        for segments in (
            [],
            [b"h:1"],
            [b"h:1", b""],
            [b"h:1", b"a", b"", b"b.ts"],
            [b"h:1", b"dir", b""],
        ):
            self.assertIsNone(gatewayURL(segments), segments)

    def test_notText(self):
        """
        Segments that are not UTF-8, or an authority that is not ASCII,
        name no file.
        """
        self.assertIsNone(gatewayURL([b"h:1", b"\xff.ts"]))
        self.assertIsNone(gatewayURL(["hé:1".encode(), b"a.ts"]))


class GatewayHarness(ProxyHarness):
    """
    A node's real HTTP side whose root is a L{NodeRoot} (no published
    directory) with the gateway on, over a L{FakeWebNode}.
    """

    def __init__(self, testCase, node=None, grants=(), allowHosts=()):
        super().__init__(testCase, node, grants, allowHosts)
        root = NodeRoot(None, node=self.node, access=self.access)
        self.site = NodeSite(root, False, self.reactor, self.config)


class GatewayTests(SynchronousTestCase):
    """
    C{GET /.spp/HOST:PORT/PATH} streams C{spp://HOST:PORT/PATH} like the
    proxy does, to the local host and granted subnets.
    """

    def setUp(self):
        self.gateway = GatewayHarness(self)
        self.node = self.gateway.node

    def test_whole(self):
        """
        GET gets 200, the whole content, its length and media type, from
        the download of the URL the path names.
        """
        response = self.gateway.one(get(GATEWAY_PATH))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, CONTENT)
        self.assertEqual(response.headers[b"content-length"], b"%d" % SIZE)
        self.assertEqual(response.headers[b"content-type"], b"video/mp2t")
        self.assertEqual(response.headers[b"accept-ranges"], b"bytes")
        self.assertEqual(self.node.urls, [SPP_URL])

    def test_encodedName(self):
        """
        A percent-encoded name reaches the node encoded as it came.
        """
        self.gateway.one(get(f"/.spp/{ORIGIN}/my%20film.mp4"))
        self.assertEqual(self.node.urls, [f"spp://{ORIGIN}/my%20film.mp4"])

    def test_range(self):
        """
        A Range gets 206 with the bytes of that range and its
        C{Content-Range}.
        """
        response = self.gateway.one(get(GATEWAY_PATH, "Range: bytes=1000-2999"))
        self.assertEqual(response.status, 206)
        self.assertEqual(
            response.headers[b"content-range"], b"bytes 1000-2999/%d" % SIZE
        )
        self.assertEqual(response.body, CONTENT[1000:3000])

    def test_suffixRange(self):
        """
        A suffix range gets the last bytes.
        """
        response = self.gateway.one(get(GATEWAY_PATH, "Range: bytes=-7"))
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, CONTENT[-7:])

    def test_rangeAtEnd(self):
        """
        A range starting at the end gets 416 with C{bytes */SIZE} and an
        empty body, and the connection serves the next request.
        """
        responses, transport = self.gateway.exchange(
            get(GATEWAY_PATH, f"Range: bytes={SIZE}-")
            + get(GATEWAY_PATH, "Range: bytes=0-0")
        )
        first, second = responses
        self.assertEqual(first.status, 416)
        self.assertEqual(first.headers[b"content-range"], b"bytes */%d" % SIZE)
        self.assertEqual(first.body, b"")
        self.assertEqual(second.body, CONTENT[:1])
        self.assertFalse(transport.disconnecting)

    def test_head(self):
        """
        HEAD gets the headers and no body.
        """
        responses, transport = self.gateway.exchange(
            get(GATEWAY_PATH, method="HEAD"), head=True
        )
        self.assertEqual(responses[0].status, 200)
        self.assertEqual(responses[0].headers[b"content-length"], b"%d" % SIZE)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))
        self.assertEqual(self.node.made[SPP_URL].readers, set())

    def test_stranger(self):
        """
        A client outside the local host and the grants gets 403 saying why;
        the node fetches nothing.
        """
        response = self.gateway.one(get(GATEWAY_PATH), STRANGER)
        self.assertEqual(response.status, 403)
        self.assertIn(b"granted subnets (-n)", response.body)
        self.assertEqual(self.node.urls, [])

    def test_unixClient(self):
        """
        A client without an IP address (a UNIX socket) is refused too.
        """
        response = self.gateway.one(get(GATEWAY_PATH), UNIXAddress(None))
        self.assertEqual(response.status, 403)
        self.assertEqual(self.node.urls, [])

    def test_granted(self):
        """
        A client in a granted subnet, also as an IPv4-mapped address, is
        served.
        """
        gateway = GatewayHarness(self, grants=[net("10.1.0.0/16")])
        path = "/.spp/192.0.2.10:1111/movie.ts"
        self.assertEqual(gateway.one(get(path), STRANGER).body, CONTENT)
        mapped = IPv6Address("TCP", "::ffff:10.1.2.3", 40000)
        self.assertEqual(gateway.one(get(path), mapped).status, 200)

    def test_allowHost(self):
        """
        -A applies to the gateway as to the proxy: an allowed origin is
        served, any other gets 403 naming it, and nothing is fetched.
        """
        gateway = GatewayHarness(self, allowHosts=["127.0.0.1"])
        self.assertEqual(gateway.one(get(GATEWAY_PATH)).status, 200)
        gateway.node.urls.clear()
        response = gateway.one(get("/.spp/127.0.0.9:1111/movie.ts"))
        self.assertEqual(response.status, 403)
        self.assertIn(b"127.0.0.9 is not an allowed origin", response.body)
        self.assertEqual(gateway.node.urls, [])

    def test_ownHostRefused(self):
        """
        A granted host that is not the local host cannot reach the node's
        loopback or link-local addresses or the unspecified address through
        the gateway: 403 and nothing is fetched. A name is judged by every
        address it resolves to.
        """
        gateway = GatewayHarness(self, grants=[net("10.1.0.0/16")])
        gateway.resolved["sneaky.example"] = ["192.0.2.7", "127.0.0.1"]
        for authority in (
            "127.0.0.1:8080",
            "127.3.2.1:1111",
            "[::1]:1111",
            "169.254.169.254:80",
            "[fe80::1]:1111",
            "0.0.0.0:1111",
            "[::ffff:127.0.0.1]:1111",
            "sneaky.example:1111",
        ):
            response = gateway.one(get(f"/.spp/{authority}/movie.ts"), STRANGER)
            self.assertEqual(response.status, 403, authority)
            self.assertIn(b"this node's own host", response.body)
        self.assertEqual(gateway.node.urls, [])

    def test_ownAddressRefused(self):
        """
        The address a granted host reached the node on counts as the node's
        own, even off loopback.
        """
        gateway = GatewayHarness(self, grants=[net("10.1.0.0/16")])
        channel, transport = gateway.connect(
            STRANGER,
            StringTransport(
                hostAddress=IPv4Address("TCP", "10.1.0.1", 1111),
                peerAddress=STRANGER,
            ),
        )
        channel.dataReceived(get("/.spp/10.1.0.1:8080/movie.ts"))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 403)
        self.assertEqual(gateway.node.urls, [])

    def test_localHostReachesLoopback(self):
        """
        The local host may still fetch from loopback addresses.
        """
        response = self.gateway.one(get("/.spp/127.0.0.9:8080/movie.ts"))
        self.assertEqual(response.status, 200)
        self.assertEqual(self.node.urls, ["spp://127.0.0.9:8080/movie.ts"])

    def test_noFile(self):
        """
        A gateway path naming no file gets 404 and nothing is fetched.
        """
        for path in (f"/.spp/{ORIGIN}", f"/.spp/{ORIGIN}/", "/.spp/"):
            self.assertEqual(self.gateway.one(get(path)).status, 404, path)
        self.assertEqual(self.node.urls, [])

    def test_badAuthority(self):
        """
        An authority that is not C{HOST:PORT} gets 400 with the reason.
        """
        response = self.gateway.one(get("/.spp/host:port/movie.ts"))
        self.assertEqual(response.status, 400)

    def failWith(self, exception, method="GET"):
        self.node.failure = exception
        return self.gateway.one(get(GATEWAY_PATH, method=method), head=method == "HEAD")

    def test_notFound(self):
        """
        The origin's NOT_FOUND gets 404 with its reason.
        """
        response = self.failWith(SPPError(ErrorCode.NOT_FOUND, "no movie.ts"))
        self.assertEqual(response.status, 404)
        self.assertIn(b"no movie.ts", response.body)
        self.assertEqual(
            response.headers[b"content-length"], b"%d" % len(response.body)
        )

    def test_unreachable(self):
        """
        An origin that cannot be reached gets 502; a busy one 503.
        """
        response = self.failWith(error.ConnectionRefusedError())
        self.assertEqual(response.status, 502)
        response = self.failWith(SPPError(ErrorCode.BUSY, "later"))
        self.assertEqual(response.status, 503)

    def test_failureHead(self):
        """
        A HEAD that fails gets the status without a body.
        """
        self.assertEqual(
            self.failWith(SPPError(ErrorCode.NOT_FOUND, "x"), "HEAD").status, 404
        )

    def test_clientGoneBeforeStart(self):
        """
        A download starting after its client left makes no reader.
        """
        self.node.pending = True
        channel, transport = self.gateway.connect()
        channel.dataReceived(get(GATEWAY_PATH))
        self.gateway.close(channel, transport)
        self.node.waiting[0].callback(self.node.make(SPP_URL))
        self.assertEqual(self.node.made[SPP_URL].readers, set())
        self.assertEqual(transport.value(), b"")

    def test_failureBeforeStartAfterClientGone(self):
        """
        A download failing after its client left writes nothing.
        """
        self.node.pending = True
        channel, transport = self.gateway.connect()
        channel.dataReceived(get(GATEWAY_PATH))
        self.gateway.close(channel, transport)
        self.node.waiting[0].errback(error.ConnectionRefusedError())
        self.assertEqual(transport.value(), b"")

    def test_failureMidStream(self):
        """
        A download failing mid-body aborts the connection after the bytes
        sent, and closes the reader.
        """
        gateway = GatewayHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = gateway.connect()
        channel.dataReceived(get(GATEWAY_PATH))
        download = gateway.node.made[SPP_URL]
        gateway.node.origins[SPP_URL].answer(0)
        download.fail(Failure(DownloadFailed("no source holds block 1")))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.body, CONTENT[:BLOCK])
        self.assertTrue(transport.disconnected)
        self.assertEqual(download.readers, set())

    def test_failureBeforeFirstByte(self):
        """
        A download failing before the first byte of the answer (a seek to a
        block no source holds, the origin gone) gets a 502 saying why, not
        a connection closed with no answer.
        """
        gateway = GatewayHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = gateway.connect()
        channel.dataReceived(get(GATEWAY_PATH, f"Range: bytes={3 * BLOCK}-"))
        download = gateway.node.made[SPP_URL]
        download.fail(Failure(DownloadFailed("no source holds block 3")))
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 502)
        self.assertIn(b"no source holds block 3", response.body)
        self.assertIsNone(response.headers.get(b"content-range"))
        self.assertEqual(download.readers, set())

    def test_clientGone(self):
        """
        A client leaving mid-body closes its reader.
        """
        gateway = GatewayHarness(self, FakeWebNode(CONTENT, BLOCK, auto=False))
        channel, transport = gateway.connect()
        channel.dataReceived(get(GATEWAY_PATH))
        download = gateway.node.made[SPP_URL]
        self.assertEqual(len(download.readers), 1)
        gateway.close(channel, transport)
        self.assertEqual(download.readers, set())
