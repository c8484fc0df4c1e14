# -*- test-case-name: tests.conformance.test_files -*-
"""
docs/protocol.md's MUSTs about what an origin answers for its files: which
URLs and paths, which versions, digests, blocks, peers and empty files,
checked on a running node.
"""

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import node, wire
from tests.conformance.node import BLOCK_SIZE, FILES
from tests.conformance.wire import BAD_REQUEST, NOT_FOUND, Connection, Frame

CLIP = FILES["clip.ts"]
CLIP_BLOCKS = -(-len(CLIP) // BLOCK_SIZE)


def blockOf(index: int) -> bytes:
    return CLIP[index * BLOCK_SIZE : (index + 1) * BLOCK_SIZE]


class FileTests(SynchronousTestCase):
    """
    Opens, digests, blocks and peers of the origin's published files.
    """

    def connect(self, source: str | None = None, port: int = 0) -> Connection:
        connection = node.connect(source, port)
        self.addCleanup(connection.close)
        return connection

    def byRequest(self, connection: Connection, count: int) -> dict[int, Frame]:
        """
        The next C{count} answers, by request id.
        """
        return {answer.request(): answer for answer in connection.answers(count)}

    def test_spppsOverPlain(self) -> None:
        """
        [M4] An Open of an spps:// URL over a plain connection gets
        FORBIDDEN; the connection stays up.
        """
        connection = self.connect()
        connection.send(wire.open_(1, node.origin().url("clip.ts", "spps")))
        [answer] = connection.answers(1)
        self.assertEqual(answer.error()[:2], (1, wire.FORBIDDEN))
        connection.stillOpen()

    def test_insideTLS(self) -> None:
        """
        [M3] Inside TLS the node speaks SPP as over TCP, and opens an
        spps:// URL as its spp:// form.
        """
        tlsOnly = node.tlsOnly()
        connection = Connection.dialTLS(tlsOnly.host, tlsOnly.port)
        self.addCleanup(connection.close)
        self.assertEqual(connection.handshake().hello()[0], 1)
        connection.send(
            wire.open_(1, tlsOnly.url("clip.ts", "spps")),
            wire.open_(2, tlsOnly.url("clip.ts")),
            wire.getBlock(3, 1, 0),
        )
        first, second, block = connection.answers(3)
        self.assertEqual(first.opened()[:2], (1, len(CLIP)))
        self.assertEqual(second.opened()[:2], (2, len(CLIP)))
        self.assertEqual(block.data(), (3, 0, blockOf(0)))

    def test_pathAlone(self) -> None:
        """
        [M17] The origin answers for its file whatever host and port the
        URL names, authoritatively.
        """
        connection = self.connect()
        for request, url in enumerate(
            [
                node.origin().url("clip.ts"),
                "spp://elsewhere.example:9/clip.ts",
                "spp://[::1]/clip.ts",
            ],
            start=1,
        ):
            connection.send(wire.open_(request, url))
            [answer] = connection.answers(1)
            _, size, blockSize, flags, digest, _ = answer.opened()
            self.assertEqual(
                (size, blockSize, flags & 1, digest),
                (len(CLIP), BLOCK_SIZE, 1, "sha256"),
            )

    def test_versions(self) -> None:
        """
        [M18] An Open with version "" or the current version gets the
        current version; one with another version gets CHANGED.
        """
        connection = self.connect()
        url = node.origin().url("clip.ts")
        current = node.origin().version("clip.ts")
        connection.send(
            wire.open_(1, url, ""),
            wire.open_(2, url, current),
            wire.open_(3, url, "1-1"),
        )
        answers = self.byRequest(connection, 3)
        self.assertEqual(answers[1].opened()[5], current)
        self.assertEqual(answers[2].opened()[5], current)
        self.assertEqual(answers[3].error()[:2], (3, wire.CHANGED))

    def test_badURLs(self) -> None:
        """
        [M19] An Open of an invalid URL gets BAD_REQUEST, the connection
        staying up: another scheme, no host, no path, user information, a
        query or a fragment, even empty ones.
        """
        host = f"127.0.0.1:{node.origin().port}"
        urls = [
            f"http://{host}/clip.ts",
            "spp:///clip.ts",
            f"spp://{host}",
            f"spp://{host}/",
            f"spp://user@{host}/clip.ts",
            f"spp://{host}/clip.ts?x=1",
            f"spp://{host}/clip.ts?",
            f"spp://{host}/clip.ts#t=10",
            f"spp://{host}/clip.ts#",
        ]
        connection = self.connect()
        for request, url in enumerate(urls, start=1):
            connection.send(wire.open_(request, url))
            [answer] = connection.answers(1)
            self.assertEqual(answer.error()[:2], (request, BAD_REQUEST), url)
        connection.stillOpen()

    def test_unsafePaths(self) -> None:
        """
        [M20] An Open of a path the origin does not serve gets NOT_FOUND,
        the connection staying up: dot segments, empty segments, an encoded
        slash or NUL, a hidden file, a link out of the published directory,
        a directory, a missing file. A name in a directory, percent-encoded
        UTF-8, is served.
        """
        paths = [
            "films/../clip.ts",
            "./clip.ts",
            "/clip.ts",
            "films/",
            "films%2Fcaf%C3%A9.ts",
            "clip%00.ts",
            "%FF.ts",
            ".hidden.ts",
            node.OUTSIDE,
            "films",
            "missing.ts",
        ]
        connection = self.connect()
        for request, path in enumerate(paths, start=1):
            connection.send(wire.open_(request, node.origin().url(path)))
            [answer] = connection.answers(1)
            self.assertEqual(answer.error()[:2], (request, NOT_FOUND), path)
        connection.send(wire.open_(99, node.origin().url("films/caf%C3%A9.ts")))
        [answer] = connection.answers(1)
        self.assertEqual(answer.opened()[1], len(FILES["films/caf\u00e9.ts"]))

    def test_digests(self) -> None:
        """
        [M21] GetDigests gets exactly min(count, blocks - first) digests,
        each the block's SHA-256: cut at the end, none from the end,
        BAD_REQUEST past it.
        """
        connection = self.connect()
        node.openFile(connection, "clip.ts")
        connection.send(
            wire.getDigests(2, 1, 0, 4096),
            wire.getDigests(3, 1, 1, 1),
            wire.getDigests(4, 1, CLIP_BLOCKS, 1),
            wire.getDigests(5, 1, CLIP_BLOCKS + 1, 1),
        )
        answers = self.byRequest(connection, 4)
        digests = [hashlib.sha256(blockOf(i)).digest() for i in range(CLIP_BLOCKS)]
        self.assertEqual(answers[2].data(), (2, 0, b"".join(digests)))
        self.assertEqual(answers[3].data(), (3, 1, digests[1]))
        self.assertEqual(answers[4].data(), (4, CLIP_BLOCKS, b""))
        self.assertEqual(answers[5].error()[:2], (5, BAD_REQUEST))
        connection.stillOpen()

    def test_blocks(self) -> None:
        """
        [M22] Each Block carries exactly its block's bytes, the last one
        short; a GetBlock past the last block gets BAD_REQUEST.
        """
        connection = self.connect()
        node.openFile(connection, "clip.ts")
        connection.send(*[wire.getBlock(10 + i, 1, i) for i in range(CLIP_BLOCKS + 1)])
        answers = self.byRequest(connection, CLIP_BLOCKS + 1)
        for index in range(CLIP_BLOCKS):
            self.assertEqual(
                answers[10 + index].data(), (10 + index, index, blockOf(index))
            )
        past = 10 + CLIP_BLOCKS
        self.assertEqual(answers[past].error()[:2], (past, BAD_REQUEST))
        connection.stillOpen()

    def test_peers(self) -> None:
        """
        [M23] A node that asked GetPeers with listen port 4321 is listed to
        others at the address it connects from and that port while its
        handle is open, and no longer once it is closed.
        """
        address = node.freshAddress()
        fetching = self.connect(address, port=4321)
        node.openFile(fetching, "one.ts")
        fetching.send(wire.getPeers(2, 1))
        self.assertEqual(fetching.answers(1)[0].kind, wire.PEERS)
        other = self.connect(node.freshAddress())
        node.openFile(other, "one.ts")
        other.send(wire.getPeers(2, 1))
        [peers] = other.answers(1)
        self.assertIn((address, 4321, False), peers.peers())
        fetching.send(wire.close(1))
        fetching.stillOpen()  # the Close has been read
        other.send(wire.getPeers(3, 1))
        [peers] = other.answers(1)
        self.assertNotIn((address, 4321, False), peers.peers())

    def test_emptyFile(self) -> None:
        """
        [M24] An empty file opens with size 0; GetDigests from block 0 gets
        no digests and GetBlock 0 BAD_REQUEST, the connection staying up.
        """
        connection = self.connect()
        connection.send(
            wire.open_(1, node.origin().url("empty.ts")),
            wire.getDigests(2, 1, 0, 64),
            wire.getBlock(3, 1, 0),
        )
        opened, digests, block = connection.answers(3)
        self.assertEqual(opened.opened()[1], 0)
        self.assertEqual(digests.data(), (2, 0, b""))
        self.assertEqual(block.error()[:2], (3, BAD_REQUEST))
        connection.stillOpen()

    def test_versionStamp(self) -> None:
        """
        [M26] A file's version is its size and modification time in
        nanoseconds, in lowercase hex, joined by "-".
        """
        connection = self.connect()
        for request, name in enumerate(["clip.ts", "empty.ts"], start=1):
            version = node.openFile(connection, name, request)[5]
            self.assertEqual(version, node.origin().version(name))
            self.assertRegex(version, r"^[0-9a-f]+-[0-9a-f]+$")
