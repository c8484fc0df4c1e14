"""
The network lab: p2pd, plain HTTP and libtorrent streaming to viewers on
shaped links, each node in a network namespace of its own. Run it with
C{python3 -m benchmarks.lab --help} (root only).
"""
