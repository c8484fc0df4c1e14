"""
The twistd plugin: C{twistd p2pd ...}.

This file must import nothing from p2pd and never the reactor: if it fails to
import, twistd only logs it and the C{p2pd} subcommand silently vanishes.
"""

from twisted.application.service import ServiceMaker

p2pd = ServiceMaker(
    "p2pd",
    "p2pd.tap",
    "Peer-to-peer video-on-demand node: SPP server, cache and HTTP proxy.",
    "p2pd",
)
