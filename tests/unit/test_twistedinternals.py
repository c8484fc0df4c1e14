# -*- test-case-name: tests.unit.test_twistedinternals -*-
"""
Tests for L{p2pd.twistedinternals}: each private attribute of Twisted that
p2pd relies on exists and behaves as assumed. A failure here after a
Twisted upgrade names the trick to rework.
"""

import socket

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, task, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http, server
from twisted.web.proxy import ProxyRequest
from twisted.web.resource import Resource

from p2pd import services
from p2pd.twistedinternals import (
    bytesWaiting,
    listening,
    raiseListenErrors,
    requestGone,
    requestLine,
    sendNow,
    sendWholeWrites,
)
from p2pd.web.channel import NodeChannel
from p2pd.web.proxy import NodeRequest

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


class _Pending(Resource):
    """
    A resource that never answers; it keeps the request it got.
    """

    isLeaf = True
    request: server.Request | None = None

    def render_GET(self, request: server.Request) -> int:
        self.request = request
        return server.NOT_DONE_YET


class _Holder:
    """
    Stands for a request: all the functions read of it is its channel's
    transport.
    """

    def __init__(self, transport: object) -> None:
        self.channel = self
        self.transport = transport


def _socketTransport(
    testCase: SynchronousTestCase,
) -> tuple[tcp.Connection, socket.socket]:
    """
    A TCP transport on one end of a socket pair (never added to a running
    reactor), and the other end, which does not block.
    """
    ours, theirs = socket.socketpair()
    testCase.addCleanup(ours.close)
    testCase.addCleanup(theirs.close)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    theirs.setblocking(False)
    transport = tcp.Connection(ours, Protocol(), MemoryReactor())
    transport.connected = True
    return transport, theirs


def _received(peer: socket.socket) -> bytes:
    """
    Everything waiting on C{peer}.
    """
    data = b""
    while True:
        try:
            chunk = peer.recv(1 << 20)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


class RequestGoneTests(SynchronousTestCase):
    """
    L{requestGone}: a request whose connection was lost is marked so
    (C{http.Request._disconnected}).
    """

    def setUp(self) -> None:
        self.resource = _Pending()
        # The site's clock, not the reactor's: no idle timeout left behind.
        site = server.Site(self.resource, reactor=task.Clock())
        self.channel = site.buildProtocol(CLIENT)
        assert self.channel is not None
        self.channel.makeConnection(StringTransport())
        self.channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        assert self.resource.request is not None
        self.request = self.resource.request

    def test_attribute(self) -> None:
        """
        Requests have the private flag, false while connected.
        """
        self.assertIs(self.request._disconnected, False)
        self.assertFalse(requestGone(self.request))

    def test_lost(self) -> None:
        """
        A request whose connection is lost is gone at once.
        """
        self.channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(requestGone(self.request))

    def test_finished(self) -> None:
        """
        A finished request is gone.
        """
        self.request.finish()
        self.assertTrue(requestGone(self.request))


class SendNowTests(SynchronousTestCase):
    """
    L{sendNow}: a TCP transport's C{doWrite} sends what was written without
    waiting for the reactor.
    """

    def test_writeWaitsForReactor(self) -> None:
        """
        Bytes written to a TCP transport wait for the reactor's turn: the
        trick has something to gain.
        """
        transport, peer = _socketTransport(self)
        transport.write(b"head")
        self.assertEqual(_received(peer), b"")

    def test_sentAtOnce(self) -> None:
        """
        After L{sendNow}, the peer holds the bytes written.
        """
        transport, peer = _socketTransport(self)
        transport.write(b"head")
        sendNow(_Holder(transport))  # type: ignore[arg-type]
        self.assertEqual(_received(peer), b"head")

    def test_disconnecting(self) -> None:
        """
        Nothing is sent on a transport being closed (the reactor does
        that).
        """
        transport, peer = _socketTransport(self)
        transport.write(b"head")
        transport.disconnecting = True
        sendNow(_Holder(transport))  # type: ignore[arg-type]
        self.assertEqual(_received(peer), b"")

    def test_notTCP(self) -> None:
        """
        A transport without C{doWrite} is left alone.
        """
        transport = StringTransport()
        transport.write(b"head")
        sendNow(_Holder(transport))  # type: ignore[arg-type]
        self.assertEqual(transport.value(), b"head")


class SendWholeWritesTests(SynchronousTestCase):
    """
    L{sendWholeWrites}: a TCP transport sends at most C{SEND_LIMIT} bytes
    per C{send()}, and raising it sends a larger write at once.
    """

    SIZE = 160 * 1024

    def test_limited(self) -> None:
        """
        By default one C{doWrite} sends less than a 160 KiB write.
        """
        transport, peer = _socketTransport(self)
        self.assertLess(transport.SEND_LIMIT, self.SIZE)
        transport.write(b"x" * self.SIZE)
        transport.doWrite()
        self.assertEqual(len(_received(peer)), transport.SEND_LIMIT)

    def test_raised(self) -> None:
        """
        Raised to the write's size, one C{doWrite} sends all of it.
        """
        transport, peer = _socketTransport(self)
        sendWholeWrites(_Holder(transport), self.SIZE)  # type: ignore[arg-type]
        self.assertEqual(transport.SEND_LIMIT, self.SIZE)
        transport.write(b"x" * self.SIZE)
        transport.doWrite()
        self.assertEqual(len(_received(peer)), self.SIZE)

    def test_neverLowered(self) -> None:
        """
        A smaller size leaves the limit as it is.
        """
        transport, _ = _socketTransport(self)
        limit = transport.SEND_LIMIT
        sendWholeWrites(_Holder(transport), 1024)  # type: ignore[arg-type]
        self.assertEqual(transport.SEND_LIMIT, limit)


class _Judging(http.HTTPChannel):
    """
    A channel that records what L{requestLine} and L{bytesWaiting} say
    once a request's headers are in, before its body.
    """

    seen: list[tuple[tuple[bytes, bytes], bool]]

    def allHeadersReceived(self) -> None:
        self.seen.append((requestLine(self), bytesWaiting(self)))
        super().allHeadersReceived()


class ChannelTests(SynchronousTestCase):
    """
    L{requestLine} and L{bytesWaiting}: the HTTP channel keeps the request
    line in C{_command} and C{_path} until the body is read, and unparsed
    bytes in C{_buffer}.
    """

    def setUp(self) -> None:
        self.channel = _Judging()
        self.channel.seen = []
        self.channel.requestFactory = server.Request
        self.channel.site = server.Site(_Pending())  # type: ignore[attr-defined]
        # The idle timeout on a fake clock, not left in the reactor.
        self.channel.callLater = task.Clock().callLater  # type: ignore[method-assign,assignment]
        self.channel.makeConnection(StringTransport())

    def test_requestLine(self) -> None:
        """
        The method and target are known when the headers end.
        """
        self.channel.dataReceived(
            b"POST http://a/form HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
        )
        self.assertEqual(self.channel.seen, [((b"POST", b"http://a/form"), False)])

    def test_partialLine(self) -> None:
        """
        Part of a request line is waiting, and once parsed is not.
        """
        self.channel.dataReceived(b"GET /a HT")
        self.assertTrue(bytesWaiting(self.channel))
        self.channel.dataReceived(b"TP/1.1\r\n\r\n")
        self.assertFalse(bytesWaiting(self.channel))

    def test_pipelined(self) -> None:
        """
        A second request sent behind the first waits unparsed when the
        first one's headers end.
        """
        self.channel.dataReceived(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n")
        self.assertEqual(self.channel.seen, [((b"GET", b"/a"), True)])


class _Endpoint:
    """
    A server endpoint whose C{listen} gives C{result} at once.
    """

    def __init__(self, result: "defer.Deferred[object]") -> None:
        self.result = result

    def listen(self, factory: object) -> "defer.Deferred[object]":
        return self.result


class ListeningTests(SynchronousTestCase):
    """
    L{raiseListenErrors} and L{listening}: an endpoint service's private
    C{_raiseSynchronously} and C{_waitingForPort}.
    """

    def test_raised(self) -> None:
        """
        A failure to listen is raised by C{privilegedStartService}.
        """
        failed: defer.Deferred[object] = defer.fail(CannotListenError("a", 1, None))
        service = StreamServerEndpointService(_Endpoint(failed), Factory())
        raiseListenErrors(service)
        self.assertRaises(CannotListenError, service.privilegedStartService)

    def test_port(self) -> None:
        """
        L{listening} fires with the port.
        """
        port = object()
        service = StreamServerEndpointService(_Endpoint(defer.succeed(port)), Factory())
        service.privilegedStartService()
        self.assertIs(self.successResultOf(listening(service)), port)


class NamesTests(SynchronousTestCase):
    """
    p2pd's subclasses of Twisted classes add private names of their own: a
    Twisted release that starts using one of them would break the subclass
    silently.
    """

    def test_ownNames(self) -> None:
        """
        No private name a subclass defines is one its Twisted bases have,
        but their loggers.
        """
        classes: list[tuple[type, list[type]]] = [
            (NodeChannel, [http.HTTPChannel]),
            (NodeRequest, [ProxyRequest, server.Request]),
            (services.NodeSite, [server.Site]),
            (services.ListenerService, [StreamServerEndpointService]),
        ]
        for subclass, bases in classes:
            own = [
                name
                for name in vars(subclass)
                if name.startswith("_") and not name.startswith("__") and name != "_log"
            ]
            for base in bases:
                for name in own:
                    self.assertFalse(hasattr(base, name), f"{base.__name__} has {name}")
