"""
The documentation of the command line cannot drift from the code: every
option of C{twistd p2pd} is in the man page and in docs/running.md, and
neither documents an option that does not exist.
"""

import os
import re
import shlex

from twisted.trial.unittest import SynchronousTestCase

from p2pd import __version__
from p2pd.tap import Options
from tests import CHECKOUT

MAN_PAGE = os.path.join(CHECKOUT, "docs", "p2pd.8")
RUNNING = os.path.join(CHECKOUT, "docs", "running.md")

# Font macros whose arguments alternate between fonts, joined without spaces.
_ALTERNATING = {".BR", ".RB", ".BI", ".IB", ".IR", ".RI"}
_SINGLE = {".B", ".I", ".SH", ".SS"}


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _options() -> dict[str, str | None]:
    """
    Every long option of C{twistd p2pd}, with its short letter or None.
    """
    options = Options()
    longNames = {name.rstrip("=") for name in options.longOpt}
    short: dict[str, str | None] = {name: None for name in longNames}
    for name, canonical in options.synonyms.items():
        if len(name) == 1:
            short[canonical] = name
    return short


def _roffLine(line: str) -> str | None:
    """
    The text a line of a man page shows, roughly: escapes and font changes
    removed, font macros' arguments joined; None for other requests and
    comments.
    """
    for escape, text in (
        ("\\-", "-"),
        ("\\fB", ""),
        ("\\fI", ""),
        ("\\fR", ""),
        ("\\fP", ""),
        ("\\(dq", '"'),
        ("\\&", ""),
        ("\\c", ""),
        ("\\e", "\\"),
    ):
        line = line.replace(escape, text)
    if not line.startswith((".", "'")):
        return line
    macro, _, rest = line.partition(" ")
    if macro in _ALTERNATING:
        return "".join(shlex.split(rest))
    if macro in _SINGLE:
        return " ".join(shlex.split(rest))
    return None


def _manText() -> list[str]:
    lines = (_roffLine(line) for line in _read(MAN_PAGE).splitlines())
    return [line for line in lines if line is not None]


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-])--{re.escape(option)}(?![\w-])", text) is not None


class ManPageTests(SynchronousTestCase):
    """
    docs/p2pd.8 lists exactly the options p2pd.tap.Options has.
    """

    def test_everyOptionDocumented(self) -> None:
        """
        Every long option appears in the man page, and those with a short
        letter appear as C{-X, --long}.
        """
        text = "\n".join(_manText())
        for name, letter in sorted(_options().items()):
            self.assertTrue(_mentions(text, name), f"--{name} is not in p2pd.8")
            if letter is not None:
                self.assertIn(f"-{letter}, --{name}", text)

    def test_noOtherOptions(self) -> None:
        """
        Each entry of the OPTIONS section names options that exist.
        """
        source = _read(MAN_PAGE).splitlines()
        start = source.index(".SH OPTIONS")
        end = next(
            i for i in range(start + 1, len(source)) if source[i].startswith(".SH")
        )
        options = _options()
        tags = [
            _roffLine(source[i + 1]) or ""
            for i in range(start, end)
            if source[i] == ".TP"
        ]
        self.assertGreaterEqual(len(tags), len(options))
        for tag in tags:
            names = re.findall(r"--([a-z][a-z0-9-]*)", tag)
            self.assertTrue(names, f"no option in {tag!r}")
            for name in names:
                self.assertIn(name, options, f"p2pd.8 documents unknown --{name}")

    def test_version(self) -> None:
        """
        The page's title line names the current version.
        """
        title = next(
            line for line in _read(MAN_PAGE).splitlines() if line.startswith(".TH")
        )
        self.assertIn(f'"p2pd {__version__}"', title)


class RunningTests(SynchronousTestCase):
    """
    The options table of docs/running.md lists exactly the options
    p2pd.tap.Options has.
    """

    def _rows(self) -> dict[str, str]:
        """
        The table's rows by long option name.
        """
        text = _read(RUNNING)
        section = text.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
        rows = {}
        for line in section.splitlines():
            match = re.match(r"^\|[^|]*\| `--([a-z][a-z0-9-]*)` \|", line)
            if match is not None:
                rows[match.group(1)] = line
        return rows

    def test_everyOptionDocumented(self) -> None:
        """
        Every long option has a row in the table, with its short letter.
        """
        rows = self._rows()
        for name, letter in sorted(_options().items()):
            self.assertIn(name, rows, f"--{name} is not in running.md's table")
            if letter is not None:
                self.assertTrue(
                    rows[name].startswith(f"| `-{letter}` |"),
                    f"running.md gives --{name} no -{letter}",
                )

    def test_noOtherOptions(self) -> None:
        """
        The table has no row for an option that does not exist.
        """
        options = _options()
        for name in self._rows():
            self.assertIn(name, options, f"running.md documents unknown --{name}")
