"""
Tests for L{p2pd.web.gateway} with real nodes: one real gateway between two
real C{twistd p2pd} nodes, fetched with curl; and names resolved by the
running reactor's resolver.
"""

import hashlib
import os

from twisted.internet import defer
from twisted.internet.interfaces import IReactorPluggableNameResolver
from twisted.trial.unittest import TestCase

from p2pd.web.access import isLocalHost, resolverFor
from tests import clients
from tests.media import getMedia
from tests.nodes import Nodes


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class RealGatewayTests(TestCase):
    """
    The gateway of a real viewer node, started without any proxy setting,
    fetching from a real origin node; curl uses no proxy.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_curlThroughGateway(self):
        """
        curl gets the whole file byte-identical, a range with 206, a range
        at the end with 416, and a missing file with 404, all through
        C{http://VIEWER/.spp/ORIGIN/NAME}.
        """
        clients.require("curl")
        media = yield getMedia()
        nodes = Nodes(self)
        origin = yield nodes.start(
            "-p", media.directory, "-c", os.path.abspath(self.mktemp())
        )
        viewer = yield nodes.start("-c", os.path.abspath(self.mktemp()))
        home = os.path.abspath(self.mktemp())
        os.makedirs(home)
        runArgs = dict(env=clients.environment(HOME=home), path=home, timeout=60)
        name = media.blob
        data = media.read(name)
        base = f"{viewer.url}/.spp/{origin.authority}"

        def curl(url, *args):
            """
            curl C{url} through the gateway into C{body}; the status.
            """
            d = clients.run(
                ["curl", "-sS", "-o", "body", "-w", "%{http_code}", *args, url],
                **runArgs,
            )
            return d.addCallback(lambda result: clients.check(result).stdout)

        def body():
            with open(os.path.join(home, "body"), "rb") as f:
                return f.read()

        url = f"{base}/{name}"
        self.assertEqual((yield curl(url)), "200")
        self.assertEqual(sha256(body()), sha256(data))
        self.assertEqual((yield curl(url, "-r", "5000000-5999999")), "206")
        self.assertEqual(body(), data[5000000:6000000])
        self.assertEqual((yield curl(url, "-r", f"{len(data)}-")), "416")
        self.assertEqual((yield curl(f"{base}/missing.bin")), "404")


class ResolverTests(TestCase):
    """
    L{resolverFor}: names resolve through the reactor's resolver, as the
    connections made to them do.
    """

    @defer.inlineCallbacks
    def test_localhost(self):
        """
        C{localhost} resolves to a loopback address.
        """
        from twisted.internet import reactor

        resolver = resolverFor(IReactorPluggableNameResolver(reactor))
        found = yield resolver("localhost", 80)
        self.assertTrue(found)
        self.assertTrue(all(isLocalHost(a) for a in found), found)
