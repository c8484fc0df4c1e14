"""
Tests for L{p2pd.web.channel} against real nodes over loopback sockets: the
limits of L{tests.unit.test_http_abuse} on a real C{twistd p2pd}.
"""

import os

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.trial.unittest import TestCase

from tests.media import getMedia
from tests.nodes import Nodes
from tests.unit.test_proxy import get


class _Raw(protocol.Protocol):
    """
    A client that writes what it is given and keeps what it receives.
    """

    def __init__(self):
        self.received = b""
        self.lost: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):  # type: ignore[override]
        self.lost.callback(self.received)


class _Recorder(protocol.Protocol):
    """
    A plain TCP service that records whether anyone connected.
    """

    def connectionMade(self):
        self.factory.connections += 1
        self.transport.loseConnection()  # type: ignore[union-attr]


class _Upstream(protocol.Protocol):
    """
    A strict origin server: keeps the raw bytes of one request, answers
    400 if it names C{Content-Length} twice, 200 otherwise.
    """

    def __init__(self):
        self.raw = b""

    def dataReceived(self, data):
        self.raw += data
        head, sep, body = self.raw.partition(b"\r\n\r\n")
        if not sep:
            return
        lengths = [
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        ]
        if lengths and len(body) < int(lengths[0]):
            return
        self.factory.requests.append(self.raw)
        code = b"400 Bad Request" if len(lengths) > 1 else b"200 OK"
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 " + code + b"\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok"
        )
        self.transport.loseConnection()  # type: ignore[union-attr]


class RealNodeTests(TestCase):
    """
    The same limits on a real node, over loopback sockets.
    """

    @defer.inlineCallbacks
    def connectRaw(self, node, data):
        """
        Connect to C{node}, send C{data}; fires with the connection's
        protocol once connected.
        """
        endpoint = TCP4ClientEndpoint(reactor, node.host, node.port)
        client = yield endpoint.connect(protocol.Factory.forProtocol(_Raw))
        client.transport.write(data)
        return client

    @defer.inlineCallbacks
    def test_postAnsweredBeforeBody(self):
        """
        A POST of 200 MB to a real node is answered 405 after its headers,
        and the node closes the connection without reading the body.
        """
        media = yield getMedia()
        node = yield Nodes(self).start("-p", media.directory)
        client = yield self.connectRaw(
            node,
            get("/random.bin", "Host: n", "Content-Length: 200000000", method="POST")
            + os.urandom(65536),
        )
        received = yield client.lost
        self.assertTrue(received.startswith(b"HTTP/1.1 405 "), received)

    @defer.inlineCallbacks
    def test_postThroughProxy(self):
        """
        A POST through the proxy (as C{curl -x NODE -d a=1 URL} sends it)
        reaches a strict origin with one C{Content-Length} and no
        hop-by-hop header, and its answer comes back.
        """
        upstream = protocol.Factory.forProtocol(_Upstream)
        upstream.requests = []  # type: ignore[attr-defined]
        listening = yield TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.9"
        ).listen(upstream)
        self.addCleanup(listening.stopListening)
        node = yield Nodes(self).start()
        origin = f"127.0.0.9:{listening.getHost().port}"
        client = yield self.connectRaw(
            node,
            get(
                f"http://{origin}/form",
                f"Host: {origin}",
                "Content-Length: 3",
                "Content-Type: application/x-www-form-urlencoded",
                "Proxy-Connection: Keep-Alive",
                "Connection: close",
                method="POST",
            )
            + b"a=1",
        )
        received = yield client.lost
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received)
        (raw,) = upstream.requests  # type: ignore[attr-defined]
        head = raw.partition(b"\r\n\r\n")[0].lower()
        self.assertEqual(head.count(b"\r\ncontent-length:"), 1)
        self.assertEqual(head.count(b"\r\nhost:"), 1)
        self.assertNotIn(b"proxy-connection", head)
        self.assertTrue(raw.endswith(b"\r\n\r\na=1"), raw)

    @defer.inlineCallbacks
    def test_gatewayRespectsAllowHost(self):
        """
        A node started with -A ORIGIN answers 403 for the gateway path of
        another host, and never connects to it.
        """
        recorder = protocol.Factory.forProtocol(_Recorder)
        recorder.connections = 0  # type: ignore[attr-defined]
        listening = yield TCP4ServerEndpoint(
            reactor, 0, interface="127.0.0.9"
        ).listen(recorder)
        self.addCleanup(listening.stopListening)
        node = yield Nodes(self).start("-A", "127.0.0.8")
        other = f"127.0.0.9:{listening.getHost().port}"
        client = yield self.connectRaw(
            node, get(f"/.spp/{other}/movie.ts", "Host: n", "Connection: close")
        )
        received = yield client.lost
        self.assertTrue(received.startswith(b"HTTP/1.1 403 "), received)
        self.assertIn(b"127.0.0.9 is not an allowed origin", received)
        self.assertEqual(recorder.connections, 0)  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_slowHeadersClosed(self):
        """
        A client that sends a request line and then nothing more is closed
        by a real node at the header deadline, with 408.
        """
        node = yield Nodes(self).start()
        client = yield self.connectRaw(node, b"GET /.status HTTP/1.1\r\nHost: n\r\n")
        received = yield client.lost
        self.assertTrue(received.startswith(b"HTTP/1.1 408 "), received)
