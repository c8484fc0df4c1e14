# -*- test-case-name: tests.conformance.test_client -*-
"""
docs/protocol.md's MUSTs for the side that dials: a node that publishes
nothing (a viewer's) is made to dial a test origin, through its gateway
URL, and checked on the bytes it sends and the requests it answers.
"""

import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.conformance import node, wire
from tests.conformance.wire import NOT_FOUND, PATIENCE, Connection, Frame

REQUESTS = (wire.OPEN, wire.GET_DIGESTS, wire.GET_BLOCK, wire.GET_PEERS)


class DialingTests(SynchronousTestCase):
    """
    A viewer's node dialing an origin the test plays.
    """

    def setUp(self) -> None:
        self.client = node.client()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(self.listener.close)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(PATIENCE)
        self.url = f"spp://127.0.0.1:{self.listener.getsockname()[1]}/x.ts"

    def dialed(self) -> tuple[Connection, socket.socket]:
        """
        Ask the viewer's node, over HTTP, for a file of the test's origin;
        the SPP connection it dials, and the HTTP one.
        """
        http = socket.create_connection((self.client.host, self.client.port), PATIENCE)
        self.addCleanup(http.close)
        target = self.url.replace("spp://", "/.spp/")
        http.sendall(
            f"GET {target} HTTP/1.1\r\nHost: {self.client.host}\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        sock, _ = self.listener.accept()
        connection = Connection(sock)
        self.addCleanup(connection.close)
        return connection, http

    def requestsUntil(self, connection: Connection, kind: int) -> list[Frame]:
        """
        Frames from the node up to and including the first of C{kind}.
        """
        frames = [connection.frame()]
        while frames[-1].kind != kind:
            frames.append(connection.frame())
        return frames

    def test_magicThenHello(self) -> None:
        """
        [M1] The dialing node sends the magic, then its Hello, before
        anything else.
        """
        connection, _ = self.dialed()
        self.assertEqual(connection.take(4), wire.MAGIC)
        version, _, nodeId, _ = connection.frame().hello()
        self.assertEqual((version, len(nodeId)), (1, 16))

    def test_answersOnDialedConnection(self) -> None:
        """
        [M25] A node that publishes and caches nothing answers an Open sent
        to it on a connection it dialed, with NOT_FOUND for its id.
        """
        connection, http = self.dialed()
        connection.take(4)
        connection.frame().hello()
        connection.send(wire.hello(port=0, nodeId=b"\x07" * 16))
        theirs = self.requestsUntil(connection, wire.OPEN)
        connection.send(wire.open_(1, self.url))
        answer = connection.frame()
        while answer.kind != wire.ERROR:
            theirs.append(answer)
            answer = connection.frame()
        self.assertEqual(answer.error()[:2], (1, NOT_FOUND))
        # Answer the node's own requests, as [M9] requires of the test too.
        for request in theirs:
            if request.kind in REQUESTS:
                connection.send(wire.error(request.request(), NOT_FOUND, "not here"))
        http.settimeout(PATIENCE)
        self.assertTrue(http.recv(1024).startswith(b"HTTP/1.1 404 "))
