# -*- test-case-name: tests.unit.test_http_abuse -*-
"""
Tests for L{p2pd.web.channel}: HTTP clients that trickle headers or send
bodies nobody asked for, first through the node's real HTTP channel on a
L{StringTransport} (time from the harness's L{MemoryReactorClock}). (Real
nodes over loopback sockets: L{tests.integration.test_http_abuse}.)
"""

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from p2pd.web.channel import HEADER_DEADLINE, MAX_FORWARDED_BODY
from tests.unit.test_proxy import (
    LOCAL_CLIENT,
    STRANGER,
    ProxyHarness,
    get,
    parseResponses,
)

GRANTED = [ipaddress.ip_network("10.1.0.0/16")]
OUTSIDER = IPv4Address("TCP", "192.0.2.9", 40000)


class HeaderDeadlineTests(SynchronousTestCase):
    """
    A request's line and headers must all arrive within L{HEADER_DEADLINE}
    seconds, however they trickle in.
    """

    def setUp(self):
        self.proxy = ProxyHarness(self)
        self.clock = self.proxy.reactor

    def test_silentConnectionClosed(self):
        """
        A connection that sends nothing is closed at the deadline without
        an answer.
        """
        channel, transport = self.proxy.connect()
        self.clock.advance(HEADER_DEADLINE - 0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_tricklingDoesNotExtend(self):
        """
        One header line every few seconds does not move the deadline: at
        the deadline the client gets 408 and the connection is closed.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(b"GET /page HTTP/1.1\r\n")
        for _ in range(int(HEADER_DEADLINE // 3)):
            self.clock.advance(3)
            channel.dataReceived(b"X-Slow: 1\r\n")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(HEADER_DEADLINE % 3)
        self.assertTrue(transport.disconnecting)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 408)
        self.assertEqual(response.headers[b"connection"], b"close")

    def test_ignoredAfterDeadline(self):
        """
        Headers completed after the deadline are not processed.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(b"GET /page HTTP/1.1\r\n")
        self.clock.advance(HEADER_DEADLINE)
        channel.dataReceived(b"\r\n")
        self.assertEqual(len(parseResponses(transport.value())), 1)

    def test_completeInTime(self):
        """
        Headers complete just before the deadline are answered, and the
        answer is not cut by the deadline while it is being made.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(b"GET /page HTTP/1.1\r\n")
        self.clock.advance(HEADER_DEADLINE - 0.1)
        channel.dataReceived(b"\r\n")
        self.clock.advance(1)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"own page /page")

    def test_keptAliveRestarts(self):
        """
        On a kept-alive connection the deadline runs again from the end of
        each answer: idle past it, the connection is closed without an
        answer.
        """
        channel, transport = self.proxy.connect()
        self.clock.advance(HEADER_DEADLINE - 1)
        channel.dataReceived(get("/one"))
        self.clock.advance(HEADER_DEADLINE - 1)
        channel.dataReceived(get("/two"))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(parseResponses(transport.value())), 2)
        self.clock.advance(HEADER_DEADLINE)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(parseResponses(transport.value())), 2)

    def test_pipelined(self):
        """
        Requests sent together are all answered, and the deadline then runs
        for the next one.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("/one") + get("/two") + b"GET /thr")
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 2)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(HEADER_DEADLINE)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(parseResponses(transport.value())[-1].status, 408)


class BodyTests(SynchronousTestCase):
    """
    A request body is read only when the proxy forwards it; other requests
    with bodies are answered before their body is read.
    """

    def setUp(self):
        self.proxy = ProxyHarness(self, grants=GRANTED)

    def assertRefusedEarly(self, head, peer, code, words):
        """
        C{head} (a request's headers announcing a body) is answered with
        C{code} and C{words} at once, the connection closed, and no body
        stored: the body sent after it is ignored.
        """
        channel, transport = self.proxy.connect(peer)
        channel.dataReceived(head)
        self.assertTrue(transport.disconnecting)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, code)
        self.assertIn(words, response.body)
        self.assertEqual(response.headers[b"connection"], b"close")
        self.assertIsNone(channel.requests[-1].content)
        channel.dataReceived(b"x" * 65536)
        self.assertEqual(transport.value().count(b"HTTP/1.1"), 1)
        self.assertIsNone(channel.requests[-1].content)
        self.assertEqual(self.proxy.reactor.tcpClients, [])
        self.assertEqual(self.proxy.node.urls, [])
        return response

    def test_postToNode(self):
        """
        A POST to the node's own paths gets 405 with C{Allow}, before its
        200 MB body.
        """
        response = self.assertRefusedEarly(
            get("/movie.ts", "Content-Length: 200000000", method="POST"),
            OUTSIDER,
            405,
            b"only GET and HEAD",
        )
        self.assertEqual(response.headers[b"allow"], b"GET, HEAD")

    def test_chunkedPostToNode(self):
        """
        A chunked body (no announced length) is refused the same way.
        """
        self.assertRefusedEarly(
            get("/x", "Transfer-Encoding: chunked", method="PUT"),
            LOCAL_CLIENT,
            405,
            b"only GET and HEAD",
        )

    def test_getWithBody(self):
        """
        A GET with a body for the node itself gets 400.
        """
        self.assertRefusedEarly(
            get("/movie.ts", "Content-Length: 10"), LOCAL_CLIENT, 400, b"no body"
        )

    def test_sppWithBody(self):
        """
        A body for an spp:// URL is never read: 405.
        """
        self.assertRefusedEarly(
            get("spp://127.0.0.1:1111/m", "Content-Length: 1", method="POST"),
            LOCAL_CLIENT,
            405,
            b"only GET and HEAD",
        )

    def test_notGranted(self):
        """
        A client that may not use the proxy gets 403 before its body.
        """
        self.assertRefusedEarly(
            get("http://192.0.2.1/form", "Content-Length: 200000000", method="POST"),
            OUTSIDER,
            403,
            b"192.0.2.9 may not use this proxy",
        )

    def test_notAllowedOrigin(self):
        """
        With -A, a body for another origin gets 403 before it is read.
        """
        self.proxy = ProxyHarness(self, allowHosts=["origin.example"])
        self.assertRefusedEarly(
            get("http://other.example/form", "Content-Length: 5", method="POST"),
            LOCAL_CLIENT,
            403,
            b"other.example is not an allowed origin",
        )

    def test_noContinue(self):
        """
        A refused request that asked C{Expect: 100-continue} is not told to
        continue.
        """
        self.assertRefusedEarly(
            get("/x", "Content-Length: 5", "Expect: 100-continue", method="PUT"),
            LOCAL_CLIENT,
            405,
            b"only GET",
        )

    def test_headRefusedWithoutBody(self):
        """
        A HEAD with a body gets 400 with no answer body.
        """
        channel, transport = self.proxy.connect()
        channel.dataReceived(get("/x", "Content-Length: 3", method="HEAD"))
        (response,) = parseResponses(transport.value(), head=True)
        self.assertEqual(response.status, 400)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))

    def test_forwardedJustUnderLimit(self):
        """
        A granted client's body of exactly L{MAX_FORWARDED_BODY} bytes is
        read, to be forwarded.
        """
        channel, transport = self.proxy.connect(STRANGER)
        channel.dataReceived(
            get(
                "http://192.0.2.1/upload",
                f"Content-Length: {MAX_FORWARDED_BODY}",
                method="POST",
            )
        )
        channel.dataReceived(b"u" * MAX_FORWARDED_BODY)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.proxy.reactor.tcpClients), 1)

    def test_announcedOverLimit(self):
        """
        A body announced one byte over L{MAX_FORWARDED_BODY} gets 413 before
        it is read.
        """
        self.assertRefusedEarly(
            get(
                "http://192.0.2.1/upload",
                f"Content-Length: {MAX_FORWARDED_BODY + 1}",
                method="POST",
            ),
            STRANGER,
            413,
            b"at most",
        )

    def test_chunkedOverLimit(self):
        """
        A chunked body is cut off with 413 at the byte past
        L{MAX_FORWARDED_BODY}, and nothing is forwarded.
        """
        channel, transport = self.proxy.connect(STRANGER)
        channel.dataReceived(
            get("http://192.0.2.1/up", "Transfer-Encoding: chunked", method="POST")
        )
        chunk = b"c" * 65536
        for _ in range(MAX_FORWARDED_BODY // len(chunk)):
            channel.dataReceived(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"1\r\nc\r\n0\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 413)
        self.assertEqual(self.proxy.reactor.tcpClients, [])


class RefusalPropertyTests(SynchronousTestCase):
    """
    Property tests: however a request with an unwanted body is split into
    reads, it gets one refusal and its body is never stored.
    """

    @settings(deadline=None, max_examples=200)
    @given(
        method=st.sampled_from(["POST", "PUT", "GET", "DELETE"]),
        chunked=st.booleans(),
        body=st.binary(max_size=300),
        cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=6),
    )
    def test_anySplit(self, method, chunked, body, cuts):
        """
        A request with a body for the node itself, fed in pieces cut
        anywhere, gets exactly one answer (405, or 400 for GET) and leaves
        no stored content.
        """
        framing = (
            "Transfer-Encoding: chunked"
            if chunked
            else f"Content-Length: {len(body) + 1}"
        )
        data = get("/movie.ts", "Host: n", framing, method=method) + body
        proxy = ProxyHarness(self)
        channel, transport = proxy.connect(OUTSIDER)
        start = 0
        for cut in sorted(cuts) + [len(data)]:
            channel.dataReceived(data[start:cut])
            start = max(start, cut)
        (response,) = parseResponses(transport.value())
        self.assertEqual(response.status, 400 if method == "GET" else 405)
        self.assertIsNone(channel.requests[-1].content)
        self.assertTrue(transport.disconnecting)
