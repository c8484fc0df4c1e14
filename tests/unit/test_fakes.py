"""
Tests for L{tests.fakes}: each fake provides the interface it stands in
for, as the real implementation does, so the two cannot drift apart.
"""

import os

from twisted.internet import task
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from p2pd.core.meta import FileMeta
from p2pd.engine.interfaces import (
    ICacheControl,
    IConnection,
    IConnector,
    IRemoteFile,
    IServedFile,
    ISource,
    ISPPNode,
    IWebNode,
)
from p2pd.engine.node import Node
from p2pd.spp.asking import RemoteFile
from p2pd.spp.connector import TCPConnector
from p2pd.spp.protocol import SPPProtocol
from p2pd.store.cache import BlockCache
from p2pd.store.interfaces import IBlockCache
from tests.fakes import (
    FakeCacheControl,
    FakeConnection,
    FakeConnector,
    FakeServedFile,
    FakeSource,
    FakeSPPNode,
    FakeWebNode,
)

URL = "spp://10.0.0.1:1111/movie.ts"
META = FileMeta(URL, 5000, 1024, "sha256", "v1")
DATA = bytes(5000)


class FakesTests(SynchronousTestCase):
    """
    Every fake provides its interface.
    """

    def test_source(self) -> None:
        """
        L{FakeSource} is an L{ISource}.
        """
        self.assertTrue(verifyObject(ISource, FakeSource("s", DATA, META)))

    def test_connection(self) -> None:
        """
        L{FakeConnection} is an L{IConnection}, and the files opened on it
        are L{IRemoteFile}s.
        """
        connection = FakeConnection({URL: (META, DATA)}, "10.0.0.1", 1111)
        self.assertTrue(verifyObject(IConnection, connection))
        remote = self.successResultOf(connection.open(URL))
        self.assertTrue(verifyObject(IRemoteFile, remote))

    def test_connector(self) -> None:
        """
        L{FakeConnector} is an L{IConnector}.
        """
        self.assertTrue(verifyObject(IConnector, FakeConnector()))

    def test_sppNode(self) -> None:
        """
        L{FakeSPPNode} is an L{ISPPNode}.
        """
        self.assertTrue(verifyObject(ISPPNode, FakeSPPNode()))

    def test_servedFile(self) -> None:
        """
        L{FakeServedFile} is an L{IServedFile}.
        """
        self.assertTrue(verifyObject(IServedFile, FakeServedFile(DATA)))

    def test_webNode(self) -> None:
        """
        L{FakeWebNode} is an L{IWebNode}.
        """
        self.assertTrue(verifyObject(IWebNode, FakeWebNode(DATA, 1024)))


class RealTests(SynchronousTestCase):
    """
    The real implementations provide the same interfaces.
    """

    def test_node(self) -> None:
        """
        L{Node} is an L{ISPPNode} and an L{IWebNode}, built whole: its
        connector is made for it at construction.
        """
        made: list[object] = []

        def connectorFor(node: ISPPNode) -> IConnector:
            made.append(node)
            return FakeConnector()

        node = Node(task.Clock(), connectorFor, None)
        self.assertEqual(made, [node])
        self.assertTrue(verifyObject(ISPPNode, node))
        self.assertTrue(verifyObject(IWebNode, node))
        self.assertTrue(verifyObject(IConnector, node.connections.connector))

    def test_connection(self) -> None:
        """
        L{SPPProtocol} is an L{IConnection}, and L{RemoteFile}, once
        opened, an L{IRemoteFile}.
        """
        node = Node(task.Clock(), lambda node: FakeConnector(), None)
        connection = SPPProtocol(node, task.Clock(), initiator=True)
        self.assertTrue(verifyObject(IConnection, connection))
        remote = RemoteFile(connection, 1)
        remote.opened(META, True)
        self.assertTrue(verifyObject(IRemoteFile, remote))

    def test_connector(self) -> None:
        """
        L{TCPConnector} is an L{IConnector}.
        """
        node = Node(task.Clock(), lambda node: FakeConnector(), None)
        connector = TCPConnector(MemoryReactorClock(), node)
        self.assertTrue(verifyObject(IConnector, connector))

    def test_cacheControl(self) -> None:
        """
        L{FakeCacheControl} and L{Node} are L{ICacheControl}s.
        """
        self.assertTrue(verifyObject(ICacheControl, FakeCacheControl(set(), {})))
        node = Node(task.Clock(), lambda node: FakeConnector(), None)
        self.assertTrue(verifyObject(ICacheControl, node))

    def test_blockCache(self) -> None:
        """
        L{BlockCache} is an L{IBlockCache}.
        """
        cache = BlockCache(os.path.abspath(self.mktemp()))
        self.assertTrue(verifyObject(IBlockCache, cache))
