"""
The tests of p2pd: L{tests.unit} runs in memory, in seconds;
L{tests.integration} runs real nodes, players and tools on loopback;
L{tests.conformance} checks a real node against every MUST of
docs/protocol.md through bytes on a socket. The helpers they share are the
other modules of this package.
"""

import os

# The root of the checkout the tests run from.
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
