# -*- test-case-name: tests.integration.test_fetch -*-
"""
C{p2pd fetch URL}: download one file over SPP, with a progress bar.

The fetching process is a node like any other while it runs: it listens for
peers, so several fetches of one file trade blocks instead of each taking a
full copy from the origin. Like any node, it holds the lock of its cache
directory (L{p2pd.store.cachelock}) while it runs.

Exit codes: 0 done; 1 bad usage; 2 the origin cannot be reached (unknown
host, refused, timeout); 3 the origin refuses (not found, forbidden); 4 the
download failed (every source gone, digests failing, the file changed);
5 the output or the cache directory cannot be written (or another p2pd
uses the cache directory).
"""

import getopt
import os
import sys
from typing import Any, BinaryIO, TextIO

from twisted.internet import defer, error, task
from twisted.internet.endpoints import serverFromString
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from p2pd import __version__
from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.sizes import parseSize
from p2pd.core.url import BadURL, parse
from p2pd.engine.download import DownloadFailed
from p2pd.engine.node import Node
from p2pd.spp.asking import ConnectionGone
from p2pd.spp.connector import TCPConnector
from p2pd.spp.protocol import SPPFactory
from p2pd.spp.tls import ClientTLS, TLSFileError
from p2pd.store.cache import BlockCache
from p2pd.store.cachelock import CacheBusy, CacheLock

EXIT_OK, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_REFUSED, EXIT_FAILED, EXIT_OUTPUT = range(6)


class FetchOptions(usage.Options):
    synopsis = "p2pd fetch [options] spp://HOST[:PORT]/PATH"
    longdesc = (
        "Download one file over SPP (spps://: over TLS), verified block by block."
    )
    optFlags = [
        ["quiet", "q", "no progress bar"],
        ["debug", "d", "log what the node does to stderr"],
    ]
    optParameters = [
        [
            "output",
            "o",
            None,
            "write to FILE (default: the URL's file name; - for stdout)",
        ],
        [
            "cache-dir",
            "c",
            "~/.p2pd_cache",
            "keep verified blocks in DIR (a re-run resumes)",
        ],
        ["interface", "i", "", "address to listen for peers on and connect from"],
        ["port", "P", "0", "port to listen for peers on (0: any free port)"],
        [
            "rate",
            "r",
            None,
            "read at most this many bytes per second, like a player (e.g. 20M)",
        ],
        ["linger", None, "0", "keep serving peers for SECONDS after the download"],
        [
            "tls-ca",
            None,
            None,
            "PEM file of the CAs an spps:// origin's certificate must chain to "
            "(default: the system's)",
        ],
    ]

    def opt_version(self) -> None:
        """print the p2pd version and exit"""
        print(f"p2pd {__version__}")
        sys.exit(0)

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Accept options after the URL too (C{p2pd fetch URL -o FILE}).
        """
        argv = sys.argv[1:] if options is None else options
        try:
            opts, args = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        ordered: list[str] = []
        for option, value in opts:
            takesValue = (
                option[2:] + "=" in self.longOpt
                if option.startswith("--")
                else option[1] + ":" in self.shortOpt
            )
            ordered += [option, value] if takesValue else [option]
        super().parseOptions(ordered + ["--"] + args)

    def parseArgs(self, url: str) -> None:  # type: ignore[override]
        try:
            self["url"] = parse(url)
        except BadURL as e:
            raise usage.UsageError(str(e)) from None

    def postOptions(self) -> None:
        if self["output"] is None:
            name = self["url"].segments[-1].decode("utf-8")
            if not name or name.startswith("."):
                raise usage.UsageError("give the output file with -o")
            self["output"] = name
        try:
            self["rate"] = parseSize(self["rate"]) if self["rate"] else None
            self["linger"] = float(self["linger"])
            self["port"] = int(self["port"])
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if not 0 <= self["port"] <= 65535:
            raise usage.UsageError(f"--port: {self['port']} is out of range (0-65535)")
        try:
            self["tls"] = ClientTLS(self["tls-ca"])
        except TLSFileError as e:
            raise usage.UsageError(f"--tls-ca: {e}") from None
        self["cache-dir"] = os.path.abspath(os.path.expanduser(self["cache-dir"]))


class _Progress:
    """
    A progress bar (tqdm) showing bytes, rate and sources; nothing with -q.
    """

    def __init__(self, total: int, initial: int, quiet: bool, stream: TextIO) -> None:
        self.bar: Any = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=stream,
                dynamic_ncols=True,
            )

    def update(self, count: int, sources: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{sources} sources", refresh=False)
            self.bar.update(count)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _exitCode(value: BaseException | None) -> tuple[int, str]:
    if isinstance(value, SPPError):
        if value.code in (ErrorCode.NOT_FOUND, ErrorCode.FORBIDDEN):
            return EXIT_REFUSED, f"the origin refused: {value}"
        return EXIT_FAILED, f"download failed: {value}"
    if isinstance(value, error.DNSLookupError):
        return EXIT_UNREACHABLE, "unknown host"
    if isinstance(value, error.ConnectionRefusedError):
        return EXIT_UNREACHABLE, "connection refused"
    if isinstance(value, (error.TimeoutError, error.ConnectError)):
        return EXIT_UNREACHABLE, f"cannot connect: {value}"
    if isinstance(value, ConnectionGone):
        return EXIT_UNREACHABLE, f"the origin closed the connection: {value}"
    if isinstance(value, DownloadFailed):
        return EXIT_FAILED, f"download failed: {value}"
    if isinstance(value, OSError):
        return EXIT_OUTPUT, f"cannot write the output: {value}"
    return EXIT_FAILED, f"download failed: {value}"


@defer.inlineCallbacks
def fetch(reactor: Any, options: FetchOptions, stderr: TextIO) -> Any:
    """
    Run one download; returns the exit code.
    """
    url = options["url"]
    try:
        cache = BlockCache(os.path.join(options["cache-dir"], "blocks"))
        # Held until the process ends: a node or p2pd cache meanwhile on the
        # same directory would change what this one is writing.
        lock = CacheLock.take(options["cache-dir"])
    except CacheBusy as e:
        stderr.write(
            f"p2pd fetch: the cache directory {e}; give this fetch its own -c DIR\n"
        )
        return EXIT_OUTPUT
    except OSError as e:
        stderr.write(
            f"p2pd fetch: cannot use the cache directory {options['cache-dir']}: "
            f"{e.strerror or e}\n"
        )
        return EXIT_OUTPUT
    reactor.addSystemEventTrigger("after", "shutdown", lock.release)
    bindHost = options["interface"] or None
    tls = options["tls"]
    node = Node(reactor, lambda node: TCPConnector(reactor, node, bindHost, tls), cache)
    interface = options["interface"].replace(":", r"\:")
    endpoint = serverFromString(reactor, f"tcp:{options['port']}:interface={interface}")
    try:
        port = yield endpoint.listen(SPPFactory(node, reactor, initiator=False))
    except error.CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
        where = f"{options['interface'] or '*'}:{options['port']}"
        stderr.write(f"p2pd fetch: cannot listen on {where}: {reason}\n")
        return EXIT_USAGE
    node.listenPort = port.getHost().port
    node.hashing = ThreadPool(minthreads=0, maxthreads=2, name="p2pd-hashing")
    node.hashing.start()
    # Stopped at shutdown, so a SIGTERM while lingering never leaves its
    # threads behind (the reactor may stop before the finally below runs).
    reactor.addSystemEventTrigger("during", "shutdown", node.hashing.stop)
    progress = None
    output: BinaryIO | None = None
    try:
        try:
            download = yield node.download(str(url))
        except Exception:
            code, message = _exitCode(sys.exc_info()[1])
            stderr.write(f"p2pd fetch: {url}: {message}\n")
            return code
        meta = download.meta
        held = sum(count for _, count in download.store.held())
        if held and not options["quiet"]:
            stderr.write(f"resuming: {held} of {meta.blocks} blocks already verified\n")
        try:
            if options["output"] == "-":
                output = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
                partial = None
            else:
                partial = options["output"] + ".part"
                output = open(partial, "wb")
        except OSError as e:
            stderr.write(
                f"p2pd fetch: cannot write {options['output']}: {e.strerror}\n"
            )
            return EXIT_OUTPUT
        progress = _Progress(meta.size, 0, options["quiet"], stderr)
        reader = download.read(0)
        started = reactor.seconds()
        done = 0
        try:
            while True:
                data = yield reader.read()
                if not data:
                    break
                output.write(data)
                done += len(data)
                progress.update(len(data), len(download.sources))
                if options["rate"]:
                    ahead = done / options["rate"] - (reactor.seconds() - started)
                    if ahead > 0:
                        yield task.deferLater(reactor, ahead, lambda: None)
        except Exception:
            code, message = _exitCode(sys.exc_info()[1])
            progress.close()
            stderr.write(f"p2pd fetch: {url}: {message}\n")
            return code
        finally:
            reader.close()
        output.close()
        output = None
        if partial is not None:
            os.replace(partial, options["output"])
        progress.close()
        progress = None
        if options["linger"] > 0:
            yield task.deferLater(reactor, options["linger"], lambda: None)
        return EXIT_OK
    finally:
        if progress is not None:
            progress.close()
        if output is not None:
            output.close()
        node.stop()
        # Not waited for: after a SIGTERM this generator is closed at exit,
        # where it must not yield.
        port.stopListening()


def main(argv: list[str]) -> None:
    """
    C{p2pd fetch ARGV} (L{p2pd.cli} dispatches to it).
    """
    options = FetchOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        sys.stderr.write(f"p2pd fetch: {e}\n{options.synopsis}\n")
        sys.exit(EXIT_USAGE)
    level = LogLevel.debug if options["debug"] else LogLevel.critical
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                textFileLogObserver(sys.stderr),
                [LogLevelFilterPredicate(defaultLogLevel=level)],
            )
        ],
        redirectStandardIO=False,
    )

    def run(reactor: Any) -> Any:
        d = fetch(reactor, options, sys.stderr)
        return d.addCallback(_exit)

    task.react(run)


def _exit(code: int) -> None:
    if code:
        raise SystemExit(code)
