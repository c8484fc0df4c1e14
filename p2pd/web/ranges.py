# -*- test-case-name: tests.unit.test_ranges -*-
"""
HTTP byte ranges (RFC 9110 section 14): parsing the C{Range} header and
resolving it against an entity's size.

Pure functions, shared by every resource that serves bytes, so the published
files and the proxy answer a player's Range requests the same way.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    """
    One range as a client wrote it.

    C{first} is None for a suffix range (C{-n}: the last C{last} bytes);
    C{last} is None for an open range (C{a-}).
    """

    first: int | None
    last: int | None


@dataclass(frozen=True)
class Span:
    """
    A satisfiable range resolved against a size: bytes C{start} to C{stop}
    (exclusive).
    """

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    def contentRange(self, size: int) -> bytes:
        """
        The C{Content-Range} value for this span of an entity of C{size} bytes.
        """
        return b"bytes %d-%d/%d" % (self.start, self.stop - 1, size)


class Unsatisfiable(Exception):
    """
    Every range starts at or past the end of the entity: answer 416.
    """


_MAX_RANGES = 100
_MAX_DIGITS = 19  # keeps every offset below 2**63


def parseRange(header: bytes) -> list[ByteRange] | None:
    """
    Parse a C{Range} header value.

    @return: the ranges in the order given, or None when the header is
        malformed or not in bytes, in which case the header must be ignored
        and the whole entity served.
    """
    unit, sep, spec = header.partition(b"=")
    if not sep or unit.strip().lower() != b"bytes":
        return None
    ranges = []
    for part in spec.split(b","):
        part = part.strip(b" \t")
        if not part:
            continue  # RFC 9110 allows empty list elements
        first, dash, last = part.partition(b"-")
        first, last = first.strip(b" \t"), last.strip(b" \t")
        if not dash or not _isNumber(first, allowEmpty=True):
            return None
        if not _isNumber(last, allowEmpty=True):
            return None
        if not first:
            if not last:
                return None
            ranges.append(ByteRange(None, int(last)))
        else:
            end = int(last) if last else None
            if end is not None and end < int(first):
                return None
            ranges.append(ByteRange(int(first), end))
        if len(ranges) > _MAX_RANGES:
            return None
    return ranges or None


def _isNumber(text: bytes, allowEmpty: bool) -> bool:
    if not text:
        return allowEmpty
    return len(text) <= _MAX_DIGITS and text.isdigit()


def resolve(ranges: list[ByteRange], size: int) -> list[Span]:
    """
    Resolve parsed ranges against an entity of C{size} bytes.

    Ranges that cannot be satisfied are dropped; if none is left the whole
    request is unsatisfiable.

    @raise Unsatisfiable: when no range overlaps the entity.
    """
    spans = []
    for r in ranges:
        if r.first is None:
            assert r.last is not None
            if r.last == 0 or size == 0:
                continue
            spans.append(Span(max(0, size - r.last), size))
        elif r.first < size:
            stop = size if r.last is None else min(r.last + 1, size)
            spans.append(Span(r.first, stop))
    if not spans:
        raise Unsatisfiable()
    return spans
