# -*- test-case-name: tests.unit.test_tap -*-
"""
Sizes as people write them: C{256K}, C{512M}, C{10G}.
"""

import re

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parseSize(value: str) -> int:
    """
    A size in bytes from C{value} like C{4096}, C{64K}, C{512M} or C{10G}
    (binary units).
    """
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not a size (like 256K, 512M or 10G)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]
