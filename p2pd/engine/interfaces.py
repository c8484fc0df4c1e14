# -*- test-case-name: tests.unit.test_fakes -*-
"""
The seams between the engine and the layers around it.

The protocol implements L{IConnection} (a connection to another node, made
by an L{IConnector}) and L{IRemoteFile} (a file opened on it, an
L{ISource}), and calls L{ISPPNode} (this node, answering other nodes); the
engine implements L{ISPPNode}, L{IServedFile} and L{IWebNode} (what the
HTTP side asks of the node) and drives the others. Tests put small doubles
behind these interfaces (tests/fakes.py).
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

from p2pd.core.net import PLAIN, Security

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from p2pd.core.peers import Peer
    from p2pd.engine.download import Download


class ISource(Interface):
    """
    A file opened on another node: where blocks (and, from the origin,
    digests and peers) come from.
    """

    name = Attribute("str: the node's address, for logs")
    authoritative = Attribute(
        "bool: believed about the file, and holding every block: the node"
        " dialed the URL's origin, or a mirror the origin named"
        " (docs/security.md)"
    )
    onHave = Attribute(
        "callable(ranges) or None: called when the node announces blocks"
    )
    onLost = Attribute("callable(reason) or None: called once when the source is gone")

    def has(index: int) -> bool:
        """
        Whether the node said it holds block C{index}.
        """

    def unavailable(index: int) -> None:
        """
        The node answered that it does not hold block C{index} (a cache
        evicts blocks it announced): L{has} says so from now on, until the
        node announces the block again. An authority holds every block
        whatever it answers.
        """

    def getBlock(index: int) -> "Deferred[bytes]":
        """
        Fetch one block; cancelling the Deferred cancels the request.
        """

    def getDigests(first: int, count: int) -> "Deferred[bytes]":
        """
        Fetch the digests of C{count} blocks from C{first}, concatenated.
        """

    def getPeers() -> "Deferred[Sequence[Peer]]":
        """
        Ask for other nodes holding this file (and be recorded as one).
        """

    def close() -> None:
        """
        Release the file on the other node.
        """


class IServedFile(Interface):
    """
    A file this node serves to one connection: published, or cached.
    """

    size = Attribute("int")
    blockSize = Attribute("int")
    digestName = Attribute("str")
    version = Attribute("str")
    authoritative = Attribute("bool: this node publishes the file")

    def digests(first: int, count: int) -> "Deferred[bytes]":
        """
        The digests of C{count} blocks from C{first}.

        @raise SPPError: NOT_FOUND when not authoritative, BAD_REQUEST when
            out of range.
        """

    def readBlock(index: int) -> "Deferred[bytes]":
        """
        A block's verified bytes.

        @raise SPPError: UNAVAILABLE when not held, CHANGED when the file
            changed, BAD_REQUEST when out of range.
        """

    def uploaded(index: int) -> bool:
        """
        Whether this node, as the file's origin, has read block C{index}
        for any node while the file was open: an origin answers the
        blocks it has not sent yet first, so that viewers asking at the
        same time get different blocks and trade them. Always False for a
        peer's cached file.
        """

    def held() -> Sequence[tuple[int, int]]:
        """
        The blocks held now, as C{(first, count)} ranges.
        """

    def watch(callback: Callable[[Sequence[tuple[int, int]]], None]) -> None:
        """
        Call C{callback(ranges)} whenever more blocks are held.
        """

    def peers(host: str, port: int) -> "Sequence[Peer]":
        """
        Other nodes for the node at C{host} listening on C{port} (0: it does
        not listen), which is recorded as fetching the file.
        """

    def close() -> None:
        """
        The connection is done with the file.
        """


class ISPPNode(Interface):
    """
    This node, as seen by the SPP connections it accepts or makes.
    """

    nodeId = Attribute("bytes: 16 random bytes naming this node")
    listenPort = Attribute("int: the port this node accepts SPP on, 0 if none")

    def open(url: str, version: str, connection: object) -> IServedFile:
        """
        Open a file for the peer on C{connection}, an L{IConnection}
        (typed C{object}: the answering side knows its connection by what it
        needs of it, not by this interface).

        @raise SPPError: NOT_FOUND, FORBIDDEN, CHANGED.
        """

    def connectionReady(connection: object) -> None:
        """
        A connection finished its handshake.
        """

    def connectionGone(connection: object) -> None:
        """
        A connection closed.
        """


class IRemoteFile(ISource):
    """
    A file this node opened on another node, before and after the node
    decides whether to believe it.
    """

    meta = Attribute("FileMeta: the file as the other node described it")
    connection = Attribute("IConnection: the connection it was opened on")

    def believe() -> None:
        """
        Count the file as an authority if it claimed to be one: the node
        dialed the URL's origin, or a mirror the origin named.
        """


class IConnection(Interface):
    """
    What the node needs of an SPP connection
    (L{p2pd.spp.protocol.SPPProtocol}).
    """

    remoteHost = Attribute("str: the other node's address")
    remoteListenPort = Attribute("int: the port its Hello names, 0 if none")
    remoteName = Attribute("str: host:port, for logs")
    initiator = Attribute("bool: this node dialed the connection")
    encrypted = Attribute("bool: the connection runs over TLS")
    waitingOpens = Attribute(
        "int: Opens waiting for the other node to have a handle free"
    )
    ready = Attribute(
        "Deferred firing with the connection when the handshake completes,"
        " or failing if it does not"
    )

    def open(
        url: str,
        version: str = "",
        digests: int = 0,
        blocks: Sequence[int] = (),
        peers: bool = False,
    ) -> "Deferred[IRemoteFile]":
        """
        Open C{url} on the other node; with C{digests}, C{blocks} and
        C{peers}, ask at once for those too.
        """

    def drop() -> None:
        """
        Close the connection: its node is not to be used again.
        """


class IConnector(Interface):
    """
    Makes connections to other nodes.
    """

    def connect(
        host: str, port: int, security: Security = PLAIN
    ) -> "Deferred[IConnection]":
        """
        A new connection to the node at C{host}:C{port}, dialed as
        C{security} says; requests may be sent on it at once, behind the
        handshake.
        """


class IWebNode(Interface):
    """
    What the HTTP side (proxy, gateway, C{/.status}) needs of the node.
    """

    nodeId = Attribute("bytes: 16 random bytes naming this node")
    listenPort = Attribute("int: the port this node accepts SPP on, 0 if none")
    counters = Attribute("Counters: what this node served to other nodes")

    def download(url: str) -> "Deferred[Download]":
        """
        The download of C{url}, shared with every other reader of it.
        """

    def downloads() -> "list[Download]":
        """
        The downloads running now.
        """

    def hasCached(url: str) -> bool:
        """
        Whether this node's cache holds some version of C{url}, to play
        when its origin cannot be reached.
        """

    def cacheUsage() -> "dict[str, int | None]":
        """
        The bytes the cache holds on disk (C{diskUsed}) and in memory
        (C{memoryUsed}), and their limits (C{diskLimit}, L{None} for none;
        C{memoryLimit}); empty for a node without a cache.
        """


class ICacheControl(Interface):
    """
    What C{p2pd cache} asks of a running node, through its control listener
    (L{p2pd.web.control}): changes to its cache that the node itself must
    make, so that it never serves or announces what is gone.
    """

    def removeCached(url: str) -> bool:
        """
        Stop fetching C{url} (its readers fail) and remove every cached
        version of it; whether the cache held any.
        """

    def purgeCache() -> int:
        """
        Stop every download and empty the cache; how many URLs (or pieces
        of debris) were removed.
        """

    def recheckCached(url: str, version: str, blocks: Sequence[int]) -> list[int]:
        """
        Read C{blocks} of C{url} at C{version} back from the disk and check
        them again; those that fail are forgotten and returned.
        """
