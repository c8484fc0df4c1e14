"""
SPP between real nodes: an origin and client nodes, each a real
C{twistd p2pd} process on its own loopback address with its own cache,
fetching through the gateway with curl.
"""

import json
import os

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import clients
from tests.fakes import makeFile
from tests.nodes import Nodes

SIZE = 20 * 1000 * 1000


class SwarmTests(TestCase):
    timeout = 240

    def setUp(self):
        clients.require("curl")
        self.nodes = Nodes(self)
        self.public = os.path.abspath(self.mktemp())
        self.content = makeFile(self.public, "big.bin", SIZE)

    def startOrigin(self):
        cache = os.path.abspath(self.mktemp())
        return self.nodes.start("-p", self.public, "-c", cache)

    def startClient(self, cache=None):
        cache = cache or os.path.abspath(self.mktemp())
        return self.nodes.start("-c", cache)

    @defer.inlineCallbacks
    def fetch(self, client, origin, name="big.bin", extra=()):
        """
        curl the file through C{client}'s gateway; the bytes it got.
        """
        output = os.path.abspath(self.mktemp())
        url = f"http://{client.authority}/.spp/{origin.authority}/{name}"
        result = yield clients.run(
            ["curl", "-sS", "--fail", "-o", output, *extra, url], timeout=120
        )
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            return f.read()

    @defer.inlineCallbacks
    def status(self, node):
        result = yield clients.run(
            ["curl", "-sS", "--fail", f"http://{node.authority}/.status"]
        )
        self.assertEqual(result.code, 0, result.describe())
        return json.loads(result.stdout)

    @defer.inlineCallbacks
    def test_fiveClientsShareTheLoad(self):
        """
        Five client nodes fetch the same 20 MB file at staggered times (one,
        then two together, then two more): every copy is byte-identical and
        the origin's own counters show it sent well under five copies.
        """
        origin = yield self.startOrigin()
        clientNodes = []
        for _ in range(5):
            clientNodes.append((yield self.startClient()))
        first = yield self.fetch(clientNodes[0], origin)
        self.assertEqual(first, self.content)
        for group in (clientNodes[1:3], clientNodes[3:5]):
            copies = yield defer.gatherResults([self.fetch(c, origin) for c in group])
            for copy in copies:
                self.assertEqual(copy, self.content)
        served = (yield self.status(origin))["served"]["bytesByFile"]["big.bin"]
        self.assertLess(served, 2.5 * SIZE, f"origin sent {served / SIZE:.2f} copies")
        fromPeers = 0
        for client in clientNodes[1:]:
            state = yield self.status(client)
            for download in state["downloads"]:
                for source, count in download["bytesBySource"].items():
                    if not source.startswith(f"{origin.host}:"):
                        fromPeers += count
        self.assertGreater(fromPeers, SIZE)

    @defer.inlineCallbacks
    def test_resumeAfterKill(self):
        """
        A client killed (SIGKILL) after fetching part of a file starts again
        with its cache: it reports the verified blocks it holds, fetches only
        the rest, and the result is byte-identical.
        """
        origin = yield self.startOrigin()
        cache = os.path.abspath(self.mktemp())
        client = yield self.startClient(cache)
        part = yield self.fetch(client, origin, extra=["-r", "0-4999999"])
        self.assertEqual(part, self.content[:5000000])
        exited = client.whenExited()
        client._signal("KILL")
        yield exited
        before = (yield self.status(origin))["served"]["bytes"]
        again = self.nodes.add("-c", cache, address=client.address)
        yield again.start()
        whole = yield self.fetch(again, origin)
        self.assertEqual(whole, self.content)
        yield again.waitForLine(r"[1-9][0-9]* of [0-9]+ blocks cached")
        after = (yield self.status(origin))["served"]["bytes"]
        self.assertLessEqual(after - before, SIZE - 4000000)
