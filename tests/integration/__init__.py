"""
Integration tests: real C{twistd p2pd} nodes (L{tests.nodes}), players and
tools (L{tests.clients}), and sockets on loopback addresses.
"""
