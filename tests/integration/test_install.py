"""
The package as users install it: a wheel built from the checkout, installed
with pip into a fresh virtual environment, and C{twistd p2pd} run from
outside the checkout.

Running trial from the checkout finds the checkout's plugin even when the
built package is broken, so only an installed copy shows that the plugin
file ships, and that the package does not ship C{twisted/__init__.py} or
C{twisted/plugins/__init__.py} (which would replace Twisted's own and hide
every other plugin).

The virtual environment does not see this interpreter's packages: pip
installs p2pd's dependencies into it from the package index (or its cache)
as it would for a user, so a p2pd already installed here cannot stand in for
the wheel. Building the wheel also asks the index for setuptools.
"""

import atexit
import fnmatch
import os
import shutil
import sys
import tempfile
import zipfile

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import clients
from tests.nodes import CHECKOUT

# Seconds for each pip step: it may download.
PIP_TIMEOUT = 300

_built: str | None = None


def _ignorePatterns() -> list[str]:
    """
    What is not part of the source tree: .git and what .gitignore lists.
    """
    patterns = [".git"]
    try:
        with open(os.path.join(CHECKOUT, ".gitignore"), encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    patterns.append(line.rstrip("/"))
    except FileNotFoundError:
        pass
    return patterns


def copySource(target: str) -> None:
    """
    Copy the checkout's source tree (without .git and ignored files such
    as build output and media made by benchmarks) to C{target}, so that
    building leaves no trace in the checkout.
    """
    patterns = _ignorePatterns()

    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = os.path.relpath(directory, CHECKOUT)
        ignored = set()
        for name in names:
            path = os.path.normpath(os.path.join(relative, name))
            for pattern in patterns:
                if "/" in pattern:
                    if fnmatch.fnmatch(path, pattern.lstrip("/")):
                        ignored.add(name)
                elif fnmatch.fnmatch(name, pattern):
                    ignored.add(name)
        return ignored

    shutil.copytree(CHECKOUT, target, ignore=ignore, symlinks=True)


def _environment() -> dict[str, str]:
    """
    This process's environment without C{PYTHONPATH} (which would put the
    checkout or this interpreter's packages in front of the installed ones)
    and with pip kept quiet and non-interactive.
    """
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _outsideDirectory() -> str:
    directory = tempfile.mkdtemp(prefix="p2pd-install-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@inlineCallbacks
def buildWheel():
    """
    Build a wheel of the checkout, once per test run.

    @return: a Deferred firing with the wheel's path.
    """
    global _built
    if _built is not None:
        return _built
    work = _outsideDirectory()
    source = os.path.join(work, "source")
    copySource(source)
    out = os.path.join(work, "wheels")
    result = yield clients.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, source],
        env=_environment(),
        path=work,
        timeout=PIP_TIMEOUT,
    )
    clients.check(result)
    wheels = [name for name in os.listdir(out) if name.endswith(".whl")]
    if len(wheels) != 1:
        raise AssertionError(f"expected one wheel, got {wheels}")
    _built = os.path.join(out, wheels[0])
    return _built


class WheelTests(TestCase):
    """
    The wheel built from the checkout.
    """

    timeout = PIP_TIMEOUT * 2

    @inlineCallbacks
    def test_contents(self):
        """
        The wheel holds the p2pd package and the twistd plugin file, and
        neither C{twisted/__init__.py} nor C{twisted/plugins/__init__.py}.
        """
        wheel = yield buildWheel()
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
        self.assertIn("p2pd/__init__.py", names)
        self.assertIn("p2pd/tap.py", names)
        self.assertIn("twisted/plugins/p2pd_plugin.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual(
            [name for name in names if name.startswith("tests/")],
            [],
            "the tests are not part of the package",
        )


class InstalledTests(TestCase):
    """
    The wheel installed with pip into a fresh virtual environment.
    """

    timeout = PIP_TIMEOUT * 3

    @inlineCallbacks
    def test_twistdFindsPlugin(self):
        """
        After C{pip install WHEEL} into a new virtual environment and a
        refresh of the plugin cache, C{VENV/bin/twistd p2pd --help}, run
        outside the checkout with no C{PYTHONPATH}, shows p2pd's options;
        p2pd is imported from the environment, and Twisted's own plugins
        are still there; the installed C{p2pd} command runs C{p2pd cache}.
        """
        wheel = yield buildWheel()
        outside = _outsideDirectory()
        venv = os.path.join(outside, "venv")
        env = _environment()

        def inVenv(argv, timeout=60):
            return clients.run(argv, env=env, path=outside, timeout=timeout)

        clients.check((yield inVenv([sys.executable, "-m", "venv", venv])))
        python = os.path.join(venv, "bin", "python")
        clients.check(
            (
                yield inVenv(
                    [python, "-m", "pip", "install", "-q", wheel],
                    timeout=PIP_TIMEOUT,
                )
            )
        )
        clients.check(
            (
                yield inVenv(
                    [
                        python,
                        "-c",
                        "from twisted.plugin import IPlugin, getPlugins;"
                        " list(getPlugins(IPlugin))",
                    ]
                )
            )
        )

        twistd = os.path.join(venv, "bin", "twistd")
        result = clients.check((yield inVenv([twistd, "p2pd", "--help"])))
        for option in ("--public=", "--redirect", "--listen=", "--port="):
            self.assertIn(option, result.stdout, result.describe())

        result = clients.check(
            (
                yield inVenv(
                    [
                        python,
                        "-c",
                        "import os, p2pd.tap, twisted.plugins.p2pd_plugin as p;"
                        " print(os.path.realpath(p2pd.tap.__file__));"
                        " print(os.path.realpath(p.__file__))",
                    ]
                )
            )
        )
        venvReal = os.path.realpath(venv)
        for path in result.stdout.split():
            self.assertTrue(
                path.startswith(venvReal + os.sep), f"{path} is not in the venv"
            )

        result = clients.check((yield inVenv([twistd, "--help"])))
        self.assertIn("p2pd", result.stdout)
        self.assertIn("web", result.stdout, "Twisted's own plugins are hidden")

        p2pd = os.path.join(venv, "bin", "p2pd")
        result = clients.check((yield inVenv([p2pd, "--help"])))
        self.assertIn("p2pd cache [-c DIR]", result.stdout, result.describe())
        cache = os.path.join(outside, "cache")
        os.makedirs(os.path.join(cache, "blocks"))
        result = clients.check((yield inVenv([p2pd, "cache", "-c", cache, "ls"])))
        self.assertEqual(result.stdout, "no cached files\n", result.describe())
