"""
An origin that announces absurd sizes, against a real viewer node: what it
announces costs the viewer what it fetches, not what it announces, a player
gets the bytes the origin vouches for or a clear error, and the viewer goes
on serving a normal client meanwhile.
"""

import functools
from typing import Any

from twisted.internet import defer

from p2pd.core.meta import FileMeta
from p2pd.spp import codec
from tests import clients
from tests.integration.test_authority import LIAR_ADDRESS, RealSocketFixture
from tests.unit.test_authority import FORGED, ForgedFile, Liar

HUGE_BLOCK = codec.MAX_BLOCK_SIZE
HUGE_SIZE = HUGE_BLOCK * codec.MAX_BLOCKS  # 16 TiB


class HugeFile(ForgedFile):
    """
    A file of L{FORGED} bytes whose origin this is: its digests are the true
    ones of what it serves, hashed once per block length.
    """

    @property
    def authoritative(self) -> bool:
        return True

    def digests(self, first: int, count: int) -> "defer.Deferred[bytes]":
        self.liar.digestsAsked += 1
        count = min(count, self.meta.blocks - first)
        return defer.succeed(
            b"".join(
                _digest(self.meta.digestName, self.meta.blockLength(i))
                for i in range(first, first + count)
            )
        )


@functools.cache
def _digest(name: str, length: int) -> bytes:
    meta = FileMeta("spp://h:1/x", length, length, name, "v")
    return meta.digest(FORGED * length)


class AbsurdOrigin(Liar):
    """
    An origin (the viewer dials it for its own URLs) of L{HugeFile}s.
    """

    def open(self, url: str, version: str, connection: object) -> HugeFile:
        super().open(url, version, connection)
        return HugeFile(self.metas[url], self)


class AbsurdOriginTests(RealSocketFixture):
    """
    Files of 16 TiB in 4 MiB blocks with sha512, and one just past what SPP
    allows, fetched through a real viewer.
    """

    @defer.inlineCallbacks
    def startAbsurd(self, sizes: list[int]) -> Any:
        """
        An L{AbsurdOrigin} on L{LIAR_ADDRESS} publishing one file of each of
        C{sizes}: their URLs.
        """
        origin = yield self.startLiar(origin=AbsurdOrigin(listenPort=0))
        urls = []
        for i, size in enumerate(sizes):
            url = f"spp://{LIAR_ADDRESS}:{origin.listenPort}/huge{i}.ts"
            origin.learn(FileMeta(url, size, HUGE_BLOCK, "sha512", f"{size:x}-{i}"))
            urls.append(url)
        return urls

    @defer.inlineCallbacks
    def fetch(self, viewer: Any, url: str, *extra: str) -> Any:
        """
        curl C{url} through C{viewer}'s gateway: the status and the body.
        """
        path = url[len("spp://") :]
        result = yield clients.run(
            ["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}", *extra]
            + [f"http://{viewer.authority}/.spp/{path}"],
            timeout=90,
        )
        body, _, status = result.out.rpartition(b"\n")
        return int(status), body

    @defer.inlineCallbacks
    def test_hugeFiles(self) -> Any:
        """
        Four 16 TiB files: a player's first byte of each is the byte their
        origin vouches for, and meanwhile the viewer serves a normal client
        the real file whole, logging no error.
        """
        urls = yield self.startAbsurd([HUGE_SIZE] * 4)
        viewer = yield self.startViewer()
        for url in urls:
            status, body = yield self.fetch(viewer, url, "-r", "0-0")
            self.assertEqual((status, body), (206, FORGED[:1]))
        got = yield self.play(viewer)
        self.assertEqual(got, self.content)
        self.assertHealthy(viewer)

    @defer.inlineCallbacks
    def test_sizeOverTheLimit(self) -> Any:
        """
        A file one byte past what SPP allows: the player gets a 502 that
        says why, and the viewer goes on serving a normal client.
        """
        [url] = yield self.startAbsurd([HUGE_SIZE + 1])
        viewer = yield self.startViewer()
        status, body = yield self.fetch(viewer, url, "-r", "0-0")
        self.assertEqual(status, 502)
        self.assertIn(f"over {codec.MAX_BLOCKS} blocks".encode(), body)
        got = yield self.play(viewer)
        self.assertEqual(got, self.content)
        self.assertHealthy(viewer)
