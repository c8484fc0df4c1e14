"""
p2pd: a peer-to-peer video-on-demand streaming daemon.

One daemon, started as C{twistd p2pd}, that publishes video files over SPP and
HTTP, caches them, and lets ordinary players stream them through a local proxy.
"""

__version__ = "0.1.0"
