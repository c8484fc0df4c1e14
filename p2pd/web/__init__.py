"""
The HTTP side of p2pd: published files, playlists and (later) the proxy.
"""
