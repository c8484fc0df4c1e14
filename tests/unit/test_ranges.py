"""
Tests for L{p2pd.web.ranges}: parsing C{Range} headers and resolving them
against a size.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.web.ranges import ByteRange, Span, Unsatisfiable, parseRange, resolve

_LARGEST = 10**19 - 1  # the largest offset a header may hold (19 digits)


class ParseRangeTests(SynchronousTestCase):
    """
    L{parseRange} turns a header value into L{ByteRange}s, or None when the
    header must be ignored.
    """

    def test_closed(self) -> None:
        """
        C{a-b} is the range from C{a} to C{b} inclusive.
        """
        self.assertEqual(parseRange(b"bytes=0-499"), [ByteRange(0, 499)])

    def test_singleByte(self) -> None:
        """
        C{a-a} is one byte.
        """
        self.assertEqual(parseRange(b"bytes=7-7"), [ByteRange(7, 7)])

    def test_open(self) -> None:
        """
        C{a-} runs from C{a} to the end.
        """
        self.assertEqual(parseRange(b"bytes=500-"), [ByteRange(500, None)])

    def test_fromStart(self) -> None:
        """
        C{0-} (what players send to open a stream) is an open range.
        """
        self.assertEqual(parseRange(b"bytes=0-"), [ByteRange(0, None)])

    def test_suffix(self) -> None:
        """
        C{-n} is the last C{n} bytes.
        """
        self.assertEqual(parseRange(b"bytes=-500"), [ByteRange(None, 500)])

    def test_unitCaseInsensitive(self) -> None:
        """
        The unit is compared without regard to case.
        """
        self.assertEqual(parseRange(b"Bytes=1-2"), [ByteRange(1, 2)])
        self.assertEqual(parseRange(b"BYTES=1-2"), [ByteRange(1, 2)])

    def test_whitespace(self) -> None:
        """
        Spaces and tabs around the unit, the numbers and the commas are
        allowed.
        """
        self.assertEqual(
            parseRange(b" bytes = 0 - 499 ,\t600- , - 5 "),
            [ByteRange(0, 499), ByteRange(600, None), ByteRange(None, 5)],
        )

    def test_multiple(self) -> None:
        """
        Several ranges are returned in the order given.
        """
        self.assertEqual(
            parseRange(b"bytes=500-600,0-99,-1"),
            [ByteRange(500, 600), ByteRange(0, 99), ByteRange(None, 1)],
        )

    def test_emptyElements(self) -> None:
        """
        Empty list elements are skipped, as RFC 9110 allows.
        """
        self.assertEqual(
            parseRange(b"bytes=,0-1,, ,2-3,"), [ByteRange(0, 1), ByteRange(2, 3)]
        )

    def test_onlyEmptyElements(self) -> None:
        """
        A header with no range at all is malformed.
        """
        self.assertIsNone(parseRange(b"bytes="))
        self.assertIsNone(parseRange(b"bytes=,"))
        self.assertIsNone(parseRange(b"bytes= , ,"))

    def test_badUnit(self) -> None:
        """
        A unit other than bytes, or no unit, makes the header ignored.
        """
        for header in [b"items=0-1", b"byte=0-1", b"bytes0-1", b"0-1", b"=0-1", b""]:
            self.assertIsNone(parseRange(header), header)

    def test_lastBeforeFirst(self) -> None:
        """
        C{b-a} with C{b > a} is malformed, not unsatisfiable.
        """
        self.assertIsNone(parseRange(b"bytes=5-4"))
        self.assertIsNone(parseRange(b"bytes=0-1,5-4"))

    def test_notDigits(self) -> None:
        """
        Anything but ASCII digits where a number belongs makes the header
        ignored: signs, hex, fractions, non-ASCII digits, extra dashes, a
        lone dash.
        """
        for header in [
            b"bytes=a-b",
            b"bytes=1-2x",
            b"bytes=+1-2",
            b"bytes=1-+2",
            b"bytes=-+2",
            b"bytes=0x10-",
            b"bytes=1.5-2",
            b"bytes=1 2-3",
            b"bytes=-",
            b"bytes=--1",
            b"bytes=1-2-3",
            b"bytes=1",
            "bytes=\u0663-".encode(),  # ARABIC-INDIC DIGIT THREE
            "bytes=\u00b2-".encode(),  # SUPERSCRIPT TWO
            b"bytes=0-1,x",
        ]:
            self.assertIsNone(parseRange(header), header)

    def test_largestNumber(self) -> None:
        """
        Offsets of up to 19 digits are accepted.
        """
        self.assertEqual(
            parseRange(b"bytes=0-9999999999999999999"), [ByteRange(0, _LARGEST)]
        )
        self.assertEqual(
            parseRange(b"bytes=-9999999999999999999"), [ByteRange(None, _LARGEST)]
        )

    def test_hugeNumber(self) -> None:
        """
        Longer numbers make the header ignored, so no offset is ever larger
        than 2**63 and no huge integer is ever built.
        """
        for header in [
            b"bytes=0-10000000000000000000",
            b"bytes=10000000000000000000-",
            b"bytes=-10000000000000000000",
            b"bytes=0-" + b"9" * 5000,
        ]:
            self.assertIsNone(parseRange(header), header[:40])

    def test_manyRanges(self) -> None:
        """
        Up to 100 ranges are accepted.
        """
        header = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(100))
        self.assertEqual(len(parseRange(header) or []), 100)

    def test_tooManyRanges(self) -> None:
        """
        More than 100 ranges make the header ignored.
        """
        header = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(101))
        self.assertIsNone(parseRange(header))


class ResolveTests(SynchronousTestCase):
    """
    L{resolve} turns ranges into byte spans of an entity of a given size.
    """

    def test_closed(self) -> None:
        """
        A closed range inside the entity is taken as it is, last byte
        included.
        """
        self.assertEqual(resolve([ByteRange(10, 19)], 100), [Span(10, 20)])

    def test_clampLast(self) -> None:
        """
        A last byte past the end is clamped to the end.
        """
        self.assertEqual(resolve([ByteRange(90, 1000)], 100), [Span(90, 100)])

    def test_open(self) -> None:
        """
        An open range runs to the end.
        """
        self.assertEqual(resolve([ByteRange(40, None)], 100), [Span(40, 100)])

    def test_lastByte(self) -> None:
        """
        A range starting at the last byte is one byte long.
        """
        self.assertEqual(resolve([ByteRange(99, None)], 100), [Span(99, 100)])

    def test_suffix(self) -> None:
        """
        A suffix range is the last bytes of the entity.
        """
        self.assertEqual(resolve([ByteRange(None, 10)], 100), [Span(90, 100)])

    def test_suffixLargerThanSize(self) -> None:
        """
        A suffix longer than the entity is the whole entity.
        """
        self.assertEqual(resolve([ByteRange(None, 1000)], 100), [Span(0, 100)])

    def test_zeroSuffix(self) -> None:
        """
        C{-0} asks for no bytes: unsatisfiable.
        """
        self.assertRaises(Unsatisfiable, resolve, [ByteRange(None, 0)], 100)

    def test_startAtEnd(self) -> None:
        """
        A range starting at the size is unsatisfiable.
        """
        self.assertRaises(Unsatisfiable, resolve, [ByteRange(100, None)], 100)
        self.assertRaises(Unsatisfiable, resolve, [ByteRange(100, 200)], 100)

    def test_startPastEnd(self) -> None:
        """
        A range starting past the end is unsatisfiable.
        """
        self.assertRaises(Unsatisfiable, resolve, [ByteRange(_LARGEST, None)], 100)

    def test_unsatisfiableDropped(self) -> None:
        """
        Of several ranges, the unsatisfiable ones are dropped and the others
        kept in order.
        """
        self.assertEqual(
            resolve(
                [ByteRange(500, None), ByteRange(None, 5), ByteRange(0, 0)],
                100,
            ),
            [Span(95, 100), Span(0, 1)],
        )

    def test_sizeZero(self) -> None:
        """
        Nothing can be taken from an empty entity.
        """
        for r in [ByteRange(0, None), ByteRange(0, 10), ByteRange(None, 10)]:
            self.assertRaises(Unsatisfiable, resolve, [r], 0)

    def test_spanLength(self) -> None:
        """
        A span's length counts its bytes.
        """
        self.assertEqual(Span(10, 20).length, 10)

    def test_contentRange(self) -> None:
        """
        A span renders as a C{Content-Range} value with an inclusive last
        byte and the entity size.
        """
        self.assertEqual(Span(0, 10).contentRange(100), b"bytes 0-9/100")
        self.assertEqual(Span(99, 100).contentRange(100), b"bytes 99-99/100")


_offsets = st.integers(min_value=0, max_value=_LARGEST)
_blank = st.sampled_from(["", " ", "\t", " \t "])


@st.composite
def _byteRanges(draw: st.DrawFn) -> ByteRange:
    kind = draw(st.sampled_from(["closed", "open", "suffix"]))
    if kind == "suffix":
        return ByteRange(None, draw(_offsets))
    first = draw(_offsets)
    if kind == "open":
        return ByteRange(first, None)
    return ByteRange(first, draw(st.integers(min_value=first, max_value=_LARGEST)))


def _render(r: ByteRange, blank: str) -> str:
    first = "" if r.first is None else str(r.first)
    last = "" if r.last is None else str(r.last)
    return f"{blank}{first}{blank}-{blank}{last}{blank}"


@st.composite
def _headers(draw: st.DrawFn) -> tuple[bytes, list[ByteRange]]:
    ranges = draw(st.lists(_byteRanges(), min_size=1, max_size=8))
    parts = [_render(r, draw(_blank)) for r in ranges]
    return ("bytes=" + ",".join(parts)).encode("ascii"), ranges


def _satisfiable(r: ByteRange, size: int) -> bool:
    if r.first is None:
        return size > 0 and (r.last or 0) > 0
    return r.first < size


class RangePropertyTests(SynchronousTestCase):
    """
    Properties of parsing and resolving that hold for every input.
    """

    @settings(deadline=None)
    @given(st.binary(max_size=200))
    def test_parseNeverRaises(self, header: bytes) -> None:
        """
        Arbitrary bytes parse to None or to a list of ranges, never an
        exception.
        """
        result = parseRange(header)
        self.assertTrue(result is None or all(isinstance(r, ByteRange) for r in result))

    @settings(deadline=None)
    @given(st.binary(max_size=200))
    def test_parseArbitrarySpecNeverRaises(self, spec: bytes) -> None:
        """
        Arbitrary bytes after a valid unit parse to None or to ranges whose
        offsets are non-negative and ordered.
        """
        for r in parseRange(b"bytes=" + spec) or []:
            self.assertTrue(r.first is None or 0 <= r.first <= _LARGEST)
            self.assertTrue(r.last is None or 0 <= r.last <= _LARGEST)
            if r.first is not None and r.last is not None:
                self.assertLessEqual(r.first, r.last)

    @settings(deadline=None)
    @given(_headers())
    def test_parseValid(self, example: tuple[bytes, list[ByteRange]]) -> None:
        """
        A valid header parses to exactly the ranges written in it.
        """
        header, ranges = example
        self.assertEqual(parseRange(header), ranges)

    @settings(deadline=None)
    @given(_headers(), st.integers(min_value=0, max_value=2**40))
    def test_resolvedWithinEntity(
        self, example: tuple[bytes, list[ByteRange]], size: int
    ) -> None:
        """
        Resolved spans are non-empty and inside C{[0, size)}, one for each
        satisfiable range; with none satisfiable, resolving raises
        L{Unsatisfiable}.
        """
        header, ranges = example
        parsed = parseRange(header)
        assert parsed is not None
        expected = [r for r in ranges if _satisfiable(r, size)]
        if not expected:
            self.assertRaises(Unsatisfiable, resolve, parsed, size)
            return
        spans = resolve(parsed, size)
        self.assertEqual(len(spans), len(expected))
        for span in spans:
            self.assertTrue(0 <= span.start < span.stop <= size, (span, size))

    @settings(deadline=None)
    @given(_headers(), st.integers(min_value=1, max_value=2**40))
    def test_roundTrip(self, example: tuple[bytes, list[ByteRange]], size: int) -> None:
        """
        Spans rendered back into a header as closed ranges parse and resolve
        to the same spans.
        """
        parsed = parseRange(example[0])
        assert parsed is not None
        try:
            spans = resolve(parsed, size)
        except Unsatisfiable:
            return
        header = b"bytes=" + b",".join(
            b"%d-%d" % (span.start, span.stop - 1) for span in spans
        )
        again = parseRange(header)
        assert again is not None
        self.assertEqual(resolve(again, size), spans)
