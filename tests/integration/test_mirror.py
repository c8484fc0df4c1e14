"""
Mirrors between real nodes: an origin on 127.0.0.1 names a mirror on
127.0.0.2 (C{-l 127.0.0.2:PORT}) that publishes a copy of its files with the
same bytes and modification times, and C{p2pd fetch} clients take blocks
from both.
"""

import os
import shutil
import sys
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import clients
from tests.integration.test_fetch import nodeStatus
from tests.nodes import Nodes, nodeEnvironment

SIZE = 8 * 1024 * 1024 + 4321
NAME = "film.bin"


class MirrorTests(TestCase):
    """
    An origin and its mirror, each a real C{twistd p2pd} process.
    """

    timeout = 180

    def setUp(self) -> None:
        self.nodes = Nodes(self)
        self.base = os.path.abspath(self.mktemp())
        self.originDir = os.path.join(self.base, "origin")
        self.mirrorDir = os.path.join(self.base, "mirror")
        os.makedirs(os.path.join(self.originDir, "sub"))
        os.makedirs(os.path.join(self.mirrorDir, "sub"))
        self.content = os.urandom(SIZE)
        for name in (NAME, f"sub/{NAME}"):
            with open(os.path.join(self.originDir, name), "wb") as f:
                f.write(self.content)
            shutil.copy2(
                os.path.join(self.originDir, name), os.path.join(self.mirrorDir, name)
            )

    @defer.inlineCallbacks
    def startPair(self) -> Any:
        """
        Start the mirror (to learn its port), then the origin naming it.
        """
        mirror = yield self.nodes.start(
            "-p", self.mirrorDir, "-c", os.path.join(self.base, "mirror-cache"),
            address="127.0.0.2", name="mirror",
        )  # fmt: skip
        origin = yield self.nodes.start(
            "-p", self.originDir, "-c", os.path.join(self.base, "origin-cache"),
            "-l", mirror.authority,
            address="127.0.0.1", name="origin",
        )  # fmt: skip
        return origin, mirror

    def fetch(self, url: str, output: str, *args: str) -> Any:
        """
        Run C{p2pd fetch} from 127.0.0.3 with a cache of its own.
        """
        return clients.run(
            [
                sys.executable, "-m", "p2pd", "fetch", "-q", "-i", "127.0.0.3",
                "-c", os.path.join(self.base, "cache-" + os.path.basename(output)),
                "-o", output, *args, url,
            ],
            env=nodeEnvironment(home=self.base),
            timeout=120,
        )  # fmt: skip

    @defer.inlineCallbacks
    def test_mirrorServes(self) -> Any:
        """
        A client fetching from the origin gets the file byte for byte, and
        the mirror served part of it.
        """
        origin, mirror = yield self.startPair()
        output = os.path.join(self.base, "copy.bin")
        result = yield self.fetch(origin.sppURLFor(NAME), output)
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the copy differs")
        served = (yield nodeStatus(mirror))["served"]
        self.assertGreater(served["bytes"], 0, f"{served}\n{mirror.log}")
        self.assertEqual(list(served["bytesByFile"]), [NAME])
        fromOrigin = (yield nodeStatus(origin))["served"]["bytes"]
        self.assertGreaterEqual(served["bytes"] + fromOrigin, SIZE)
        for node in (origin, mirror):
            self.assertNotIn("Traceback", node.log)

    @defer.inlineCallbacks
    def test_mirrorServesSubdirectory(self) -> Any:
        """
        The mirror finds files in subdirectories under the origin's path.
        """
        origin, mirror = yield self.startPair()
        output = os.path.join(self.base, "sub.bin")
        result = yield self.fetch(origin.sppURLFor(f"sub/{NAME}"), output)
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the copy differs")
        served = (yield nodeStatus(mirror))["served"]
        self.assertEqual(list(served["bytesByFile"]), [f"sub/{NAME}"])

    @defer.inlineCallbacks
    def test_differentCopyNotUsed(self) -> Any:
        """
        A mirror whose copy differs (another modification time, so another
        version) serves nothing, and the client still gets the origin's file.
        """
        path = os.path.join(self.mirrorDir, NAME)
        os.utime(path, ns=(0, os.stat(path).st_mtime_ns + 10**9))
        origin, mirror = yield self.startPair()
        output = os.path.join(self.base, "copy.bin")
        result = yield self.fetch(origin.sppURLFor(NAME), output)
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the copy differs")
        served = (yield nodeStatus(mirror))["served"]
        self.assertEqual(served["bytes"], 0)
