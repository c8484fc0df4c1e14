# -*- test-case-name: tests.conformance.test_tags -*-
"""
Every MUST of docs/protocol.md is tagged, and every tag has a conformance
test: a requirement added to the specification without a test, or a test
naming a tag the specification lost, fails here.
"""

import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests import CHECKOUT

SPEC = FilePath(CHECKOUT).child("docs").child("protocol.md")
HERE = FilePath(__file__).parent()
DEFINED = re.compile(r"\*\*\[M(\d+)\]\*\*")
# A test names the tag it checks at the start of its docstring.
TESTED = re.compile(r'"""\s+\[M(\d+)\]')


def _items(text: str) -> list[str]:
    """
    The paragraphs and list items of C{text}, each as one string.
    """
    items: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        for item in re.split(r"\n(?=\s*- )", block):
            items.append(item)
    return items


class TagTests(SynchronousTestCase):
    """
    docs/protocol.md's tags against the tests of this package.
    """

    def setUp(self) -> None:
        self.text = SPEC.getContent().decode("utf-8")
        # What "MUST" means is said before the first requirement.
        self.rules = self.text.split("\n## ", 2)[2]

    def test_tagsNumbered(self) -> None:
        """
        The tags are M1, M2, ... with no gap, each defined once (a new
        MUST takes the next number, wherever it goes), and the Conformance
        section names the last one.
        """
        tags = [int(t) for t in DEFINED.findall(self.rules)]
        self.assertEqual(sorted(tags), list(range(1, len(tags) + 1)))
        self.assertIn(f"**[M1]**\nto **[M{len(tags)}]**", self.text)

    def test_everyMustTagged(self) -> None:
        """
        Every paragraph or list item saying MUST defines a tag.
        """
        untagged = [
            item
            for item in _items(self.rules)
            if "MUST" in item and not DEFINED.search(item)
        ]
        self.assertEqual(untagged, [])

    def test_everyTagTested(self) -> None:
        """
        Every tag has a test naming it, and every test names a tag there is.
        """
        tested: set[int] = set()
        for path in HERE.globChildren("test_*.py"):
            if path.basename() != "test_tags.py":
                tested.update(
                    int(t) for t in TESTED.findall(path.getContent().decode())
                )
        self.assertEqual(tested, {int(t) for t in DEFINED.findall(self.rules)})
