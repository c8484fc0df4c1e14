# -*- test-case-name: tests.unit.test_url -*-
"""
Tests for L{p2pd.core.url}: parsing and normalising C{spp://} URLs.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from p2pd.core.net import DEFAULT_PORT
from p2pd.core.url import SPPURL, BadURL, parse


class ParseTests(SynchronousTestCase):
    """
    L{parse} gives the URL's parts with the port made explicit, or raises
    L{BadURL}.
    """

    def test_parts(self) -> None:
        """
        Host (lower-cased), port (the default when none is given) and the
        percent-encoded path.
        """
        self.assertEqual(
            parse("spp://Origin.Example/a%20b/movie.ts"),
            SPPURL("origin.example", DEFAULT_PORT, "/a%20b/movie.ts"),
        )
        self.assertEqual(parse("spp://[::1]:2222/m").host, "::1")
        self.assertEqual(str(parse("spp://[::1]:2222/m")), "spp://[::1]:2222/m")
        self.assertEqual(parse("spp://h/a%2Fb/c").segments, [b"a/b", b"c"])

    def test_bad(self) -> None:
        """
        Other schemes, no host, no file, a query or fragment, credentials,
        a bad port and an overlong URL are refused.
        """
        for url in [
            "http://host/movie.ts",
            "spp:///movie.ts",
            "spp://host",
            "spp://host/",
            "spp://host/movie.ts?x=1",
            "spp://host/movie.ts#t",
            "spp://host/movie.ts?",
            "spp://host/movie.ts#",
            "spp://@host/movie.ts",
            "spp://user@host/movie.ts",
            "spp://host:99999/movie.ts",
            "spp://ho st/movie.ts",
            "spp://host/" + "x" * 2048,
        ]:
            self.assertRaises(BadURL, parse, url)

    @given(st.text(max_size=100))
    def test_anyText(self, text: str) -> None:
        """
        Any text parses or raises L{BadURL}, and so does it behind the
        scheme.
        """
        for url in (text, "spp://" + text):
            try:
                parse(url)
            except BadURL:
                pass

    @given(
        st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True),
        st.integers(0, 65535),
        st.from_regex(r"(/[a-zA-Z0-9%._~-]{1,10}){1,4}", fullmatch=True),
    )
    def test_normalised(self, host: str, port: int, path: str) -> None:
        """
        A parsed URL written out parses to itself.
        """
        parsed = parse(f"spp://{host}:{port}{path}")
        self.assertEqual(parse(str(parsed)), parsed)
        self.assertEqual(str(parsed), f"spp://{host}:{port}{path}")
