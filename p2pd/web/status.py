# -*- test-case-name: tests.unit.test_root -*-
"""
C{/.status}: what the node is doing, as JSON, for operators and tests.
"""

import json

from p2pd import __version__
from p2pd.engine.interfaces import IWebNode


def nodeStatus(node: IWebNode) -> dict[str, object]:
    """
    A JSON-ready summary of C{node}: what it served, what it is
    downloading, and what its cache holds.
    """
    counters = node.counters
    downloads = []
    for download in node.downloads():
        meta = download.meta
        downloads.append(
            {
                "url": meta.url,
                "version": meta.version,
                "size": meta.size,
                "blocks": meta.blocks,
                "held": sum(count for _, count in download.store.held()),
                "readers": len(download.readers),
                "sources": sorted(s.name for s in download.sources),
                "bytesBySource": dict(sorted(download.bytesBySource.items())),
            }
        )
    return {
        "version": __version__,
        "nodeId": node.nodeId.hex(),
        "listenPort": node.listenPort,
        "served": {
            "blocks": counters.blocksServed,
            "bytes": counters.bytesServed,
            "bytesByFile": dict(sorted(counters.bytesByFile.items())),
        },
        "downloads": downloads,
        "cache": node.cacheUsage(),
    }


def render(node: IWebNode) -> bytes:
    return json.dumps(nodeStatus(node), indent=2).encode("utf-8") + b"\n"
