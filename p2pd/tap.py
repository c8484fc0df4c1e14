# -*- test-case-name: tests.test_tap -*-
"""
The command line: C{twistd p2pd [options]}.

The only module that knows the options. It checks them and composes the
node's services; everything else takes plain values.
"""

import os
import sys
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.server import Site

from p2pd import __version__
from p2pd.listener import SharedPortFactory
from p2pd.store.published import PublicDirectory
from p2pd.web.root import NodeRoot

DEFAULT_PORT = 1111


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise usage.UsageError(f"--port: {value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"--port: {port} is out of range (0-65535)")
    return port


def _directory(value: str) -> str:
    if not os.path.exists(value):
        raise usage.UsageError(f"--public: {value!r} does not exist")
    if not os.path.isdir(value):
        raise usage.UsageError(f"--public: {value!r} is not a directory")
    if not os.access(value, os.R_OK | os.X_OK):
        raise usage.UsageError(f"--public: {value!r} is not readable")
    return os.path.abspath(value)


class Options(usage.Options):
    synopsis = "[twistd options] p2pd [options]"
    longdesc = (
        "Run a p2pd node: publish a directory as spp:// and http:// URLs "
        "(-p), answer HTTP requests for it with SPP playlists (-T), or both. "
        "HTTP and SPP share one port. See p2pd(8)."
    )

    optFlags = [
        [
            "redirect",
            "T",
            "answer a GET for a published file with a playlist "
            "(application/x-spp-playlist) holding its spp:// URL and an HTTP "
            "fallback, instead of the file",
        ],
        [
            "no-direct",
            None,
            "do not serve file bytes over plain HTTP: only playlists and SPP",
        ],
        ["debug", "d", "verbose logging: log every HTTP request"],
        ["version", None, "print the p2pd version and exit"],
    ]
    optParameters = [
        ["public", "p", None, "publish the files in DIR (server role)", _directory],
        ["port", "P", DEFAULT_PORT, "TCP port for SPP and HTTP", _port],
        [
            "interface",
            "i",
            "",
            "address to listen on (default: all IPv4 addresses; '::' for IPv6 too)",
        ],
        [
            "listen",
            None,
            None,
            "listen on this Twisted endpoint instead of "
            "--port/--interface, e.g. tcp:1111:interface=127.0.0.1 or "
            "systemd:domain=INET:index=0",
        ],
    ]

    def opt_version(self) -> None:
        print(f"p2pd {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if self["listen"] is None:
            interface = self["interface"].replace(":", r"\:")
            self["listen"] = f"tcp:{self['port']}:interface={interface}"
        if self["redirect"] and self["public"] is None:
            raise usage.UsageError("--redirect needs a published directory (-p DIR)")
        if self["no-direct"] and self["public"] is None:
            raise usage.UsageError("--no-direct needs a published directory (-p DIR)")


class NodeSite(Site):
    """
    The HTTP side of a node; its access log is written only with --debug.
    """

    def __init__(self, resource: Any, verbose: bool, reactor: Any) -> None:
        super().__init__(resource, reactor=reactor)
        self.verbose = verbose
        self.displayTracebacks = False

    def log(self, request: Any) -> None:
        if self.verbose:
            super().log(request)


class ListenerService(StreamServerEndpointService):
    """
    Listens on the node's port, and ends start-up with one clear line when it
    cannot (port in use, no permission) rather than a traceback.
    """

    _log = Logger()
    _raiseSynchronously = True

    def __init__(self, endpoint: Any, factory: Any, description: str) -> None:
        super().__init__(endpoint, factory)
        self.description = description

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise SystemExit(f"p2pd: cannot listen on {self.description}: {reason}")
        assert self._waitingForPort is not None
        self._waitingForPort.addCallback(self._announce)

    def _announce(self, port: IListeningPort) -> IListeningPort:
        address = port.getHost()
        self._log.info(
            "p2pd {version} serving HTTP and SPP on {host}:{port}",
            version=__version__,
            host=getattr(address, "host", "?"),
            port=getattr(address, "port", "?"),
        )
        return port


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Compose a node from checked options.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    public = PublicDirectory(options["public"]) if options["public"] else None
    root = NodeRoot(
        public, redirect=options["redirect"], direct=not options["no-direct"]
    )
    site = NodeSite(root, verbose=options["debug"], reactor=reactor)
    shared = SharedPortFactory(site, {}, clock=reactor)
    node = MultiService()
    listener = ListenerService(
        serverFromString(reactor, options["listen"]), shared, options["listen"]
    )
    listener.setServiceParent(node)
    return node
