# -*- test-case-name: tests.test_listener -*-
"""
One listening port for several protocols.

HTTP and SPP share a node's port. The first byte a client sends tells them
apart: HTTP requests start with a method name (ASCII letters), an SPP
connection with its magic, whose first byte is not printable ASCII. The chosen
protocol gets the real transport directly, so after the first byte the
dispatcher costs nothing.
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
)
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

_CLEAN = Failure(ConnectionDone())


class _FirstByteDispatcher(Protocol, TimeoutMixin):
    """
    Waits for the first byte, then hands the connection to the protocol it
    names. A client that connects and says nothing is dropped after
    C{SharedPortFactory.timeout} seconds.
    """

    def __init__(self, factory: "SharedPortFactory", address: IAddress) -> None:
        self._shared = factory
        self._address = address
        self._chosen: IProtocol | None = None
        # TimeoutMixin's documented way to use another clock.
        self.callLater = factory.clock.callLater  # type: ignore[method-assign, assignment]

    def connectionMade(self) -> None:
        self.setTimeout(self._shared.timeout)

    def timeoutConnection(self) -> None:
        cast(ITCPTransport, self.transport).abortConnection()

    def dataReceived(self, data: bytes) -> None:
        if self._chosen is None:
            self.setTimeout(None)
            factory = self._shared.protocols.get(data[:1], self._shared.default)
            chosen = factory.buildProtocol(self._address)
            assert self.transport is not None
            if chosen is None:
                self.transport.loseConnection()
                return
            self._chosen = chosen
            chosen.makeConnection(self.transport)
        self._chosen.dataReceived(data)

    def connectionLost(self, reason: Failure = _CLEAN) -> None:
        self.setTimeout(None)
        if self._chosen is not None:
            self._chosen.connectionLost(reason)


class SharedPortFactory(Factory):
    """
    A factory for a port that several protocols share.

    @ivar protocols: the factory for connections whose first byte is the key.
    @ivar default: the factory for every other connection (HTTP).
    @ivar timeout: seconds a new connection may stay silent.
    """

    def __init__(
        self,
        default: IProtocolFactory,
        protocols: Mapping[bytes, IProtocolFactory],
        clock: IReactorTime,
        timeout: float = 60,
    ) -> None:
        self.default = default
        self.protocols = dict(protocols)
        self.clock = clock
        self.timeout = timeout

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
