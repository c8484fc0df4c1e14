"""
The HTTP side of p2pd: published files, playlists, the proxy, the gateway
and C{/.status}.
"""
