"""
The desktop integration shipped for viewers: the browser helper
C{bin/p2pd-mplayer}, its desktop entry and the MIME type of SPP playlists.
"""

import configparser
import os
import shutil
import stat
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests import CHECKOUT

HELPER = os.path.join(CHECKOUT, "bin", "p2pd-mplayer")
DESKTOP = os.path.join(CHECKOUT, "contrib", "p2pd-mplayer.desktop")
MIME_XML = os.path.join(CHECKOUT, "contrib", "p2pd-spp.xml")
SPP_TYPE = "application/x-spp-playlist"
_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def _desktopEntry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with open(DESKTOP, encoding="utf-8") as f:
        parser.read_file(f)
    return parser["Desktop Entry"]


def _sppMimeType() -> ET.Element:
    root = ET.parse(MIME_XML).getroot()
    for element in root.findall(f"{_NS}mime-type"):
        if element.get("type") == SPP_TYPE:
            return element
    raise AssertionError(f"{MIME_XML} declares no {SPP_TYPE}")


class HelperTests(SynchronousTestCase):
    """
    C{bin/p2pd-mplayer}, the helper the original shipped for browsers.
    """

    def test_executable(self) -> None:
        """
        The helper is a file that everyone may execute.
        """
        mode = os.stat(HELPER).st_mode
        self.assertTrue(stat.S_ISREG(mode))
        self.assertEqual(mode & 0o111, 0o111)

    def test_content(self) -> None:
        """
        The helper is the original two lines: a POSIX shell script that runs
        C{mplayer -playlist} with the local p2pd as its HTTP proxy.
        """
        with open(HELPER, encoding="utf-8") as f:
            lines = f.read().splitlines()
        self.assertEqual(
            lines,
            [
                "#!/bin/sh -",
                'http_proxy=http://localhost:1111 mplayer -playlist "$@"',
            ],
        )

    def test_runsMplayer(self) -> None:
        """
        Run with a playlist file, the helper starts C{mplayer -playlist FILE}
        with C{http_proxy=http://localhost:1111}, keeping a name with spaces
        as one argument.
        """
        scratch = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, scratch)
        fake = os.path.join(scratch, "mplayer")
        with open(fake, "w", encoding="utf-8") as f:
            f.write(
                '#!/bin/sh\necho "proxy=$http_proxy"\nfor a; do echo "arg=$a"; done\n'
            )
        os.chmod(fake, 0o755)
        env = {"PATH": scratch + os.pathsep + os.environ.get("PATH", "")}
        result = subprocess.run(
            [HELPER, "my movie.spp"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        self.assertEqual(
            result.stdout.splitlines(),
            [
                "proxy=http://localhost:1111",
                "arg=-playlist",
                "arg=my movie.spp",
            ],
        )

    def test_installedAsScript(self) -> None:
        """
        C{pip install .} installs the helper: setup.cfg lists it in
        C{scripts}.
        """
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(os.path.join(CHECKOUT, "setup.cfg"), encoding="utf-8")
        scripts = parser.get("options", "scripts", fallback="").split()
        self.assertIn("bin/p2pd-mplayer", scripts)


class DesktopEntryTests(SynchronousTestCase):
    """
    C{contrib/p2pd-mplayer.desktop} registers the helper for SPP playlists.
    """

    def test_entry(self) -> None:
        """
        The entry is a hidden application that runs the helper on a local
        file, without a terminal.
        """
        entry = _desktopEntry()
        self.assertEqual(entry["Type"], "Application")
        self.assertEqual(entry["Exec"], "p2pd-mplayer %f")
        self.assertEqual(entry["NoDisplay"], "true")
        self.assertEqual(entry["Terminal"], "false")
        self.assertTrue(entry["Name"])

    def test_mimeType(self) -> None:
        """
        The entry handles C{application/x-spp-playlist}; the list ends with
        a semicolon, as the specification asks.
        """
        mimeTypes = _desktopEntry()["MimeType"]
        self.assertTrue(mimeTypes.endswith(";"))
        self.assertIn(SPP_TYPE, mimeTypes.split(";"))

    def test_validates(self) -> None:
        """
        desktop-file-validate, where installed, finds nothing to complain
        about.
        """
        validate = shutil.which("desktop-file-validate")
        if validate is None:
            raise SkipTest("desktop-file-validate is not installed")
        result = subprocess.run(
            [validate, DESKTOP], capture_output=True, text=True, timeout=30
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))


class MimeTypeTests(SynchronousTestCase):
    """
    C{contrib/p2pd-spp.xml} declares the type of SPP playlists to
    shared-mime-info.
    """

    def test_declared(self) -> None:
        """
        The file is shared-mime-info XML declaring
        C{application/x-spp-playlist} with a comment.
        """
        root = ET.parse(MIME_XML).getroot()
        self.assertEqual(root.tag, f"{_NS}mime-info")
        element = _sppMimeType()
        comment = element.find(f"{_NS}comment")
        assert comment is not None
        self.assertTrue((comment.text or "").strip())

    def test_playlist(self) -> None:
        """
        The type is a kind of PLS playlist, named C{*.spp}.
        """
        element = _sppMimeType()
        parents = [e.get("type") for e in element.findall(f"{_NS}sub-class-of")]
        self.assertEqual(parents, ["audio/x-scpls"])
        globs = [e.get("pattern") for e in element.findall(f"{_NS}glob")]
        self.assertEqual(globs, ["*.spp"])

    def test_magic(self) -> None:
        """
        The content match is C{[playlist]} at the start, below the priority
        of C{audio/x-scpls} (50), so plain PLS files stay what they are.
        """
        magic = _sppMimeType().find(f"{_NS}magic")
        assert magic is not None
        self.assertLess(int(magic.get("priority", "50")), 50)
        match = magic.find(f"{_NS}match")
        assert match is not None
        self.assertEqual(
            (match.get("type"), match.get("value"), match.get("offset")),
            ("string", "[playlist]", "0"),
        )
