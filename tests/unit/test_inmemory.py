"""
The unit tests stay in memory: no module of L{tests.unit} imports the
helpers that run processes and players, nor an integration test.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import CHECKOUT
from tests.unit.test_layers import imports

# The helpers that start processes: nodes, players and tools, a crashing
# writer and an evicting one.
PROCESS_HELPERS = (
    "tests.nodes",
    "tests.clients",
    "tests.media",
    "tests.crashwriter",
    "tests.evictwriter",
)


def testModules() -> dict[str, str]:
    """
    Every module of the C{tests} package, by name, with its source.
    """
    found = {}
    for directory, _, names in os.walk(os.path.join(CHECKOUT, "tests")):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                parts = os.path.relpath(path, CHECKOUT)[: -len(".py")].split(os.sep)
                if parts[-1] == "__init__":
                    parts.pop()
                with open(path, encoding="utf-8") as f:
                    found[".".join(parts)] = f.read()
    return found


def outOfMemory(sources: dict[str, str]) -> list[str]:
    """
    Each import in a unit test module of C{sources} (module name: source)
    of a process helper or an integration test, as C{"importer -> imported"}.
    """
    known = set(sources)
    found = []
    for module, source in sorted(sources.items()):
        if not module.startswith("tests.unit."):
            continue
        for target in imports(source, module, known):
            if target in PROCESS_HELPERS or target.startswith("tests.integration"):
                found.append(f"{module} -> {target}")
    return found


class InMemoryTests(SynchronousTestCase):
    """
    The unit tests import nothing that runs processes.
    """

    def test_unitTestsInMemory(self) -> None:
        """
        No unit test module imports a process helper or an integration test.
        """
        self.assertEqual(outOfMemory(testModules()), [])

    def test_importFound(self) -> None:
        """
        An import of a process helper or an integration test is found, in
        whatever form; the same import in an integration test is not.
        """
        known = {
            "tests": "",
            "tests.clients": "",
            "tests.nodes": "",
            "tests.integration": "",
            "tests.integration.test_http": "",
        }
        for source, imported in [
            ("from tests import clients\n", "tests.clients"),
            ("from tests.nodes import Nodes\n", "tests.nodes"),
            ("def f():\n    import tests.clients\n", "tests.clients"),
            ("from tests.integration import test_http\n", "tests.integration.test_http"),
        ]:
            sources = dict(known, **{"tests.unit.test_x": source})
            sources["tests.integration.test_y"] = source
            self.assertEqual(
                outOfMemory(sources), [f"tests.unit.test_x -> {imported}"], source
            )
