"""
Tests for L{p2pd.store.published}: which names in the published directory may
be served, checked directly and through the real HTTP stack.
"""

import os

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http

from p2pd.store.published import NotPublished, PublicDirectory, PublishedFile
from p2pd.web.root import NodeRoot
from tests.helpers import InMemoryHTTP, parseResponse

SECRET = b"the contents of a file outside the published directory\n"
MOVIE = b"movie bytes " * 100
UNICODE_NAME = "caf\u00e9 ol\u00e9.mkv"


def makeTree(base: str) -> str:
    """
    Build, under C{base}, a published directory full of traps next to
    secrets outside it; return the published directory.

        base/outside/secret.txt
        base/passwd                      (what ../passwd would reach)
        base/pub/movie.mp4
        base/pub/caf\u00e9 ol\u00e9.mkv
        base/pub/sub/episode.mp4
        base/pub/%2e%2e/                 (a directory literally so named)
        base/pub/.hidden
        base/pub/.secret/inside.mp4
        base/pub/fifo                    (a named pipe)
        base/pub/\\xff.mp4               (a name that is not UTF-8)
        base/pub/link-in -> movie.mp4
        base/pub/link-out -> ../outside/secret.txt
        base/pub/link-abs -> /abs/path/of/base/outside/secret.txt
        base/pub/link-dir-out -> ../outside
        base/pub/link-hidden -> .hidden
        base/pub/loop -> loop
    """
    os.mkdir(base)
    outside = os.path.join(base, "outside")
    os.mkdir(outside)
    for path in [os.path.join(outside, "secret.txt"), os.path.join(base, "passwd")]:
        with open(path, "wb") as f:
            f.write(SECRET)
    pub = os.path.join(base, "pub")
    os.mkdir(pub)
    for name, data in [
        ("movie.mp4", MOVIE),
        (UNICODE_NAME, b"unicode " * 10),
        (".hidden", SECRET),
    ]:
        with open(os.path.join(pub, name), "wb") as f:
            f.write(data)
    for directory, name in [("sub", "episode.mp4"), (".secret", "inside.mp4")]:
        os.mkdir(os.path.join(pub, directory))
        with open(os.path.join(pub, directory, name), "wb") as f:
            f.write(b"episode " * 10 if directory == "sub" else SECRET)
    os.mkdir(os.path.join(pub, "%2e%2e"))
    os.mkfifo(os.path.join(pub, "fifo"))
    with open(os.path.join(os.fsencode(pub), b"\xff.mp4"), "wb") as f:
        f.write(b"latin-1 name")
    os.symlink("movie.mp4", os.path.join(pub, "link-in"))
    os.symlink(
        os.path.join("..", "outside", "secret.txt"), os.path.join(pub, "link-out")
    )
    os.symlink(
        os.path.abspath(os.path.join(outside, "secret.txt")),
        os.path.join(pub, "link-abs"),
    )
    os.symlink(os.path.join("..", "outside"), os.path.join(pub, "link-dir-out"))
    os.symlink(".hidden", os.path.join(pub, "link-hidden"))
    os.symlink("loop", os.path.join(pub, "loop"))
    return pub


class LookupTests(SynchronousTestCase):
    """
    L{PublicDirectory.lookup} finds regular files inside the directory and
    refuses everything else.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        self.pub = makeTree(self.base)
        self.directory = PublicDirectory(self.pub)

    def assertRefused(self, segments: list[bytes], reason: str | None = None) -> None:
        exc = self.assertRaises(NotPublished, self.directory.lookup, segments)
        if reason is not None:
            self.assertEqual(exc.reason, reason, segments)

    def test_file(self) -> None:
        """
        A regular file is found with its name, real path, size and times.
        """
        published = self.directory.lookup([b"movie.mp4"])
        st = os.stat(os.path.join(self.pub, "movie.mp4"))
        self.assertEqual(published.name, "movie.mp4")
        self.assertEqual(
            published.path, os.path.realpath(os.path.join(self.pub, "movie.mp4"))
        )
        self.assertEqual(published.size, len(MOVIE))
        self.assertEqual(published.mtimeNs, st.st_mtime_ns)
        self.assertEqual(published.inode, st.st_ino)
        self.assertEqual(published.mtime, st.st_mtime_ns / 1e9)

    def test_subdirectory(self) -> None:
        """
        A file in a subdirectory is named by its path from the directory.
        """
        published = self.directory.lookup([b"sub", b"episode.mp4"])
        self.assertEqual(published.name, "sub/episode.mp4")

    def test_unicode(self) -> None:
        """
        Names are UTF-8: non-ASCII letters and spaces are served.
        """
        published = self.directory.lookup([UNICODE_NAME.encode("utf-8")])
        self.assertEqual(published.name, UNICODE_NAME)
        self.assertEqual(published.size, 80)

    def test_symlinkInside(self) -> None:
        """
        A symlink to a file inside the directory is served as that file,
        under the link's name.
        """
        published = self.directory.lookup([b"link-in"])
        self.assertEqual(published.name, "link-in")
        self.assertEqual(
            published.path, os.path.realpath(os.path.join(self.pub, "movie.mp4"))
        )
        self.assertEqual(published.size, len(MOVIE))

    def test_rootThroughSymlink(self) -> None:
        """
        A published directory named through a symlink works like the
        directory itself.
        """
        link = os.path.join(self.base, "pub-link")
        os.symlink("pub", link)
        published = PublicDirectory(link).lookup([b"movie.mp4"])
        self.assertEqual(published.size, len(MOVIE))
        self.assertRaises(NotPublished, PublicDirectory(link).lookup, [b"link-out"])

    def test_empty(self) -> None:
        """
        No name, or empty segments anywhere, are refused.
        """
        self.assertRefused([], "empty path")
        for segments in [
            [b""],
            [b"", b"movie.mp4"],
            [b"sub", b""],
            [b"sub", b"", b"episode.mp4"],
        ]:
            self.assertRefused(segments, "empty or relative segment")

    def test_dotSegments(self) -> None:
        """
        C{.} and C{..} segments are refused, even when they would stay
        inside the directory.
        """
        for segments in [
            [b".."],
            [b".", b"movie.mp4"],
            [b"..", b"passwd"],
            [b"..", b"outside", b"secret.txt"],
            [b"..", b"..", b"..", b"etc", b"passwd"],
            [b"sub", b"..", b"movie.mp4"],
        ]:
            self.assertRefused(segments, "empty or relative segment")

    def test_doubleEncoded(self) -> None:
        """
        C{%2e%2e}, left after one percent-decoding of C{%252e%252e}, is a
        literal name, not a way out: here it is a directory inside, holding
        no secret.
        """
        self.assertRefused([b"%2e%2e", b"outside", b"secret.txt"])
        self.assertRefused([b"%2e%2e", b"passwd"])
        self.assertRefused([b"%2e%2e"], "not a regular file")

    def test_separators(self) -> None:
        """
        Slashes (absolute paths, or C{%2F} decoded inside a segment) and
        backslashes are refused.
        """
        for segments in [
            [b"/etc/passwd"],
            [b"sub/episode.mp4"],
            [b"../passwd"],
            [b"..\\passwd"],
            [b"..\\..\\etc\\passwd"],
            [b"sub\\episode.mp4"],
            [b"C:\\Windows"],
        ]:
            self.assertRefused(segments, "separator or NUL inside a segment")

    def test_nul(self) -> None:
        """
        NUL bytes are refused before any system call sees them.
        """
        for segments in [[b"movie.mp4\x00"], [b"movie\x00.mp4"], [b"\x00"]]:
            self.assertRefused(segments, "separator or NUL inside a segment")

    def test_hidden(self) -> None:
        """
        Names starting with a dot, and anything inside a hidden directory,
        are refused.
        """
        self.assertRefused([b".hidden"], "hidden name")
        self.assertRefused([b".secret", b"inside.mp4"], "hidden name")
        self.assertRefused([b"...", b"movie.mp4"], "hidden name")

    def test_symlinkToHidden(self) -> None:
        """
        A visible symlink to a hidden file is refused.
        """
        self.assertRefused([b"link-hidden"], "resolves to a hidden name")

    def test_symlinkOutside(self) -> None:
        """
        Symlinks leading out of the directory, relative or absolute, to a
        file or through a directory, are refused.
        """
        for segments in [
            [b"link-out"],
            [b"link-abs"],
            [b"link-dir-out", b"secret.txt"],
        ]:
            self.assertRefused(segments, "leaves the published directory")

    def test_symlinkLoop(self) -> None:
        """
        A symlink loop is refused.
        """
        self.assertRefused([b"loop"])

    def test_directory(self) -> None:
        """
        A directory asked for as a file is refused.
        """
        self.assertRefused([b"sub"], "not a regular file")

    def test_fifo(self) -> None:
        """
        A named pipe is refused (without opening it, which would block).
        """
        self.assertRefused([b"fifo"], "not a regular file")

    def test_notUTF8(self) -> None:
        """
        A name that is not UTF-8 is refused, even when such a file exists.
        """
        self.assertTrue(
            os.path.exists(os.path.join(os.fsencode(self.pub), b"\xff.mp4"))
        )
        self.assertRefused([b"\xff.mp4"], "path is not UTF-8")

    def test_missing(self) -> None:
        """
        A name that does not exist is refused.
        """
        self.assertRefused([b"nothing.mp4"])
        self.assertRefused([b"movie.mp4", b"inside"])

    def test_notPublishedMessage(self) -> None:
        """
        L{NotPublished} carries the name and the reason.
        """
        exc = self.assertRaises(NotPublished, self.directory.lookup, [b".hidden"])
        self.assertEqual(exc.name, ".hidden")
        self.assertEqual(str(exc), "'.hidden': hidden name")

    def test_unreadable(self) -> None:
        """
        A file the daemon may not read is refused.
        """
        if os.getuid() == 0:
            raise self.skipTest("root can read every file")
        path = os.path.join(self.pub, "movie.mp4")
        os.chmod(path, 0)
        self.addCleanup(os.chmod, path, 0o644)
        self.assertRefused([b"movie.mp4"], "not readable")


class PublishedFileTests(SynchronousTestCase):
    """
    L{PublishedFile} opens the file it describes and nothing else.
    """

    def setUp(self) -> None:
        self.pub = makeTree(os.path.abspath(self.mktemp()))
        self.path = os.path.join(self.pub, "movie.mp4")
        self.published = PublicDirectory(self.pub).lookup([b"movie.mp4"])

    def test_open(self) -> None:
        """
        Opening gives the file's bytes.
        """
        with self.published.open() as f:
            self.assertEqual(f.read(), MOVIE)

    def test_version(self) -> None:
        """
        The version changes when the file's size or time changes.
        """
        before = self.published.version
        os.utime(self.path, ns=(0, self.published.mtimeNs + 1))
        self.assertNotEqual(
            PublicDirectory(self.pub).lookup([b"movie.mp4"]).version, before
        )
        with open(self.path, "ab") as f:
            f.write(b"x")
        os.utime(self.path, ns=(0, self.published.mtimeNs))
        self.assertNotEqual(
            PublicDirectory(self.pub).lookup([b"movie.mp4"]).version, before
        )

    def test_replaced(self) -> None:
        """
        A file replaced since the lookup, even by one of the same size and
        time, is not opened.
        """
        new = os.path.join(self.pub, "new")
        with open(new, "wb") as f:
            f.write(b"X" * len(MOVIE))
        os.utime(new, ns=(0, self.published.mtimeNs))
        os.replace(new, self.path)
        exc = self.assertRaises(NotPublished, self.published.open)
        self.assertEqual(exc.reason, "changed while being opened")

    def test_modified(self) -> None:
        """
        A file modified since the lookup is not opened.
        """
        with open(self.path, "ab") as f:
            f.write(b"more")
        self.assertRaises(NotPublished, self.published.open)

    def test_removed(self) -> None:
        """
        A file removed since the lookup cannot be opened.
        """
        os.remove(self.path)
        self.assertRaises(OSError, self.published.open)

    def test_isPublishedFile(self) -> None:
        """
        Lookups return L{PublishedFile}s.
        """
        self.assertIsInstance(self.published, PublishedFile)


# Raw request targets that must never reach anything outside the published
# directory, nor anything hidden, special or not a file inside it.
_REFUSED_TARGETS = [
    "/../outside/secret.txt",
    "/../passwd",
    "/%2e%2e/passwd",
    "/%2E%2E/outside/secret.txt",
    "/.%2e/passwd",
    "/%252e%252e/passwd",
    "/%252e%252e/outside/secret.txt",
    "/%2e%2e%2fpasswd",
    "/..%2Fpasswd",
    "/..%5C..%5Cetc%5Cpasswd",
    "/..%5Cpasswd",
    "/sub/../../passwd",
    "/sub%2F..%2F..%2Fpasswd",
    "//etc/passwd",
    "/%2Fetc%2Fpasswd",
    "/%2Fx",
    "/movie.mp4%00",
    "/movie.mp4%00.txt",
    "/link-out",
    "/link-abs",
    "/link-dir-out/secret.txt",
    "/link-hidden",
    "/loop",
    "/.hidden",
    "/.secret/inside.mp4",
    "/fifo",
    "/sub",
    "/sub/",
    "/",
    "//",
    "/%FF.mp4",
    "/nothing.mp4",
    "/.direct",
    "/.direct/",
    "/.direct/../passwd",
    "/.direct/%2e%2e/passwd",
    "/.direct/.hidden",
    "/.direct/link-out",
    "/.direct//etc/passwd",
]


class HTTPPathSafetyTests(SynchronousTestCase):
    """
    Through the real HTTP stack (a L{NodeRoot} in a C{Site}), every unsafe
    request target gets 404 and nothing from outside the directory.
    """

    def setUp(self) -> None:
        self.pub = makeTree(os.path.abspath(self.mktemp()))
        self.http = InMemoryHTTP(self, NodeRoot(PublicDirectory(self.pub)))

    def test_refused(self) -> None:
        """
        Each unsafe target, sent as it is by a real HTTP client, gets 404
        and none of the secret bytes.
        """
        for target in _REFUSED_TARGETS:
            for method in ["GET", "HEAD"]:
                response, body = self.http.request(
                    method, "http://node.example" + target
                )
                self.assertEqual(response.code, http.NOT_FOUND, (method, target))
                self.assertNotIn(b"secret", body)
                self.assertNotIn(b"latin-1", body)

    def test_rawTargets(self) -> None:
        """
        Targets a client library would rewrite (literal backslashes, spaces,
        dot segments) are refused when sent raw.
        """
        for target in [
            b"/..\\..\\outside\\secret.txt",
            b"/..\\passwd",
            b"/./../passwd",
            b"/sub/./../../passwd",
            b"/\xff.mp4",
            b"/%2e%2e\\passwd",
        ]:
            raw = self.http.raw(b"GET " + target + b" HTTP/1.1\r\nHost: node\r\n\r\n")
            code, headers, body = parseResponse(raw)
            # Twisted itself refuses a target that is not ASCII (400).
            self.assertIn(code, (http.NOT_FOUND, http.BAD_REQUEST), repr(target))
            self.assertNotIn(b"secret", body)

    def test_refusalLogged(self) -> None:
        """
        A refused request is logged with the client, the path and why.
        """
        with capturedLogs() as events:
            response, body = self.http.request(
                "GET", "http://node.example/%2e%2e/passwd"
            )
        self.assertEqual(response.code, http.NOT_FOUND)
        [event] = [e for e in events if "reason" in e]
        self.assertEqual(event["reason"], "empty or relative segment")
        self.assertEqual(event["path"], "/%2e%2e/passwd")
        self.assertEqual(event["client"].host, "127.0.0.1")

    def test_refusalReasonNotSent(self) -> None:
        """
        The client learns only that there is no such file, not why.
        """
        response, body = self.http.request("GET", "http://node.example/link-out")
        self.assertEqual(body, b"no such file\n")

    def test_served(self) -> None:
        """
        Plain, nested, unicode-and-space and symlinked-inside names are
        served, with the file's bytes.
        """
        for target, expected in [
            ("/movie.mp4", MOVIE),
            ("/sub/episode.mp4", b"episode " * 10),
            ("/caf%C3%A9%20ol%C3%A9.mkv", b"unicode " * 10),
            ("/link-in", MOVIE),
            ("/.direct/caf%C3%A9%20ol%C3%A9.mkv", b"unicode " * 10),
        ]:
            response, body = self.http.request("GET", "http://node.example" + target)
            self.assertEqual((response.code, body), (http.OK, expected), target)
