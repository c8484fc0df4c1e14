"""
Tests for TLS in p2pd (L{p2pd.spp.tls}, and where the rest of the node
meets it): spps:// URLs, certificates from files and their reloading, the
node's own certificate, TLS on the shared port, whom the node dials how,
the options, and playlists naming spps:// and https://.
"""

import os
import signal
import stat
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from p2pd import playlist
from p2pd.core.errors import ErrorCode, SPPError
from p2pd.core.net import PEER_TLS, PLAIN, Security
from p2pd.core.peers import Peer
from p2pd.core.url import parse
from p2pd.engine.backoff import PeerBackoff
from p2pd.engine.connections import Connections
from p2pd.listener import HTTP_BUSY, SPP_BUSY, SPP_TLS_ONLY, SharedPortFactory
from p2pd.spp import codec
from p2pd.spp.tls import (
    NODE_CERTIFICATE,
    ClientTLS,
    ServerTLS,
    TLSFileError,
    nodeCertificate,
    serverOptions,
    whyLost,
)
from p2pd.tap import Options, makeService
from p2pd.web import gateway
from tests.certs import CA, selfSigned
from tests.fakes import FakeConnector
from tests.unit.test_listener import PEER, _Recorder, _RecordingFactory
from tests.unit.test_node import NodeFixture, fakeConnection

ORIGIN = "10.0.0.1"
PORT = 1111
SECURE_URL = f"spps://{ORIGIN}:{PORT}/movie.ts"


class URLTests(SynchronousTestCase):
    """
    C{spps://} URLs: an SPP URL over TLS.
    """

    def test_parsed(self) -> None:
        """
        An spps:// URL parses as secure, with the default port, and prints
        back as spps://.
        """
        url = parse("spps://Origin.Example/a%20b.ts")
        self.assertEqual(
            (url.host, url.port, url.path, url.secure),
            ("origin.example", 1111, "/a%20b.ts", True),
        )
        self.assertEqual(str(url), "spps://origin.example:1111/a%20b.ts")
        self.assertFalse(parse("spp://origin.example/a").secure)

    @given(
        st.sampled_from(["spp", "spps"]),
        st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?", fullmatch=True),
        st.integers(1, 65535),
        st.text(min_size=1, max_size=30),
    )
    def test_roundTrip(self, scheme: str, host: str, port: int, name: str) -> None:
        """
        Any URL p2pd prints parses back to itself, its scheme kept.
        """
        url = parse(f"{scheme}://{host}:{port}/{playlist.quotePath(name)}")
        self.assertEqual(url.secure, scheme == "spps")
        self.assertEqual(parse(str(url)), url)


class _Certificates(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        self.ca = CA(self.directory)


def _served(tls: ServerTLS) -> bytes:
    """
    The subject of the certificate a new connection is served.
    """
    connection = tls.serverConnectionForTLS(None)
    certificate = connection.get_certificate()
    assert certificate is not None
    return Certificate(certificate).getSubject().commonName


class ServerTLSTests(_Certificates):
    """
    L{serverOptions} and L{ServerTLS}: the node's certificate from files.
    """

    def test_mismatchedKey(self) -> None:
        """
        A key that is not the certificate's is refused with both names.
        """
        one = self.ca.issue("one.example")
        two = self.ca.issue("two.example")
        error = self.assertRaises(TLSFileError, serverOptions, one.certFile, two.keyFile)
        self.assertIn("is not the key of", str(error))

    def test_noCertificate(self) -> None:
        """
        A file with no PEM certificate is refused.
        """
        issued = self.ca.issue("one.example")
        error = self.assertRaises(
            TLSFileError, serverOptions, issued.keyFile, issued.keyFile
        )
        self.assertIn("holds no PEM certificate", str(error))

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is refused, naming it.
        """
        issued = self.ca.issue("one.example")
        missing = os.path.join(self.directory, "missing.pem")
        error = self.assertRaises(TLSFileError, serverOptions, missing, issued.keyFile)
        self.assertIn("cannot read", str(error))

    @given(
        st.one_of(
            st.binary(max_size=300),
            st.binary(max_size=300).map(
                lambda body: b"-----BEGIN CERTIFICATE-----\n"
                + body
                + b"\n-----END CERTIFICATE-----\n"
            ),
        )
    )
    def test_anyBytes(self, data: bytes) -> None:
        """
        Whatever bytes a certificate, key or CA file holds, it is used or
        refused with L{TLSFileError}, nothing else.
        """
        path = os.path.join(self.directory, "any.pem")
        with open(path, "wb") as f:
            f.write(data)
        issued = self.ca.issue("one.example")
        self.assertRaises(TLSFileError, serverOptions, path, issued.keyFile)
        self.assertRaises(TLSFileError, serverOptions, issued.certFile, path)
        self.assertRaises(TLSFileError, ClientTLS, path)

    def test_reload(self) -> None:
        """
        After L{ServerTLS.reload}, new connections get the certificate now
        in the files; a connection made before keeps the old one.
        """
        first = self.ca.issue("first.example")
        tls = ServerTLS(first.certFile, first.keyFile)
        before = tls.serverConnectionForTLS(None)
        second = self.ca.issue("second.example")
        os.replace(second.certFile, first.certFile)
        os.replace(second.keyFile, first.keyFile)
        self.assertEqual(_served(tls), b"first.example")
        tls.reload()
        self.assertEqual(_served(tls), b"second.example")
        old = before.get_certificate()
        assert old is not None
        self.assertEqual(Certificate(old).getSubject().commonName, b"first.example")

    def test_reloadFailureKeepsOld(self) -> None:
        """
        A reload from bad files logs why and keeps serving the old
        certificate.
        """
        first = self.ca.issue("first.example")
        tls = ServerTLS(first.certFile, first.keyFile)
        with open(first.keyFile, "wb") as f:
            f.write(b"not a key")
        with capturedLogs() as events:
            tls.reload()
        self.assertEqual(_served(tls), b"first.example")
        self.assertIn("not reloaded", events[0]["log_format"])


class NodeCertificateTests(SynchronousTestCase):
    """
    L{nodeCertificate}: the certificate a node without one serves to peers.
    """

    def test_madeOnce(self) -> None:
        """
        It is made on first use, private to the node's user, usable as
        server options, and the same on later uses.
        """
        cacheDir = os.path.abspath(self.mktemp())
        path = nodeCertificate(cacheDir)
        self.assertEqual(path, os.path.join(cacheDir, NODE_CERTIFICATE))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            first = f.read()
        serverOptions(path, path)
        nodeCertificate(cacheDir)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), first)


class WhyLostTests(SynchronousTestCase):
    """
    L{whyLost}: a refused certificate, in words.
    """

    def test_hostname(self) -> None:
        """
        A certificate for another name says so.
        """
        reason = Failure(VerificationError(errors=[]))
        self.assertIn("not valid for this host name", whyLost(reason))

    def test_verifyFailed(self) -> None:
        """
        OpenSSL's refusal of the chain or the dates says so.
        """
        error = SSL.Error([("SSL routines", "", "certificate verify failed")])
        self.assertIn("certificate was refused", whyLost(Failure(error)))

    def test_otherTLS(self) -> None:
        """
        Another TLS failure names OpenSSL's reason.
        """
        error = SSL.Error([("SSL routines", "", "wrong version number")])
        self.assertEqual(whyLost(Failure(error)), "TLS failed: wrong version number")

    def test_other(self) -> None:
        """
        Anything else is its own message.
        """
        self.assertEqual(whyLost(Failure(ValueError("gone"))), "gone")


class SharedPortTLSTests(_Certificates):
    """
    TLS on the shared port: a ClientHello's first byte (0x16) picks TLS,
    and the first byte inside picks SPP or HTTP.
    """

    def setUp(self) -> None:
        super().setUp()
        issued = self.ca.issue("origin.example")
        self.serverTLS = ServerTLS(issued.certFile, issued.keyFile)
        self.http = _RecordingFactory()
        self.spp = _RecordingFactory()
        self.clock = Clock()

    def shared(self, **kwargs: object) -> SharedPortFactory:
        tls = TLSMemoryBIOFactory(self.serverTLS, False, Factory())
        return SharedPortFactory(
            self.http,
            {codec.MAGIC[:1]: self.spp},
            self.clock,
            tls=tls,
            **kwargs,  # type: ignore[arg-type]
        )

    def talk(
        self,
        shared: SharedPortFactory,
        data: bytes,
        name: str = "origin.example",
        creator: Any = None,
    ):
        """
        Connect over TLS (verifying C{name} against the test CA, unless
        C{creator} says how), send
        C{data} inside, and run both ends until they go quiet; the client's
        inside recorder and the pump. The client's TLS protocol is unbuffered,
        as the listener's is, so no reactor is needed.
        """
        if creator is None:
            creator = optionsForClientTLS(name, trustRoot=ClientTLS(self.ca.certFile).trust)
        inner = _Recorder()
        client = TLSMemoryBIOProtocol(TLSMemoryBIOFactory(creator, True, Factory()), inner)
        server = shared.buildProtocol(PEER)
        pump = connect(
            server,
            FakeTransport(server, isServer=True, peerAddress=PEER),
            client,
            FakeTransport(client, isServer=False),
        )
        client.write(data)
        pump.flush()
        return inner, pump

    def test_spp(self) -> None:
        """
        The magic inside TLS goes to SPP, with every byte.
        """
        recorder, _ = self.talk(self.shared(), codec.MAGIC + b"rest")
        (spp, _), = self.spp.built
        self.assertEqual(b"".join(spp.received), codec.MAGIC + b"rest")
        self.assertEqual(self.http.built, [])
        self.assertIsInstance(spp.transport, TLSMemoryBIOProtocol)

    def test_http(self) -> None:
        """
        A request line inside TLS goes to HTTP, counted as HTTP.
        """
        shared = self.shared()
        self.talk(shared, b"GET / HTTP/1.1\r\n")
        (http, _), = self.http.built
        self.assertEqual(b"".join(http.received), b"GET / HTTP/1.1\r\n")
        self.assertEqual(shared.httpConnections, 1)

    def test_peer(self) -> None:
        """
        A peer's connection takes the node's own self-signed certificate.
        """
        path = nodeCertificate(os.path.abspath(self.mktemp()))
        self.serverTLS = ServerTLS(path, path)
        self.talk(self.shared(), codec.MAGIC, creator=ClientTLS().peer())
        self.assertEqual(len(self.spp.built), 1)

    def test_silentInsideTLS(self) -> None:
        """
        A TLS connection that sends nothing inside is dropped when the
        silence timeout ends, as a plain one is.
        """
        shared = self.shared()
        recorder, pump = self.talk(shared, b"")
        self.clock.advance(shared.timeout)
        pump.flush()
        self.assertIsNotNone(recorder.reason)
        self.assertEqual(shared.connections, 0)

    def test_wrongName(self) -> None:
        """
        A client verifying another name gets nothing through.
        """
        recorder, _ = self.talk(self.shared(), codec.MAGIC, "other.example")
        self.assertEqual(self.spp.built, [])
        self.assertIsInstance(recorder.reason.value, VerificationError)

    def test_busyInsideTLS(self) -> None:
        """
        A TLS connection past a cap is refused in its inner protocol's
        words, encrypted.
        """
        recorder, _ = self.talk(self.shared(maxConnections=0), codec.MAGIC)
        self.assertEqual(b"".join(recorder.received), SPP_BUSY)
        recorder, _ = self.talk(self.shared(maxConnections=0), b"GET / HTTP/1.1\r\n")
        self.assertEqual(b"".join(recorder.received), HTTP_BUSY)

    def test_tlsOnly(self) -> None:
        """
        With C{tlsOnly}, plain SPP gets Error FORBIDDEN and a close; SPP
        inside TLS and plain HTTP are taken.
        """
        shared = self.shared(tlsOnly=True)
        server = shared.buildProtocol(PEER)
        transport = StringTransport(peerAddress=PEER)
        server.makeConnection(transport)
        server.dataReceived(codec.MAGIC)
        self.assertEqual(transport.value(), SPP_TLS_ONLY)
        self.assertTrue(transport.disconnecting)
        frame = SPP_TLS_ONLY[4:]
        error = codec.decode(frame)
        assert isinstance(error, codec.Error)
        self.assertEqual((error.request, error.code), (0, ErrorCode.FORBIDDEN))
        self.talk(shared, codec.MAGIC)
        self.assertEqual(len(self.spp.built), 1)


class SecureNodeTests(NodeFixture):
    """
    A node's spps:// downloads: the origin and the mirrors it names are
    dialed over TLS verified for the URL's host name, peers over TLS; an
    spps:// URL is served only over TLS.
    """

    def setUp(self) -> None:
        super().setUp()
        self.client = self.makeNode(self.makeCache("client-cache"))
        self.origin = fakeConnection({SECURE_URL: self.movie})

    def test_originVerified(self) -> None:
        """
        The origin is dialed over TLS, its certificate checked for the
        URL's host.
        """
        d = self.client.download(SECURE_URL)
        self.assertEqual(self.connector.securities, [Security(True, ORIGIN)])
        self.connector.succeed(self.origin)
        self.successResultOf(d)
        self.assertEqual(self.origin.opened, [(SECURE_URL, "")])

    def test_peersAndMirrors(self) -> None:
        """
        Peers from the origin's list are dialed over TLS without a name;
        its mirrors, verified for the origin's name.
        """
        self.origin.peers = [Peer("10.0.0.5", 5555), Peer("10.0.0.6", 6666, True)]
        self.client.download(SECURE_URL)
        self.connector.succeed(self.origin)
        self.origin.flush()
        dialed = dict(
            zip(
                [a[:2] for a in self.connector.attempts],
                self.connector.securities[1:],
            )
        )
        self.assertEqual(
            dialed,
            {
                ("10.0.0.5", 5555): PEER_TLS,
                ("10.0.0.6", 6666): Security(True, ORIGIN),
            },
        )

    def test_plainOpenRefused(self) -> None:
        """
        An Open of an spps:// URL over a plain connection is FORBIDDEN.
        """
        error = self.assertRaises(
            SPPError,
            self.node.open,
            f"spps://{ORIGIN}:{PORT}/movie.ts",
            "",
            fakeConnection({}),
        )
        self.assertEqual(error.code, ErrorCode.FORBIDDEN)

    def test_encryptedOpenServed(self) -> None:
        """
        Over TLS, the origin answers an spps:// URL as its own.
        """
        connection = fakeConnection({})
        connection.encrypted = True
        served = self.node.open(f"spps://{ORIGIN}:{PORT}/movie.ts", "", connection)
        self.addCleanup(served.close)
        self.assertTrue(served.authoritative)


class OptionsTests(_Certificates):
    """
    The --tls-* options: checked at start, one line each.
    """

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["-c", os.path.abspath(self.mktemp()), *args])
        return options

    def refused(self, *args: str) -> str:
        return str(self.assertRaises(usage.UsageError, self.parse, *args))

    def test_together(self) -> None:
        """
        --tls-cert and --tls-key come together.
        """
        issued = self.ca.issue("origin.example")
        self.assertIn("go together", self.refused("--tls-cert", issued.certFile))
        self.assertIn("go together", self.refused("--tls-key", issued.keyFile))

    def test_tlsOnlyNeedsCertificate(self) -> None:
        """
        --tls-only without a certificate is refused.
        """
        self.assertIn("needs --tls-cert", self.refused("--tls-only"))

    def test_mismatchedKey(self) -> None:
        """
        A key that is not the certificate's is refused at start.
        """
        one = self.ca.issue("one.example")
        two = self.ca.issue("two.example")
        message = self.refused("--tls-cert", one.certFile, "--tls-key", two.keyFile)
        self.assertTrue(message.startswith("TLS: "), message)

    def test_unreadable(self) -> None:
        """
        A file that does not exist is refused, naming the option.
        """
        message = self.refused("--tls-ca", os.path.join(self.directory, "none"))
        self.assertIn("--tls-ca", message)

    def test_badCA(self) -> None:
        """
        A CA file holding no certificate is refused.
        """
        issued = self.ca.issue("one.example")
        self.assertIn("no PEM certificate", self.refused("--tls-ca", issued.keyFile))

    def test_accepted(self) -> None:
        """
        A matching pair and a CA file pass.
        """
        issued = selfSigned(self.directory, "origin.example")
        options = self.parse(*issued.options, "--tls-ca", self.ca.certFile, "--tls-only")
        self.assertEqual(options["tls-cert"], issued.certFile)
        self.assertTrue(options["tls-only"])


class PlaylistTests(SynchronousTestCase):
    """
    An origin with a certificate names spps:// and https:// in playlists.
    """

    def test_secure(self) -> None:
        """
        Entry 1 is the spps:// URL, entry 2 the https:// fallback.
        """
        text = playlist.forFile("o.example:1111", "o.example:1111", "a b.ts", 5, True)
        self.assertIn(b"File1=spps://o.example:1111/a%20b.ts\n", text)
        self.assertIn(b"File2=https://o.example:1111/.direct/a%20b.ts\n", text)
        self.assertIn(b"Title1=a b.ts (SPPS)\n", text)

    def test_plain(self) -> None:
        """
        Without, spp:// and http:// as before.
        """
        text = playlist.forFile("o.example:1111", "o.example:1111", "a.ts", 5)
        self.assertIn(b"File1=spp://o.example:1111/a.ts\n", text)
        self.assertIn(b"File2=http://o.example:1111/.direct/a.ts\n", text)


class GatewayTests(SynchronousTestCase):
    """
    The gateway's C{/.spps/} prefix.
    """

    def test_url(self) -> None:
        """
        C{/.spps/HOST:PORT/PATH} stands for C{spps://HOST:PORT/PATH}.
        """
        self.assertEqual(gateway.SCHEMES[b".spps"], "spps")
        self.assertEqual(
            gateway.gatewayURL([b"h:1", b"a b.ts"], "spps"), "spps://h:1/a%20b.ts"
        )


class ConnectionsTests(SynchronousTestCase):
    """
    A node's connections are kept by how they were dialed.
    """

    def test_byScheme(self) -> None:
        """
        A plain connection to an address is not reused for TLS to it, nor a
        peer's TLS connection for an origin's verified one.
        """
        connector = FakeConnector()
        connections = Connections(connector, PeerBackoff(Clock()), lambda c: None)
        verified = Security(True, ORIGIN)
        connections.connect(ORIGIN, PORT)
        connector.succeed(fakeConnection({}))
        connections.connect(ORIGIN, PORT, security=verified)
        connections.connect(ORIGIN, PORT, True, PEER_TLS)
        self.assertEqual(connector.securities, [PLAIN, verified, PEER_TLS])


class ServiceTests(_Certificates):
    """
    L{makeService} with TLS: the shared port speaks it, with the operator's
    certificate or the node's own, and SIGHUP reloads the operator's.
    """

    def start(self, *args: str) -> SharedPortFactory:
        self.cache = os.path.abspath(self.mktemp())
        options = Options()
        options.parseOptions(["-c", self.cache, "-P", "2222", *args])
        reactor = MemoryReactorClock()
        service = makeService(options, reactor=reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        [factory] = [
            f for _, f, _, _ in reactor.tcpServers if isinstance(f, SharedPortFactory)
        ]
        return factory

    def test_operatorCertificate(self) -> None:
        """
        With --tls-cert, TLS connections get it, the root's playlists name
        spps://, --tls-only reaches the port, and SIGHUP is handled until
        the service stops.
        """
        issued = self.ca.issue("origin.example")
        before = signal.getsignal(signal.SIGHUP)
        factory = self.start(*issued.options, "--tls-only")
        self.assertTrue(factory.tlsOnly)
        self.assertTrue(factory.default.resource.secure)  # type: ignore[attr-defined]
        self.assertIsNot(signal.getsignal(signal.SIGHUP), before)
        self.assertIsNotNone(factory.tls)

    def test_ownCertificate(self) -> None:
        """
        Without, the node makes its own in the cache directory, and leaves
        SIGHUP alone.
        """
        before = signal.getsignal(signal.SIGHUP)
        factory = self.start()
        self.assertIsNotNone(factory.tls)
        self.assertFalse(factory.tlsOnly)
        self.assertFalse(factory.default.resource.secure)  # type: ignore[attr-defined]
        self.assertTrue(os.path.exists(os.path.join(self.cache, NODE_CERTIFICATE)))
        self.assertIs(signal.getsignal(signal.SIGHUP), before)

    def test_badOwnCertificate(self) -> None:
        """
        A node certificate file that cannot be used ends start-up with one
        line.
        """
        cache = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(cache, "tls"))
        with open(os.path.join(cache, NODE_CERTIFICATE), "wb") as f:
            f.write(b"garbage")
        options = Options()
        options.parseOptions(["-c", cache])
        error = self.assertRaises(
            SystemExit, makeService, options, reactor=MemoryReactorClock()
        )
        self.assertIn("cannot use the node's TLS certificate", str(error.code))
        self.assertNotIn("\n", str(error.code))
