"""
The C{test-case-name} headers of the checkout's modules name test modules
that exist, so that C{trial --testmodule FILE} runs FILE's tests, and a test
module moved or renamed takes the headers naming it along.
"""

import os
from collections.abc import Iterable, Iterator

from twisted.scripts.trial import getTestModules
from twisted.trial.unittest import SynchronousTestCase

from tests import CHECKOUT

# The directories of the checkout that hold Python modules.
SOURCES = ("p2pd", "twisted", "tests", "benchmarks")


def pythonFiles() -> Iterator[str]:
    """
    Every Python file of the checkout's L{SOURCES}.
    """
    for top in SOURCES:
        for directory, _, names in os.walk(os.path.join(CHECKOUT, top)):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.join(directory, name)


def moduleExists(name: str) -> bool:
    """
    Whether the dotted C{name} is a module or package of the checkout.
    """
    path = os.path.join(CHECKOUT, *name.split("."))
    return os.path.isfile(path + ".py") or os.path.isfile(
        os.path.join(path, "__init__.py")
    )


def missingTestModules(paths: Iterable[str]) -> list[str]:
    """
    Each module named by the C{test-case-name} header of a file of C{paths}
    that does not exist, as C{"FILE: NAME"}.
    """
    return [
        f"{os.path.relpath(path, CHECKOUT)}: {name}"
        for path in paths
        for name in getTestModules(path)
        if not moduleExists(name)
    ]


class TestCaseNameTests(SynchronousTestCase):
    """
    The C{test-case-name} headers name existing test modules.
    """

    def test_namedModulesExist(self) -> None:
        """
        Every module a header of the checkout names exists.
        """
        self.assertEqual(missingTestModules(pythonFiles()), [])

    def test_headersFound(self) -> None:
        """
        The headers are read where trial reads them: the modules of p2pd
        name their tests.
        """
        path = os.path.join(CHECKOUT, "p2pd", "spp", "codec.py")
        self.assertEqual(getTestModules(path), ["tests.unit.test_codec"])

    def test_missingModuleFound(self) -> None:
        """
        A header naming a module that does not exist is reported, and the
        existing modules it names beside it are not.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "w", encoding="utf-8") as f:
            f.write("# -*- test-case-name: tests.unit.test_codec,tests.test_codec -*-\n")
        relative = os.path.relpath(path, CHECKOUT)
        self.assertEqual(missingTestModules([path]), [f"{relative}: tests.test_codec"])
