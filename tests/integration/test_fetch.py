"""
C{p2pd fetch} as a user runs it: C{python -m p2pd fetch ...} in a child
process against a real C{twistd p2pd} origin on 127.0.0.1, checking the
file it writes, its exit status and what it tells the user.

Exit codes (L{p2pd.fetch}): 0 done, 1 bad usage, 2 unreachable, 3 refused,
4 failed, 5 output not writable.
"""

import json
import os
import sys
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SkipTest, TestCase

from tests import clients
from tests.fakes import makeFile
from tests.nodes import CHECKOUT, Nodes, nodeEnvironment

SIZE = 1536 * 1024 + 123  # seven 256 KiB blocks, the last one short
NAME = "clip.bin"

# A name under the reserved .invalid TLD (RFC 2606): never resolves.
UNKNOWN_HOST = "no-such-origin.invalid"


def readFile(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@defer.inlineCallbacks
def nodeStatus(node: Any) -> Any:
    """
    The node's C{/.status} JSON, fetched by a child Python (so no client
    connection outlives the test).
    """
    result = yield clients.run(
        [
            sys.executable,
            "-c",
            "import sys, urllib.request;"
            " sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
            f"{node.url}/.status",
        ],
        env=clients.environment(),
        timeout=30,
    )
    clients.check(result)
    return json.loads(result.stdout)


class FetchTestCase(TestCase):
    """
    Running C{p2pd fetch} against a real origin.
    """

    timeout = 120

    def setUp(self) -> None:
        self.nodes = Nodes(self)
        self.base = os.path.abspath(self.mktemp())
        self.public = os.path.join(self.base, "public")
        self.content = makeFile(self.public, NAME, SIZE)
        self.home = os.path.join(self.base, "home")
        self.work = os.path.join(self.base, "work")
        os.makedirs(self.home)
        os.makedirs(self.work)

    def startOrigin(self) -> "defer.Deferred[Any]":
        return self.nodes.start(
            "-p", self.public, "-c", os.path.join(self.base, "origin-cache")
        )

    def fetch(
        self, *args: str, cwd: str | None = None, timeout: float = 60
    ) -> "defer.Deferred[clients.Result]":
        """
        Run C{python -m p2pd fetch ARGS} with the checkout's code, from
        C{cwd} (default: a scratch directory), with its own C{HOME}.
        """
        return clients.run(
            [sys.executable, "-m", "p2pd", "fetch", *args],
            env=nodeEnvironment(home=self.home),
            path=cwd or self.work,
            timeout=timeout,
        )

    def cache(self, name: str = "cache") -> str:
        return os.path.join(self.base, name)

    def assertClean(self, result: clients.Result) -> None:
        """
        The command ended by itself and printed no Python traceback.
        """
        self.assertFalse(result.timedOut, result.describe())
        self.assertIsNone(result.signal, result.describe())
        self.assertNotIn("Traceback", result.text, result.describe())

    def assertFails(self, result: clients.Result, code: int, message: str) -> None:
        """
        The command exited with C{code}, wrote nothing on standard output,
        and said why in one line on standard error, containing C{message}.
        """
        self.assertClean(result)
        self.assertEqual(result.code, code, result.describe())
        self.assertEqual(result.out, b"", result.describe())
        lines = result.stderr.strip().splitlines()
        self.assertTrue(lines, result.describe())
        self.assertTrue(lines[0].startswith("p2pd fetch: "), result.describe())
        self.assertIn(message, lines[0], result.describe())


class SuccessTests(FetchTestCase):
    """
    Fetches that work.
    """

    @defer.inlineCallbacks
    def test_fetch(self) -> Any:
        """
        C{p2pd fetch -o FILE URL} writes the file byte for byte and exits 0;
        no partial file is left behind.
        """
        origin = yield self.startOrigin()
        output = os.path.join(self.work, "out.bin")
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(), "-o", output,
            origin.sppURLFor(NAME),
        )  # fmt: skip
        self.assertClean(result)
        self.assertEqual(result.code, 0, result.describe())
        self.assertTrue(readFile(output) == self.content, "the copy differs")
        self.assertEqual(sorted(os.listdir(self.work)), ["out.bin"])

    @defer.inlineCallbacks
    def test_optionsAfterURL(self) -> Any:
        """
        Options may follow the URL (C{p2pd fetch URL -o FILE}).
        """
        origin = yield self.startOrigin()
        output = os.path.join(self.work, "after.bin")
        result = yield self.fetch(
            origin.sppURLFor(NAME), "-o", output, "-c", self.cache(), "-q",
            "--interface", "127.0.0.1",
        )  # fmt: skip
        self.assertClean(result)
        self.assertEqual(result.code, 0, result.describe())
        self.assertTrue(readFile(output) == self.content, "the copy differs")

    @defer.inlineCallbacks
    def test_defaultOutputName(self) -> Any:
        """
        Without C{-o}, the file is written under the URL's file name (decoded)
        in the working directory.
        """
        makeFile(self.public, "my clip.bin", 1000)
        origin = yield self.startOrigin()
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(),
            origin.sppURLFor("my clip.bin"),
        )  # fmt: skip
        self.assertClean(result)
        self.assertEqual(result.code, 0, result.describe())
        self.assertEqual(
            readFile(os.path.join(self.work, "my clip.bin")),
            readFile(os.path.join(self.public, "my clip.bin")),
        )

    @defer.inlineCallbacks
    def test_stdout(self) -> Any:
        """
        C{-o -} writes the file to standard output, and only the file.
        """
        origin = yield self.startOrigin()
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(), "-o", "-",
            origin.sppURLFor(NAME),
        )  # fmt: skip
        self.assertClean(result)
        self.assertEqual(result.code, 0, result.describe())
        self.assertTrue(result.out == self.content, "standard output differs")

    @defer.inlineCallbacks
    def test_resume(self) -> Any:
        """
        A second fetch with the same cache says it is resuming with every
        block verified, and takes nothing more from the origin: the origin's
        served byte count does not change.
        """
        origin = yield self.startOrigin()
        first = os.path.join(self.work, "first.bin")
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(), "-o", first,
            origin.sppURLFor(NAME),
        )  # fmt: skip
        self.assertEqual(result.code, 0, result.describe())
        before = (yield nodeStatus(origin))["served"]["bytes"]
        self.assertGreaterEqual(before, SIZE)
        second = os.path.join(self.work, "second.bin")
        result = yield self.fetch(
            "-i", "127.0.0.1", "-c", self.cache(), "-o", second,
            origin.sppURLFor(NAME),
        )  # fmt: skip
        self.assertClean(result)
        self.assertEqual(result.code, 0, result.describe())
        self.assertIn("resuming: 7 of 7 blocks already verified", result.stderr)
        self.assertTrue(readFile(second) == self.content, "the copy differs")
        after = (yield nodeStatus(origin))["served"]["bytes"]
        self.assertEqual(after, before)


class FailureTests(FetchTestCase):
    """
    Fetches that cannot work end with the documented exit code and one
    clear line.
    """

    @defer.inlineCallbacks
    def test_unknownHost(self) -> Any:
        """
        A host name that does not resolve: exit 2, "unknown host".
        """
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(),
            f"spp://{UNKNOWN_HOST}/{NAME}",
        )  # fmt: skip
        self.assertFails(result, 2, "unknown host")
        self.assertEqual(os.listdir(self.work), [])

    @defer.inlineCallbacks
    def test_refused(self) -> Any:
        """
        An origin address nothing listens on (the port of a node that has
        stopped): exit 2, "connection refused".
        """
        origin = yield self.startOrigin()
        url = origin.sppURLFor(NAME)
        yield origin.stop()
        result = yield self.fetch("-q", "-i", "127.0.0.1", "-c", self.cache(), url)
        self.assertFails(result, 2, "connection refused")
        self.assertEqual(os.listdir(self.work), [])

    @defer.inlineCallbacks
    def test_notFound(self) -> Any:
        """
        A file the origin does not publish, or a path leaving its directory:
        exit 3, the origin refused; nothing is written.
        """
        makeFile(self.base, "secret.bin", 100)
        origin = yield self.startOrigin()
        for path in ["missing.bin", "../secret.bin", "%2e%2e/secret.bin"]:
            url = f"spp://{origin.authority}/{path}"
            result = yield self.fetch(
                "-q", "-i", "127.0.0.1", "-c", self.cache(),
                "-o", os.path.join(self.work, "out.bin"), url,
            )  # fmt: skip
            self.assertFails(result, 3, "the origin refused: NOT_FOUND")
        self.assertEqual(os.listdir(self.work), [])
        self.assertNotIn("Traceback", origin.log)

    @defer.inlineCallbacks
    def test_badURL(self) -> Any:
        """
        Something that is not an SPP URL naming a file: exit 1 with the
        usage line, before connecting anywhere.
        """
        for url in [
            f"http://127.0.0.1:1111/{NAME}",
            "spp://127.0.0.1:1111/",
            "spp://127.0.0.1:1111",
            f"spp://127.0.0.1:99999/{NAME}",
            f"spp:///{NAME}",
            NAME,
        ]:
            result = yield self.fetch("-q", "-c", self.cache(), url)
            self.assertFails(result, 1, "")
            self.assertIn("spp://HOST[:PORT]/PATH", result.stderr, result.describe())

    @defer.inlineCallbacks
    def test_usage(self) -> Any:
        """
        No URL, two URLs, or an unknown option: exit 1 with one line saying
        what is wrong.
        """
        for args in [(), ("spp://a/b", "spp://a/c"), ("--no-such-option",)]:
            result = yield self.fetch(*args)
            self.assertFails(result, 1, "")

    @defer.inlineCallbacks
    def test_badPort(self) -> Any:
        """
        A listen port out of range is a usage error (exit 1), not a
        traceback.
        """
        for port in ["65536", "-1", "http"]:
            result = yield self.fetch("-q", "-P", port, f"spp://127.0.0.1/{NAME}")
            self.assertFails(result, 1, "")

    @defer.inlineCallbacks
    def test_cannotListen(self) -> Any:
        """
        An interface address this host does not have (TEST-NET-1): exit 1,
        "cannot listen", before connecting anywhere.
        """
        result = yield self.fetch(
            "-q", "-i", "192.0.2.1", "-c", self.cache(), f"spp://127.0.0.1/{NAME}"
        )
        self.assertFails(result, 1, "cannot listen on 192.0.2.1:0")

    @defer.inlineCallbacks
    def test_cacheNotUsable(self) -> Any:
        """
        A cache directory that cannot be made (under a regular file): exit
        5, naming the directory.
        """
        makeFile(self.base, "plain", 10)
        cache = os.path.join(self.base, "plain", "cache")
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", cache, f"spp://127.0.0.1/{NAME}"
        )
        self.assertFails(result, 5, f"cannot use the cache directory {cache}")
        self.assertEqual(os.listdir(self.work), [])

    @defer.inlineCallbacks
    def test_outputDirectoryMissing(self) -> Any:
        """
        An output file in a directory that does not exist, or under a regular
        file: exit 5, the output cannot be written.
        """
        origin = yield self.startOrigin()
        makeFile(self.work, "plain", 10)
        for output in [
            os.path.join(self.base, "no-such-directory", "out.bin"),
            os.path.join(self.work, "plain", "out.bin"),
        ]:
            result = yield self.fetch(
                "-q", "-i", "127.0.0.1", "-c", self.cache(), "-o", output,
                origin.sppURLFor(NAME),
            )  # fmt: skip
            self.assertFails(result, 5, "cannot write")
        self.assertEqual(os.listdir(self.work), ["plain"])

    @defer.inlineCallbacks
    def test_outputDirectoryNotWritable(self) -> Any:
        """
        An output file in a directory the user may not write to: exit 5.
        """
        if os.geteuid() == 0:
            raise SkipTest("root may write to any directory")
        origin = yield self.startOrigin()
        locked = os.path.join(self.base, "locked")
        os.makedirs(locked)
        os.chmod(locked, 0o500)
        self.addCleanup(os.chmod, locked, 0o700)
        result = yield self.fetch(
            "-q", "-i", "127.0.0.1", "-c", self.cache(),
            "-o", os.path.join(locked, "out.bin"), origin.sppURLFor(NAME),
        )  # fmt: skip
        self.assertFails(result, 5, "cannot write")
        self.assertEqual(os.listdir(locked), [])


# The checkout's code is what runs: make sure it is importable from there.
assert os.path.isfile(os.path.join(CHECKOUT, "p2pd", "fetch.py"))
