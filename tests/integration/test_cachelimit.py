"""
Tests for the disk cache's limit (C{-C}, L{p2pd.store.limit}) with real
processes: a C{twistd p2pd} viewer with a 2 MiB cache playing a 10 MB file
through its proxy, and caches killed (SIGKILL) while they evict, by
L{tests.evictwriter}, then served by a node.
"""

import os
import signal
import subprocess

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from tests import clients, evictwriter
from tests.fakes import makeFile
from tests.nodes import Node, Nodes, startScript
from tests.unit.test_cachelimit import onDisk

SIZE = 10 * 1000 * 1000
BLOCK = 64 * 1024
LIMIT = 2 * 1024 * 1024
# What a node logs once its cache is within its limit, before it serves.
STARTED = r"disk cache .*: [0-9]+ bytes in [0-9]+ files?, limit"


class CacheLimitTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        clients.require("curl")
        self.nodes = Nodes(self)
        self.public = os.path.abspath(self.mktemp())
        self.content = makeFile(self.public, "big.bin", SIZE)
        self.cacheDir = os.path.abspath(self.mktemp())
        self.blocks = os.path.join(self.cacheDir, "blocks")

    @defer.inlineCallbacks
    def startOrigin(self):
        origin = yield self.nodes.start(
            "-p", self.public, "-b", "64K", "-c", os.path.abspath(self.mktemp())
        )
        return origin

    @defer.inlineCallbacks
    def play(self, viewer: Node, origin: Node):
        """
        Fetch the file through C{viewer}'s proxy, as a player does: every
        byte as published, and the viewer's cache within its limit after.
        """
        output = os.path.abspath(self.mktemp())
        result = yield clients.run(
            [
                "curl",
                "-sS",
                "--fail",
                "-o",
                output,
                "-x",
                f"http://{viewer.authority}",
                origin.urlFor("big.bin"),
            ],
            timeout=120,
        )
        self.assertEqual(result.code, 0, result.describe())
        with open(output, "rb") as f:
            self.assertTrue(f.read() == self.content, "the bytes played differ")

    @defer.inlineCallbacks
    def kill(self, node):
        exited = node.whenExited()
        os.kill(node.pid, signal.SIGKILL)
        yield exited

    def writer(self, url: str, mode: str) -> "subprocess.Popen[bytes]":
        """
        Start L{evictwriter} on the viewer's cache, for the origin's C{url}.
        """
        path = os.path.join(self.public, "big.bin")
        return startScript(
            self,
            evictwriter.__file__,
            [self.blocks, str(LIMIT), url, path, str(BLOCK), mode],
        )

    def killWriter(
        self, process: "subprocess.Popen[bytes]", line: bytes, count: int
    ) -> None:
        """
        Kill C{process} once it has printed C{line} C{count} times.
        """
        assert process.stdout is not None
        for _ in range(count):
            self.assertEqual(process.stdout.readline(), line + b"\n")
        process.send_signal(signal.SIGKILL)
        self.assertEqual(process.wait(), -signal.SIGKILL)
        self.assertLessEqual(onDisk(self.blocks), LIMIT)

    @defer.inlineCallbacks
    def test_playWithinTheLimit(self):
        """
        A viewer with C{-C 2M} plays a 10 MB file through its proxy, byte
        for byte, its cache never above 2 MiB; killed, and restarted with a
        lower limit, it is within that one before it serves, and plays the
        file again.
        """
        origin = yield self.startOrigin()
        viewer = yield self.nodes.start("-c", self.cacheDir, "-C", "2M")
        yield self.play(viewer, origin)
        self.assertLessEqual(onDisk(self.blocks), LIMIT)
        self.assertNotEqual(os.listdir(self.blocks), [])
        yield self.kill(viewer)
        again = self.nodes.add("-c", self.cacheDir, "-C", "1M", address=viewer.address)
        yield again.start()
        yield again.waitForLine(STARTED)
        self.assertLessEqual(onDisk(self.blocks), 1024 * 1024)
        yield self.play(again, origin)
        self.assertLessEqual(onDisk(self.blocks), 1024 * 1024)

    @defer.inlineCallbacks
    def test_killedWhileEvicting(self):
        """
        A cache killed again and again while it evicts (at whatever point a
        store has reached, and between journaling an eviction and freeing
        its bytes) stays within its limit; a node started on it is within
        its limit before it serves, and plays the file byte for byte.
        """
        origin = yield self.startOrigin()
        url = origin.sppURLFor("big.bin")
        for count in (7, 40, 3, 150, 91):
            self.killWriter(self.writer(url, "run"), b"stored", count)
        self.killWriter(self.writer(url, "between"), b"journaled", 1)
        viewer = yield self.nodes.start("-c", self.cacheDir, "-C", "2M")
        yield viewer.waitForLine(STARTED)
        self.assertLessEqual(onDisk(self.blocks), LIMIT)
        yield self.play(viewer, origin)
        self.assertLessEqual(onDisk(self.blocks), LIMIT)
