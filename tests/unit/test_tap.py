"""
Tests for L{p2pd.tap}: the command line, the services it composes, and the
twistd plugin that exposes them.
"""

import gc
import io
import os
import sys
from typing import Any

from twisted.application.service import IService, IServiceMaker, MultiService
from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from twisted.web.server import Site

from p2pd import __version__, services, tap
from p2pd.listener import SharedPortFactory
from p2pd.store.cache import BlockCache
from p2pd.web.root import NodeRoot
from tests.unit.test_cachelimit import allDigests, blockData, fileMeta, onDisk


class _IsolatedHomeMixin:
    """
    Points C{HOME} at a temporary directory, so nothing the options default
    to under the home directory touches the real one.
    """

    def isolateHome(self: SynchronousTestCase) -> None:  # type: ignore[misc]
        home = os.path.abspath(self.mktemp())
        os.mkdir(home)
        old = os.environ.get("HOME")
        os.environ["HOME"] = home

        def restore() -> None:
            if old is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = old

        self.addCleanup(restore)


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(_IsolatedHomeMixin, SynchronousTestCase):
    """
    L{tap.Options} checks the command line and fills in defaults.
    """

    def setUp(self) -> None:
        self.isolateHome()
        self.pub = os.path.abspath(self.mktemp())
        os.mkdir(self.pub)

    def assertUsageError(self, argv: list[str], *words: str) -> str:
        """
        The command line is refused with one line naming C{words}.
        """
        exc = self.assertRaises(usage.UsageError, parse, *argv)
        message = str(exc)
        self.assertNotIn("\n", message)
        self.assertNotIn("Traceback", message)
        for word in words:
            self.assertIn(word, message)
        return message

    def test_defaults(self) -> None:
        """
        With no options, the node listens on port 1111 on every IPv4
        address, publishes nothing and serves files directly.
        """
        options = parse()
        self.assertEqual(options["port"], 1111)
        self.assertEqual(options["interface"], "")
        self.assertEqual(options["listen"], "tcp:1111:interface=")
        self.assertIsNone(options["public"])
        self.assertFalse(options["redirect"])
        self.assertFalse(options["no-direct"])
        self.assertFalse(options["debug"])

    def test_cacheSizes(self) -> None:
        """
        C{-C} and C{-M} (C{--disk-cache}, C{--memory-cache}) take sizes.
        """
        options = parse("-C", "2M", "--memory-cache", "512K")
        self.assertEqual((options["disk-cache"], options["memory-cache"]), (2 << 20, 512 << 10))
        options = parse("--disk-cache", "10G", "-M", "0")
        self.assertEqual((options["disk-cache"], options["memory-cache"]), (10 << 30, 0))

    def test_defaultCacheSizes(self) -> None:
        """
        By default the disk cache is a tenth of the cache directory's free
        space, from 1M to 50G, and the memory cache 64M.
        """
        self.assertEqual(
            [tap.defaultDiskCache(free) for free in (0, 100 << 20, 1 << 40)],
            [1 << 20, 10 << 20, 50 << 30],
        )
        options = parse()
        self.assertTrue(1 << 20 <= options["disk-cache"] <= 50 << 30)
        self.assertTrue(options["disk-cache-default"])
        self.assertEqual(options["memory-cache"], 64 << 20)
        self.assertFalse(parse("-C", "1G")["disk-cache-default"])

    def test_badCacheSizes(self) -> None:
        """
        A size that is not one, or a disk cache under 1M, is refused.
        """
        self.assertUsageError(["-C", "lots"], "--disk-cache", "lots")
        self.assertUsageError(["-C", "1023K"], "--disk-cache", "1M")
        self.assertUsageError(["-M", "-1"], "--memory-cache")

    def test_longNames(self) -> None:
        """
        Every option has a long name.
        """
        options = parse(
            "--public",
            self.pub,
            "--redirect",
            "--no-direct",
            "--port",
            "2222",
            "--interface",
            "127.0.0.1",
            "--debug",
        )
        self.assertEqual(options["public"], self.pub)
        self.assertTrue(options["redirect"])
        self.assertTrue(options["no-direct"])
        self.assertEqual(options["port"], 2222)
        self.assertEqual(options["interface"], "127.0.0.1")
        self.assertTrue(options["debug"])

    def test_shortNames(self) -> None:
        """
        The original short letters mean what the long names mean.
        """
        options = parse("-p", self.pub, "-T", "-P", "2222", "-i", "127.0.0.1", "-d")
        self.assertEqual(options["public"], self.pub)
        self.assertTrue(options["redirect"])
        self.assertEqual(options["port"], 2222)
        self.assertEqual(options["interface"], "127.0.0.1")
        self.assertTrue(options["debug"])

    def test_equalsForm(self) -> None:
        """
        C{--name=value} works like C{--name value}.
        """
        self.assertEqual(parse("--port=3333")["port"], 3333)

    def test_publicMadeAbsolute(self) -> None:
        """
        A relative published directory is stored as an absolute path, so a
        daemon that changes directory still finds it.
        """
        relative = os.path.relpath(self.pub)
        self.assertEqual(parse("-p", relative)["public"], self.pub)

    def test_portLimits(self) -> None:
        """
        Ports 0 (any free port) to 65535 are accepted.
        """
        self.assertEqual(parse("-P", "0")["port"], 0)
        self.assertEqual(parse("-P", "65535")["port"], 65535)

    def test_portNotANumber(self) -> None:
        """
        A port that is not a number is refused with one line naming it.
        """
        self.assertUsageError(["--port", "abc"], "--port", "'abc'", "not a port")
        self.assertUsageError(["-P", ""], "--port")
        self.assertUsageError(["-P", "1.5"], "--port", "1.5")

    def test_portOutOfRange(self) -> None:
        """
        A port outside 0-65535 is refused with one line naming it.
        """
        self.assertUsageError(["--port=-1"], "--port", "-1", "out of range")
        self.assertUsageError(["-P", "70000"], "--port", "70000", "out of range")

    def test_missingDirectory(self) -> None:
        """
        A published directory that does not exist is refused.
        """
        missing = os.path.join(self.pub, "missing")
        self.assertUsageError(["-p", missing], "--public", missing, "does not exist")

    def test_fileAsDirectory(self) -> None:
        """
        A file given as the published directory is refused.
        """
        path = os.path.join(self.pub, "movie.mp4")
        with open(path, "wb"):
            pass
        self.assertUsageError(["-p", path], "--public", path, "not a directory")

    def test_unreadableDirectory(self) -> None:
        """
        A published directory the daemon cannot read is refused.
        """
        if os.getuid() == 0:
            raise self.skipTest("root can read every directory")
        os.chmod(self.pub, 0)
        self.addCleanup(os.chmod, self.pub, 0o755)
        self.assertUsageError(["-p", self.pub], "--public", "not readable")

    def test_redirectNeedsPublic(self) -> None:
        """
        C{--redirect} without a published directory is refused.
        """
        self.assertUsageError(["--redirect"], "--redirect", "-p")
        self.assertUsageError(["-T"], "--redirect")

    def test_noDirectNeedsPublic(self) -> None:
        """
        C{--no-direct} without a published directory is refused.
        """
        self.assertUsageError(["--no-direct"], "--no-direct")

    def test_listenFromPortAndInterface(self) -> None:
        """
        The default endpoint is built from C{--port} and C{--interface}.
        """
        options = parse("-P", "2222", "-i", "127.0.0.1")
        self.assertEqual(options["listen"], "tcp:2222:interface=127.0.0.1")

    def test_listenIPv6Interface(self) -> None:
        """
        Colons of an IPv6 interface are escaped in the endpoint string.
        """
        self.assertEqual(parse("-i", "::")["listen"], r"tcp:1111:interface=\:\:")
        self.assertEqual(
            parse("-i", "2001:db8::1", "-P", "80")["listen"],
            r"tcp:80:interface=2001\:db8\:\:1",
        )

    def test_listenGiven(self) -> None:
        """
        An explicit C{--listen} endpoint is used as given.
        """
        endpoint = "tcp6:2190:interface=\\:\\:1:backlog=10"
        self.assertEqual(parse("--listen", endpoint, "-P", "2222")["listen"], endpoint)

    def test_listenNotAnEndpoint(self) -> None:
        """
        A C{--listen} that names no endpoint type, has a misspelled or extra
        argument, a value of the wrong type, or a socket systemd did not
        pass, is refused with one line, without listening.
        """
        for endpoint, words in [
            ("garbage:foo", "Unknown endpoint type"),
            ("tcp:2190:interface=127.0.0.1:extra=1", "extra"),
            ("tcp:0:interface=127.0.0.1:backlog=x", "invalid literal"),
            ("tcp:notaport", "invalid literal"),
            ("systemd:domain=INET:index=7", "did not inherit"),
        ]:
            self.assertUsageError(["--listen", endpoint], "--listen", endpoint, words)

    def test_cacheDirUnderFile(self) -> None:
        """
        C{-c} under a regular file, or naming one, is refused with one line.
        """
        plain = os.path.abspath(self.mktemp())
        with open(plain, "w"):
            pass
        self.assertUsageError(["-c", plain], "--cache-dir", "is not a directory")
        self.assertUsageError(
            ["-c", os.path.join(plain, "cache")], "--cache-dir", "cannot create"
        )

    def test_cacheDirCreated(self) -> None:
        """
        A missing cache directory is created, parents and all.
        """
        cache = os.path.join(os.path.abspath(self.mktemp()), "a", "b")
        self.assertEqual(parse("-c", cache)["cache-dir"], cache)
        self.assertTrue(os.path.isdir(cache))

    def test_cacheDirUnwritable(self) -> None:
        """
        A cache directory the node may not write in is refused.
        """
        if os.geteuid() == 0:
            raise SkipTest("root writes anywhere")
        cache = os.path.abspath(self.mktemp())
        os.mkdir(cache, 0o500)
        self.assertUsageError(["-c", cache], "--cache-dir", "is not writable")
        self.assertUsageError(
            ["-c", os.path.join(cache, "sub")], "--cache-dir", "cannot create"
        )

    def test_weakDigestRefused(self) -> None:
        """
        C{-m md5} and C{-m sha1} are refused, saying why, unless
        C{--allow-weak-digest} is given.
        """
        for name in ("md5", "sha1", "SHA1"):
            self.assertUsageError(
                ["-m", name], "--digest", "collisions are practical",
                "--allow-weak-digest",
            )
            self.assertEqual(
                parse("-m", name, "--allow-weak-digest")["digest"], name.lower()
            )

    def test_digestNotGuaranteed(self) -> None:
        """
        A digest outside C{hashlib.algorithms_guaranteed}, or of variable
        length (shake), is refused.
        """
        for name in ("sm3", "ripemd160", "shake_128", "shake_256", "nope"):
            self.assertUsageError(["-m", name], "--digest", "fixed-size")

    def test_strongDigests(self) -> None:
        """
        The strong fixed-size digests are accepted.
        """
        for name in ("sha256", "sha384", "sha512", "blake2b", "sha3_256"):
            self.assertEqual(parse("-m", name)["digest"], name)

    def test_allowHostNotAHost(self) -> None:
        """
        C{-A} takes a host name or address without a port.
        """
        for value in ("", "host:1111", "a b", "http://x/"):
            self.assertUsageError(["-A", value], "--allow-host")
        self.assertEqual(
            parse("-A", "Origin.Example", "-A", "[::1]")["allow-host"],
            ["origin.example", "::1"],
        )

    def test_version(self) -> None:
        """
        C{--version} prints the version and exits successfully.
        """
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        exc = self.assertRaises(SystemExit, parse, "--version")
        self.assertIn(exc.code, (0, None))
        self.assertEqual(out.getvalue(), f"p2pd {__version__}\n")

    def test_unknownOption(self) -> None:
        """
        An unknown option is refused.
        """
        self.assertRaises(usage.UsageError, parse, "--no-such-option")

    def test_helpMentionsOptions(self) -> None:
        """
        The help text names every option this module documents.
        """
        text = str(tap.Options())
        for name in ["--public", "--redirect", "--no-direct", "--port", "--listen"]:
            self.assertIn(name, text)


def _nodeServers(reactor: MemoryReactorClock) -> list[Any]:
    """
    The TCP ports the node listens on, without its control listener's.
    """
    return [s for s in reactor.tcpServers if isinstance(s[1], SharedPortFactory)]


def _listeners(service: MultiService) -> list[services.ListenerService]:
    return [child for child in service if isinstance(child, services.ListenerService)]


class MakeServiceTests(_IsolatedHomeMixin, SynchronousTestCase):
    """
    L{tap.makeService} composes the node from checked options.
    """

    def setUp(self) -> None:
        self.isolateHome()
        self.pub = os.path.abspath(self.mktemp())
        os.mkdir(self.pub)
        self.reactor = MemoryReactorClock()

    def start(self, *argv: str) -> MultiService:
        service = tap.makeService(parse(*argv), reactor=self.reactor)
        self.assertIsInstance(service, MultiService)
        self.assertTrue(IService.providedBy(service))
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return service  # type: ignore[return-value]

    def test_listens(self) -> None:
        """
        The service listens on the given port and interface with a shared
        port whose default protocol is the node's web site.
        """
        self.start("-p", self.pub, "-P", "2222", "-i", "127.0.0.1", "-T")
        [(port, factory, backlog, interface)] = _nodeServers(self.reactor)
        self.assertEqual((port, interface), (2222, "127.0.0.1"))
        self.assertIsInstance(factory, SharedPortFactory)
        self.assertIsInstance(factory.default, Site)
        root = factory.default.resource
        self.assertIsInstance(root, NodeRoot)
        self.assertTrue(root.redirect)
        self.assertTrue(root.direct)
        self.assertIsNotNone(root.public)
        self.assertEqual(root.public.root, os.path.realpath(self.pub))

    def fillCache(self, directory: str, blocks: int) -> str:
        """
        A cache directory holding one file of C{blocks} blocks; its
        C{blocks} directory.
        """
        root = os.path.join(directory, "blocks")
        cached = BlockCache(root).open(fileMeta("film", blocks))
        cached.setDigests(0, allDigests(cached.meta))
        for index in range(blocks):
            cached.write(index, blockData(cached.meta, index))
        cached.close()
        return root

    def test_cacheWithinItsLimitOnStart(self) -> None:
        """
        A node started on a cache over its C{-C} evicts down to it before it
        serves; one that cannot lock the cache (another node runs on it)
        changes nothing in it.
        """
        directory = os.path.abspath(self.mktemp())
        root = self.fillCache(directory, 200)
        self.assertGreater(onDisk(root), 2 << 20)
        self.start("-c", directory, "-C", "2M")
        held = onDisk(root)
        self.assertLessEqual(held, 2 << 20)
        other = tap.makeService(parse("-c", directory, "-C", "1M"), self.reactor)
        self.assertRaises(SystemExit, other.privilegedStartService)
        self.assertEqual(onDisk(root), held)

    def test_listensIPv6(self) -> None:
        """
        An IPv6 interface reaches the reactor unescaped.
        """
        self.start("-P", "2222", "-i", "::1")
        [(port, factory, backlog, interface)] = _nodeServers(self.reactor)
        self.assertEqual((port, interface), (2222, "::1"))

    def test_listenEndpoint(self) -> None:
        """
        C{--listen} chooses the endpoint.
        """
        self.start("--listen", "tcp:0:interface=127.0.0.2")
        [(port, factory, backlog, interface)] = _nodeServers(self.reactor)
        self.assertEqual((port, interface), (0, "127.0.0.2"))

    def test_noPublic(self) -> None:
        """
        Without C{-p}, the node publishes nothing.
        """
        self.start("-P", "2222")
        [(port, factory, backlog, interface)] = _nodeServers(self.reactor)
        self.assertIsNone(factory.default.resource.public)

    def test_noDirect(self) -> None:
        """
        C{--no-direct} turns direct serving off in the root.
        """
        self.start("-p", self.pub, "--no-direct")
        [(port, factory, backlog, interface)] = _nodeServers(self.reactor)
        self.assertFalse(factory.default.resource.direct)

    def test_announced(self) -> None:
        """
        Once listening, the node logs its version and address.
        """
        with capturedLogs() as events:
            self.start("-P", "2222", "-i", "::1")
        [event] = [e for e in events if "version" in e and "port" in e]
        self.assertEqual(
            (event["version"], event["host"], event["port"]), (__version__, "::1", 2222)
        )

    def test_heapSettledOnceRunning(self) -> None:
        """
        Once the reactor runs, what start-up made is frozen out of the
        garbage collector's sweeps.
        """
        self.start("-P", "2222")
        hooks = [hook for hook, _, _ in self.reactor.whenRunningHooks]
        self.assertIn(services.settleHeap, hooks)
        self.addCleanup(gc.unfreeze)
        services.settleHeap()
        self.assertGreater(gc.get_freeze_count(), 0)

    def test_stops(self) -> None:
        """
        Stopping the service stops listening.
        """
        service = tap.makeService(parse("-P", "2222"), reactor=self.reactor)
        service.privilegedStartService()
        service.startService()
        [listener] = _listeners(service)  # type: ignore[arg-type]
        stopped: list[bool] = []

        def patchPort(port: object) -> object:
            self.patch(port, "stopListening", lambda: stopped.append(True))
            return port

        listener._waitingForPort.addCallback(patchPort)  # type: ignore[union-attr]
        self.successResultOf(maybeDeferred(service.stopService))
        self.assertEqual(stopped, [True])
        self.assertFalse(service.running)


class _FailingEndpoint:
    """
    A server endpoint whose port is taken.
    """

    def __init__(self, socketError: object) -> None:
        self.socketError = socketError

    def listen(self, factory: object) -> Deferred[object]:
        return fail(CannotListenError("127.0.0.1", 1111, self.socketError))


class _RaisingEndpoint:
    """
    A server endpoint whose C{listen} raises C{error} (as a UNIX socket's
    lock file or a port past 65535 do).
    """

    def __init__(self, error: Exception) -> None:
        self.error = error

    def listen(self, factory: object) -> Deferred[object]:
        raise self.error


class ListenerServiceTests(_IsolatedHomeMixin, SynchronousTestCase):
    """
    L{services.ListenerService} ends start-up with one clear line when it cannot
    listen.
    """

    def listener(self, socketError: object) -> services.ListenerService:
        self.isolateHome()
        service = tap.makeService(
            parse("--listen", "tcp:1111:interface=127.0.0.1"),
            reactor=MemoryReactorClock(),
        )
        [listener] = _listeners(service)  # type: ignore[arg-type]
        listener.endpoint = _FailingEndpoint(socketError)
        return listener

    def test_cannotListen(self) -> None:
        """
        A port in use ends start-up with C{SystemExit} carrying one line
        that names the endpoint and the reason.
        """
        listener = self.listener(OSError(98, "Address already in use"))
        exc = self.assertRaises(SystemExit, listener.privilegedStartService)
        self.assertEqual(
            exc.code,
            "p2pd: cannot listen on tcp:1111:interface=127.0.0.1: "
            "Address already in use",
        )

    def test_cannotListenPlainReason(self) -> None:
        """
        A reason without an OS error message is shown as it is.
        """
        listener = self.listener("no permission")
        exc = self.assertRaises(SystemExit, listener.privilegedStartService)
        self.assertIsInstance(exc.code, str)
        self.assertTrue(str(exc.code).endswith(": no permission"))
        self.assertNotIn("\n", str(exc.code))


    def test_listenRaises(self) -> None:
        """
        An endpoint that raises an OS error or an overflow rather than
        failing also ends start-up with one line.
        """
        for error, reason in [
            (NotADirectoryError(20, "Not a directory"), "Not a directory"),
            (OverflowError("bind(): port must be 0-65535."), "port must be"),
        ]:
            listener = self.listener("unused")
            listener.endpoint = _RaisingEndpoint(error)
            exc = self.assertRaises(SystemExit, listener.privilegedStartService)
            self.assertIn(reason, str(exc.code))
            self.assertTrue(str(exc.code).startswith("p2pd: cannot listen on "))
            self.assertNotIn("\n", str(exc.code))


class CacheDirectoryServiceTests(_IsolatedHomeMixin, SynchronousTestCase):
    """
    L{tap.makeService} ends start-up with one line when the cache
    directory's contents are in the way.
    """

    def test_blocksIsAFile(self) -> None:
        """
        A regular file where the blocks directory belongs.
        """
        self.isolateHome()
        cache = os.path.abspath(self.mktemp())
        os.mkdir(cache)
        with open(os.path.join(cache, "blocks"), "w"):
            pass
        options = parse("-c", cache)
        exc = self.assertRaises(
            SystemExit, tap.makeService, options, MemoryReactorClock()
        )
        self.assertIn("cannot use the cache directory", str(exc.code))
        self.assertIn("blocks", str(exc.code))
        self.assertNotIn("\n", str(exc.code))


class PluginTests(SynchronousTestCase):
    """
    twistd finds the C{p2pd} subcommand.
    """

    def test_found(self) -> None:
        """
        The p2pd plugin is an L{IServiceMaker} named C{p2pd} whose options
        and services are this module's.
        """
        [plugin] = [p for p in getPlugins(IServiceMaker) if p.tapname == "p2pd"]
        self.assertTrue(plugin.description)
        self.assertIs(plugin.options, tap.Options)
        self.assertIs(plugin.makeService, tap.makeService)
