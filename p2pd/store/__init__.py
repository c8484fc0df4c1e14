"""
Where content lives: the published directory, block digests and caches.
"""
