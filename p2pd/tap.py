# -*- test-case-name: tests.unit.test_tap -*-
"""
The command line: C{twistd p2pd [options]}.

The only module that knows the options. It checks them and composes the
node from the pieces in L{p2pd.services}; everything else takes plain
values.
"""

import hashlib
import ipaddress
import os
import re
import sys
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from p2pd import __version__
from p2pd.controlservice import CacheControlService
from p2pd.core.net import DEFAULT_PORT, Network, parseHostPort
from p2pd.core.peers import Peer
from p2pd.core.sizes import parseSize
from p2pd.engine.node import Node
from p2pd.engine.tracker import Tracker
from p2pd.listener import SharedPortFactory
from p2pd.services import ListenerService, NodeService, NodeSite, ReloadOnHangup
from p2pd.spp import codec
from p2pd.spp.connector import TCPConnector
from p2pd.spp.protocol import SPPFactory
from p2pd.spp.tls import ClientTLS, ServerTLS, TLSFileError, nodeCertificate
from p2pd.store.cache import BlockCache
from p2pd.store.digests import DigestIndex
from p2pd.store.published import PublicDirectory
from p2pd.web.access import Access, resolverFor
from p2pd.web.proxy import ProxyConfig
from p2pd.web.root import NodeRoot

_log = Logger()
DEFAULT_BLOCK_SIZE = "256K"
# -C: by default a share of the cache file system's free space at start-up,
# within these bounds.
DISK_CACHE_SHARE = 10
MIN_DISK_CACHE = 1024**2
MAX_DISK_CACHE = 50 * 1024**3
DEFAULT_MEMORY_CACHE = "64M"
_HOST = re.compile(r"^[a-z0-9._-]+$")


def _blockSize(value: str) -> int:
    try:
        size = parseSize(value)
    except ValueError as e:
        raise usage.UsageError(f"--block-size: {e}") from None
    if not codec.MIN_BLOCK_SIZE <= size <= codec.MAX_BLOCK_SIZE or size & (size - 1):
        raise usage.UsageError(
            f"--block-size: {value} must be a power of two from "
            f"{codec.MIN_BLOCK_SIZE // 1024}K to {codec.MAX_BLOCK_SIZE // 1024**2}M"
        )
    return size


# Digests with practical collisions: a publisher could hand out two files
# under one set of digests. Refused unless --allow-weak-digest.
WEAK_DIGESTS = frozenset({"md5", "sha1"})


def _digest(value: str) -> str:
    name = value.lower()
    if name not in hashlib.algorithms_guaranteed or name.startswith("shake_"):
        raise usage.UsageError(
            f"--digest: {value!r} is not a fixed-size digest every Python "
            f"offers (try sha256, sha512, blake2b)"
        )
    if not 16 <= hashlib.new(name).digest_size <= codec.MAX_DIGEST_SIZE:
        raise usage.UsageError(
            f"--digest: {value!r} is not {codec.MAX_DIGEST_SIZE} bytes or shorter"
        )
    return name


def _listen(value: str) -> str:
    """
    Check that C{value} describes a listening endpoint, without listening.
    """
    try:
        # Endpoint parsers only keep the reactor, and raise anything.
        serverFromString(None, value)
    except IndexError:
        raise usage.UsageError(
            f"--listen: {value!r} names a socket this process did not inherit"
        ) from None
    except Exception as e:
        reason = str(e) or type(e).__name__
        raise usage.UsageError(
            f"--listen: {value!r} is not a listening endpoint "
            f"(like tcp:1111:interface=127.0.0.1): {reason}"
        ) from None
    return value


def _cacheDirectory(value: str) -> str:
    """
    The absolute cache directory for C{value}, created if missing.
    """
    path = os.path.abspath(os.path.expanduser(value))
    if os.path.exists(path) and not os.path.isdir(path):
        raise usage.UsageError(f"--cache-dir: {path!r} is not a directory")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as e:
        raise usage.UsageError(
            f"--cache-dir: cannot create {path!r}: {e.strerror}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise usage.UsageError(f"--cache-dir: {path!r} is not writable")
    return path


def _size(option: str, value: str) -> int:
    try:
        return parseSize(value)
    except ValueError as e:
        raise usage.UsageError(f"{option}: {e}") from None


def _diskCache(value: str) -> int:
    size = _size("--disk-cache", value)
    if size < MIN_DISK_CACHE:
        raise usage.UsageError(f"--disk-cache: {value} is less than 1M")
    return size


def defaultDiskCache(free: int) -> int:
    """
    The disk cache's size when C{-C} is not given, for C{free} bytes free on
    the cache directory's file system: a tenth, from 1M to 50G.
    """
    return max(MIN_DISK_CACHE, min(MAX_DISK_CACHE, free // DISK_CACHE_SHARE))


def _subnet(option: str, value: str) -> Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise usage.UsageError(
            f"{option}: {value!r} is not a subnet (like 10.0.0.0/8)"
        ) from None


def _hostPort(option: str, value: str) -> tuple[str, int]:
    try:
        return parseHostPort(value)
    except ValueError as e:
        raise usage.UsageError(f"{option}: {e}") from None


def _isIPv6(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).version == 6
    except ValueError:
        return False


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise usage.UsageError(f"--port: {value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise usage.UsageError(f"--port: {port} is out of range (0-65535)")
    return port


def _readable(option: str, value: str) -> str:
    if not os.path.isfile(value) or not os.access(value, os.R_OK):
        raise usage.UsageError(f"{option}: {value!r} is not a readable file")
    return os.path.abspath(value)


def _directory(value: str) -> str:
    if not os.path.exists(value):
        raise usage.UsageError(f"--public: {value!r} does not exist")
    if not os.path.isdir(value):
        raise usage.UsageError(f"--public: {value!r} is not a directory")
    if not os.access(value, os.R_OK | os.X_OK):
        raise usage.UsageError(f"--public: {value!r} is not readable")
    return os.path.abspath(value)


class Options(usage.Options):
    synopsis = "[options]"
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
        [
            "allow-weak-digest",
            None,
            "accept -m md5 or -m sha1, whose collisions are practical",
        ],
        [
            "tls-only",
            None,
            "refuse plain SPP connections: spps:// only (needs --tls-cert)",
        ],
        ["version", None, "print the p2pd version and exit"],
    ]
    optParameters = [
        ["public", "p", None, "publish the files in DIR (server role)", _directory],
        [
            "cache-dir",
            "c",
            "~/.p2pd_cache",
            "keep fetched blocks and the digest index in DIR",
        ],
        [
            "disk-cache",
            "C",
            None,
            "keep at most SIZE bytes of fetched blocks and their metadata on "
            "disk, evicting the least valuable (default: 10% of the cache "
            "directory's free space at start-up, from 1M to 50G)",
            _diskCache,
        ],
        [
            "memory-cache",
            "M",
            DEFAULT_MEMORY_CACHE,
            "keep at most SIZE bytes of cached blocks in memory for serving "
            "them (0: none)",
            lambda value: _size("--memory-cache", value),
        ],
        [
            "block-size",
            "b",
            DEFAULT_BLOCK_SIZE,
            "block size for published files: a power of two from 16K to 4M",
            _blockSize,
        ],
        [
            "digest",
            "m",
            "sha256",
            "block digest algorithm: sha256, sha384, sha512, blake2b, ... "
            "(md5 and sha1 only with --allow-weak-digest)",
            _digest,
        ],
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
        [
            "tls-cert",
            None,
            None,
            "PEM certificate (then its intermediates) for this node's name: "
            "its files become spps:// and https:// URLs; reloaded on SIGHUP",
            lambda value: _readable("--tls-cert", value),
        ],
        [
            "tls-key",
            None,
            None,
            "PEM private key of --tls-cert; reloaded on SIGHUP",
            lambda value: _readable("--tls-key", value),
        ],
        [
            "tls-ca",
            None,
            None,
            "PEM file of the CAs spps:// origins' certificates must chain to "
            "(default: the system's)",
            lambda value: _readable("--tls-ca", value),
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["local-net"] = []
        self["mirror"] = []
        self["grant"] = []
        self["allow-host"] = []

    def opt_allow_host(self, value: str) -> None:
        """fetch, proxy or serve through the gateway only content whose origin is this host name or address (repeatable; default: any host)"""
        host = value.strip().lower().strip("[]")
        if not _HOST.match(host) and not _isIPv6(host):
            raise usage.UsageError(
                f"--allow-host: {value!r} is not a host name or address (no port)"
            )
        self["allow-host"].append(host)

    opt_A = opt_allow_host

    def opt_grant(self, value: str) -> None:
        """a subnet whose hosts may use this node's proxy, gateway and /.status, making it fetch for them (repeatable); the local host always may"""
        self["grant"].append(_subnet("--grant", value))

    opt_n = opt_grant

    def opt_local_net(self, value: str) -> None:
        """a subnet whose nodes count as near each other when peers are introduced (repeatable), like 10.1.0.0/16"""
        self["local-net"].append(_subnet("--local-net", value))

    opt_N = opt_local_net

    def opt_mirror(self, value: str) -> None:
        """IP:PORT of another server publishing identical files (same names, bytes and modification times), offered to clients as a source (repeatable)"""
        self["mirror"].append(_hostPort("--mirror", value))

    opt_l = opt_mirror

    def opt_version(self) -> None:
        print(f"p2pd {__version__}")
        sys.exit(0)

    def postOptions(self) -> None:
        if isinstance(self["block-size"], str):
            self["block-size"] = _blockSize(self["block-size"])
        if self["listen"] is None:
            interface = (self["interface"] or "").replace(":", r"\:")
            self["listen"] = f"tcp:{self['port']}:interface={interface}"
        if self["redirect"] and self["public"] is None:
            raise usage.UsageError("--redirect needs a published directory (-p DIR)")
        if self["no-direct"] and self["public"] is None:
            raise usage.UsageError("--no-direct needs a published directory (-p DIR)")
        if self["mirror"] and self["public"] is None:
            raise usage.UsageError("--mirror needs a published directory (-p DIR)")
        if self["digest"] in WEAK_DIGESTS and not self["allow-weak-digest"]:
            raise usage.UsageError(
                f"--digest: {self['digest']} collisions are practical, so its "
                "digests cannot vouch for a block; use sha256 (or "
                "--allow-weak-digest)"
            )
        self["listen"] = _listen(self["listen"])
        self["cache-dir"] = _cacheDirectory(self["cache-dir"])
        if isinstance(self["memory-cache"], str):
            self["memory-cache"] = _size("--memory-cache", self["memory-cache"])
        self["disk-cache-default"] = self["disk-cache"] is None
        if self["disk-cache"] is None:
            st = os.statvfs(self["cache-dir"])
            self["disk-cache"] = defaultDiskCache(st.f_bavail * st.f_frsize)
        self._checkTLS()

    def _checkTLS(self) -> None:
        """
        The certificate and key come together and match; the CA file holds
        certificates; checked now, so a bad file is one line at start.
        """
        if (self["tls-cert"] is None) != (self["tls-key"] is None):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        if self["tls-only"] and self["tls-cert"] is None:
            raise usage.UsageError("--tls-only needs --tls-cert and --tls-key")
        try:
            if self["tls-cert"] is not None:
                ServerTLS(self["tls-cert"], self["tls-key"])
            ClientTLS(self["tls-ca"])
        except TLSFileError as e:
            raise usage.UsageError(f"TLS: {e}") from None


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Compose a node from checked options.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    public = PublicDirectory(options["public"]) if options["public"] else None
    cacheDir = options["cache-dir"]
    hashing = ThreadPool(minthreads=0, maxthreads=2, name="p2pd-digests")
    try:
        _log.info(
            "disk cache: at most {size} bytes{why}; memory cache: {memory} bytes",
            size=options["disk-cache"],
            why=" (10% of free space)" if options["disk-cache-default"] else "",
            memory=options["memory-cache"],
        )
        cache = BlockCache(
            os.path.join(cacheDir, "blocks"),
            capacity=options["disk-cache"],
            memory=options["memory-cache"],
        )
        digestIndex = None
        if public is not None:
            digestIndex = DigestIndex(
                os.path.join(cacheDir, "digests"),
                options["block-size"],
                options["digest"],
                reactor,
                hashing,
            )
    except OSError as e:
        raise SystemExit(
            f"p2pd: cannot use the cache directory {cacheDir}: "
            f"{e.strerror or e} ({e.filename})"
        ) from None
    tracker = Tracker(
        options["local-net"],
        [Peer(host, port, True) for host, port in options["mirror"]],
    )
    bindHost = _bindHost(options["listen"])
    clientTLS = ClientTLS(options["tls-ca"])
    node = Node(
        reactor,
        lambda node: TCPConnector(reactor, node, bindHost, clientTLS),
        cache,
        public,
        digestIndex,
        tracker,
        hashing=hashing,
    )
    access = Access(resolverFor(reactor), options["grant"], options["allow-host"])
    root = NodeRoot(
        public,
        redirect=options["redirect"],
        direct=not options["no-direct"],
        node=node,
        access=access,
        secure=options["tls-cert"] is not None,
    )
    proxy = ProxyConfig(node, reactor, access)
    site = NodeSite(root, verbose=options["debug"], reactor=reactor, proxy=proxy)
    spp = SPPFactory(node, reactor, initiator=False)
    service = MultiService()
    # First: started before the rest, stopped after it.
    CacheControlService(cacheDir, node, reactor).setServiceParent(service)
    serverTLS = _serverTLS(options["tls-cert"], options["tls-key"], cacheDir)
    if options["tls-cert"] is not None:
        ReloadOnHangup(serverTLS, reactor).setServiceParent(service)
    shared = SharedPortFactory(
        site,
        {codec.MAGIC[:1]: spp},
        clock=reactor,
        tls=TLSMemoryBIOFactory(serverTLS, False, site),
        tlsOnly=options["tls-only"],
    )
    NodeService(node, hashing, digestIndex, reactor, cache).setServiceParent(service)
    listener = ListenerService(
        serverFromString(reactor, options["listen"]), shared, options["listen"], node
    )
    listener.setServiceParent(service)
    return service


def _serverTLS(certFile: str | None, keyFile: str | None, cacheDir: str) -> ServerTLS:
    """
    The certificate the node serves: the operator's, or else its own (for
    its peers' encryption), made in C{cacheDir} on first start.
    """
    try:
        if certFile is not None and keyFile is not None:
            return ServerTLS(certFile, keyFile)
        path = nodeCertificate(cacheDir)
        return ServerTLS(path, path)
    except (TLSFileError, OSError) as e:
        raise SystemExit(f"p2pd: cannot use the node's TLS certificate: {e}") from None


def _bindHost(endpoint: str) -> str | None:
    """
    The address outgoing SPP connections should come from: the one the node
    listens on, when it listens on one.
    """
    match = re.search(r"interface=([^:]+(?:\\:[^:]*)*)", endpoint)
    if match is None:
        return None
    host = match.group(1).replace("\\:", ":")
    return None if host in ("", "0.0.0.0", "::") else host
