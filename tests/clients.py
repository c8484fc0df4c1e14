# -*- test-case-name: tests.integration.test_http -*-
"""
Running real programs from trial tests: players, downloaders, ffmpeg.

L{run} starts a program with C{spawnProcess}, collects what it writes, and
fires with a L{Result} once the process has exited (so the reactor is clean
when the test ends). A program that outlives its timeout is sent SIGTERM,
then SIGKILL, and its result says so; it never hangs a test.

L{curl}, L{mplayer}, L{mpv}, L{vlc}, L{ffmpeg} and L{ffprobeDuration} run
one client with the headless options that work for it (see REAL_CLIENTS.md
in the project notes); they take L{run}'s keyword arguments.

Every program gets an environment without proxy variables unless a test
gives them: players honour C{http_proxy}, and some ignore C{no_proxy}
(see REAL_CLIENTS.md in the project notes), so an inherited proxy setting
would silently route a test's requests elsewhere.
"""

import os
import pwd
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import (
    ProcessDone,
    ProcessExitedAlready,
    ProcessTerminated,
)
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest

# Variables that make a client use (or skip) a proxy, in every spelling.
PROXY_VARIABLES = frozenset(
    name
    for base in ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy")
    for name in (base, base.upper())
)

# The unprivileged user VLC runs as when the tests run as root.
VLC_USER = "p2pd-test"

# Seconds between SIGTERM and SIGKILL for a program that overran.
_GRACE = 5.0


def environment(**overrides: str) -> dict[str, str]:
    """
    This process's environment without proxy variables, then C{overrides}
    (which may set a proxy variable on purpose).
    """
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env.update(overrides)
    return env


def which(name: str) -> str:
    """
    The full path of program C{name}.

    @raise SkipTest: if it is not installed.
    """
    path = shutil.which(name)
    if path is None:
        raise SkipTest(f"{name} is not installed (scripts/test installs it)")
    return path


def require(*names: str) -> None:
    """
    Skip the calling test unless every program in C{names} is installed.
    """
    for name in names:
        which(name)


@dataclass(frozen=True)
class Result:
    """
    How a program ended and what it wrote.

    @ivar code: the exit status, or None when a signal ended it.
    @ivar signal: the signal that ended it, or None.
    @ivar timedOut: whether it was stopped for running too long.
    """

    argv: tuple[str, ...]
    out: bytes
    err: bytes
    code: int | None
    signal: int | None
    timedOut: bool

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", "replace")

    @property
    def text(self) -> str:
        """
        Everything the program wrote, standard output first.
        """
        return self.stdout + self.stderr

    def lines(self) -> list[str]:
        """
        The non-empty lines of everything the program wrote; carriage
        returns (progress lines) count as line breaks.
        """
        text = self.text.replace("\r", "\n")
        return [line for line in text.split("\n") if line.strip()]

    def describe(self, tail: int = 40) -> str:
        """
        A summary for a failure message: the command, how it ended, and the
        last C{tail} lines of its output.
        """
        if self.timedOut:
            ending = "timed out"
        elif self.signal is not None:
            ending = f"killed by signal {self.signal}"
        else:
            ending = f"exit status {self.code}"
        shown = "\n".join(self.lines()[-tail:])
        return f"{' '.join(self.argv)}: {ending}\n{shown}"


class _Collector(ProcessProtocol):
    def __init__(self, argv: Sequence[str], stdin: bytes) -> None:
        self.argv = tuple(argv)
        self.stdin = stdin
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.timedOut = False
        self.ended: Deferred[Result] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        code: int | None = None
        signal: int | None = None
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode  # type: ignore[union-attr]
            signal = reason.value.signal  # type: ignore[union-attr]
        self.ended.callback(
            Result(
                self.argv,
                b"".join(self.out),
                b"".join(self.err),
                code,
                signal,
                self.timedOut,
            )
        )


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as _global

        return _global
    return reactor


def _signal(transport: Any, name: str) -> None:
    try:
        transport.signalProcess(name)
    except (ProcessExitedAlready, ProcessLookupError):
        pass  # it has just exited


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    path: str | None = None,
    timeout: float = 60.0,
    stdin: bytes = b"",
    reactor: Any = None,
) -> "Deferred[Result]":
    """
    Run C{argv} to completion.

    @param argv: the command; C{argv[0]} is looked up on C{PATH}.
    @param env: the whole environment (default: L{environment}()).
    @param path: the working directory (default: this process's).
    @param timeout: seconds before the program is stopped; the result then
        has C{timedOut} set.
    @param stdin: written to the program's standard input, which is then
        closed (players read keys from it; they see end of file).
    @return: fires with a L{Result} once the process has exited.
    @raise SkipTest: if the program is not installed.
    """
    reactor = _reactor(reactor)
    executable = which(argv[0])
    collector = _Collector(argv, stdin)
    transport = reactor.spawnProcess(
        collector,
        executable,
        list(argv),
        env=dict(environment() if env is None else env),
        path=path,
    )

    def kill() -> None:
        collector.timedOut = True
        _signal(transport, "TERM")
        pending.append(reactor.callLater(_GRACE, _signal, transport, "KILL"))

    pending = [reactor.callLater(timeout, kill)]

    def done(result: Result) -> Result:
        for call in pending:
            if call.active():
                call.cancel()
        return result

    return collector.ended.addBoth(done)


def check(result: Result) -> Result:
    """
    C{result} if its program exited with status 0.

    @raise AssertionError: otherwise, describing what the program wrote.
    """
    if result.code != 0 or result.timedOut:
        raise AssertionError(result.describe())
    return result


@inlineCallbacks
def vlcPrefix(reactor: Any = None) -> Any:
    """
    The command prefix that runs VLC as an ordinary user: VLC refuses to
    run as root. As root, this is C{runuser -u p2pd-test --}, creating that
    system user first if it does not exist; otherwise nothing.

    @return: a Deferred firing with the prefix (a list).
    @raise SkipTest: if the user is needed and cannot be created.
    """
    if os.geteuid() != 0:
        return []
    require("runuser")
    try:
        pwd.getpwnam(VLC_USER)
    except KeyError:
        require("useradd")
        result = yield run(
            ["useradd", "--system", "--create-home", VLC_USER], reactor=reactor
        )
        try:
            pwd.getpwnam(VLC_USER)
        except KeyError:
            raise SkipTest(
                f"VLC refuses root and user {VLC_USER} could not be created: "
                + result.describe()
            ) from None
    return ["runuser", "-u", VLC_USER, "--"]


# Headless command lines: no configuration, no display, no sound card.
MPLAYER = [
    *("mplayer", "-noconfig", "all", "-nolirc", "-nojoystick", "-really-quiet"),
    *("-identify", "-vo", "null", "-ao", "null"),
]
MPV = ["mpv", "--no-config", "--vo=null", "--ao=null"]
CVLC = [
    *("cvlc", "-I", "dummy", "--no-dbus", "--vout=dummy", "--aout=dummy"),
    *("--play-and-exit", "-vv"),
]
FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner"]


@dataclass(frozen=True)
class Response:
    """
    One HTTP response as C{curl -i} printed it.

    @ivar headers: the header fields, names lower-cased (the last of
        repeated fields wins).
    """

    status: int
    headers: dict[str, str]
    body: bytes


def parseResponse(raw: bytes) -> Response:
    """
    The response in the output of C{curl -i} for one request.
    """
    head, _, body = raw.partition(b"\r\n\r\n")
    statusLine, *headerLines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in headerLines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Response(int(statusLine.split()[1]), headers, body)


@inlineCallbacks
def curl(*args: str, **runArgs: Any) -> Any:
    """
    C{curl -s -i ARGS}, which must succeed.

    @return: a Deferred firing with the L{Response}.
    """
    result = yield run(["curl", "-s", "-i", *args], **runArgs)
    return parseResponse(check(result).out)


def mplayer(*args: str, **runArgs: Any) -> "Deferred[Result]":
    """
    mplayer with C{-identify}; read its values with L{identify}. It exits 0
    even when it played nothing.
    """
    return run([*MPLAYER, *args], **runArgs)


def identify(output: str) -> dict[str, str]:
    """
    The C{ID_NAME=value} lines mplayer's C{-identify} printed, by C{NAME};
    the last value wins.
    """
    return dict(re.findall(r"^ID_(\w+)=(.*?)\s*$", output, re.M))


def mpv(*args: str, **runArgs: Any) -> "Deferred[Result]":
    return run([*MPV, *args], **runArgs)


@inlineCallbacks
def vlc(*args: str, **runArgs: Any) -> Any:
    """
    cvlc with debug output (C{-vv}), as an ordinary user (see
    L{vlcPrefix}), in C{/} unless given a C{path}. It exits 0 even when it
    played nothing: look for C{Received first picture}.

    @return: a Deferred firing with the L{Result}.
    """
    require("cvlc")
    prefix = yield vlcPrefix(runArgs.get("reactor"))
    runArgs.setdefault("path", "/")
    result = yield run([*prefix, *CVLC, *args], **runArgs)
    return result


def ffmpeg(*args: str, **runArgs: Any) -> "Deferred[Result]":
    return run([*FFMPEG, *args], **runArgs)


@inlineCallbacks
def ffprobeDuration(source: str, **runArgs: Any) -> Any:
    """
    The duration in seconds ffprobe finds for C{source} (a URL or a path).

    @return: a Deferred firing with a float.
    """
    result = yield run(
        [
            *("ffprobe", "-v", "error", "-show_entries", "format=duration"),
            *("-of", "csv=p=0", source),
        ],
        **runArgs,
    )
    return float(check(result).stdout.strip())
