"""
The layers of p2pd (docs/architecture.md): every module belongs to one, and
imports only from its own layer and the layers below it.
"""

import ast
import os
from collections.abc import Iterator

from twisted.trial.unittest import SynchronousTestCase

from tests import CHECKOUT

# Each layer's rank and the modules in it (a name stands for itself and the
# modules below it; "p2pd" for the package's own __init__ only). A module
# imports from its own layer and from layers of a lower rank; two layers of
# one rank do not import each other.
LAYERS = {
    "core": (0, ("p2pd", "p2pd.core")),
    "internals": (0, ("p2pd.twistedinternals",)),
    "store": (1, ("p2pd.store",)),
    "formats": (1, ("p2pd.playlist", "p2pd.mediatypes")),
    "engine": (2, ("p2pd.engine",)),
    "spp": (3, ("p2pd.spp",)),
    "web": (4, ("p2pd.web",)),
    "commands": (
        5,
        (
            "p2pd.listener",
            "p2pd.tap",
            "p2pd.services",
            "p2pd.controlservice",
            "p2pd.cli",
            "p2pd.fetch",
            "p2pd.cachecommand",
            "p2pd.cachechanges",
            "p2pd.cacheoutput",
            "p2pd.__main__",
        ),
    ),
}


def layerOf(module: str) -> str | None:
    """
    The layer C{module} belongs to, or None.
    """
    best: tuple[int, str] | None = None
    for layer, (_, names) in LAYERS.items():
        for name in names:
            inside = module == name or (
                name != "p2pd" and module.startswith(name + ".")
            )
            if inside and (best is None or len(name) > best[0]):
                best = (len(name), layer)
    return None if best is None else best[1]


def allowed(importer: str, imported: str) -> bool:
    """
    Whether a module of layer C{importer} may import one of C{imported}.
    """
    return importer == imported or LAYERS[imported][0] < LAYERS[importer][0]


def modules() -> dict[str, str]:
    """
    Every module of p2pd, by name, with its file.
    """
    found = {}
    for directory, _, files in os.walk(os.path.join(CHECKOUT, "p2pd")):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            parts = os.path.relpath(path, CHECKOUT)[: -len(".py")].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(source: str, module: str, known: set[str]) -> Iterator[str]:
    """
    The p2pd modules C{source} (module C{module}) imports, wherever in it:
    type-checking blocks and functions too.
    """
    package = module if module in known and _isPackage(module, known) else None
    base = package or module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - node.level + 1]
                target = ".".join(parts + ([target] if target else []))
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield submodule if submodule in known else target


def _isPackage(module: str, known: set[str]) -> bool:
    return any(other.startswith(module + ".") for other in known)


def violations(sources: dict[str, str]) -> list[str]:
    """
    Every import in C{sources} (module name: source) that goes up a layer
    or sideways, as C{"importer -> imported"}.
    """
    known = set(sources)
    found = []
    for module, source in sorted(sources.items()):
        importer = layerOf(module)
        assert importer is not None, f"{module} is in no layer"
        for target in imports(source, module, known):
            if target != "p2pd" and not target.startswith("p2pd."):
                continue
            imported = layerOf(target)
            if imported is None or not allowed(importer, imported):
                found.append(f"{module} ({importer}) -> {target} ({imported})")
    return found


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


class LayerTests(SynchronousTestCase):
    """
    The imports of p2pd follow its layers.
    """

    def test_everyModuleHasALayer(self) -> None:
        """
        Every module of p2pd belongs to a layer, so a new one is placed on
        purpose.
        """
        self.assertEqual([m for m in sorted(modules()) if layerOf(m) is None], [])

    def test_importsGoDown(self) -> None:
        """
        No module imports from a higher layer, or from another layer of its
        own rank.
        """
        sources = {name: _read(path) for name, path in modules().items()}
        self.assertEqual(violations(sources), [])

    def test_coreImportsNothingOfP2pd(self) -> None:
        """
        The bottom layer imports nothing of p2pd but itself and the
        package's version.
        """
        sources = {name: _read(path) for name, path in modules().items()}
        known = set(sources)
        for name, source in sources.items():
            if layerOf(name) == "core":
                for target in imports(source, name, known):
                    if target.startswith("p2pd"):
                        self.assertEqual(layerOf(target), "core", (name, target))

    def test_upwardImportFound(self) -> None:
        """
        An import up a layer is found, in whatever form: plain, from, inside
        a function or a type-checking block, or relative.
        """
        for source in [
            "import p2pd.web.root\n",
            "from p2pd.web import root\n",
            "def f():\n    from p2pd.web.root import NodeRoot\n",
            "if TYPE_CHECKING:\n    from p2pd.web.root import NodeRoot\n",
            "from ..web import root\n",
        ]:
            found = violations(
                {
                    "p2pd.engine.node": source,
                    "p2pd.engine": "",
                    "p2pd.web": "",
                    "p2pd.web.root": "",
                }
            )
            self.assertEqual(
                found, ["p2pd.engine.node (engine) -> p2pd.web.root (web)"], source
            )

    def test_sidewaysImportFound(self) -> None:
        """
        An import between two layers of one rank is found too.
        """
        found = violations(
            {"p2pd.store.cache": "from p2pd import playlist\n", "p2pd.playlist": ""}
        )
        self.assertEqual(found, ["p2pd.store.cache (store) -> p2pd.playlist (formats)"])

    def test_downwardImportsAllowed(self) -> None:
        """
        Imports from lower layers and from the module's own layer are not
        reported.
        """
        sources = {
            "p2pd.web.root": "from p2pd.engine import node\nfrom . import files\n",
            "p2pd.web": "",
            "p2pd.web.files": "from p2pd.core.meta import FileMeta\n",
            "p2pd.engine": "",
            "p2pd.engine.node": "",
            "p2pd.core": "",
            "p2pd.core.meta": "",
        }
        self.assertEqual(violations(sources), [])

    def test_documented(self) -> None:
        """
        docs/architecture.md has a paragraph for every module and names
        the layers as this test draws them.
        """
        doc = _read(os.path.join(CHECKOUT, "docs", "architecture.md"))
        for name, path in sorted(modules().items()):
            relative = os.path.relpath(path, os.path.join(CHECKOUT, "p2pd"))
            if not relative.endswith("__init__.py") or name == "p2pd":
                shown = "p2pd/__init__.py" if name == "p2pd" else relative
                self.assertIn(f"`{shown}`", doc, name)
        for layer in LAYERS:
            self.assertIn(f"### {layer}\n", doc)

    def test_plugin(self) -> None:
        """
        The twistd plugin file imports nothing of p2pd: if it failed to
        import, twistd would only log it.
        """
        path = os.path.join(CHECKOUT, "twisted", "plugins", "p2pd_plugin.py")
        found = list(imports(_read(path), "twisted.plugins.p2pd_plugin", set()))
        self.assertEqual([m for m in found if m.startswith("p2pd")], [])
