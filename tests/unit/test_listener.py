"""
Tests for L{p2pd.listener}: one port shared by several protocols, chosen by
the first byte a client sends, and the caps on the connections it accepts.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.static import Data

from p2pd.core.errors import ErrorCode
from p2pd.engine.serving import descriptorLimit
from p2pd.listener import (
    CONNECTIONS_SHARE,
    HTTP_BUSY,
    HTTP_SHARE,
    MAX_PER_ADDRESS,
    REFUSALS_LOGGED_EVERY,
    RETRY_AFTER,
    SPP_BUSY,
    SharedPortFactory,
)
from p2pd.spp import codec
from tests.helpers import parseResponse

PEER = IPv4Address("TCP", "192.0.2.1", 40000)
SPP_KEY = b"\xfe"
HTTP_REQUEST = b"GET /hello HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"


class _Recorder(Protocol):
    """
    Records how it was connected and what it received.
    """

    def __init__(self) -> None:
        self.events: list[str] = []
        self.received: list[bytes] = []
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.events.append("made")

    def dataReceived(self, data: bytes) -> None:
        self.events.append("data")
        self.received.append(data)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        self.events.append("lost")
        self.reason = reason


class _RecordingFactory(Factory):
    """
    Builds L{_Recorder}s (or refuses, returning None) and counts starts.
    """

    protocol = _Recorder

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.built: list[tuple[_Recorder, object]] = []
        self.started = 0
        self.stopped = 0

    def buildProtocol(self, addr: object) -> _Recorder | None:
        if self.refuse:
            return None
        protocol = _Recorder()
        protocol.factory = self
        self.built.append((protocol, addr))
        return protocol

    def startFactory(self) -> None:
        self.started += 1

    def stopFactory(self) -> None:
        self.stopped += 1


class _Transport(StringTransport):
    """
    A L{StringTransport} that tells an abort from a clean close.
    """

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()


class SharedPortTests(SynchronousTestCase):
    """
    L{SharedPortFactory} hands each connection to the factory its first
    byte names.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.http = _RecordingFactory()
        self.spp = _RecordingFactory()
        self.shared = SharedPortFactory(
            self.http, {SPP_KEY: self.spp}, clock=self.clock, timeout=60
        )

    def connect(self) -> tuple[Protocol, _Transport]:
        dispatcher = self.shared.buildProtocol(PEER)
        transport = _Transport(peerAddress=PEER)
        dispatcher.makeConnection(transport)
        return dispatcher, transport

    def chosen(self, factory: _RecordingFactory) -> _Recorder:
        [(protocol, addr)] = factory.built
        self.assertIs(addr, PEER)
        return protocol

    def test_nothingBeforeData(self) -> None:
        """
        No protocol is built before the client says something.
        """
        self.connect()
        self.assertEqual((self.http.built, self.spp.built), ([], []))

    def test_registeredKey(self) -> None:
        """
        A connection whose first byte is a registered key goes to that
        factory, with the peer's address, and gets the real transport.
        """
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(SPP_KEY + b"hello")
        protocol = self.chosen(self.spp)
        self.assertEqual(self.http.built, [])
        self.assertIs(protocol.transport, transport)
        self.assertEqual(protocol.events, ["made", "data"])
        self.assertEqual(protocol.received, [SPP_KEY + b"hello"])

    def test_default(self) -> None:
        """
        Any other first byte goes to the default factory.
        """
        for first in [b"G", b"\x00", b"\xff", b"\x16"]:
            self.http.built = []
            dispatcher, transport = self.connect()
            dispatcher.dataReceived(first + b"rest")
            self.assertEqual(b"".join(self.chosen(self.http).received), first + b"rest")
        self.assertEqual(self.spp.built, [])

    def test_oneByteChunks(self) -> None:
        """
        Data arriving one byte at a time reaches the chosen protocol intact,
        first byte included, and chooses only once.
        """
        message = SPP_KEY + b"\x00\x01\x02" + SPP_KEY + b"tail"
        dispatcher, transport = self.connect()
        for i in range(len(message)):
            dispatcher.dataReceived(message[i : i + 1])
        protocol = self.chosen(self.spp)
        self.assertEqual(b"".join(protocol.received), message)
        self.assertEqual(self.http.built, [])

    def test_bulk(self) -> None:
        """
        Several messages in one chunk reach the chosen protocol as they
        came.
        """
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(HTTP_REQUEST * 3)
        self.assertEqual(self.chosen(self.http).received, [HTTP_REQUEST * 3])

    def test_connectionLost(self) -> None:
        """
        The chosen protocol learns of the connection's end, with its reason.
        """
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(SPP_KEY)
        reason = Failure(ConnectionLost("gone"))
        dispatcher.connectionLost(reason)
        protocol = self.chosen(self.spp)
        self.assertIs(protocol.reason, reason)
        self.assertEqual(protocol.events, ["made", "data", "lost"])

    def test_connectionLostBeforeData(self) -> None:
        """
        A connection that ends silently builds no protocol and leaves no
        timer behind.
        """
        dispatcher, transport = self.connect()
        dispatcher.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.http.built, self.spp.built), ([], []))

    def test_silentTimeout(self) -> None:
        """
        A connection that says nothing is aborted after the timeout.
        """
        dispatcher, transport = self.connect()
        self.clock.advance(59.9)
        self.assertFalse(transport.aborted)
        self.clock.advance(0.1)
        self.assertTrue(transport.aborted)
        dispatcher.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dataCancelsTimeout(self) -> None:
        """
        Data before the timeout cancels it: the chosen protocol owns the
        connection from then on.
        """
        dispatcher, transport = self.connect()
        self.clock.advance(30)
        dispatcher.dataReceived(b"G")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(3600)
        self.assertFalse(transport.aborted)
        self.assertFalse(transport.disconnecting)

    def test_timeoutFromFactory(self) -> None:
        """
        The silent time allowed is the factory's.
        """
        self.shared.timeout = 5
        dispatcher, transport = self.connect()
        self.clock.advance(5)
        self.assertTrue(transport.aborted)

    def test_refused(self) -> None:
        """
        A factory that refuses the connection (returns None) gets it closed.
        """
        self.shared.protocols[SPP_KEY] = _RecordingFactory(refuse=True)
        dispatcher, transport = self.connect()
        dispatcher.dataReceived(SPP_KEY + b"hello")
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        dispatcher.connectionLost(Failure(ConnectionDone()))

    def test_startStop(self) -> None:
        """
        Starting and stopping the shared factory starts and stops every
        factory it dispatches to.
        """
        self.shared.doStart()
        self.assertEqual((self.http.started, self.spp.started), (1, 1))
        self.shared.doStop()
        self.assertEqual((self.http.stopped, self.spp.stopped), (1, 1))

    def test_protocolsCopied(self) -> None:
        """
        The factory keeps its own copy of the protocol table.
        """
        table = {SPP_KEY: self.spp}
        shared = SharedPortFactory(self.http, table, clock=self.clock)
        table.clear()
        self.assertEqual(shared.protocols, {SPP_KEY: self.spp})

    def test_realSite(self) -> None:
        """
        An HTTP request, even one byte at a time, is answered by a real
        C{Site} behind the dispatcher.
        """
        root = Resource()
        root.putChild(b"hello", Data(b"hello there", "text/plain"))
        site = Site(root, reactor=MemoryReactorClock())
        shared = SharedPortFactory(site, {SPP_KEY: self.spp}, clock=self.clock)
        dispatcher = shared.buildProtocol(PEER)
        transport = _Transport(peerAddress=PEER)
        dispatcher.makeConnection(transport)
        for i in range(len(HTTP_REQUEST)):
            dispatcher.dataReceived(HTTP_REQUEST[i : i + 1])
        code, headers, body = parseResponse(transport.value())
        self.assertEqual((code, body), (200, b"hello there"))
        dispatcher.connectionLost(Failure(ConnectionDone()))


SPP_REFUSAL = b"spp busy"


class CapTests(SynchronousTestCase):
    """
    Past a cap, a connection is told so in its own protocol and closed; it
    reaches no factory, and the counts come back down as connections close.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.http = _RecordingFactory()
        self.spp = _RecordingFactory()
        self.shared = SharedPortFactory(
            self.http,
            {SPP_KEY: self.spp},
            clock=self.clock,
            maxConnections=8,
            maxPerAddress=3,
            refusals={SPP_KEY: SPP_REFUSAL},
        )

    def connect(
        self, host: str = "192.0.2.1", first: bytes = SPP_KEY
    ) -> tuple[Protocol, _Transport]:
        address = IPv4Address("TCP", host, 40000)
        dispatcher = self.shared.buildProtocol(address)
        transport = _Transport(peerAddress=address)
        dispatcher.makeConnection(transport)
        dispatcher.dataReceived(first)
        return dispatcher, transport

    def assertRefused(
        self, connection: tuple[Protocol, _Transport], answer: bytes
    ) -> None:
        """
        C{connection} was sent C{answer} and closed (and is then gone).
        """
        dispatcher, transport = connection
        self.assertEqual(transport.value(), answer)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        dispatcher.connectionLost(Failure(ConnectionDone()))

    def test_perAddress(self) -> None:
        """
        One connection past C{maxPerAddress} from one address is refused;
        other addresses are not, and once one closes there is room again.
        """
        connections = [self.connect() for _ in range(3)]
        self.assertEqual(len(self.spp.built), 3)
        self.assertRefused(self.connect(), SPP_REFUSAL)
        self.assertRefused(self.connect(first=b"G"), HTTP_BUSY)
        self.assertEqual((len(self.spp.built), self.http.built), (3, []))
        self.connect("192.0.2.2")
        self.assertEqual(len(self.spp.built), 4)
        connections[0][0].connectionLost(Failure(ConnectionDone()))
        self.connect()
        self.assertEqual(len(self.spp.built), 5)

    def test_total(self) -> None:
        """
        One connection past C{maxConnections} is refused, whatever its
        address; once one closes there is room again.
        """
        connections = [self.connect(f"192.0.2.{n}") for n in range(8)]
        self.assertRefused(self.connect("192.0.2.99"), SPP_REFUSAL)
        self.assertEqual(len(self.spp.built), 8)
        connections[0][0].connectionLost(Failure(ConnectionDone()))
        _, transport = self.connect("192.0.2.100")
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(self.spp.built), 9)

    def test_http(self) -> None:
        """
        One HTTP connection past C{maxHTTP} gets a 503 with Retry-After and
        Connection: close; SPP connections still get in.
        """
        self.assertEqual(self.shared.maxHTTP, 8 // HTTP_SHARE)
        connections = [self.connect(f"192.0.2.{n}", b"G") for n in range(2)]
        refused = self.connect("192.0.2.50", b"G")
        code, headers, body = parseResponse(refused[1].value())
        self.assertEqual(code, 503)
        self.assertEqual(headers[b"retry-after"], b"%d" % RETRY_AFTER)
        self.assertEqual(headers[b"connection"], b"close")
        self.assertRefused(refused, HTTP_BUSY)
        self.connect("192.0.2.51")
        self.assertEqual((len(self.http.built), len(self.spp.built)), (2, 1))
        connections[1][0].connectionLost(Failure(ConnectionDone()))
        self.connect("192.0.2.52", b"G")
        self.assertEqual(len(self.http.built), 3)

    def test_countsReleased(self) -> None:
        """
        Every connection, chosen, refused or silent, is uncounted when it
        ends.
        """
        connections = [self.connect(first=f) for f in (SPP_KEY, b"G", b"G", b"G")]
        silent = self.shared.buildProtocol(PEER)
        silent.makeConnection(_Transport(peerAddress=PEER))
        self.assertEqual((self.shared.connections, self.shared.httpConnections), (5, 2))
        for dispatcher, _ in connections:
            dispatcher.connectionLost(Failure(ConnectionDone()))
        silent.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((self.shared.connections, self.shared.httpConnections), (0, 0))

    def test_refusedHearsNoMore(self) -> None:
        """
        What a refused client sends afterwards reaches no protocol and gets
        no answer.
        """
        for _ in range(3):
            self.connect()
        dispatcher, refused = self.connect()
        refused.clear()
        dispatcher.dataReceived(b"more")
        self.assertEqual(refused.value(), b"")
        self.assertEqual(len(self.spp.built), 3)

    def test_logged(self) -> None:
        """
        The first refusal is logged, later ones at most once every
        L{REFUSALS_LOGGED_EVERY} seconds, with how many there were.
        """
        for _ in range(3):
            self.connect()
        with capturedLogs() as events:
            for _ in range(5):
                self.connect()
            self.clock.advance(REFUSALS_LOGGED_EVERY)
            self.connect()
        self.assertEqual([e["count"] for e in events], [1, 5])

    def test_defaults(self) -> None:
        """
        By default the caps are shares of the descriptor limit, and an SPP
        connection is refused with Error BUSY about the connection.
        """
        shared = SharedPortFactory(self.http, {}, clock=self.clock)
        self.assertEqual(shared.maxConnections, descriptorLimit() // CONNECTIONS_SHARE)
        self.assertEqual(shared.maxHTTP, shared.maxConnections // HTTP_SHARE)
        self.assertEqual(shared.maxPerAddress, MAX_PER_ADDRESS)
        self.assertEqual(shared.refusals, {codec.MAGIC[:1]: SPP_BUSY})
        self.assertEqual(
            codec.decode(SPP_BUSY[4:]),
            codec.Error(0, ErrorCode.BUSY, "too many connections"),
        )
        self.assertEqual(int.from_bytes(SPP_BUSY[:4], "big"), len(SPP_BUSY) - 4)
