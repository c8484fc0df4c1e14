"""
spps:// and https:// between real nodes (twistd processes on loopback
addresses), with a CA and certificates the tests make: an origin proving
its address with a certificate, a viewer checking it, and the ways that
check fails.
"""

import json
import os
import signal
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import ProxyAgent, readBody

from p2pd.core.errors import ErrorCode
from p2pd.spp import codec
from tests import clients
from tests.certs import CA, selfSigned
from tests.integration.test_hostile import Recorder, hello
from tests.nodes import Nodes, nodeEnvironment

NAME = "clip.bin"
SIZE = 700 * 1024
REFUSED = (
    b"cannot fetch: TLS: the certificate was refused (expired, not yet valid, "
    b"or not from a trusted CA)\n"
)


class _TLSTestCase(TestCase):
    """
    A published directory holding one file, a CA, and the nodes of a test.
    """

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.public = os.path.join(base, "public")
        os.makedirs(self.public)
        self.data = os.urandom(SIZE)
        with open(os.path.join(self.public, NAME), "wb") as f:
            f.write(self.data)
        self.certs = os.path.join(base, "certs")
        self.ca = CA(self.certs)
        self.nodes = Nodes(self)

    def origin(self, *options: str):
        """
        Start an origin on 127.0.0.1 publishing the file, with C{options}.
        """
        return self.nodes.start("-p", self.public, *options)

    def viewer(self, *options: str):
        """
        Start a viewer node on the next loopback address; its cache in the
        test's directory.
        """
        cache = os.path.abspath(self.mktemp())
        return self.nodes.start("-c", cache, *options)

    def throughProxy(self, viewer, url: str):
        """
        GET C{url} through C{viewer}'s proxy, as an absolute URI; fires with
        (code, body).
        """
        endpoint = TCP4ClientEndpoint(reactor, viewer.host, viewer.port)
        agent = ProxyAgent(endpoint, reactor)

        @inlineCallbacks
        def get():
            response = yield agent.request(b"GET", url.encode("ascii"))
            body = yield readBody(response)
            return response.code, body

        return get()


class SPPSTests(_TLSTestCase):
    """
    A viewer fetches an spps:// origin's file, the origin's certificate
    verified against the viewer's --tls-ca.
    """

    @inlineCallbacks
    def test_httpsURLThroughProxy(self) -> Any:
        """
        The proxy streams an https:// URL of a p2pd origin over spps (the
        origin refuses plain SPP, and https:// URLs are never forwarded).
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        viewer = yield self.viewer("--tls-ca", self.ca.certFile)
        code, body = yield self.throughProxy(
            viewer, f"https://{origin.authority}/{NAME}"
        )
        self.assertEqual(code, 200)
        self.assertEqual(body, self.data)

    @inlineCallbacks
    def test_fallbackURLThroughProxy(self) -> Any:
        """
        The https:// fallback URL (C{/.direct/NAME}) through the proxy is the
        same file over spps.
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        viewer = yield self.viewer("--tls-ca", self.ca.certFile)
        code, body = yield self.throughProxy(
            viewer, f"https://{origin.authority}/.direct/{NAME}"
        )
        self.assertEqual((code, body), (200, self.data))

    @inlineCallbacks
    def test_gateway(self) -> Any:
        """
        The gateway's C{/.spps/HOST:PORT/PATH} streams the spps:// URL.
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        viewer = yield self.viewer("--tls-ca", self.ca.certFile)
        response = yield clients.curl(f"{viewer.url}/.spps/{origin.authority}/{NAME}")
        self.assertEqual((response.status, response.body), (200, self.data))

    @inlineCallbacks
    def test_wrongHostname(self) -> Any:
        """
        A certificate for another name is refused: 502, and not a byte.
        """
        issued = self.ca.issue("127.0.0.9", "other.example")
        origin = yield self.origin(*issued.options)
        viewer = yield self.viewer("--tls-ca", self.ca.certFile)
        code, body = yield self.throughProxy(
            viewer, f"https://{origin.authority}/{NAME}"
        )
        self.assertEqual(code, 502)
        self.assertIn(b"not valid for this host name", body)
        self.assertNotIn(self.data[:64], body)

    @inlineCallbacks
    def test_expiredCertificate(self) -> Any:
        """
        An expired certificate is refused: 502.
        """
        issued = self.ca.issue("127.0.0.1", expired=True)
        origin = yield self.origin(*issued.options)
        viewer = yield self.viewer("--tls-ca", self.ca.certFile)
        code, body = yield self.throughProxy(
            viewer, f"https://{origin.authority}/{NAME}"
        )
        self.assertEqual((code, body), (502, REFUSED))

    @inlineCallbacks
    def test_selfSignedWithoutCA(self) -> Any:
        """
        A self-signed origin certificate, for the right address, is refused
        by a viewer that trusts only the system's CAs (no --tls-ca).
        """
        issued = selfSigned(self.certs, "127.0.0.1")
        origin = yield self.origin(*issued.options)
        viewer = yield self.viewer()
        code, body = yield self.throughProxy(
            viewer, f"https://{origin.authority}/{NAME}"
        )
        self.assertEqual((code, body), (502, REFUSED))


class SwarmTests(_TLSTestCase):
    """
    Viewers of an spps:// file share it over TLS between themselves.
    """

    timeout = 240

    @inlineCallbacks
    def test_peersShareOverTLS(self) -> Any:
        """
        One viewer fetches a 20 MB file from a TLS-only origin, then two
        more together: every copy is whole, the origin sends well under
        three copies, and the later viewers take blocks from peers (dialed
        over TLS: an spps:// swarm has no plain peers).
        """
        size = 20 * 1000 * 1000
        data = os.urandom(size)
        with open(os.path.join(self.public, "big.bin"), "wb") as f:
            f.write(data)
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        viewers = []
        for _ in range(3):
            viewers.append((yield self.viewer("--tls-ca", self.ca.certFile)))

        def fetch(viewer):
            url = f"{viewer.url}/.spps/{origin.authority}/big.bin"
            return clients.curl("--fail", url, timeout=120)

        first = yield fetch(viewers[0])
        self.assertEqual(first.body, data)
        later = yield gatherResults([fetch(v) for v in viewers[1:]])
        for response in later:
            self.assertEqual(response.body, data)
        status = yield clients.curl(f"{origin.url}/.status")
        served = json.loads(status.body)["served"]["bytesByFile"]["big.bin"]
        self.assertLess(served, 2.5 * size, f"origin sent {served / size:.2f} copies")
        fromPeers = 0
        for viewer in viewers[1:]:
            state = yield clients.curl(f"{viewer.url}/.status")
            for download in json.loads(state.body)["downloads"]:
                for source, count in download["bytesBySource"].items():
                    if not source.startswith(f"{origin.host}:"):
                        fromPeers += count
        self.assertGreater(fromPeers, size)


class FetchTests(_TLSTestCase):
    """
    C{p2pd fetch spps://...}, with --tls-ca.
    """

    @inlineCallbacks
    def test_fetch(self) -> Any:
        """
        The file comes whole from an spps:// origin whose certificate
        chains to the CA given; without that CA the fetch is refused.
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        url = f"spps://{origin.authority}/{NAME}"
        command = [sys.executable, "-m", "p2pd", "fetch", "-q", "-i", "127.0.0.9"]
        run = dict(env=nodeEnvironment(home=work), path=work)
        refused = yield clients.run(command + ["-c", "untrusting", url], **run)
        self.assertNotEqual(refused.code, 0)
        self.assertIn("certificate was refused", refused.text)
        done = yield clients.run(
            command + ["-c", "trusting", "--tls-ca", self.ca.certFile, url], **run
        )
        self.assertEqual(done.code, 0, done.describe())
        with open(os.path.join(work, NAME), "rb") as f:
            self.assertEqual(f.read(), self.data)


class HTTPSTests(_TLSTestCase):
    """
    HTTPS on the shared port, read by curl.
    """

    def curl(self, *args: str):
        return clients.curl("--cacert", self.ca.certFile, *args)

    @inlineCallbacks
    def test_playlist(self) -> Any:
        """
        A --redirect origin with a certificate answers with a playlist
        naming the spps:// URL and the https:// fallback, which gives the
        file.
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--redirect")
        response = yield self.curl(f"https://{origin.authority}/{NAME}")
        self.assertEqual(response.status, 200)
        text = response.body.decode("utf-8")
        self.assertIn(f"File1=spps://{origin.authority}/{NAME}\n", text)
        fallback = f"https://{origin.authority}/.direct/{NAME}"
        self.assertIn(f"File2={fallback}\n", text)
        whole = yield self.curl(fallback)
        self.assertEqual(whole.body, self.data)

    @inlineCallbacks
    def test_reloadOnHangup(self) -> Any:
        """
        SIGHUP makes the node serve the certificate and key now in its
        files to the connections that follow, without stopping.
        """
        first = self.ca.issue("127.0.0.1", label="first")
        origin = yield self.origin(*first.options)
        other = CA(os.path.join(self.certs, "other"), "other CA")
        second = other.issue("127.0.0.1", label="second")
        for source, target in [
            (second.certFile, first.certFile),
            (second.keyFile, first.keyFile),
        ]:
            os.replace(source, target)
        url = f"https://{origin.authority}/.direct/{NAME}"
        before = yield clients.run(["curl", "-sS", "--cacert", other.certFile, url])
        self.assertNotEqual(before.code, 0, "the new files served before SIGHUP")
        os.kill(origin.pid, signal.SIGHUP)
        yield origin.waitForLine("TLS certificate reloaded", 10)
        old = yield clients.run(["curl", "-sS", "--cacert", self.ca.certFile, url])
        self.assertNotEqual(old.code, 0)
        new = yield clients.curl("--cacert", other.certFile, url)
        self.assertEqual(new.body, self.data)
        self.assertTrue(origin.running)


class PlainClientTests(_TLSTestCase):
    """
    A plain SPP client at an origin that speaks SPP over TLS only.
    """

    @inlineCallbacks
    def test_refusedBeforeHello(self) -> Any:
        """
        It gets Error FORBIDDEN (request 0) in place of the Hello, naming
        spps://, then the connection closes.
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options, "--tls-only")
        endpoint = TCP4ClientEndpoint(reactor, origin.host, origin.port)
        recorder = yield connectProtocol(endpoint, Recorder())
        recorder.transport.write(codec.MAGIC + hello())
        yield recorder.waitForClose()
        [error] = recorder.frames
        self.assertIsInstance(error, codec.Error)
        self.assertEqual((error.request, error.code), (0, ErrorCode.FORBIDDEN))
        self.assertIn("spps://", error.message)

    @inlineCallbacks
    def test_plainAcceptedWithoutTLSOnly(self) -> Any:
        """
        Without --tls-only, an origin with a certificate still answers
        plain SPP (spp:// URLs of the same files).
        """
        issued = self.ca.issue("127.0.0.1")
        origin = yield self.origin(*issued.options)
        viewer = yield self.viewer()
        code, body = yield self.throughProxy(viewer, origin.sppURLFor(NAME))
        self.assertEqual((code, body), (200, self.data))
