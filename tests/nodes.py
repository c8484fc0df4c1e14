# -*- test-case-name: tests.integration.test_http -*-
"""
Real p2pd nodes for integration tests: C{twistd -n --pidfile= p2pd ...} in
child processes, as an operator runs them.

A L{Node} is one such process. It listens on port 0 of its own loopback
address (127.0.0.1, 127.0.0.2, ...), so nodes never compete for a port and
no test picks a port by binding and closing it; the node's log line
C{serving HTTP and SPP on HOST:PORT} tells the test where it is. Its log
(standard output and error) is kept, a test can wait for any log line, and
stopping it sends SIGTERM and waits until the process has exited.

L{Nodes} is the set of nodes of one test: it hands out the addresses, stops
every node in the test's cleanup and keeps their logs in the test's
temporary directory.

The child runs the checkout's code (C{PYTHONPATH} is the checkout root), with
the interpreter running the tests.
"""

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests import CHECKOUT, clients

# The line a node logs once it listens (p2pd.services.ListenerService).
ANNOUNCE = re.compile(r"serving HTTP and SPP on (?P<host>\S+):(?P<port>\d+)\s*$")

# Seconds a node may take to start, and to exit after SIGTERM before it is
# killed.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def twistdCommand() -> list[str]:
    """
    The command that runs twistd with the interpreter running the tests.
    """
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if not os.path.isfile(script):
        found = shutil.which("twistd")
        if found is None:
            return [
                sys.executable,
                "-c",
                "import sys; from twisted.scripts.twistd import run;"
                " sys.argv[0] = 'twistd'; run()",
            ]
        script = found
    return [sys.executable, script]


def nodeEnvironment(home: str | None = None, **overrides: str) -> dict[str, str]:
    """
    The environment of a node: this process's without proxy variables, the
    checkout on C{PYTHONPATH}, unbuffered output, C{HOME} if given, then
    C{overrides}.
    """
    env = clients.environment(PYTHONPATH=CHECKOUT, PYTHONUNBUFFERED="1")
    if home is not None:
        env["HOME"] = home
    env.update(overrides)
    return env


def startScript(
    testCase: SynchronousTestCase, script: str, args: Sequence[str]
) -> "subprocess.Popen[bytes]":
    """
    Start the Python C{script} (a test's crash or eviction writer) with
    C{args}, its standard input and output as pipes, the checkout on
    C{PYTHONPATH}; the test's cleanup kills it if it still runs.
    """
    process = subprocess.Popen(
        [sys.executable, script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=nodeEnvironment(),
    )

    def cleanUp() -> None:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdin is not None and process.stdout is not None
        process.stdin.close()
        process.stdout.close()

    testCase.addCleanup(cleanUp)
    return process


def runTwistd(
    args: Sequence[str],
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    reactor: Any = None,
) -> "Deferred[clients.Result]":
    """
    Run C{twistd -n --pidfile= ARGS} to completion: for command lines that
    must fail. C{args} starts with the subcommand (C{p2pd}).
    """
    return clients.run(
        twistdCommand() + ["-n", "--pidfile="] + list(args),
        env=nodeEnvironment() if env is None else env,
        path=cwd,
        timeout=timeout,
        reactor=reactor,
    )


class NodeExited(Exception):
    """
    The node's process ended while a test was waiting for it (to start, or
    for a log line).
    """

    def __init__(self, node: "Node", code: int | None, signal: int | None) -> None:
        super().__init__(node, code, signal)
        self.node = node
        self.code = code
        self.signal = signal

    def __str__(self) -> str:
        how = f"signal {self.signal}" if self.signal is not None else self.code
        return f"{self.node.name} exited ({how}); its log:\n{self.node.log}"


class NodeTimeout(Exception):
    """
    A node did not write an awaited log line in time.
    """


class _Watcher:
    """
    Waits for C{count} lines matching C{regex}.
    """

    def __init__(self, regex: "re.Pattern[str]", count: int) -> None:
        self.regex = regex
        self.count = count
        self.matches: list[re.Match[str]] = []
        self.done: Deferred[list[re.Match[str]]] = Deferred()

    def feed(self, line: str) -> bool:
        """
        Look at one line; True once C{count} lines have matched.
        """
        match = self.regex.search(line)
        if match is not None:
            self.matches.append(match)
        return len(self.matches) >= self.count


class _NodeProtocol(ProcessProtocol):
    """
    Collects a node's output line by line and tells waiters about lines and
    the end of the process.
    """

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.partial = {1: b"", 2: b""}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffered = self.partial.get(childFD, b"") + data
        *complete, self.partial[childFD] = buffered.split(b"\n")
        for line in complete:
            self.node._lineReceived(line.decode("utf-8", "replace").rstrip("\r"))

    def processEnded(self, reason: Failure) -> None:
        for childFD, rest in self.partial.items():
            if rest:
                self.node._lineReceived(rest.decode("utf-8", "replace"))
            self.partial[childFD] = b""
        code: int | None = None
        signal: int | None = None
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode  # type: ignore[union-attr]
            signal = reason.value.signal  # type: ignore[union-attr]
        self.node._ended(code, signal)


class Node:
    """
    One p2pd node in a child process.

    @ivar args: the arguments after C{twistd -n --pidfile=}, starting with
        C{p2pd}.
    @ivar address: the loopback address it listens on.
    @ivar host: the address its log line names, once started.
    @ivar port: the port it listens on, once started.
    @ivar lines: every line it has written so far (standard output and
        error, in arrival order).
    @ivar code: its exit status once it has exited (None if a signal ended
        it); C{signal}: the signal that ended it.
    """

    def __init__(
        self,
        args: Sequence[str],
        address: str = "127.0.0.1",
        cwd: str | None = None,
        home: str | None = None,
        env: Mapping[str, str] | None = None,
        listen: bool = True,
        name: str | None = None,
        reactor: Any = None,
    ) -> None:
        """
        @param args: p2pd's options, e.g. C{["-p", directory, "--redirect"]}.
        @param address: the loopback address to listen on.
        @param cwd: the working directory (default: the test's).
        @param home: C{HOME} for the node (default: inherited).
        @param env: extra environment variables.
        @param listen: add C{--listen tcp:0:interface=ADDRESS}; pass False
            when C{args} chooses the port itself.
        @param name: for messages and the log file (default: the address).
        """
        self.reactor = clients._reactor(reactor)
        self.address = address
        self.args = ["p2pd"] + list(args)
        if listen:
            self.args += ["--listen", f"tcp:0:interface={address}"]
        self.cwd = cwd
        self.env = nodeEnvironment(home, **dict(env or {}))
        self.name = name or f"node {address}"
        self.host: str | None = None
        self.port: int | None = None
        self.lines: list[str] = []
        self.code: int | None = None
        self.signal: int | None = None
        self.exited = False
        self._transport: Any = None
        self._watchers: list[_Watcher] = []
        self._exitWaiters: list[Deferred[None]] = []

    # Starting and stopping

    def start(self, timeout: float = START_TIMEOUT) -> "Deferred[Node]":
        """
        Start the process and wait for its C{serving HTTP and SPP} line.

        @return: fires with this node once it listens; fails with
            L{NodeExited} if the process ends first, or times out.
        """
        assert self._transport is None, "a node starts once"
        argv = twistdCommand() + ["-n", "--pidfile="] + self.args
        self._transport = self.reactor.spawnProcess(
            _NodeProtocol(self), argv[0], argv, env=self.env, path=self.cwd
        )
        self._transport.closeStdin()

        def announced(match: re.Match[str]) -> "Node":
            self.host = match.group("host")
            self.port = int(match.group("port"))
            return self

        return self.waitForLine(ANNOUNCE, timeout).addCallback(announced)

    @property
    def running(self) -> bool:
        return self._transport is not None and not self.exited

    @property
    def pid(self) -> int:
        """
        The process id, once started.
        """
        assert self._transport is not None, "not started"
        return int(self._transport.pid)

    def stop(self, timeout: float = STOP_TIMEOUT) -> "Deferred[None]":
        """
        Send SIGTERM and wait until the process has exited; SIGKILL it if it
        is still there after C{timeout} seconds.
        """
        if not self.running:
            return succeed(None)
        ended = self.whenExited()
        self._signal("TERM")
        kill = self.reactor.callLater(timeout, self._signal, "KILL")

        def cancel(result: None) -> None:
            if kill.active():
                kill.cancel()
            return result

        return ended.addBoth(cancel)

    def _signal(self, name: str) -> None:
        try:
            self._transport.signalProcess(name)
        except (ProcessExitedAlready, ProcessLookupError):
            pass

    def whenExited(self) -> "Deferred[None]":
        """
        Fires once the process has exited.
        """
        if self.exited:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._exitWaiters.append(d)
        return d

    # Output

    @property
    def log(self) -> str:
        """
        Everything the node has written so far.
        """
        return "\n".join(self.lines)

    def waitForLine(
        self, pattern: "str | re.Pattern[str]", timeout: float = 30.0
    ) -> "Deferred[re.Match[str]]":
        """
        Wait for a log line matching C{pattern} (searched, not anchored);
        lines already written count.

        @return: fires with the match; fails with L{NodeExited} if the
            process ends first, or with L{NodeTimeout}.
        """
        return self.waitForLines(pattern, 1, timeout).addCallback(lambda m: m[0])

    def waitForLines(
        self, pattern: "str | re.Pattern[str]", count: int, timeout: float = 30.0
    ) -> "Deferred[list[re.Match[str]]]":
        """
        Wait until C{count} log lines match C{pattern}; lines already
        written count.

        @return: fires with the first C{count} matches; fails as
            L{waitForLine} does.
        """
        watcher = _Watcher(
            re.compile(pattern) if isinstance(pattern, str) else pattern, count
        )
        for line in self.lines:
            if watcher.feed(line):
                return succeed(watcher.matches)
        if self.exited:
            return fail(NodeExited(self, self.code, self.signal))
        self._watchers.append(watcher)

        def timedOut(result: Any, timeout: float) -> Any:
            if watcher in self._watchers:
                self._watchers.remove(watcher)
            raise NodeTimeout(
                f"{self.name}: {len(watcher.matches)} of {count} lines matching "
                f"{watcher.regex.pattern!r} after {timeout} s; its log:\n{self.log}"
            )

        return watcher.done.addTimeout(timeout, self.reactor, onTimeoutCancel=timedOut)

    def _lineReceived(self, line: str) -> None:
        self.lines.append(line)
        for watcher in list(self._watchers):
            if watcher.feed(line):
                self._watchers.remove(watcher)
                watcher.done.callback(watcher.matches)

    def _ended(self, code: int | None, signal: int | None) -> None:
        self.exited = True
        self.code = code
        self.signal = signal
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.done.errback(NodeExited(self, code, signal))
        waiters, self._exitWaiters = self._exitWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Addresses

    @property
    def authority(self) -> str:
        """
        C{host:port} of the running node.
        """
        assert self.port is not None, f"{self.name} has not started"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """
        The node's base URL, C{http://host:port}, without a trailing slash.
        """
        return f"http://{self.authority}"

    def urlFor(self, name: str) -> str:
        """
        The HTTP URL of published file C{name}.
        """
        return f"{self.url}/{quote(name)}"

    def sppURLFor(self, name: str) -> str:
        """
        The C{spp://} URL of published file C{name}.
        """
        return f"spp://{self.authority}/{quote(name)}"


def _namesCacheDirectory(args: Sequence[str]) -> bool:
    """
    Whether p2pd options C{args} choose the cache directory.
    """
    return any(
        arg in ("-c", "--cache-dir") or arg.startswith("--cache-dir=") for arg in args
    )


class Nodes:
    """
    The nodes of one test. Each gets the next loopback address (127.0.0.1,
    127.0.0.2, ...); all are stopped, and their exit awaited, in the test's
    cleanup, after which their logs are in the test's temporary directory.
    """

    def __init__(self, testCase: TestCase, reactor: Any = None) -> None:
        self.testCase = testCase
        self.reactor = reactor
        self.nodes: list[Node] = []
        self.logDirectory = os.path.abspath(testCase.mktemp())
        testCase.addCleanup(self.stopAll)

    def nextAddress(self) -> str:
        return f"127.0.0.{len(self.nodes) + 1}"

    def add(self, *args: str, **kwargs: Any) -> Node:
        """
        A node, not yet started, for p2pd options C{args}; keyword arguments
        as for L{Node} (the address defaults to the next free one). Without
        a cache directory in C{args} or a C{home}, it gets one of its own in
        the test's temporary directory: a node locks its cache directory,
        so nodes cannot share the default one.
        """
        kwargs.setdefault("address", self.nextAddress())
        kwargs.setdefault("reactor", self.reactor)
        if "home" not in kwargs and not _namesCacheDirectory(args):
            args += ("-c", os.path.abspath(self.testCase.mktemp()))
        node = Node(args, **kwargs)
        self.nodes.append(node)
        return node

    def start(self, *args: str, **kwargs: Any) -> "Deferred[Node]":
        """
        Start a node with p2pd options C{args} (see L{add}).

        @return: fires with the L{Node} once it listens.
        """
        return self.add(*args, **kwargs).start()

    def stopAll(self) -> "Deferred[None]":
        """
        Stop every node, wait for all to exit, and write their logs.
        """

        def saveLogs(result: Any) -> Any:
            os.makedirs(self.logDirectory, exist_ok=True)
            for number, node in enumerate(self.nodes, 1):
                path = os.path.join(self.logDirectory, f"node{number}.log")
                with open(path, "w", encoding="utf-8") as f:
                    f.write(f"# {node.name}: twistd -n --pidfile= ")
                    f.write(" ".join(node.args) + "\n" + node.log + "\n")
            return result

        stops = [node.stop() for node in self.nodes]
        return gatherResults(stops, consumeErrors=True).addBoth(saveLogs)
