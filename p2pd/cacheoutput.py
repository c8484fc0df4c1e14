# -*- test-case-name: tests.unit.test_cachecommand -*-
"""
How C{p2pd cache} shows what it found to a person: sizes in binary units,
times in local time, tables with aligned columns.
"""

import time
from collections.abc import Sequence

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def humanSize(size: int) -> str:
    """
    C{size} bytes as a person reads them: C{512 B}, C{1.5 KiB}, C{12.0 GiB}.
    """
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def humanTime(when: float) -> str:
    """
    A time (seconds since the epoch) in local time, to the minute; C{-}
    when unknown (0).
    """
    if when <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(when))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """
    C{rows} under C{header}, each column as wide as its widest cell, the
    columns in C{right} aligned right; the last column is not padded.
    """
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
