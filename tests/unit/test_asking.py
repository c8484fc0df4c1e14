# -*- test-case-name: tests.unit.test_asking -*-
"""
Tests for L{p2pd.spp.asking}: an SPP connection asking the other node,
and the files it opened there.
"""

import gc
import hashlib
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.meta import FileMeta
from p2pd.core.peers import Peer
from p2pd.spp import codec
from p2pd.spp.asking import ConnectionGone, RemoteFile
from p2pd.spp.handles import MAX_HANDLES
from tests.unit.test_protocol import BLOCK, URL, ErrorAssertions, Wire, content, ready


class ClientTests(SynchronousTestCase, ErrorAssertions):
    """
    Asking the other node: L{SPPProtocol.open} and L{RemoteFile}.
    """

    def _remote(
        self,
        size: int = 3 * BLOCK - 100,
        authoritative: bool = True,
    ) -> tuple[Wire, RemoteFile]:
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        self.assertEqual(wire.sent(), [codec.Open(1, URL, "")])
        wire.feed(codec.Opened(1, size, BLOCK, authoritative, "sha256", "v1"))
        return wire, self.successResultOf(d)  # type: ignore[return-value]

    def test_requestsAfterClose(self) -> None:
        """
        A closed remote file sends no more requests: they fail at once.
        """
        wire, remote = self._remote()
        remote.close()
        wire.sent()
        self.failureResultOf(remote.getBlock(0), ConnectionGone)
        self.failureResultOf(remote.getDigests(0, 1), ConnectionGone)
        self.failureResultOf(remote.getPeers(), ConnectionGone)
        self.assertEqual(wire.sent(), [])

    def test_open(self) -> None:
        """
        Open's answer gives a L{RemoteFile} with the file's metadata.
        """
        wire, remote = self._remote(authoritative=False)
        self.assertEqual(remote.handle, 1)  # the Open's request id
        self.assertEqual(
            remote.meta, FileMeta(URL, 3 * BLOCK - 100, BLOCK, "sha256", "v1")
        )
        self.assertFalse(remote.authoritative)
        self.assertEqual(remote.name, "10.0.0.2:40000")
        self.assertIs(remote.connection, wire.protocol)

    def test_openAsksEarly(self) -> None:
        """
        Open can ask at once, behind the Open, for the first digests, some
        blocks and peers; the remote file hands their answers to the first
        matching requests without asking again. A digest count past the end
        matches the count cut at the end.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=64, blocks=(0,), peers=True)
        self.assertEqual(
            wire.sent(),
            [
                codec.Open(1, URL, ""),
                codec.GetDigests(2, 1, 0, 64),
                codec.GetBlock(3, 1, 0),
                codec.GetPeers(4, 1),
            ],
        )
        data = content(3 * BLOCK - 100)
        digests = b"".join(
            hashlib.sha256(data[i : i + BLOCK]).digest()
            for i in range(0, len(data), BLOCK)
        )
        peers = (Peer("10.0.0.7", 1111),)
        wire.feed(
            codec.Opened(1, len(data), BLOCK, True, "sha256", "v1"),
            codec.Digests(2, 0, digests),
            codec.Block(3, 0, data[:BLOCK]),
            codec.Peers(4, peers),
        )
        remote = self.successResultOf(d)
        self.assertEqual(self.successResultOf(remote.getDigests(0, 3)), digests)
        self.assertEqual(self.successResultOf(remote.getBlock(0)), data[:BLOCK])
        self.assertEqual(tuple(self.successResultOf(remote.getPeers())), peers)  # type: ignore[arg-type]
        self.assertEqual(wire.sent(), [])
        remote.getBlock(0)
        remote.getPeers()
        self.assertEqual(wire.sent(), [codec.GetBlock(5, 1, 0), codec.GetPeers(6, 1)])

    def test_earlyUnclaimed(self) -> None:
        """
        Early requests nobody claims are cancelled when the file is closed,
        and their answers, good or bad, are dropped quietly.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=4, blocks=(0, 1), peers=True)
        wire.sent()
        wire.feed(
            codec.Opened(1, 3 * BLOCK, BLOCK, True, "sha256", "v1"),
            codec.Error(2, ErrorCode.INTERNAL, "no"),
        )
        remote = self.successResultOf(d)
        remote.close()
        self.assertEqual(
            wire.sent(),
            [codec.Cancel(3), codec.Cancel(4), codec.Cancel(5), codec.Close(1)],
        )
        wire.feed(
            codec.Block(3, 0, content(BLOCK)),
            codec.Error(4, ErrorCode.CANCELLED, "cancelled"),
        )
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_earlyAfterFailedOpen(self) -> None:
        """
        When the Open fails, its early requests fail too, quietly; the open
        fails with the Open's error.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, digests=4, blocks=(0,))
        wire.sent()
        wire.feed(
            codec.Error(1, ErrorCode.NOT_FOUND, "no such file"),
            codec.Error(2, ErrorCode.NOT_FOUND, "no open handle 1"),
            codec.Error(3, ErrorCode.NOT_FOUND, "no open handle 1"),
        )
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.NOT_FOUND
        )
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_earlyAnswerBeforeOpened(self) -> None:
        """
        An answer to an early request before its file's Opened is a protocol
        error.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, blocks=(0,))
        wire.sent()
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, ConnectionGone)

    def test_openVersion(self) -> None:
        """
        Open sends the version asked for, and accepts an answer for it.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, "v1")
        self.assertEqual(wire.sent(), [codec.Open(1, URL, "v1")])
        wire.feed(codec.Opened(1, 10, BLOCK, False, "sha256", "v1"))
        self.assertEqual(self.successResultOf(d).meta.version, "v1")

    def test_openOtherVersion(self) -> None:
        """
        An answer for another version than the one asked for fails with
        CHANGED, and the handle is closed.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL, "v1")
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, False, "sha256", "v2"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.CHANGED
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])
        self.assertFalse(wire.closed)

    def test_openUnknownDigest(self) -> None:
        """
        An answer with a digest this node does not know fails, and the
        handle is closed.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, True, "nosuchhash", "v1"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.BAD_REQUEST
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])

    def test_openBadDigestSize(self) -> None:
        """
        A digest whose size is outside 16 to 64 bytes (a variable-length
        SHAKE, digest size 0) is refused like an unknown one.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.sent()
        wire.feed(codec.Opened(1, 10, BLOCK, True, "shake_128", "v1"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.BAD_REQUEST
        )
        self.assertEqual(wire.sent(), [codec.Close(1)])

    def test_openError(self) -> None:
        """
        An Error answering Open fails it with that code; the connection
        stays open.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        wire.feed(codec.Error(1, ErrorCode.NOT_FOUND, "not here"))
        failure = self.failureResultOf(d, SPPError)
        self.assertEqual((failure.value.code, failure.value.message), (2, "not here"))
        self.assertFalse(wire.closed)

    def test_unencodableRequest(self) -> None:
        """
        A request that cannot be encoded (a URL over the limit) fails at
        once, sends nothing and leaves nothing outstanding.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open("spp://origin:1111/" + "x" * codec.MAX_URL)
        self.failureResultOf(d, ValueError)
        self.assertEqual(wire.transport.value(), b"")
        wire.lose()
        gc.collect()
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_requestIds(self) -> None:
        """
        Request ids start at 1 and are not reused while outstanding.
        """
        wire, remote = self._remote()
        remote.getBlock(0)
        remote.getDigests(0, 3)
        remote.getPeers()
        remote.getBlock(1)
        self.assertEqual(
            wire.sent(),
            [
                codec.GetBlock(2, 1, 0),
                codec.GetDigests(3, 1, 0, 3),
                codec.GetPeers(4, 1),
                codec.GetBlock(5, 1, 1),
            ],
        )

    def test_getBlock(self) -> None:
        """
        L{RemoteFile.getBlock} fires with the block's bytes.
        """
        wire, remote = self._remote()
        d = remote.getBlock(2)
        data = content(BLOCK - 100)
        wire.feed(codec.Block(2, 2, data))
        self.assertEqual(self.successResultOf(d), data)
        self.assertFalse(wire.closed)

    def test_answersInAnyOrder(self) -> None:
        """
        Answers may come in any order; each fires its own request.
        """
        wire, remote = self._remote()
        ds = [remote.getBlock(i) for i in range(3)]
        blocks = [content(BLOCK, b"0"), content(BLOCK, b"1"), content(BLOCK - 100)]
        wire.feed(codec.Block(4, 2, blocks[2]), codec.Block(2, 0, blocks[0]))
        wire.feed(codec.Block(3, 1, blocks[1]))
        self.assertEqual([self.successResultOf(d) for d in ds], blocks)

    def test_getDigests(self) -> None:
        """
        L{RemoteFile.getDigests} fires with the concatenated digests.
        """
        wire, remote = self._remote()
        d = remote.getDigests(1, 2)
        wire.feed(codec.Digests(2, 1, b"d" * 64))
        self.assertEqual(self.successResultOf(d), b"d" * 64)

    def test_getPeers(self) -> None:
        """
        L{RemoteFile.getPeers} fires with the peers.
        """
        wire, remote = self._remote()
        d = remote.getPeers()
        peers = (Peer("10.0.0.3", 1111), Peer("::1", 80, True))
        wire.feed(codec.Peers(2, peers))
        self.assertEqual(tuple(self.successResultOf(d)), peers)  # type: ignore[arg-type]

    def test_errorAnswer(self) -> None:
        """
        An Error answering GetBlock fails it with that code only.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.feed(codec.Error(2, ErrorCode.UNAVAILABLE, "no"))
        self.assertEqual(
            self.failureResultOf(d, SPPError).value.code, ErrorCode.UNAVAILABLE
        )
        self.assertFalse(wire.closed)

    def test_cancelGetBlock(self) -> None:
        """
        Cancelling a getBlock Deferred sends Cancel; the late Block answering
        it is ignored without closing the connection.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(wire.sent(), [codec.Cancel(2)])
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)

    def test_cancelThenErrorCancelled(self) -> None:
        """
        After Cancel, the answer Error CANCELLED is ignored.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        wire.sent()
        wire.feed(codec.Error(2, ErrorCode.CANCELLED, "cancelled"))
        self.assertEqual(wire.sent(), [])
        self.assertFalse(wire.closed)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_cancelAnswered(self) -> None:
        """
        Cancelling a request that was already answered sends nothing.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        wire.sent()
        d.cancel()
        self.assertEqual(wire.sent(), [])

    def test_cancelledOpenClosesHandle(self) -> None:
        """
        When an Open that was cancelled is answered anyway, the handle is
        closed at once, so the other node does not keep it open for nobody.
        """
        wire = ready(initiator=True)
        d = wire.protocol.open(URL)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(wire.sent(), [codec.Open(1, URL, ""), codec.Cancel(1)])
        wire.feed(codec.Opened(1, 10, BLOCK, True, "sha256", "v1"))
        self.assertEqual(wire.sent(), [codec.Close(1)])
        self.assertFalse(wire.closed)

    def test_blockForNoRequest(self) -> None:
        """
        A Block answering no outstanding request closes the connection; the
        outstanding request then fails.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        wire.feed(codec.Block(99, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, ConnectionGone)

    def test_blockOtherIndex(self) -> None:
        """
        A Block with another index than the one asked for closes the
        connection and fails the request.
        """
        wire, remote = self._remote()
        d = remote.getBlock(0)
        wire.sent()
        wire.feed(codec.Block(2, 1, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.failureResultOf(d, SPPError)

    def test_blockWrongLength(self) -> None:
        """
        A Block of the wrong length closes the connection and fails the
        request.
        """
        wire, remote = self._remote()
        d = remote.getBlock(2)
        wire.sent()
        wire.feed(codec.Block(2, 2, content(BLOCK)))  # the last block is short
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        self.failureResultOf(d, SPPError)

    def test_answerOfWrongKind(self) -> None:
        """
        A Block answering a GetDigests closes the connection, and the
        GetDigests fails rather than waiting forever.
        """
        wire, remote = self._remote()
        d = remote.getDigests(0, 1)
        wire.sent()
        wire.feed(codec.Block(2, 0, content(BLOCK)))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
        wire.lose()
        self.failureResultOf(d, SPPError, ConnectionGone)

    def test_wrongDigests(self) -> None:
        """
        Digests for other blocks, or of the wrong length, close the
        connection and fail the request.
        """
        for answer in (codec.Digests(2, 1, b"d" * 32), codec.Digests(2, 0, b"d" * 31)):
            wire, remote = self._remote()
            d = remote.getDigests(0, 1)
            wire.sent()
            wire.feed(answer)
            self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)
            self.failureResultOf(d, SPPError)

    def test_errorForNoRequest(self) -> None:
        """
        An Error naming no outstanding request is a protocol error.
        """
        wire, remote = self._remote()
        wire.feed(codec.Error(42, ErrorCode.NOT_FOUND, "?"))
        self.assertClosedWith(wire, ErrorCode.BAD_REQUEST)

    def test_connectionError(self) -> None:
        """
        An Error with request 0 closes the connection, without an answer.
        """
        wire, remote = self._remote()
        wire.feed(codec.Error(0, ErrorCode.TIMEOUT, "idle"))
        self.assertTrue(wire.closed)
        self.assertEqual(wire.sent(), [])

    def test_have(self) -> None:
        """
        Have marks blocks of a non-authoritative file as held and calls
        C{onHave}; a Have for a handle not open is ignored.
        """
        wire, remote = self._remote(size=20 * BLOCK, authoritative=False)
        announced: list[Any] = []
        remote.onHave = announced.append
        self.assertFalse(remote.has(0))
        wire.feed(codec.Have(1, ((0, 2), (10, 3))), codec.Have(9, ((5, 1),)))
        self.assertEqual([i for i in range(20) if remote.has(i)], [0, 1, 10, 11, 12])
        self.assertEqual(announced, [((0, 2), (10, 3))])
        self.assertFalse(wire.closed)

    def test_unavailable(self) -> None:
        """
        A block the other node answered UNAVAILABLE for is not held, until
        a Have names it again.
        """
        wire, remote = self._remote(size=20 * BLOCK, authoritative=False)
        wire.feed(codec.Have(1, ((0, 4),)))
        remote.unavailable(2)
        remote.unavailable(99)
        self.assertEqual([i for i in range(20) if remote.has(i)], [0, 1, 3])
        wire.feed(codec.Have(1, ((2, 1),)))
        self.assertTrue(remote.has(2))

    def test_hasAuthoritative(self) -> None:
        """
        A file the node believes authoritative holds every block, and only
        those.
        """
        wire, remote = self._remote(size=3 * BLOCK)
        remote.believe()
        self.assertEqual([i for i in range(-1, 5) if remote.has(i)], [0, 1, 2])

    def test_hasOutOfRange(self) -> None:
        """
        L{RemoteFile.has} is false for indexes outside the file, for a
        non-authoritative file too.
        """
        wire, remote = self._remote(size=8 * BLOCK, authoritative=False)
        wire.feed(codec.Have(1, ((0, 8),)))
        self.assertTrue(remote.has(7))
        self.assertFalse(remote.has(8))
        self.assertFalse(remote.has(100))
        self.assertFalse(remote.has(-1))

    def test_close(self) -> None:
        """
        L{RemoteFile.close} sends Close once; Have for it is then ignored.
        """
        wire, remote = self._remote(authoritative=False)
        remote.close()
        remote.close()
        self.assertEqual(wire.sent(), [codec.Close(1)])
        wire.feed(codec.Have(1, ((0, 1),)))
        self.assertFalse(remote.has(0))
        self.assertFalse(wire.closed)


class HandleLimitTests(SynchronousTestCase):
    """
    A node never holds more handles on another than it answers: an Open
    past them waits for one to be given back.
    """

    def test_openPastTheLimitWaits(self) -> None:
        """
        With 64 files open on a connection, a 65th Open is not sent until
        one of them is closed; then it goes out and opens its file.
        """
        wire = ready(initiator=True)
        opens = [wire.protocol.open(f"{URL}{i}") for i in range(MAX_HANDLES + 1)]
        self.assertEqual(len(wire.sent()), MAX_HANDLES)
        for handle in range(1, MAX_HANDLES + 1):
            wire.feed(codec.Opened(handle, BLOCK, BLOCK, True, "sha256", "v1"))
        self.assertNoResult(opens[-1])
        self.assertEqual(wire.protocol.waitingOpens, 1)
        remote = self.successResultOf(opens[0])
        remote.close()
        close, open65 = wire.sent()
        self.assertEqual(close, codec.Close(1))
        self.assertEqual(open65, codec.Open(MAX_HANDLES + 1, f"{URL}{MAX_HANDLES}", ""))
        self.assertEqual(wire.protocol.waitingOpens, 0)

    def test_failedOpenGivesBack(self) -> None:
        """
        An Open answered with an Error gives its handle back: the next Open
        waiting goes out.
        """
        wire = ready(initiator=True)
        opens = [wire.protocol.open(f"{URL}{i}") for i in range(MAX_HANDLES + 1)]
        wire.sent()
        wire.feed(codec.Error(3, ErrorCode.NOT_FOUND, "no"))
        self.failureResultOf(opens[2], SPPError)
        self.assertEqual(wire.sent(), [codec.Open(MAX_HANDLES + 1, f"{URL}64", "")])

    def test_waitingFailWithConnection(self) -> None:
        """
        Opens still waiting when the connection goes fail with it.
        """
        wire = ready(initiator=True)
        opens = [wire.protocol.open(f"{URL}{i}") for i in range(MAX_HANDLES + 1)]
        wire.lose()
        for d in opens:
            self.failureResultOf(d, ConnectionGone)
