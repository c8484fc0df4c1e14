# -*- test-case-name: tests.unit.test_listener -*-
"""
One listening port for several protocols.

HTTP and SPP share a node's port. The first byte a client sends tells them
apart: HTTP requests start with a method name (ASCII letters), an SPP
connection with its magic, whose first byte is not printable ASCII. The chosen
protocol gets the real transport directly, so after the first byte the
dispatcher costs nothing.

A TLS connection (its ClientHello's first byte is 0x16) is decrypted, and
the first byte inside it tells SPP from HTTP again: spps:// and https://
on the same port. A node may refuse plain SPP (TLS only).

The listener also counts connections: in all, per remote address and over
HTTP. A connection past a cap is told so in its own protocol (an SPP Error
BUSY frame, an HTTP 503) and closed, rather than accepted and dropped.
"""

from collections.abc import Mapping
from typing import cast

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from p2pd.core.errors import ErrorCode
from p2pd.engine.serving import descriptorLimit
from p2pd.spp import codec
from p2pd.spp.tls import TLS_FIRST_BYTE

_CLEAN = Failure(ConnectionDone())

# Connections accepted at once: half of the descriptor limit, leaving the
# rest for files, the cache and the node's own connections.
CONNECTIONS_SHARE = 2
# HTTP connections at once: a quarter of the connection cap, so an HTTP
# flood leaves room for SPP.
HTTP_SHARE = 4
# Connections from one remote address at once, whatever their protocol.
MAX_PER_ADDRESS = 64
# Seconds an HTTP client refused for lack of room is told to wait.
RETRY_AFTER = 5
# Seconds between two log lines about refused connections.
REFUSALS_LOGGED_EVERY = 60.0

HTTP_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: %d\r\n"
    b"Connection: close\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 18\r\n"
    b"\r\n"
    b"Too many clients.\n" % RETRY_AFTER
)
_SPP_BUSY_BODY = codec.encode(
    codec.Error(0, ErrorCode.BUSY, "too many connections")
)
SPP_BUSY = len(_SPP_BUSY_BODY).to_bytes(4, "big") + _SPP_BUSY_BODY
_SPP_TLS_ONLY_BODY = codec.encode(
    codec.Error(0, ErrorCode.FORBIDDEN, "SPP over TLS only here: use spps://")
)
# What a plain SPP connection gets from a node that speaks SPP over TLS only.
SPP_TLS_ONLY = len(_SPP_TLS_ONLY_BODY).to_bytes(4, "big") + _SPP_TLS_ONLY_BODY


class _FirstByteDispatcher(Protocol, TimeoutMixin):
    """
    Waits for the first byte, then hands the connection to the protocol it
    names. A client that connects and says nothing is dropped after
    C{SharedPortFactory.timeout} seconds.
    """

    def __init__(self, factory: "SharedPortFactory", address: IAddress) -> None:
        self._shared = factory
        self._address = address
        self._host: str = getattr(address, "host", "")
        self._chosen: IProtocol | None = None
        self._http = False
        self._refused = False
        # TimeoutMixin's documented way to use another clock.
        self.callLater = factory.clock.callLater  # type: ignore[method-assign, assignment]

    def connectionMade(self) -> None:
        self._shared.opened(self._host)
        self.setTimeout(self._shared.timeout)

    def timeoutConnection(self) -> None:
        cast(ITCPTransport, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._chosen is None:
            if self._refused:
                return
            assert self.transport is not None
            tls = self._shared.tls
            if data[:1] == TLS_FIRST_BYTE and tls is not None:
                # Chosen by the first byte inside; the silence timeout runs
                # on until it comes.
                self._chosen = TLSMemoryBIOProtocol(tls, _Decrypted(self))
                self._chosen.makeConnection(self.transport)
            else:
                self._chosen = self.choose(data[:1], self.transport, plain=True)
                if self._chosen is None:
                    return
        self._chosen.dataReceived(data)

    def choose(
        self, key: bytes, transport: ITransport, plain: bool = False
    ) -> IProtocol | None:
        """
        Hand C{transport} to the protocol whose first byte is C{key} (inside
        TLS unless C{plain}), or refuse it and return None.
        """
        self.setTimeout(None)
        factory = self._shared.protocols.get(key)
        http = factory is None
        refusal = self._shared.refusal(self._host, key, http)
        if refusal is None and plain and not http and self._shared.tlsOnly:
            refusal = SPP_TLS_ONLY
        if refusal is not None:
            self._refused = True
            transport.write(refusal)
            transport.loseConnection()
            return None
        chosen = (factory or self._shared.default).buildProtocol(self._address)
        if chosen is None:
            transport.loseConnection()
            return None
        if http:
            self._http = True
            self._shared.httpConnections += 1
        chosen.makeConnection(transport)
        return chosen

    def connectionLost(self, reason: Failure = _CLEAN) -> None:
        self.setTimeout(None)
        self._shared.closed(self._host, self._http)
        if self._chosen is not None:
            self._chosen.connectionLost(reason)


class _Decrypted(Protocol):
    """
    The inside of a TLS connection: its first byte chooses the protocol,
    as a plain connection's does.
    """

    def __init__(self, dispatcher: _FirstByteDispatcher) -> None:
        self._dispatcher = dispatcher
        self._chosen: IProtocol | None = None
        self._refused = False

    def dataReceived(self, data: bytes) -> None:
        if self._chosen is None:
            if self._refused:
                return
            assert self.transport is not None
            self._chosen = self._dispatcher.choose(data[:1], self.transport)
            if self._chosen is None:
                self._refused = True
                return
        self._chosen.dataReceived(data)

    def connectionLost(self, reason: Failure = _CLEAN) -> None:
        if self._chosen is not None:
            self._chosen.connectionLost(reason)


class SharedPortFactory(Factory):
    """
    A factory for a port that several protocols share.

    @ivar protocols: the factory for connections whose first byte is the key.
    @ivar default: the factory for every other connection (HTTP).
    @ivar timeout: seconds a new connection may stay silent.
    @ivar maxConnections: connections at once, by default
        1/L{CONNECTIONS_SHARE} of the descriptor limit.
    @ivar maxHTTP: connections to the default factory at once, by default
        1/L{HTTP_SHARE} of C{maxConnections}.
    @ivar maxPerAddress: connections from one address at once.
    @ivar refusals: what a connection past a cap is sent, by first byte;
        for the default factory, L{HTTP_BUSY}.
    @ivar tls: the TLS connections' factory (its context the node's
        certificate), or None to speak no TLS.
    @ivar tlsOnly: refuse plain SPP (L{SPP_TLS_ONLY}).
    @ivar connections: connections open now; C{httpConnections}: those
        handed to the default factory.
    """

    _log = Logger()

    def __init__(
        self,
        default: IProtocolFactory,
        protocols: Mapping[bytes, IProtocolFactory],
        clock: IReactorTime,
        timeout: float = 60,
        maxConnections: int | None = None,
        maxPerAddress: int = MAX_PER_ADDRESS,
        refusals: Mapping[bytes, bytes] | None = None,
        tls: TLSMemoryBIOFactory | None = None,
        tlsOnly: bool = False,
    ) -> None:
        self.default = default
        self.protocols = dict(protocols)
        self.clock = clock
        self.timeout = timeout
        if maxConnections is None:
            maxConnections = descriptorLimit() // CONNECTIONS_SHARE
        self.maxConnections = maxConnections
        self.maxHTTP = max(1, maxConnections // HTTP_SHARE)
        self.maxPerAddress = maxPerAddress
        if refusals is None:
            refusals = {codec.MAGIC[:1]: SPP_BUSY}
        self.refusals = dict(refusals)
        self.tls = tls
        self.tlsOnly = tlsOnly
        self.connections = 0
        self.httpConnections = 0
        self._perAddress: dict[str, int] = {}
        self._refusedSinceLog = 0
        self._loggedAt: float | None = None

    def opened(self, host: str) -> None:
        """
        Count a new connection from C{host}.
        """
        self.connections += 1
        self._perAddress[host] = self._perAddress.get(host, 0) + 1

    def closed(self, host: str, http: bool) -> None:
        """
        Count a connection from C{host} gone.
        """
        self.connections -= 1
        if http:
            self.httpConnections -= 1
        left = self._perAddress[host] - 1
        if left:
            self._perAddress[host] = left
        else:
            del self._perAddress[host]

    def refusal(self, host: str, key: bytes, http: bool) -> bytes | None:
        """
        What to tell a counted connection from C{host} whose first byte is
        C{key} if it is past a cap, or None to let it in.
        """
        if self.connections > self.maxConnections:
            why = f"{self.connections - 1} connections"
        elif self._perAddress[host] > self.maxPerAddress:
            why = f"{self._perAddress[host] - 1} connections from {host}"
        elif http and self.httpConnections >= self.maxHTTP:
            why = f"{self.httpConnections} HTTP connections"
        else:
            return None
        self._refused(why)
        return self.refusals.get(key, HTTP_BUSY)

    def _refused(self, why: str) -> None:
        """
        Log refusals: the first, then at most one line a minute.
        """
        self._refusedSinceLog += 1
        now = self.clock.seconds()
        if self._loggedAt is None or now - self._loggedAt >= REFUSALS_LOGGED_EVERY:
            self._log.warn(
                "refused {count} connection(s), busy: {why}",
                count=self._refusedSinceLog,
                why=why,
            )
            self._refusedSinceLog = 0
            self._loggedAt = now

    def doStart(self) -> None:
        self.default.doStart()
        for factory in self.protocols.values():
            factory.doStart()

    def doStop(self) -> None:
        self.default.doStop()
        for factory in self.protocols.values():
            factory.doStop()

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        assert addr is not None
        return _FirstByteDispatcher(self, addr)
