"""
Tests for L{p2pd.web.root}: which answer each request path gets, through a
real C{Site} in memory.
"""

import ipaddress
import json
import os

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import DNSLookupError
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.iweb import IResponse

from p2pd import playlist
from p2pd.store.published import PublicDirectory
from p2pd.web.access import Access
from p2pd.web.root import NodeRoot
from tests import playlists
from tests.fakes import FakeWebNode
from tests.helpers import InMemoryHTTP, parseResponse

MOVIE = bytes(i % 256 for i in range(1234))


def header(response: IResponse, name: bytes) -> bytes | None:
    values = response.headers.getRawHeaders(name)
    return None if values is None else values[0]


def expectedPlaylist(spp: str, http: str, name: str, size: int) -> bytes:
    title = name.rsplit("/", 1)[-1]
    return (
        "[playlist]\n"
        "NumberOfEntries=2\n"
        f"File1=spp://{spp}/{name}\n"
        f"Title1={title} (SPP)\n"
        f"Length1={size}\n"
        f"File2=http://{http}/.direct/{name}\n"
        f"Title2={title} (HTTP)\n"
        f"Length2={size}\n"
        "Version=2\n"
    ).encode()


class _RootTestCase(SynchronousTestCase):
    """
    A node publishing C{movie.mpg} and C{sub/episode.mp4}.
    """

    redirect = False
    direct = True

    def setUp(self) -> None:
        self.pub = self.mktemp()
        os.makedirs(os.path.join(self.pub, "sub"))
        with open(os.path.join(self.pub, "movie.mpg"), "wb") as f:
            f.write(MOVIE)
        with open(os.path.join(self.pub, "sub", "episode.mp4"), "wb") as f:
            f.write(b"episode")
        self.root = NodeRoot(
            PublicDirectory(self.pub), redirect=self.redirect, direct=self.direct
        )
        self.http = InMemoryHTTP(self, self.root)

    def get(
        self,
        url: str,
        headers: dict[str, str | bytes] | None = None,
        method: str = "GET",
    ) -> tuple[IResponse, bytes]:
        return self.http.request(method, url, headers)


class RedirectTests(_RootTestCase):
    """
    With C{--redirect}, a GET of a published name gets a playlist and
    C{/.direct/NAME} gets the bytes.
    """

    redirect = True

    def test_playlist(self) -> None:
        """
        The playlist is the brief's example: an C{spp://} entry for the host
        and port the client used, then the C{/.direct/} HTTP fallback, both
        with the byte size.
        """
        response, body = self.get("http://spp.example.org:1111/movie.mpg")
        self.assertEqual(response.code, http.OK)
        self.assertEqual(header(response, b"Content-Type"), playlist.CONTENT_TYPE)
        self.assertEqual(header(response, b"Cache-Control"), b"no-cache")
        self.assertEqual(
            body,
            b"[playlist]\n"
            b"NumberOfEntries=2\n"
            b"File1=spp://spp.example.org:1111/movie.mpg\n"
            b"Title1=movie.mpg (SPP)\n"
            b"Length1=1234\n"
            b"File2=http://spp.example.org:1111/.direct/movie.mpg\n"
            b"Title2=movie.mpg (HTTP)\n"
            b"Length2=1234\n"
            b"Version=2\n",
        )

    def test_sppPortIsLocalPort(self) -> None:
        """
        The C{spp://} URL names the port the request arrived on (SPP shares
        it), while the HTTP fallback keeps the Host header as the client sent
        it (a reverse proxy may sit in front).
        """
        response, body = self.get(
            "http://127.0.0.1:1111/movie.mpg", {"Host": "videos.example:8080"}
        )
        self.assertEqual(
            body,
            expectedPlaylist(
                "videos.example:1111", "videos.example:8080", "movie.mpg", 1234
            ),
        )

    def test_hostWithoutPort(self) -> None:
        """
        A Host header without a port keeps its implied port in the HTTP
        fallback; the C{spp://} URL still names the local port.
        """
        response, body = self.get(
            "http://127.0.0.1:1111/movie.mpg", {"Host": "videos.example"}
        )
        self.assertEqual(
            body,
            expectedPlaylist(
                "videos.example:1111", "videos.example", "movie.mpg", 1234
            ),
        )

    def test_ipv6Host(self) -> None:
        """
        A bracketed IPv6 Host header is used as it is.
        """
        response, body = self.get(
            "http://127.0.0.1:1111/movie.mpg", {"Host": "[2001:db8::1]:1111"}
        )
        self.assertEqual(
            body,
            expectedPlaylist(
                "[2001:db8::1]:1111", "[2001:db8::1]:1111", "movie.mpg", 1234
            ),
        )

    def test_head(self) -> None:
        """
        HEAD gets the playlist's headers, its length, and no body.
        """
        response, body = self.get("http://spp.example.org:1111/movie.mpg")
        code, headers, rawBody = parseResponse(
            self.http.raw(
                b"HEAD /movie.mpg HTTP/1.1\r\nHost: spp.example.org:1111\r\n\r\n"
            )
        )
        self.assertEqual(code, http.OK)
        self.assertEqual(rawBody, b"")
        self.assertEqual(headers[b"content-type"], playlist.CONTENT_TYPE)
        self.assertEqual(headers[b"content-length"], b"%d" % len(body))

    def test_bogusHost(self) -> None:
        """
        A Host header that is not a plain authority is not trusted into the
        playlist: the local address is used instead.
        """
        for bogus in [
            "evil.example/x",
            "evil.example:1111/x",
            "a b",
            "user@evil.example",
            "evil.example:port",
            "evil.example:123456",
            "[::1",
            "::1",
            "[evil]",
            "ex\u00e4mple.org",
            "evil.example:1111?x",
            "",
        ]:
            response, body = self.get(
                "http://127.0.0.1:1111/movie.mpg", {"Host": bogus.encode()}
            )
            self.assertEqual(
                body,
                expectedPlaylist("127.0.0.1:1111", "127.0.0.1:1111", "movie.mpg", 1234),
                bogus,
            )

    def test_noHost(self) -> None:
        """
        Without a Host header (HTTP/1.0), the local address is used.
        """
        code, headers, body = parseResponse(
            self.http.raw(
                b"GET /movie.mpg HTTP/1.0\r\n\r\n",
                host=IPv4Address("TCP", "192.0.2.7", 1111),
            )
        )
        self.assertEqual(
            body,
            expectedPlaylist("192.0.2.7:1111", "192.0.2.7:1111", "movie.mpg", 1234),
        )

    def test_noHostIPv6(self) -> None:
        """
        A local IPv6 address is bracketed in both URLs.
        """
        code, headers, body = parseResponse(
            self.http.raw(
                b"GET /movie.mpg HTTP/1.0\r\n\r\n",
                host=IPv6Address("TCP", "2001:db8::7", 1111),
            )
        )
        self.assertEqual(
            body,
            expectedPlaylist(
                "[2001:db8::7]:1111", "[2001:db8::7]:1111", "movie.mpg", 1234
            ),
        )

    def test_noHostScopedIPv6(self) -> None:
        """
        A local link-local address with a zone still gives a playlist (the
        zone has no place in a URL), not an error.
        """
        code, headers, body = parseResponse(
            self.http.raw(
                b"GET /movie.mpg HTTP/1.0\r\n\r\n",
                host=IPv6Address("TCP", "fe80::7%eth0", 1111),
            )
        )
        self.assertEqual(code, http.OK)
        self.assertEqual(
            body,
            expectedPlaylist("[fe80::7]:1111", "[fe80::7]:1111", "movie.mpg", 1234),
        )

    def test_subdirectory(self) -> None:
        """
        A nested name keeps its path in the URLs; titles name the file.
        """
        response, body = self.get("http://h.example:1111/sub/episode.mp4")
        self.assertEqual(
            body,
            expectedPlaylist("h.example:1111", "h.example:1111", "sub/episode.mp4", 7),
        )

    def test_directBytes(self) -> None:
        """
        C{/.direct/NAME} gets the file's bytes, not a playlist.
        """
        response, body = self.get("http://h.example:1111/.direct/movie.mpg")
        self.assertEqual(response.code, http.OK)
        self.assertEqual(body, MOVIE)
        self.assertEqual(header(response, b"Content-Type"), b"video/mpeg")

    def test_directRange(self) -> None:
        """
        C{/.direct/NAME} honours Range.
        """
        response, body = self.get(
            "http://h.example:1111/.direct/movie.mpg", {"Range": "bytes=100-199"}
        )
        self.assertEqual(response.code, http.PARTIAL_CONTENT)
        self.assertEqual(body, MOVIE[100:200])
        self.assertEqual(header(response, b"Content-Range"), b"bytes 100-199/1234")

    def test_directNested(self) -> None:
        """
        C{/.direct/} works for nested names.
        """
        response, body = self.get("http://h.example:1111/.direct/sub/episode.mp4")
        self.assertEqual((response.code, body), (http.OK, b"episode"))

    def test_fallbackURLGivesBytes(self) -> None:
        """
        Fetching the playlist's HTTP fallback URL gives the media bytes.
        """
        response, body = self.get("http://h.example:1111/movie.mpg")
        [entry] = [e for e in playlists.parse(body) if e.url.startswith("http:")]
        response, body = self.get(entry.url)
        self.assertEqual((response.code, body), (http.OK, MOVIE))

    def test_missing(self) -> None:
        """
        A missing file gets 404, as a playlist and as bytes.
        """
        for path in ["/nothing.mpg", "/.direct/nothing.mpg"]:
            response, body = self.get("http://h.example:1111" + path)
            self.assertEqual(response.code, http.NOT_FOUND, path)
            self.assertEqual(body, b"no such file\n")

    def test_query(self) -> None:
        """
        A query string does not change the name.
        """
        response, body = self.get("http://h.example:1111/movie.mpg?start=10")
        self.assertEqual(
            body,
            expectedPlaylist("h.example:1111", "h.example:1111", "movie.mpg", 1234),
        )


class DirectTests(_RootTestCase):
    """
    Without C{--redirect}, both forms serve the bytes.
    """

    def test_bytes(self) -> None:
        """
        C{/NAME} gets the file.
        """
        response, body = self.get("http://h.example/movie.mpg")
        self.assertEqual((response.code, body), (http.OK, MOVIE))

    def test_range(self) -> None:
        """
        C{/NAME} honours Range.
        """
        response, body = self.get("http://h.example/movie.mpg", {"Range": "bytes=-4"})
        self.assertEqual((response.code, body), (http.PARTIAL_CONTENT, MOVIE[-4:]))

    def test_directPrefix(self) -> None:
        """
        C{/.direct/NAME} gets the file too.
        """
        response, body = self.get("http://h.example/.direct/movie.mpg")
        self.assertEqual((response.code, body), (http.OK, MOVIE))

    def test_throughP2pdProxy(self) -> None:
        """
        A request through a p2pd proxy (C{Via: 1.1 p2pd}, alone or after
        other hops) gets the playlist, since that proxy plays the content
        over SPP and drops the answer's body; C{/.direct/NAME} still gets
        the file, and so does a request through another proxy.
        """
        playlist_ = expectedPlaylist("h.example:80", "h.example", "movie.mpg", 1234)
        for via in ("1.1 p2pd", "1.0 squid, 1.1 P2PD (p2pd/0.1.0)"):
            response, body = self.get("http://h.example/movie.mpg", {"Via": via})
            self.assertEqual((response.code, body), (http.OK, playlist_), via)
        response, body = self.get(
            "http://h.example/.direct/movie.mpg", {"Via": "1.1 p2pd"}
        )
        self.assertEqual((response.code, body), (http.OK, MOVIE))
        for via in ("1.1 squid", "p2pd", "1.1 p2pd-cache"):
            response, body = self.get("http://h.example/movie.mpg", {"Via": via})
            self.assertEqual((response.code, body), (http.OK, MOVIE), via)

    def test_missing(self) -> None:
        """
        A missing file gets 404, with a short plain-text message.
        """
        for path in ["/nothing.mpg", "/.direct/nothing.mpg"]:
            response, body = self.get("http://h.example" + path)
            self.assertEqual(response.code, http.NOT_FOUND)
            self.assertEqual(body, b"no such file\n")
            self.assertEqual(
                header(response, b"Content-Type"), b"text/plain; charset=utf-8"
            )

    def test_methodNotAllowed(self) -> None:
        """
        Methods other than GET and HEAD get 405 naming the allowed ones.
        """
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"]:
            response, body = self.get("http://h.example/movie.mpg", method=method)
            self.assertEqual(response.code, http.NOT_ALLOWED, method)
            self.assertEqual(header(response, b"Allow"), b"GET, HEAD")
            self.assertNotIn(MOVIE[:50], body)

    def test_methodNotAllowedMissing(self) -> None:
        """
        A POST gets 405 whether or not the name exists.
        """
        response, body = self.get("http://h.example/nothing", method="POST")
        self.assertEqual(response.code, http.NOT_ALLOWED)

    def test_headMessage(self) -> None:
        """
        HEAD of a missing name gets 404 and no body.
        """
        code, headers, body = parseResponse(
            self.http.raw(b"HEAD /nothing HTTP/1.1\r\nHost: h\r\n\r\n")
        )
        self.assertEqual((code, body), (http.NOT_FOUND, b""))
        self.assertEqual(headers[b"content-length"], b"13")


class NoDirectTests(_RootTestCase):
    """
    With C{--no-direct}, file bytes are never served over HTTP.
    """

    direct = False

    def test_forbidden(self) -> None:
        """
        Both forms get 403 with a message saying what to use instead.
        """
        for path in ["/movie.mpg", "/.direct/movie.mpg"]:
            for method in ["GET", "HEAD"]:
                response, body = self.get("http://h.example" + path, method=method)
                self.assertEqual(response.code, http.FORBIDDEN, (path, method))
                self.assertNotIn(MOVIE[:50], body)
            response, body = self.get("http://h.example" + path)
            self.assertIn(b"direct HTTP serving is off", body)
            self.assertIn(b"spp://", body)

    def test_missing(self) -> None:
        """
        A missing file still gets 404.
        """
        response, body = self.get("http://h.example/nothing.mpg")
        self.assertEqual(response.code, http.NOT_FOUND)


class NoDirectRedirectTests(_RootTestCase):
    """
    With C{--redirect --no-direct}, playlists are served, bytes are not.
    """

    redirect = True
    direct = False

    def test_playlist(self) -> None:
        """
        The playlist is still served.
        """
        response, body = self.get("http://h.example:1111/movie.mpg")
        self.assertEqual(response.code, http.OK)
        self.assertEqual(
            body,
            expectedPlaylist("h.example:1111", "h.example:1111", "movie.mpg", 1234),
        )

    def test_directForbidden(self) -> None:
        """
        The fallback URL gets 403.
        """
        response, body = self.get("http://h.example:1111/.direct/movie.mpg")
        self.assertEqual(response.code, http.FORBIDDEN)
        self.assertNotIn(MOVIE[:50], body)


class NoPublicDirectoryTests(SynchronousTestCase):
    """
    A node that publishes nothing.
    """

    def test_notFound(self) -> None:
        """
        Every name gets 404, and the reason is logged.
        """
        node = InMemoryHTTP(self, NodeRoot(None, redirect=False))
        for path in ["/movie.mpg", "/.direct/movie.mpg", "/"]:
            with capturedLogs() as events:
                response, body = node.request("GET", "http://h.example" + path)
            self.assertEqual(response.code, http.NOT_FOUND, path)
            self.assertEqual(body, b"no such file\n")
            [event] = [e for e in events if "reason" in e]
            self.assertEqual(event["reason"], "this node publishes no directory")
            self.assertEqual(event["path"], path)


def _noNames(host: str, port: int) -> "Deferred[list[str]]":
    return fail(DNSLookupError(host))


class StatusAccessTests(SynchronousTestCase):
    """
    C{/.status} tells what a node fetches: only the local host and granted
    subnets see it.
    """

    def status(self, peer: str) -> tuple[int, bytes]:
        access = Access(_noNames, [ipaddress.ip_network("10.1.0.0/16")])
        http_ = InMemoryHTTP(self, NodeRoot(None, node=FakeWebNode(b"", 16 * 1024), access=access))
        raw = http_.raw(
            b"GET /.status HTTP/1.1\r\nHost: n\r\n\r\n",
            peer=IPv4Address("TCP", peer, 40000),
        )
        code, _, body = parseResponse(raw)
        return code, body

    def test_localHost(self) -> None:
        """
        The local host gets the JSON.
        """
        code, body = self.status("127.0.0.1")
        self.assertEqual(code, http.OK)
        self.assertEqual(json.loads(body)["downloads"], [])
        self.assertEqual(json.loads(body)["cache"]["diskLimit"], None)

    def test_granted(self) -> None:
        """
        A host of a granted subnet gets the JSON.
        """
        self.assertEqual(self.status("10.1.2.3")[0], http.OK)

    def test_stranger(self) -> None:
        """
        Any other host gets 403 and nothing of the node's downloads.
        """
        code, body = self.status("192.0.2.1")
        self.assertEqual(code, http.FORBIDDEN)
        self.assertEqual(body, b"only this host and granted subnets (-n) may see it\n")


class PlaylistDispositionTests(SynchronousTestCase):
    def test_savedAsSpp(self) -> None:
        """
        A playlist is offered for saving as NAME.spp, the name the desktop
        integration registers, with non-ASCII names in filename* and never a
        quote or a path separator in the plain filename.
        """
        from p2pd.web.root import _playlistDisposition

        self.assertEqual(
            _playlistDisposition("dir/movie.mpg"),
            b"inline; filename=\"movie.mpg.spp\"; filename*=UTF-8''movie.mpg.spp",
        )
        value = _playlistDisposition('ä "b".ts')
        self.assertIn(b'filename="_ _b_.ts.spp"', value)
        self.assertIn(b"filename*=UTF-8''%C3%A4%20%22b%22.ts.spp", value)
