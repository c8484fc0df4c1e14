"""
C{p2pd cache} as an operator runs it (C{python -m p2pd cache ...} in a
child process) on the cache of a real C{twistd p2pd} viewer node, while the
node runs on it: listing a file being fetched, removing one the node holds,
and finding a block corrupted on disk.

Exit codes (L{p2pd.cachecommand}): 0 done, 1 bad usage, 2 not a cache,
3 not cached, 4 bad blocks dropped, 5 cannot change the cache now.
"""

import hashlib
import json
import os
import sys
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import clients
from tests.fakes import makeFile
from tests.integration.test_fetch import nodeStatus
from tests.nodes import Nodes, nodeEnvironment, runTwistd

NAME = "movie.ts"
SIZE = 32 * 1024 * 1024 + 123  # 129 blocks of 256 KiB, the last one short
BLOCK = 256 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CacheCommandTests(TestCase):
    """
    An origin publishing one file, and a viewer node whose cache the tests
    look at and change with C{p2pd cache}.
    """

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        clients.require("curl")
        self.nodes = Nodes(self)
        self.base = os.path.abspath(self.mktemp())
        self.public = os.path.join(self.base, "public")
        self.content = makeFile(self.public, NAME, SIZE)
        self.cacheDir = os.path.join(self.base, "viewer-cache")
        self.origin = yield self.nodes.start(
            "-p", self.public, "-c", os.path.join(self.base, "origin-cache")
        )
        self.viewer = yield self.nodes.start("-c", self.cacheDir)
        self.url = self.origin.sppURLFor(NAME)

    def command(self, *args: str) -> "defer.Deferred[clients.Result]":
        """
        Run C{python -m p2pd cache -c VIEWER-CACHE ARGS}.
        """
        return clients.run(
            [sys.executable, "-m", "p2pd", "cache", "-c", self.cacheDir, *args],
            env=nodeEnvironment(),
            timeout=60,
        )

    @defer.inlineCallbacks
    def listed(self) -> Any:
        """
        The versions C{p2pd cache ls --json} lists.
        """
        result = yield self.command("ls", "--json")
        self.assertEqual((result.code, result.err), (0, b""), result.describe())
        return json.loads(result.out)["versions"]

    def play(self, *curlArgs: str) -> "defer.Deferred[clients.Result]":
        """
        Fetch the file through the viewer's gateway with curl.
        """
        url = f"{self.viewer.url}/.spp/{self.origin.authority}/{NAME}"
        return clients.run(["curl", "-sS", "--fail", *curlArgs, url], timeout=120)

    def dataFile(self) -> str:
        """
        The viewer's cached bytes of the file.
        """
        [version] = os.listdir(os.path.join(self.cacheDir, "blocks", _hex(self.url)))
        return os.path.join(self.cacheDir, "blocks", _hex(self.url), version, "data")

    @defer.inlineCallbacks
    def test_lsDuringDownload(self) -> Any:
        """
        C{ls} reads the cache while the node writes to it, for a player
        that takes the file at 4 MB/s: it answers each time, with at most
        the blocks of the file; once the player is done, every block.
        """
        playing = self.play("--limit-rate", "4M", "-o", os.devnull)
        yield self.viewer.waitForLine(f"{self.url}: version .* blocks cached")
        for _ in range(3):
            result = yield self.command("ls", "--json")
            self.assertEqual(result.code, 0, result.describe())
            self.assertNotIn("Traceback", result.text)
            found = json.loads(result.out)["versions"]
            self.assertLessEqual(len(found), 1, found)
            for version in found:
                self.assertLessEqual(version["heldBlocks"], 129)
        played = yield playing
        self.assertEqual(played.code, 0, played.describe())
        [version] = yield self.listed()
        self.assertEqual(version["heldBlocks"], 129)

    @defer.inlineCallbacks
    def test_lsPartlyFetched(self) -> Any:
        """
        While the node runs, holding the cache's lock, C{ls} lists the file
        it has partly fetched (a player asked for its start) and C{du}
        counts it; a second node on the same cache refuses to start, with
        one line naming the first.
        """
        result = yield self.play("-r", "0-99999", "-o", os.devnull)
        self.assertEqual(result.code, 0, result.describe())
        [version] = yield self.listed()
        self.assertEqual(version["url"], self.url)
        self.assertEqual((version["size"], version["blocks"]), (SIZE, 129))
        self.assertGreater(version["heldBlocks"], 0)
        self.assertLess(version["heldBlocks"], 129)
        text = yield self.command("ls")
        self.assertEqual(text.code, 0, text.describe())
        self.assertIn(self.url, text.stdout)
        self.assertTrue(text.stdout.startswith("URL "), text.describe())
        du = yield self.command("du", "--json")
        self.assertEqual(json.loads(du.out)["heldBlocks"], version["heldBlocks"])
        second = yield runTwistd(
            ["p2pd", "-c", self.cacheDir, "--listen", "tcp:0:interface=127.0.0.9"]
        )
        self.assertNotEqual(second.code, 0, second.describe())
        self.assertIn(
            f"p2pd: the cache directory {self.cacheDir} is in use by another "
            f"p2pd (pid {self.viewer.pid}); give each node its own --cache-dir",
            second.text,
        )
        self.assertNotIn("Traceback", second.text)

    @defer.inlineCallbacks
    def test_rmWhileRunning(self) -> Any:
        """
        C{rm} of a file the running node holds goes through the node: the
        file is gone from its cache and its downloads, and a peer fetching
        the file afterwards gets nothing of it from this node.
        """
        result = yield self.play("-o", os.devnull)
        self.assertEqual(result.code, 0, result.describe())
        [version] = yield self.listed()
        self.assertEqual(version["heldBlocks"], 129)
        removed = yield self.command("rm", self.url)
        self.assertEqual(removed.code, 0, removed.describe())
        self.assertEqual(removed.stdout, f"removed {self.url} (32.0 MiB)\n")
        yield self.viewer.waitForLine(f"{self.url}: removed from the cache")
        self.assertEqual((yield self.listed()), [])
        status = yield nodeStatus(self.viewer)
        self.assertEqual(status["downloads"], [])
        peer = yield self.nodes.start()
        output = os.path.join(self.base, "peer-copy")
        url = f"{peer.url}/.spp/{self.origin.authority}/{NAME}"
        fetched = yield clients.run(["curl", "-sS", "--fail", "-o", output, url])
        self.assertEqual(fetched.code, 0, fetched.describe())
        with open(output, "rb") as f:
            self.assertEqual(sha256(f.read()), sha256(self.content))
        status = yield nodeStatus(self.viewer)
        self.assertEqual(status["served"]["bytes"], 0)
        again = yield self.command("rm", self.url)
        self.assertEqual(again.code, 3, again.describe())
        self.assertIn("is not in the cache", again.stderr)

    @defer.inlineCallbacks
    def test_verifyFindsCorruption(self) -> Any:
        """
        A block corrupted on disk behind the running node is found by
        C{verify} (exit 4), dropped by the node, and fetched again: the
        player then gets the file byte for byte; a second C{verify} finds
        all good.
        """
        result = yield self.play("-o", os.devnull)
        self.assertEqual(result.code, 0, result.describe())
        with open(self.dataFile(), "r+b") as f:
            f.seek(5 * BLOCK + 100)
            f.write(bytes(b ^ 0xFF for b in self.content[5 * BLOCK + 100 :][:16]))
        verified = yield self.command("verify")
        self.assertEqual(verified.code, 4, verified.describe())
        self.assertIn(
            f"{self.url} (version {_version(self.public)}): block 5 dropped: "
            "it does not match its digest",
            verified.stdout,
        )
        self.assertIn("checked 129 blocks of 1 version: 1 bad", verified.stdout)
        [version] = yield self.listed()
        self.assertEqual(version["heldBlocks"], 128)
        output = os.path.join(self.base, "copy")
        replayed = yield self.play("-o", output)
        self.assertEqual(replayed.code, 0, replayed.describe())
        with open(output, "rb") as f:
            self.assertEqual(sha256(f.read()), sha256(self.content))
        again = yield self.command("verify")
        self.assertEqual(again.code, 0, again.describe())
        self.assertIn("all good", again.stdout)

    @defer.inlineCallbacks
    def test_fetchRefused(self) -> Any:
        """
        C{p2pd fetch} on the cache of a running node exits 5 with one line
        naming the node, and touches nothing.
        """
        result = yield self.play("-r", "0-99999", "-o", os.devnull)
        self.assertEqual(result.code, 0, result.describe())
        before = yield self.listed()
        fetched = yield clients.run(
            [
                sys.executable,
                "-m",
                "p2pd",
                "fetch",
                "-q",
                "-i",
                "127.0.0.9",
                "-c",
                self.cacheDir,
                "-o",
                os.path.join(self.base, "out"),
                self.url,
            ],
            env=nodeEnvironment(),
            timeout=60,
        )
        self.assertEqual(fetched.code, 5, fetched.describe())
        self.assertEqual(
            fetched.stderr,
            f"p2pd fetch: the cache directory {self.cacheDir} is in use by "
            f"another p2pd (pid {self.viewer.pid}); give this fetch its own "
            "-c DIR\n",
        )
        self.assertEqual((yield self.listed()), before)

    @defer.inlineCallbacks
    def test_purgeStopped(self) -> Any:
        """
        With the node stopped, C{purge} takes the lock itself and empties
        the cache; the node starts on it again afterwards.
        """
        result = yield self.play("-r", "0-99999", "-o", os.devnull)
        self.assertEqual(result.code, 0, result.describe())
        yield self.viewer.stop()
        purged = yield self.command("purge")
        self.assertEqual(purged.code, 0, purged.describe())
        self.assertTrue(purged.stdout.startswith("removed 1 file ("), purged.stdout)
        self.assertEqual((yield self.listed()), [])
        yield self.nodes.start("-c", self.cacheDir)


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _version(public: str) -> str:
    """
    The version an origin gives the published file (its size and
    modification time in nanoseconds, in hex).
    """
    st = os.stat(os.path.join(public, NAME))
    return f"{st.st_size:x}-{st.st_mtime_ns:x}"
