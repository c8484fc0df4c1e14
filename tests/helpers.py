"""
Helpers shared by the unit tests.

This is the one module that reaches into private Twisted machinery.

In-memory client and server pairs for protocol tests come from
C{twisted.test.iosim}: L{FakeTransport} and L{connectedServerAndClient} are
re-exported here.

Twisted's HTTP channel turns a pull producer (a file body) into a push producer with the
global cooperator, which runs on the global reactor. L{InMemoryHTTP} swaps it
for one driven by a L{task.Clock} for the duration of a test, so a real
C{Site} answers synchronously and a test can count how often the body is
pulled.
"""

from collections.abc import Callable
from typing import Any

from treq.testing import StubTreq
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.iweb import IResponse
from twisted.web.resource import IResource
from twisted.web.server import Site

__all__ = [
    "CLIENT",
    "LOCAL",
    "FakeTransport",
    "InMemoryHTTP",
    "connectedServerAndClient",
    "parseResponse",
]

LOCAL = IPv4Address("TCP", "127.0.0.1", 1111)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


def _oneUnitPerTick() -> Callable[[], bool]:
    return lambda: True


class InMemoryHTTP:
    """
    A real L{Site} around C{resource}, in memory, answering synchronously.

    @ivar stub: a L{StubTreq} for the site (requests arrive on port 80 of
        127.0.0.1, or on the URL's port).
    @ivar clock: drives the cooperator that pulls response bodies: each
        C{clock.advance(1)} is one pull (one C{resumeProducing}).
    """

    def __init__(self, testCase: SynchronousTestCase, resource: IResource) -> None:
        self._testCase = testCase
        self.resource = resource
        self.clock = task.Clock()
        self.cooperator = task.Cooperator(
            terminationPredicateFactory=_oneUnitPerTick,
            scheduler=lambda work: self.clock.callLater(1, work),
        )
        testCase.patch(task, "_theCooperator", self.cooperator)
        self.stub = StubTreq(resource)
        self._flushes: list[Callable[[], None]] = [self.stub.flush]

    def drive(self) -> None:
        """
        Pull bodies and move bytes until nothing is left to do.
        """
        while True:
            for flush in self._flushes:
                flush()
            if not self.clock.getDelayedCalls():
                return
            self.clock.advance(1)

    def resultOf(self, d: "Deferred[Any]") -> Any:
        self.drive()
        return self._testCase.successResultOf(d)

    def request(
        self,
        method: str,
        url: str | bytes,
        headers: dict[str, str | bytes] | None = None,
    ) -> tuple[IResponse, bytes]:
        """
        Make a request through the real HTTP client and server stacks.

        @return: the response and its whole body.
        """
        rawHeaders = {
            _bytes(name): [_bytes(value)] for name, value in (headers or {}).items()
        }
        response = self.resultOf(self.stub.request(method, url, headers=rawHeaders))  # type: ignore[attr-defined]
        body = self.resultOf(self.stub.content(response))  # type: ignore[attr-defined]
        return response, body

    def connect(
        self, host: IAddress = LOCAL, peer: IAddress = CLIENT
    ) -> tuple[Any, StringTransport]:
        """
        A server-side HTTP channel of a fresh L{Site} on a L{StringTransport},
        for feeding raw bytes.
        """
        site = Site(self.resource, reactor=MemoryReactorClock())
        channel = site.buildProtocol(peer)
        transport = StringTransport(hostAddress=host, peerAddress=peer)
        channel.makeConnection(transport)
        return channel, transport

    def raw(
        self, data: bytes, host: IAddress = LOCAL, peer: IAddress = CLIENT
    ) -> bytes:
        """
        Feed raw bytes to a fresh connection and return everything the server
        wrote.
        """
        channel, transport = self.connect(host, peer)
        channel.dataReceived(data)
        self.drive()
        written = transport.value()
        channel.connectionLost(Failure(ConnectionDone()))
        return bytes(written)


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def parseResponse(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """
    Split one raw HTTP/1.1 response (without chunked encoding) into status
    code, headers (lower-cased names) and body.
    """
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in {raw!r}"
    statusLine, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(statusLine.split()[1]), headers, body
