# -*- test-case-name: tests.unit.test_control -*-
"""
The service that holds a node's lock on its cache directory and takes
C{p2pd cache} commands for it (L{p2pd.web.control}).

The lock is taken before anything else starts: a second node on the same
directory ends start-up with one line. The control listener is on a
loopback address and a port of its own, whatever the node's C{--listen}
(a port on a public address, a UNIX socket, systemd's socket), written in
the lock file once it listens, with a new random token.
"""

import secrets
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python.failure import Failure

from p2pd.engine.interfaces import ICacheControl
from p2pd.store.cachelock import CacheBusy, CacheLock
from p2pd.web.control import controlSite

CONTROL_ENDPOINT = "tcp:0:interface=127.0.0.1"
# Seconds a control connection may stay idle.
CONTROL_TIMEOUT = 60


class CacheControlService(Service):
    """
    Holds the lock of C{directory} while the node runs, and listens on
    C{endpoint} for the cache commands the node's L{ICacheControl} carries
    out.

    @ivar address: C{HOST:PORT} of the control listener once it listens.
    """

    _log = Logger()

    def __init__(
        self,
        directory: str,
        node: ICacheControl,
        reactor: Any,
        endpoint: str = CONTROL_ENDPOINT,
    ) -> None:
        self.directory = directory
        self.node = node
        self.reactor = reactor
        self.endpoint = endpoint
        self.token = secrets.token_hex(16)
        self.address: str | None = None
        self._lock: CacheLock | None = None
        self._port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._take()

    def _take(self) -> None:
        if self._lock is not None:
            return
        try:
            self._lock = CacheLock.take(self.directory)
        except CacheBusy as e:
            raise SystemExit(
                f"p2pd: the cache directory {e}; give each node its own --cache-dir"
            ) from None
        except OSError as e:
            raise SystemExit(
                f"p2pd: cannot lock the cache directory {self.directory}: "
                f"{e.strerror or e}"
            ) from None

    def startService(self) -> None:
        self._take()
        super().startService()
        site = controlSite(self.node, self.token, self.reactor)
        site.timeOut = CONTROL_TIMEOUT
        d = serverFromString(self.reactor, self.endpoint).listen(site)
        d.addCallbacks(self._listening, self._cannotListen)

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        host = port.getHost()
        self.address = f"{host.host}:{host.port}"  # type: ignore[attr-defined]
        try:
            if self._lock is not None:
                self._lock.say(self.address, self.token)
        except OSError as e:
            self._log.warn(
                "cache commands cannot be taken: the lock file refuses: {why}",
                why=e.strerror,
            )
            return
        self._log.info("cache commands taken on {address}", address=self.address)

    def _cannotListen(self, reason: Failure) -> None:
        self._log.warn(
            "cache commands cannot be taken: cannot listen on {endpoint}: {why}",
            endpoint=self.endpoint,
            why=reason.getErrorMessage(),
        )

    def stopService(self) -> "Deferred[None]":
        super().stopService()
        port, self._port = self._port, None
        stopped: Deferred[Any] = (
            succeed(None) if port is None else maybeDeferred(port.stopListening)
        )

        def release(result: object) -> None:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

        return stopped.addBoth(release)
