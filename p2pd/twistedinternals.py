# -*- test-case-name: tests.unit.test_twistedinternals -*-
"""
Every place p2pd leans on Twisted's internals: private attributes and
undocumented behaviour of its transports, HTTP channel, requests and
endpoint services.

They live here alone so that an upgrade of Twisted has one module to check:
tests.unit.test_twistedinternals asserts that each attribute exists and
behaves as these functions assume, and fails loudly when a release changes
one.
Everything else in p2pd uses Twisted's public interfaces only.
"""

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.web import http


def _transport(request: http.Request) -> Any:
    return getattr(getattr(request, "channel", None), "transport", None)


def requestGone(request: http.Request) -> bool:
    """
    Whether nothing more can be written for C{request}: it was finished, or
    its connection was lost (Twisted's private C{_disconnected}; the public
    way, C{notifyFinish}, tells only later and only once).
    """
    return bool(request.finished or request._disconnected)


def sendNow(request: http.Request) -> None:
    """
    Send what C{request} has written at once (the transport's C{doWrite}),
    instead of when the reactor next goes round its sockets: a player's
    first bytes then do not wait behind the download's own traffic, which
    arrives at the same moment. The reactor sends whatever the socket does
    not take, and handles any error, as usual.
    """
    transport = _transport(request)
    doWrite = getattr(transport, "doWrite", None)
    if doWrite is not None and transport.connected and not transport.disconnecting:
        doWrite()


def sendWholeWrites(request: http.Request, size: int) -> None:
    """
    Let the request's TCP transport send C{size} bytes per C{send()} (its
    C{SEND_LIMIT}): it sends at most 128 KiB by default, so a larger write
    costs several reactor turns.
    """
    transport = _transport(request)
    if getattr(transport, "SEND_LIMIT", size) < size:
        transport.SEND_LIMIT = size


def requestLine(channel: http.HTTPChannel) -> tuple[bytes, bytes]:
    """
    The method and target of the request whose line C{channel} has parsed
    and whose body it has not yet read (its private C{_command} and
    C{_path}): what C{allHeadersReceived} needs to judge the body.
    """
    command: bytes = channel._command
    path: bytes = channel._path
    return command, path


def bytesWaiting(channel: http.HTTPChannel) -> bool:
    """
    Whether C{channel} holds bytes of a request line or header it has not
    parsed yet (its line buffer, C{_buffer}), as a pipelined request's.
    """
    return bool(channel._buffer)


def raiseListenErrors(service: StreamServerEndpointService) -> None:
    """
    Make C{service} raise a failure to listen from
    C{privilegedStartService} (its C{_raiseSynchronously}), so twistd stops
    with it at start-up instead of logging it and running on deaf.
    """
    service._raiseSynchronously = True


def listening(service: StreamServerEndpointService) -> "Deferred[IListeningPort]":
    """
    What fires with C{service}'s listening port once it listens (its
    C{_waitingForPort}); call after C{privilegedStartService}.
    """
    waiting: Deferred[IListeningPort] | None = service._waitingForPort
    assert waiting is not None, "not started"
    return waiting
