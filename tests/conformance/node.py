# -*- test-case-name: tests.conformance.test_handshake -*-
"""
The p2pd nodes the conformance tests talk to: real C{twistd p2pd}
processes on loopback, started once per test process (the first test that
needs one starts it; about half a second) and stopped when the test
process exits, or killed by the kernel if it dies first.

The tests use blocking sockets and no reactor, so a node is started with
C{subprocess} and read until it logs the port it listens on.
"""

import atexit
import ctypes
import hashlib
import itertools
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tests import CHECKOUT
from tests.certs import selfSigned
from tests.conformance import wire
from tests.conformance.wire import PATIENCE, Connection

ANNOUNCE = re.compile(r"serving HTTP and SPP on (\S+):(\d+)\s*$")
BLOCK_SIZE = 16 * 1024
# The published files of the origin: name -> content.
FILES = {
    "clip.ts": hashlib.sha256(b"clip").digest() * (2 * BLOCK_SIZE // 32 + 100),
    "one.ts": b"x" * 1000,
    "empty.ts": b"",
    "films/caf\u00e9.ts": b"caf\xc3\xa9" * 300,
    ".hidden.ts": b"hidden",
}
OUTSIDE = "outside.ts"  # a file beside the published directory, linked from it


def _dieWithParent() -> None:
    """
    In the child: be sent SIGTERM when the test process ends, however it
    ends, so no node outlives its tests.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Node:
    """
    One running node.

    @ivar host: the address it listens on.
    @ivar port: the port it serves HTTP and SPP on.
    @ivar public: its published directory, if it publishes one.
    """

    def __init__(self, host: str, publish: bool, tlsOnly: bool = False) -> None:
        # In trial's working directory, which the next run clears, should
        # this process die before removing it.
        self.base = os.path.abspath(tempfile.mkdtemp(prefix="node-", dir="."))
        self.host = host
        self.public = os.path.join(self.base, "public") if publish else None
        args = ["-c", os.path.join(self.base, "cache")]
        if self.public is not None:
            self._publish(self.public)
            args += ["-p", self.public, "-b", str(BLOCK_SIZE)]
        if tlsOnly:
            issued = selfSigned(os.path.join(self.base, "tls"), host)
            args += [*issued.options, "--tls-only"]
        args += ["--listen", f"tcp:0:interface={host}"]
        self.log = open(os.path.join(self.base, "log"), "w+b")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from twisted.scripts.twistd import run;"
                " sys.argv[0] = 'twistd'; run()",
                "-n",
                "--pidfile=",
                "p2pd",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": CHECKOUT, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_dieWithParent,
        )
        self.port = self._listening()

    def _publish(self, public: str) -> None:
        for name, content in FILES.items():
            path = os.path.join(public, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(content)
        with open(os.path.join(self.base, OUTSIDE), "wb") as f:
            f.write(b"secret")
        os.symlink(os.path.join(self.base, OUTSIDE), os.path.join(public, OUTSIDE))

    def _listening(self) -> int:
        """
        Read the node's output until it says where it listens.
        """
        assert self.process.stdout is not None
        deadline = time.monotonic() + 3 * PATIENCE
        output = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(self.process.stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
            for line in output.decode("utf-8", "replace").splitlines():
                match = ANNOUNCE.search(line)
                if match is not None:
                    self._drain()
                    return int(match.group(2))
        self.stop()
        raise RuntimeError(
            f"the node did not start:\n{output.decode('utf-8', 'replace')}"
        )

    def _drain(self) -> None:
        """
        Keep reading the node's output into its log file, so it never
        blocks on a full pipe.
        """
        stdout = self.process.stdout
        assert stdout is not None

        def copy() -> None:
            while chunk := os.read(stdout.fileno(), 65536):
                self.log.write(chunk)

        threading.Thread(target=copy, daemon=True).start()

    def version(self, name: str) -> str:
        """
        The version stamp docs/protocol.md says a published file has.
        """
        assert self.public is not None
        st = os.stat(os.path.join(self.public, name))
        return f"{st.st_size:x}-{st.st_mtime_ns:x}"

    def url(self, name: str, scheme: str = "spp") -> str:
        return f"{scheme}://{self.host}:{self.port}/{name}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


_nodes: dict[str, Node] = {}


def origin() -> Node:
    """
    The node publishing L{FILES}, on 127.0.0.1.
    """
    return _started("origin", "127.0.0.1", True)


def client() -> Node:
    """
    A node that publishes nothing: a viewer's, on 127.0.0.2.
    """
    return _started("client", "127.0.0.2", False)


def tlsOnly() -> Node:
    """
    A node publishing L{FILES} that refuses plain SPP (C{--tls-only}),
    on 127.0.0.3.
    """
    return _started("tls-only", "127.0.0.3", True, True)


def _started(role: str, host: str, publish: bool, tlsOnly: bool = False) -> Node:
    if role not in _nodes:
        _nodes[role] = Node(host, publish, tlsOnly)
    return _nodes[role]


_addresses = itertools.count(1)


def freshAddress() -> str:
    """
    A loopback address no connection of this process has come from yet:
    what a node remembers of an address (connections it counts, peers it
    lists) while it notices earlier connections closing cannot reach a
    test run again.
    """
    n = next(_addresses)
    return f"127.0.{100 + n // 250}.{1 + n % 250}"


@atexit.register
def _stopAll() -> None:
    for node in _nodes.values():
        node.stop()
        shutil.rmtree(node.base, ignore_errors=True)


def connect(source: str | None = None, port: int = 0) -> Connection:
    """
    A connection to the origin, its handshake done, from the address
    C{source} if given; its Hello names the listen port C{port}.
    """
    node = origin()
    connection = Connection.dial(node.host, node.port, source)
    connection.handshake(port=port)
    return connection


def openFile(
    connection: Connection, name: str, request: int = 1
) -> tuple[int, int, int, int, str, str]:
    """
    Open the origin's published file C{name}; its Opened's fields.
    """
    connection.send(wire.open_(request, origin().url(name)))
    [answer] = connection.answers(1)
    return answer.opened()
