"""
The HTTP side of p2pd: published files, playlists, the viewer's proxy and
the gateway.
"""
