"""
Tests for L{p2pd.playlist}: the PLS playlists a C{--redirect} server answers
with, and the URLs in them; and for L{tests.playlists}, which reads them
back.
"""

from urllib.parse import unquote, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.url import DIRECT_PREFIX
from p2pd.playlist import (
    CONTENT_TYPE,
    Entry,
    directURL,
    forFile,
    quotePath,
    render,
    sppURL,
)
from tests.playlists import PlaylistError, parse

# The brief's example (section 4), with the fallback URL filled in.
BRIEF_EXAMPLE = (
    b"[playlist]\n"
    b"NumberOfEntries=2\n"
    b"File1=spp://spp.example.org:1111/movie.mpg\n"
    b"Title1=movie.mpg (SPP)\n"
    b"Length1=1234555\n"
    b"File2=http://spp.example.org:1111/.direct/movie.mpg\n"
    b"Title2=movie.mpg (HTTP)\n"
    b"Length2=1234555\n"
    b"Version=2\n"
)


class RenderTests(SynchronousTestCase):
    """
    L{forFile} and L{render} write PLS version 2 playlists.
    """

    def test_briefExample(self) -> None:
        """
        The playlist for C{movie.mpg} is exactly the brief's example.
        """
        self.assertEqual(
            forFile(
                "spp.example.org:1111", "spp.example.org:1111", "movie.mpg", 1234555
            ),
            BRIEF_EXAMPLE,
        )

    def test_authorities(self) -> None:
        """
        The C{spp://} entry uses the SPP authority, the fallback the HTTP one.
        """
        entries = parse(forFile("a.example:1111", "b.example:8080", "m.ts", 5))
        self.assertEqual(
            [e.url for e in entries],
            ["spp://a.example:1111/m.ts", "http://b.example:8080/.direct/m.ts"],
        )

    def test_contentType(self) -> None:
        """
        Playlists are served as C{application/x-spp-playlist}.
        """
        self.assertEqual(CONTENT_TYPE, b"application/x-spp-playlist")

    def test_directPrefix(self) -> None:
        """
        The fallback prefix starts with a dot, so no published name (hidden
        names are never published) can shadow it.
        """
        self.assertTrue(DIRECT_PREFIX.startswith("."))

    def test_awkwardNames(self) -> None:
        """
        Spaces, non-ASCII letters, C{#}, C{?} and C{%} are percent-encoded
        (UTF-8) in both URLs; the titles keep the plain name.
        """
        name = "sub dir/My Movie #1? 100% caf\u00e9.mkv"
        body = forFile("h.example:1111", "h.example:1111", name, 42)
        quoted = "sub%20dir/My%20Movie%20%231%3F%20100%25%20caf%C3%A9.mkv"
        self.assertEqual(
            parse(body),
            [
                Entry(
                    f"spp://h.example:1111/{quoted}",
                    "My Movie #1? 100% caf\u00e9.mkv (SPP)",
                    42,
                ),
                Entry(
                    f"http://h.example:1111/.direct/{quoted}",
                    "My Movie #1? 100% caf\u00e9.mkv (HTTP)",
                    42,
                ),
            ],
        )
        self.assertIn(
            "Title1=My Movie #1? 100% caf\u00e9.mkv (SPP)\n", body.decode("utf-8")
        )

    def test_urlsParse(self) -> None:
        """
        The URLs split into the right parts: nothing of the name leaks into
        a query or fragment.
        """
        name = "a#b?c%d.mp4"
        for url in [sppURL("h:1", name), directURL("h:1", name)]:
            parts = urlsplit(url)
            self.assertEqual(
                (parts.netloc, parts.query, parts.fragment), ("h:1", "", "")
            )
            self.assertTrue(unquote(parts.path).endswith("/" + name))

    def test_quotePathKeepsSlashes(self) -> None:
        """
        Slashes between directories stay slashes.
        """
        self.assertEqual(quotePath("a b/c d/e.mp4"), "a%20b/c%20d/e.mp4")

    def test_quotePathUnreserved(self) -> None:
        """
        Unreserved characters are left alone.
        """
        self.assertEqual(quotePath("Movie-1_2.3~x.mp4"), "Movie-1_2.3~x.mp4")

    def test_titleNewlines(self) -> None:
        """
        Line breaks in a title become spaces, so they cannot add lines.
        """
        body = render([Entry("http://h/x", "a\nFile2=http://evil/\rb", 1)])
        self.assertEqual(
            parse(body), [Entry("http://h/x", "a File2=http://evil/ b", 1)]
        )

    def test_empty(self) -> None:
        """
        A playlist of no entries still has its header and version.
        """
        self.assertEqual(render([]), b"[playlist]\nNumberOfEntries=0\nVersion=2\n")


class ParseTests(SynchronousTestCase):
    """
    L{parse} reads PLS playlists, leniently in layout, strictly in
    structure.
    """

    def test_briefExample(self) -> None:
        """
        The brief's example parses to its two entries, in order.
        """
        self.assertEqual(
            parse(BRIEF_EXAMPLE),
            [
                Entry(
                    "spp://spp.example.org:1111/movie.mpg", "movie.mpg (SPP)", 1234555
                ),
                Entry(
                    "http://spp.example.org:1111/.direct/movie.mpg",
                    "movie.mpg (HTTP)",
                    1234555,
                ),
            ],
        )

    def test_layout(self) -> None:
        """
        CRLF and CR line ends, blank lines, a UTF-8 byte order mark, spaces
        around keys and values, any case in keys, entries out of order and
        unknown keys are all accepted.
        """
        data = (
            "\ufeff[Playlist]\r\n\r\n"
            "  file2 = http://h/b \r\n"
            "TITLE2=B\r"
            "Version=2\n"
            "X-Unknown=1\n"
            "NumberOfEntries=7\n"
            "File1=http://h/a\n"
            "length1=-1\n"
        ).encode("utf-8")
        self.assertEqual(
            parse(data), [Entry("http://h/a", "", -1), Entry("http://h/b", "B", -1)]
        )

    def test_latin1(self) -> None:
        """
        A playlist that is not UTF-8 is read as Latin-1.
        """
        data = "[playlist]\nFile1=http://h/x\nTitle1=caf\u00e9\n".encode("latin-1")
        self.assertEqual(parse(data), [Entry("http://h/x", "caf\u00e9", -1)])

    def test_equalsInValue(self) -> None:
        """
        Only the first C{=} separates key from value.
        """
        data = b"[playlist]\nFile1=http://h/x?a=b\nTitle1=a=b\n"
        self.assertEqual(parse(data), [Entry("http://h/x?a=b", "a=b", -1)])

    def test_noHeader(self) -> None:
        """
        Data without the C{[playlist]} header is not a playlist.
        """
        for data in [b"", b"\n\n", b"File1=http://h/x\n", b"[other]\nFile1=x\n"]:
            self.assertRaises(PlaylistError, parse, data)

    def test_tooLarge(self) -> None:
        """
        Data larger than 64 KiB is refused unread.
        """
        data = b"[playlist]\nFile1=http://h/x\n" + b"#" * (64 * 1024)
        self.assertRaises(PlaylistError, parse, data)

    def test_malformedLine(self) -> None:
        """
        A line without C{=} is an error.
        """
        self.assertRaises(PlaylistError, parse, b"[playlist]\nFile1=x\ngarbage\n")

    def test_badLength(self) -> None:
        """
        A Length that is not a number is an error.
        """
        for value in [b"abc", b"1.5", b"", b"9" * 5000]:
            self.assertRaises(
                PlaylistError, parse, b"[playlist]\nFile1=x\nLength1=" + value + b"\n"
            )

    def test_entryNumberOutOfRange(self) -> None:
        """
        Entry numbers must be from 1 to 1000.
        """
        for key in [
            b"File0",
            b"File1001",
            b"Title0",
            b"Length99999",
            b"File" + b"9" * 5000,
        ]:
            self.assertRaises(
                PlaylistError, parse, b"[playlist]\nFile1=x\n" + key + b"=y\n"
            )

    def test_nonASCIIDigits(self) -> None:
        """
        Entry numbers are ASCII digits; other digits are an error, never a
        crash.
        """
        for key in ["File\u00b2", "File\u0663", "Title\u00b9", "Length\u2155"]:
            data = f"[playlist]\nFile1=x\n{key}=y\n".encode()
            try:
                entries = parse(data)
            except PlaylistError:
                continue
            self.assertEqual(entries, [Entry("x", "", -1)], key)

    def test_noEntries(self) -> None:
        """
        A playlist without entries is an error.
        """
        self.assertRaises(PlaylistError, parse, b"[playlist]\nNumberOfEntries=0\n")

    def test_entryWithoutFile(self) -> None:
        """
        An entry with a Title but no File is an error.
        """
        self.assertRaises(
            PlaylistError, parse, b"[playlist]\nFile1=x\nTitle2=no file\n"
        )


def _oneLine(text: str) -> bool:
    return text == text.strip() and "\n" not in text and "\r" not in text


# Values without line ends, and without surrounding whitespace (which PLS
# readers, this one included, do not keep).
_values = st.text(max_size=60).filter(_oneLine)
_entries = st.builds(
    Entry,
    url=_values,
    title=_values,
    length=st.integers(min_value=-1, max_value=2**63),
)


class PlaylistPropertyTests(SynchronousTestCase):
    """
    Properties of rendering and parsing that hold for every input.
    """

    @settings(deadline=None)
    @given(st.lists(_entries, min_size=1, max_size=20))
    def test_roundTrip(self, entries: list[Entry]) -> None:
        """
        Parsing a rendered playlist gives back its entries.
        """
        self.assertEqual(parse(render(entries)), entries)

    @settings(deadline=None)
    @given(st.text(max_size=80), st.integers(min_value=0, max_value=2**63))
    def test_forFileRoundTrip(self, name: str, size: int) -> None:
        """
        For any name, the playlist parses to two entries whose URLs decode
        back to the name.
        """
        entries = parse(forFile("h.example:1", "h.example:2", name, size))
        self.assertEqual([e.length for e in entries], [size, size])
        self.assertEqual(unquote(entries[0].url), "spp://h.example:1/" + name)
        self.assertEqual(unquote(entries[1].url), "http://h.example:2/.direct/" + name)
        for entry in entries:
            self.assertTrue(entry.url.isascii())
            self.assertFalse(set(' #?"<>\\^`{|}\x7f') & set(entry.url), entry.url)

    @settings(deadline=None)
    @given(st.binary(max_size=300))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Arbitrary bytes parse or raise L{PlaylistError}, nothing else.
        """
        self.assertParsesOrRefuses(data)

    @settings(deadline=None)
    @given(st.text(max_size=300))
    def test_arbitraryBody(self, text: str) -> None:
        """
        Arbitrary text after a valid header parses or raises
        L{PlaylistError}, nothing else.
        """
        self.assertParsesOrRefuses(("[playlist]\n" + text).encode("utf-8"))

    @settings(deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["File", "Title", "Length", "file", "X"]),
                st.text(alphabet="0123456789\u00b2\u0663", max_size=4),
                st.text(max_size=10),
            ),
            max_size=10,
        )
    )
    def test_arbitraryKeys(self, lines: list[tuple[str, str, str]]) -> None:
        """
        Lines that look like entries, with any numbers and values, parse or
        raise L{PlaylistError}, nothing else.
        """
        text = "".join(f"{kind}{number}={value}\n" for kind, number, value in lines)
        self.assertParsesOrRefuses(("[playlist]\n" + text).encode("utf-8"))

    def assertParsesOrRefuses(self, data: bytes) -> None:
        try:
            entries = parse(data)
        except PlaylistError:
            return
        self.assertTrue(entries)
        for entry in entries:
            self.assertIsInstance(entry, Entry)
