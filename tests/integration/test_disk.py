"""
A real node whose cache is on a full tmpfs: the disk's refusals as
L{tests.unit.test_disk} makes them, from a real kernel.
"""

import json
import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SkipTest, TestCase

from tests import clients
from tests.fakes import makeFile
from tests.nodes import Nodes


class FullTmpfsTests(TestCase):
    """
    A real viewer node whose cache is on a 2 MiB tmpfs plays a 10 MB file
    through its gateway (root only: it mounts the tmpfs).
    """

    timeout = 180

    @defer.inlineCallbacks
    def setUp(self) -> Any:  # type: ignore[override]
        if os.geteuid() != 0:
            raise SkipTest("mounting a tmpfs needs root")
        clients.require("curl")
        self.nodes = Nodes(self)
        self.public = os.path.abspath(self.mktemp())
        self.content = makeFile(self.public, "movie.ts", 10 * 1000 * 1000)
        self.small = os.path.abspath(self.mktemp())
        os.makedirs(self.small)
        mounted = yield clients.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", self.small]
        )
        if mounted.code != 0:
            raise SkipTest(f"cannot mount a tmpfs: {mounted.text}")
        self.addCleanup(clients.run, ["umount", "-l", self.small])

    @defer.inlineCallbacks
    def test_playBiggerThanTheDisk(self) -> Any:
        """
        The player gets every byte, the origin sends about one copy, and
        the viewer's log has one line about the disk and no traceback.
        """
        origin = yield self.nodes.start(
            "-p", self.public, "-c", os.path.abspath(self.mktemp())
        )
        # A limit larger than the disk: the disk is what refuses.
        viewer = yield self.nodes.start("-c", self.small, "-C", "100M")
        output = os.path.abspath(self.mktemp())
        url = f"http://{viewer.authority}/.spp/{origin.authority}/movie.ts"
        result = yield clients.run(
            ["curl", "-sS", "--fail", "--limit-rate", "4M", "-o", output, url],
            timeout=120,
        )
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the bytes differ")
        status = yield clients.run(
            ["curl", "-sS", "--fail", f"http://{origin.authority}/.status"]
        )
        served = json.loads(status.stdout)["served"]["bytesByFile"]["movie.ts"]
        # One copy; a block more at most, should one lag and be asked of
        # the origin again.
        self.assertLessEqual(served, len(self.content) + 256 * 1024)
        self.assertEqual(viewer.log.count("cannot store in the cache"), 1)
        self.assertNotIn("Traceback", viewer.log)
