# -*- test-case-name: tests.unit.test_tap,tests.unit.test_punches -*-
"""
The pieces of a running node that L{p2pd.tap.makeService} puts together:
its HTTP site, the service that starts and stops its threads and files, and
the service listening on its port. They take plain values: only
L{p2pd.tap} knows the command line.
"""

import gc
import signal
from collections.abc import Callable
from types import FrameType

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IReactorFromThreads,
    IReactorThreads,
    IReactorTime,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Site

from p2pd import __version__
from p2pd.engine.node import Node
from p2pd.spp.tls import ServerTLS
from p2pd.store.cache import BlockCache
from p2pd.store.digests import DigestIndex
from p2pd.twistedinternals import listening, raiseListenErrors
from p2pd.web.channel import NodeChannel
from p2pd.web.proxy import NodeRequest, ProxyConfig

# A signal's handler, as signal.signal returns the one it replaces.
_Handler = Callable[[int, FrameType | None], object] | int | None


class NodeSite(Site):
    """
    The HTTP side of a node: its own resources, and the proxy for absolute
    URIs. Its access log is written only when C{verbose} (C{--debug}).
    """

    protocol = NodeChannel  # type: ignore[assignment]
    requestFactory = NodeRequest  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        verbose: bool,
        reactor: IReactorTime,
        proxy: ProxyConfig,
    ) -> None:
        super().__init__(resource, reactor=reactor)
        self.verbose = verbose
        self.proxy = proxy
        self.displayTracebacks = False

    def log(self, request: http.Request) -> None:
        if self.verbose:
            super().log(request)


class INodeReactor(IReactorCore, IReactorThreads):
    """
    The reactor as L{NodeService} uses it: it runs, and has a thread pool.
    """


class NodeService(Service):
    """
    Runs the thread pool that hashes published files (its own, so hashing
    never delays DNS lookups in the reactor's pool), and closes the node's
    downloads and index files when twistd stops. When it starts, before
    the node serves anything and with the cache directory locked, the
    cache is brought within its limit; from then on until it stops, holes
    of evicted blocks are punched in the reactor's thread pool.
    """

    def __init__(
        self,
        node: Node,
        hashing: ThreadPool,
        digestIndex: DigestIndex | None,
        reactor: INodeReactor,
        cache: BlockCache | None = None,
    ) -> None:
        self.node = node
        self.hashing = hashing
        self.digestIndex = digestIndex
        self.reactor = reactor
        self.cache = cache

    def startService(self) -> None:
        if self.cache is not None:
            self.cache.enforceLimit()
            self.cache.punches.start(self.reactor)
        super().startService()
        self.hashing.start()
        self.reactor.callWhenRunning(settleHeap)

    def stopService(self) -> None:
        super().stopService()
        self.node.stop()
        if self.cache is not None:
            self.cache.punches.stop()
        self.hashing.stop()
        if self.digestIndex is not None:
            self.digestIndex.close()


def settleHeap() -> None:
    """
    Put what start-up made out of the garbage collector's sight: it lives as
    long as the node, and sweeping it again lengthens every collection, a
    pause a player waiting for its first block sees. Not collected first:
    that would be such a pause for a player asking right after start-up,
    and start-up leaves little garbage.
    """
    gc.freeze()


class ListenerService(StreamServerEndpointService):
    """
    Listens on the node's port, and ends start-up with one clear line when it
    cannot (port in use, no permission) rather than a traceback.
    """

    _log = Logger()

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        factory: IProtocolFactory,
        description: str,
        node: Node,
    ) -> None:
        super().__init__(endpoint, factory)
        raiseListenErrors(self)
        self.description = description
        self.node = node

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise SystemExit(f"p2pd: cannot listen on {self.description}: {reason}")
        except (OSError, OverflowError) as e:
            # A UNIX socket's lock file, a port past 65535.
            reason = getattr(e, "strerror", None) or str(e)
            raise SystemExit(f"p2pd: cannot listen on {self.description}: {reason}")
        listening(self).addCallback(self._announce)

    def _announce(self, port: IListeningPort) -> IListeningPort:
        address = port.getHost()
        self.node.listenPort = getattr(address, "port", 0)
        self._log.info(
            "p2pd {version} serving HTTP and SPP on {host}:{port}",
            version=__version__,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )
        return port


class ReloadOnHangup(Service):
    """
    Reads the node's certificate and key again on SIGHUP, for the
    connections that follow; open ones keep theirs.
    """

    def __init__(self, tls: ServerTLS, reactor: IReactorFromThreads) -> None:
        self.tls = tls
        self.reactor = reactor
        self._previous: _Handler = None

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._hangup)

    def stopService(self) -> None:
        super().stopService()
        signal.signal(signal.SIGHUP, self._previous)

    def _hangup(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.tls.reload)
