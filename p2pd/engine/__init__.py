"""
The download engine: files, readers, sources, scheduling, verification and
the tracker. No sockets and no HTTP here; time comes from an injected clock.
"""
