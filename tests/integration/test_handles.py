"""
Many distinct files from one origin through one viewer, as a player of HLS
segments or of a playlist of clips fetches them: the viewer gives back the
handles it no longer needs, so the origin's limit on open files per
connection never reaches a player.
"""

import hashlib
import os
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from p2pd.spp.answering import MAX_OPEN_FILES
from tests import clients
from tests.nodes import Nodes

FILES = 500
SIZE = 3000


class ManyFilesTests(TestCase):
    """
    A real origin publishing L{FILES} small files, a real viewer, and curl
    fetching each once through the viewer's gateway.
    """

    timeout = 300

    def setUp(self) -> None:
        clients.require("curl")
        self.nodes = Nodes(self)
        self.public = os.path.abspath(self.mktemp())
        os.makedirs(self.public)
        self.digests = {}
        for i in range(FILES):
            name = f"segment{i:03d}.ts"
            data = hashlib.sha256(name.encode()).digest() * (SIZE // 32 + 1)
            with open(os.path.join(self.public, name), "wb") as f:
                f.write(data[:SIZE])
            self.digests[name] = hashlib.sha256(data[:SIZE]).hexdigest()

    @defer.inlineCallbacks
    def test_fiveHundredFiles(self) -> Any:
        """
        Each of 500 distinct files, fetched one after the other (more than
        L{MAX_OPEN_FILES} within a second), arrives whole and right.
        """
        self.assertGreater(FILES, 4 * MAX_OPEN_FILES)
        origin = yield self.nodes.start(
            "-p", self.public, "-c", os.path.abspath(self.mktemp())
        )
        viewer = yield self.nodes.start("-c", os.path.abspath(self.mktemp()))
        output = os.path.abspath(self.mktemp())
        os.makedirs(output)
        names = sorted(self.digests)
        argv = ["curl", "-sS", "-w", "%{http_code}\\n"]
        for name in names:
            url = f"http://{viewer.authority}/.spp/{origin.authority}/{name}"
            argv += ["-o", os.path.join(output, name), url]
        result = yield clients.run(argv, timeout=240)
        codes = result.stdout.split()
        self.assertEqual(codes, ["200"] * FILES, result.describe())
        for name in names:
            with open(os.path.join(output, name), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), self.digests[name])
        self.assertNotIn("BUSY", viewer.log)
