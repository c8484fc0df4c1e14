"""
Tests for L{p2pd.engine.tracker}: the origin's record of the nodes fetching
each file, and the peer lists it hands out.
"""

import ipaddress

from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.peers import MAX_PEERS, Peer
from p2pd.engine.tracker import Tracker

KEY = "movie.ts"


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


class RecordForgetTests(SynchronousTestCase):
    """
    L{Tracker.record} and L{Tracker.forget} count each node's open handles.
    """

    def test_recorded(self) -> None:
        """
        A recorded node is listed for its file, and for no other file.
        """
        tracker = Tracker()
        tracker.record(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [("10.0.0.1", 1111)])
        self.assertEqual(tracker.nodes("other.ts"), [])

    def test_sameHostOtherPort(self) -> None:
        """
        Two nodes on one host (different listen ports) are two nodes.
        """
        tracker = Tracker()
        tracker.record(KEY, "10.0.0.1", 1111)
        tracker.record(KEY, "10.0.0.1", 2222)
        self.assertEqual(
            sorted(tracker.nodes(KEY)), [("10.0.0.1", 1111), ("10.0.0.1", 2222)]
        )

    def test_countedRecords(self) -> None:
        """
        A node recorded twice (two handles on the file) stays listed until it
        has been forgotten twice.
        """
        tracker = Tracker()
        tracker.record(KEY, "10.0.0.1", 1111)
        tracker.record(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [("10.0.0.1", 1111)])
        tracker.forget(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [("10.0.0.1", 1111)])
        tracker.forget(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [])

    def test_forgetUnknown(self) -> None:
        """
        Forgetting a node never recorded, or a file never seen, changes
        nothing and raises nothing; neither does forgetting too often.
        """
        tracker = Tracker()
        tracker.forget(KEY, "10.0.0.1", 1111)
        tracker.record(KEY, "10.0.0.1", 1111)
        tracker.forget(KEY, "10.0.0.2", 1111)
        tracker.forget(KEY, "10.0.0.1", 2222)
        tracker.forget("other.ts", "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [("10.0.0.1", 1111)])
        tracker.forget(KEY, "10.0.0.1", 1111)
        tracker.forget(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [])
        tracker.record(KEY, "10.0.0.1", 1111)
        self.assertEqual(tracker.nodes(KEY), [("10.0.0.1", 1111)])

    def test_forgottenFileLeavesNothing(self) -> None:
        """
        Once its last node is forgotten a file holds no state, so a busy
        origin does not accumulate keys.
        """
        tracker = Tracker()
        for n in range(100):
            tracker.record(f"file{n}", "10.0.0.1", 1111)
            tracker.forget(f"file{n}", "10.0.0.1", 1111)
        self.assertEqual(tracker._nodes, {})


class PeersForTests(SynchronousTestCase):
    """
    L{Tracker.peersFor}: the peer list for one asker, nearest first.
    """

    def test_empty(self) -> None:
        """
        With nobody else fetching and no mirrors, the list is empty.
        """
        self.assertEqual(Tracker().peersFor(KEY, "10.0.0.1", 1111), [])

    def test_excludesAsker(self) -> None:
        """
        The asker is not offered itself, but another node on its host (other
        port) is offered.
        """
        tracker = Tracker()
        tracker.record(KEY, "10.0.0.1", 1111)
        tracker.record(KEY, "10.0.0.1", 2222)
        self.assertEqual(
            tracker.peersFor(KEY, "10.0.0.1", 1111), [Peer("10.0.0.1", 2222)]
        )

    def test_otherFiles(self) -> None:
        """
        Nodes fetching another file are not offered.
        """
        tracker = Tracker()
        tracker.record("other.ts", "10.0.0.2", 1111)
        self.assertEqual(tracker.peersFor(KEY, "10.0.0.1", 1111), [])

    def test_newestFirst(self) -> None:
        """
        Without local nets, the most recently recorded nodes come first.
        """
        tracker = Tracker()
        for n in range(2, 6):
            tracker.record(KEY, f"192.0.2.{n}", 1111)
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "192.0.2.1", 1111)],
            ["192.0.2.5", "192.0.2.4", "192.0.2.3", "192.0.2.2"],
        )

    def test_nearestFirst(self) -> None:
        """
        Nodes on the asker's own local net come first, then nodes on another
        local net, then nodes on no local net, whatever the order they were
        recorded in.
        """
        tracker = Tracker([net("10.1.0.0/16"), net("10.2.0.0/16")])
        tracker.record(KEY, "10.1.0.9", 1111)  # the asker's net
        tracker.record(KEY, "198.51.100.7", 1111)  # no local net
        tracker.record(KEY, "10.2.0.9", 1111)  # another local net
        tracker.record(KEY, "10.1.0.8", 1111)  # the asker's net
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "10.1.0.1", 1111)],
            ["10.1.0.8", "10.1.0.9", "10.2.0.9", "198.51.100.7"],
        )

    def test_askerOutsideLocalNets(self) -> None:
        """
        An asker on no local net still gets nodes on local nets before the
        others.
        """
        tracker = Tracker([net("10.1.0.0/16")])
        tracker.record(KEY, "10.1.0.9", 1111)
        tracker.record(KEY, "198.51.100.7", 1111)
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "203.0.113.1", 1111)],
            ["10.1.0.9", "198.51.100.7"],
        )

    def test_ipv6LocalNet(self) -> None:
        """
        IPv6 local nets group IPv6 nodes; IPv4 nodes are never on them.
        """
        tracker = Tracker([net("2001:db8:1::/48"), net("10.0.0.0/8")])
        tracker.record(KEY, "198.51.100.7", 1111)
        tracker.record(KEY, "10.9.9.9", 1111)
        tracker.record(KEY, "2001:db8:1::9", 1111)
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "2001:db8:1::1", 1111)],
            ["2001:db8:1::9", "10.9.9.9", "198.51.100.7"],
        )

    def test_ipv4MappedAddresses(self) -> None:
        """
        A node listening on C{::} sees IPv4 peers at IPv4-mapped IPv6
        addresses (C{::ffff:10.1.0.9}): they are the IPv4 nodes they are,
        on IPv4 local nets, handed out as IPv4 addresses, and the asker is
        still excluded in either spelling.
        """
        tracker = Tracker([net("10.1.0.0/16"), net("10.2.0.0/16")])
        tracker.record(KEY, "::ffff:10.1.0.9", 1111)
        tracker.record(KEY, "::ffff:10.2.0.9", 1111)
        tracker.record(KEY, "::ffff:198.51.100.7", 1111)
        tracker.record(KEY, "::ffff:10.1.0.1", 1111)
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "::ffff:10.1.0.1", 1111)],
            ["10.1.0.9", "10.2.0.9", "198.51.100.7"],
        )
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "10.2.0.1", 1111)],
            ["10.2.0.9", "10.1.0.1", "10.1.0.9", "198.51.100.7"],
        )
        self.assertEqual(
            [p.host for p in tracker.peersFor(KEY, "10.1.0.1", 1111)],
            ["10.1.0.9", "10.2.0.9", "198.51.100.7"],
        )
        tracker.forget(KEY, "10.1.0.9", 1111)
        tracker.forget(KEY, "::ffff:10.2.0.9", 1111)
        self.assertEqual(
            sorted(tracker.nodes(KEY)), [("10.1.0.1", 1111), ("198.51.100.7", 1111)]
        )

    def test_ipv6NotMapped(self) -> None:
        """
        Ordinary IPv6 addresses are kept as they are.
        """
        tracker = Tracker()
        tracker.record(KEY, "2001:db8::9", 1111)
        self.assertEqual(
            tracker.peersFor(KEY, "2001:db8::1", 1111), [Peer("2001:db8::9", 1111)]
        )

    def test_mirrorsLast(self) -> None:
        """
        Mirrors come after every node, marked as servers, even when they are
        on the asker's local net.
        """
        mirrors = [Peer("10.1.0.100", 1111, True), Peer("198.51.100.100", 1111)]
        tracker = Tracker([net("10.1.0.0/16")], mirrors)
        tracker.record(KEY, "198.51.100.7", 1111)
        tracker.record(KEY, "10.1.0.9", 1111)
        self.assertEqual(
            tracker.peersFor(KEY, "10.1.0.1", 1111),
            [
                Peer("10.1.0.9", 1111),
                Peer("198.51.100.7", 1111),
                Peer("10.1.0.100", 1111, True),
                Peer("198.51.100.100", 1111, True),
            ],
        )

    def test_mirrorsForEveryFile(self) -> None:
        """
        Mirrors are offered for any file, even one nobody else fetches.
        """
        tracker = Tracker(mirrors=[Peer("10.0.0.100", 1111, True)])
        self.assertEqual(
            tracker.peersFor("any/file.bin", "10.0.0.1", 1111),
            [Peer("10.0.0.100", 1111, True)],
        )

    def test_atMostMaxPeers(self) -> None:
        """
        However many nodes fetch the file, the list holds at most
        L{MAX_PEERS} entries, the nearest ones.
        """
        tracker = Tracker([net("10.1.0.0/16")])
        tracker.record(KEY, "10.1.0.9", 1111)
        for n in range(MAX_PEERS * 2):
            tracker.record(KEY, "198.51.100.7", 2000 + n)
        peers = tracker.peersFor(KEY, "10.1.0.1", 1111)
        self.assertEqual(len(peers), MAX_PEERS)
        self.assertEqual(peers[0], Peer("10.1.0.9", 1111))

    def test_atMostMaxPeersWithMirrors(self) -> None:
        """
        Mirrors take their places from the nodes: the list still holds at
        most L{MAX_PEERS} entries, and every mirror is in it.
        """
        mirrors = [Peer(f"10.9.0.{n}", 1111, True) for n in range(1, 5)]
        tracker = Tracker(mirrors=mirrors)
        for n in range(MAX_PEERS):
            tracker.record(KEY, "198.51.100.7", 2000 + n)
        peers = tracker.peersFor(KEY, "10.1.0.1", 1111)
        self.assertEqual(len(peers), MAX_PEERS)
        self.assertEqual(peers[-4:], mirrors)
        self.assertFalse(any(p.server for p in peers[:-4]))

    def test_tooManyMirrors(self) -> None:
        """
        Even with more mirrors than fit in one answer, the list holds at most
        L{MAX_PEERS} entries.
        """
        mirrors = [Peer(f"10.9.{n // 200}.{n % 200 + 1}", 1111) for n in range(70)]
        tracker = Tracker(mirrors=mirrors)
        tracker.record(KEY, "198.51.100.7", 1111)
        peers = tracker.peersFor(KEY, "10.1.0.1", 1111)
        self.assertEqual(len(peers), MAX_PEERS)
        self.assertTrue(all(p.server for p in peers))
