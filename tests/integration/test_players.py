# -*- test-case-name: tests.integration.test_players -*-
"""
Real players through the viewer's proxy.

Each test runs an origin, C{twistd p2pd --redirect -p DIR} on 127.0.0.1, and
a viewer node on 127.0.0.2 with its access log on (C{--debug}); players run
with C{http_proxy} pointing at the viewer (and no C{no_proxy}), as a viewer
would set it, and ask for the origin's URLs: the playlist URL, the
C{/.direct/} fallback URL or an C{spp://} URL. The viewer fetches the content
over SPP. Players are judged by what they print; downloaders' files are
compared with the original.

Each test starts its own nodes on port 0 and stops them, waiting for the
processes to exit, in its cleanup. A test whose program is not installed is
skipped.
"""

import atexit
import hashlib
import json
import os
import re
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.server import Site
from twisted.web.static import File

from p2pd.core.sizes import parseSize
from p2pd.engine.verification import DIGEST_CHUNK
from p2pd.tap import DEFAULT_BLOCK_SIZE
from tests import clients
from tests.media import getMedia
from tests.nodes import CHECKOUT, NodeExited, Nodes

# A player that gets nowhere is stopped after this many seconds.
PLAYER_TIMEOUT = 60

ORIGIN_ADDRESS = "127.0.0.1"
VIEWER_ADDRESS = "127.0.0.2"

# An MP4 with its index first, bigger than VLC's read-ahead buffer (16 MiB):
# VLC reads the index, then probes past the end (bytes=SIZE-) for more.
FASTSTART = "faststart.mp4"
FASTSTART_LOOPS = 40
# Bigger than a download's read-ahead, so a slow reader is still reading
# when the origin goes away.
BIG = "big.bin"
BIG_SIZE = 48 * 1000 * 1000


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fileDigest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_published: str | None = None


@defer.inlineCallbacks
def publishedDirectory():
    """
    The directory the origins publish, made on the first call of the run:
    the test media (hard links, or copies), an MP4 with C{+faststart}, and
    L{BIG}.

    @return: a Deferred firing with its path.
    """
    global _published
    if _published is not None:
        return _published
    media = yield getMedia()
    directory = tempfile.mkdtemp(prefix="p2pd-players-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for name in os.listdir(media.directory):
        source = os.path.join(media.directory, name)
        try:
            os.link(source, os.path.join(directory, name))
        except OSError:
            shutil.copy2(source, directory)
    with open(os.path.join(directory, BIG), "wb") as f:
        f.write(os.urandom(BIG_SIZE))
    if media.videos:
        result = yield clients.ffmpeg(
            *("-v", "error", "-stream_loop", str(FASTSTART_LOOPS - 1)),
            *("-i", media.path(media.mp4), "-c", "copy", "-movflags", "+faststart"),
            os.path.join(directory, FASTSTART),
        )
        clients.check(result)
    _published = directory
    return directory


class _IdleSite(Site):
    """
    A site that knows its open connections, so a test can wait until the
    last has closed.
    """

    def __init__(self, resource):
        super().__init__(resource)
        self.open = set()
        self._waiting = []

    def buildProtocol(self, addr):
        channel = super().buildProtocol(addr)
        self.open.add(channel)
        lost = channel.connectionLost

        def connectionLost(reason):
            lost(reason)
            self.open.discard(channel)
            if not self.open:
                waiting, self._waiting = self._waiting, []
                for d in waiting:
                    d.callback(None)

        channel.connectionLost = connectionLost
        return channel

    def whenIdle(self, reactor, timeout=10.0):
        """
        Fires once no connection is open; connections still open after
        C{timeout} seconds are aborted.
        """
        if not self.open:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        abort = reactor.callLater(timeout, self._abort)

        def idle(result):
            if abort.active():
                abort.cancel()
            return result

        return d.addBoth(idle)

    def _abort(self):
        for channel in list(self.open):
            channel.transport.abortConnection()


class ProxyPlayerTests(TestCase):
    """
    Players and downloaders play an origin's files through a viewer's
    proxy.
    """

    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]
        self.media = yield getMedia()
        self.public = yield publishedDirectory()
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.nodes = Nodes(self)
        self.origin = yield self.startOrigin()
        self.viewer = yield self.startViewer()
        self.directArgs = dict(
            env=clients.environment(HOME=self.home),
            path=self.home,
            timeout=PLAYER_TIMEOUT,
        )
        self.runArgs = self.proxyArgs(self.viewer)

    # Nodes

    def startOrigin(self):
        return self.nodes.start(
            *("--redirect", "-p", self.public, "-c", self.cacheDirectory()),
            address=ORIGIN_ADDRESS,
            name="origin",
        )

    def startViewer(self, *options, address=VIEWER_ADDRESS, cache=None, name=None):
        """
        Start a viewer node (with C{--debug}, so its access log shows each
        player request).
        """
        return self.nodes.start(
            *("--debug", "-c", cache or self.cacheDirectory(), *options),
            address=address,
            name=name or f"viewer {address}",
        )

    def cacheDirectory(self):
        return os.path.abspath(self.mktemp())

    def proxyArgs(self, viewer):
        """
        L{clients.run} arguments for a client using C{viewer} as its proxy.
        """
        return dict(
            env=clients.environment(
                HOME=self.home, http_proxy=f"http://{viewer.authority}"
            ),
            path=self.home,
            timeout=PLAYER_TIMEOUT,
        )

    # URLs

    def playlistURL(self, name):
        return self.origin.urlFor(name)

    def directURL(self, name):
        return f"{self.origin.url}/.direct/{name}"

    def sppURL(self, name):
        return self.origin.sppURLFor(name)

    # Checks

    @defer.inlineCallbacks
    def status(self, node):
        """
        C{node}'s C{/.status}, fetched without a proxy.
        """
        result = yield clients.run(
            ["curl", "-sS", "--fail", f"{node.url}/.status"], **self.directArgs
        )
        return json.loads(clients.check(result).stdout)

    @defer.inlineCallbacks
    def assertOverSPP(self, name, viewer=None):
        """
        C{viewer} (default: the viewer) downloads C{name} from the origin
        over SPP: its C{/.status} lists the download.
        """
        state = yield self.status(viewer or self.viewer)
        urls = [download["url"] for download in state["downloads"]]
        self.assertIn(self.sppURL(name), urls)

    def assertNear(self, actual, expected, delta):
        if abs(actual - expected) > delta:
            self.fail(f"{actual} is not within {delta} of {expected}")

    def localDuration(self, name):
        return clients.ffprobeDuration(self.media.path(name), **self.directArgs)

    def output(self, name):
        return os.path.join(self.home, name)

    def read(self, name):
        with open(os.path.join(self.public, name), "rb") as f:
            return f.read()

    def size(self, name):
        return os.path.getsize(os.path.join(self.public, name))

    # mplayer

    @defer.inlineCallbacks
    def savePlaylist(self, name):
        """
        Save C{name}'s playlist, fetched from the origin without a proxy,
        as a browser does.

        @return: its path.
        """
        response = yield clients.curl(self.playlistURL(name), **self.directArgs)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/x-spp-playlist")
        path = self.output("playlist.pls")
        with open(path, "wb") as f:
            f.write(response.body)
        return path

    @defer.inlineCallbacks
    def mplayerPlaylist(self, name, *options):
        """
        C{mplayer -playlist} on C{name}'s playlist through the proxy, 25
        frames. mplayer skips the C{spp://} entry and plays the fallback.

        @return: its C{-identify} values.
        """
        self.media.path(name)
        playlist = yield self.savePlaylist(name)
        result = yield clients.mplayer(
            "-frames", "25", *options, "-playlist", playlist, **self.runArgs
        )
        clients.check(result)
        ids = clients.identify(result.text)
        self.assertEqual(ids.get("FILENAME"), self.directURL(name), result.describe())
        return ids

    @defer.inlineCallbacks
    def test_mplayerPlaylistTS(self):
        """
        mplayer plays the playlist of an MPEG-TS through the proxy: it finds
        the H.264 video, and the viewer fetched the file over SPP.
        """
        ids = yield self.mplayerPlaylist(self.media.ts)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "0x10000005")  # H.264
        self.assertEqual(ids.get("VIDEO_WIDTH"), "320")
        yield self.assertOverSPP(self.media.ts)

    @defer.inlineCallbacks
    def test_mplayerPlaylistMP4(self):
        """
        mplayer plays the playlist of an MP4 whose index is at the end, and
        finds its length from that index.
        """
        ids = yield self.mplayerPlaylist(self.media.mp4)
        duration = yield self.localDuration(self.media.mp4)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "H264")
        self.assertNear(float(ids["LENGTH"]), duration, delta=0.5)
        yield self.assertOverSPP(self.media.mp4)

    @defer.inlineCallbacks
    def test_mplayerPlaylistURL(self):
        """
        mplayer given the playlist URL itself, through the proxy, plays the
        file: the proxy sees the answer comes from a p2pd node and serves
        the media bytes over SPP instead of the playlist.
        """
        name = self.media.ps
        result = yield clients.mplayer(
            "-frames", "25", "-demuxer", "lavf", self.playlistURL(name), **self.runArgs
        )
        clients.check(result)
        ids = clients.identify(result.text)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "mpg1", result.describe())
        yield self.assertOverSPP(name)

    @defer.inlineCallbacks
    def test_p2pdMplayer(self):
        """
        C{bin/p2pd-mplayer PLAYLIST}, the browser's handler for playlists,
        plays through the proxy of a viewer on C{localhost:1111}, the
        address it names. Its headless options come from the user's
        C{~/.mplayer/config}, since the script passes only the playlist.
        """
        clients.require("mplayer")
        name = self.media.ts
        self.media.path(name)
        viewer = self.nodes.add(
            *("--debug", "-c", self.cacheDirectory()),
            *("--listen", "tcp:1111:interface=127.0.0.1"),
            address="127.0.0.1",
            listen=False,
            name="viewer on port 1111",
        )
        try:
            yield viewer.start()
        except NodeExited as e:
            if "cannot listen" in e.node.log:
                raise SkipTest("port 1111 of 127.0.0.1 is in use") from None
            raise
        config = os.path.join(self.home, ".mplayer")
        os.makedirs(config, exist_ok=True)
        with open(os.path.join(config, "config"), "w") as f:
            f.write(
                "vo=null\nao=null\nidentify=yes\nreally-quiet=yes\n"
                "lirc=no\njoystick=no\nframes=25\n"
            )
        playlist = yield self.savePlaylist(name)
        script = os.path.join(CHECKOUT, "bin", "p2pd-mplayer")
        result = yield clients.run([script, playlist], **self.directArgs)
        clients.check(result)
        ids = clients.identify(result.text)
        self.assertEqual(ids.get("FILENAME"), self.directURL(name), result.describe())
        self.assertEqual(ids.get("VIDEO_FORMAT"), "0x10000005", result.describe())
        yield self.assertOverSPP(name, viewer)

    # mpv, ffmpeg, ffprobe

    def mpv(self, name, *options):
        return clients.mpv(
            *options,
            "--term-playing-msg=P2PD-PLAYING ${=time-pos} ${=duration}",
            "--term-status-msg=",
            self.playlistURL(name),
            **self.runArgs,
        )

    def playing(self, result):
        """
        The position and duration mpv printed when it began playing.
        """
        match = re.search(r"^P2PD-PLAYING (\S+) (\S+)$", result.text, re.M)
        self.assertIsNotNone(match, result.describe())
        return float(match.group(1)), float(match.group(2))  # type: ignore[union-attr]

    @defer.inlineCallbacks
    def test_mpvPlay(self):
        """
        mpv plays three seconds of the MPEG-TS from its playlist URL through
        the proxy, from the start, and knows its duration.
        """
        name = self.media.ts
        duration = yield self.localDuration(name)
        result = yield self.mpv(name, "--length=3")
        clients.check(result)
        start, length = self.playing(result)
        self.assertNear(start, 0, delta=1.5)
        self.assertNear(length, duration, delta=0.5)
        self.assertNotIn("Failed", result.text, result.describe())
        yield self.assertOverSPP(name)

    @defer.inlineCallbacks
    def test_mpvSeek(self):
        """
        C{mpv --start=50%} starts in the middle of the MPEG-TS (after
        reading its duration from the end of the file) and plays on to the
        end of two seconds.
        """
        name = self.media.ts
        duration = yield self.localDuration(name)
        result = yield self.mpv(name, "--start=50%", "--length=2")
        clients.check(result)
        start, length = self.playing(result)
        self.assertNear(length, duration, delta=0.5)
        self.assertNear(start, duration / 2, delta=1.5)
        self.assertIn("Exiting... (End of file)", result.text)

    @defer.inlineCallbacks
    def test_ffmpegSeek(self):
        """
        C{ffmpeg -ss 10} seeks by Range through the proxy and decodes two
        seconds: its first frame comes from the second half of the file.
        """
        name = self.media.ts
        size = self.size(name)
        result = yield clients.ffmpeg(
            *("-v", "info", "-ss", "10", "-i", self.playlistURL(name), "-t", "2"),
            *("-vf", "showinfo", "-f", "null", "-progress", "pipe:1", "-"),
            **self.runArgs,
        )
        clients.check(result)
        progress = dict(re.findall(r"^(\w+)=(.*)$", result.stdout, re.M))
        self.assertEqual(progress.get("progress"), "end", result.describe())
        self.assertGreaterEqual(int(progress["frame"]), 45)
        first = re.search(r"n: *0 .*? pos: *(\d+)", result.stderr)
        self.assertIsNotNone(first, result.describe())
        self.assertGreater(int(first.group(1)), size // 2)  # type: ignore[union-attr]
        yield self.viewer.waitForLines(r'"GET http://\S+ HTTP/1.1" 206 ', 2)

    @defer.inlineCallbacks
    def test_ffprobeDuration(self):
        """
        ffprobe finds the same duration for the MPEG-TS through the proxy
        as for the local file (libavformat probes the tail of the file
        with small Range requests first).
        """
        name = self.media.ts
        local = yield self.localDuration(name)
        remote = yield clients.ffprobeDuration(self.directURL(name), **self.runArgs)
        self.assertNear(remote, local, delta=0.01)

    # VLC

    @defer.inlineCallbacks
    def vlc(self, name, *options):
        """
        Play C{name} from its playlist URL with VLC (as an ordinary user)
        through the proxy, and check that a picture was decoded.

        @return: VLC's result.
        """
        self.media.path(self.media.mp4)
        runArgs = dict(self.runArgs, path="/")
        result = yield clients.vlc(*options, self.playlistURL(name), **runArgs)
        clients.check(result)
        self.assertIn("Received first picture", result.text, result.describe())
        return result

    @defer.inlineCallbacks
    def test_vlcPlay(self):
        """
        VLC plays an MP4 with its index first, after probing past its end
        with C{Range: bytes=SIZE-}, which the proxy answers with 416 at
        once.
        """
        name = FASTSTART
        size = self.size(name)
        result = yield self.vlc(name, "--run-time=2")
        self.assertIn(f"Range: bytes={size}-", result.text, result.describe())
        self.assertIn("HTTP/1.1 416", result.text)
        yield self.viewer.waitForLine(
            rf'"GET {re.escape(self.playlistURL(name))} HTTP/1.1" 416 '
        )

    @defer.inlineCallbacks
    def test_vlcSeek(self):
        """
        VLC started at 500 s of the 640 s MP4 asks for the bytes from about
        78% of the file on (beyond what it has read ahead) and decodes a
        picture there.
        """
        name = FASTSTART
        size = self.size(name)
        result = yield self.vlc(name, "--start-time=500", "--run-time=1")
        starts = [
            int(s) for s in re.findall(r"^Range: bytes=(\d+)-", result.text, re.M)
        ]
        seeks = [s for s in starts if 0.7 * size < s < 0.9 * size]
        self.assertTrue(seeks, f"no seek in {starts}:\n{result.describe()}")
        yield self.viewer.waitForLine(
            rf'"GET {re.escape(self.playlistURL(name))} HTTP/1.1" 206 '
        )

    # Downloaders

    @defer.inlineCallbacks
    def test_curlWhole(self):
        """
        curl through the proxy gets the whole file, byte-identical, from the
        playlist URL, the fallback URL, and an C{spp://} URL sent as the
        request target.
        """
        name = self.media.blob
        data = self.read(name)
        for url in (self.playlistURL(name), self.directURL(name)):
            response = yield clients.curl(url, **self.runArgs)
            self.assertEqual(response.status, 200, url)
            self.assertEqual(response.headers["content-length"], str(len(data)))
            self.assertEqual(sha256(response.body), sha256(data), url)
        response = yield clients.curl(
            "--request-target", self.sppURL(name), self.viewer.url, **self.directArgs
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(sha256(response.body), sha256(data))
        yield self.assertOverSPP(name)

    @defer.inlineCallbacks
    def test_curlRanges(self):
        """
        C{curl -r} through the proxy: closed, open, suffix and clipped
        ranges get 206 with the right bytes and C{Content-Range}; a range
        at the end gets 416 with C{bytes */SIZE}.
        """
        name = self.media.blob
        data = self.read(name)
        size = len(data)
        url = self.playlistURL(name)
        cases = [
            ("0-0", 0, 1),
            ("100-199", 100, 200),
            ("1048576-2097151", 1048576, 2097152),
            (f"{size - 1000}-", size - 1000, size),
            ("-100", size - 100, size),
            (f"{size - 10}-{size + 1000}", size - 10, size),
        ]
        for spec, start, stop in cases:
            response = yield clients.curl("-r", spec, url, **self.runArgs)
            self.assertEqual(response.status, 206, spec)
            self.assertEqual(
                response.headers["content-range"],
                f"bytes {start}-{stop - 1}/{size}",
                spec,
            )
            self.assertEqual(response.body, data[start:stop], spec)
        response = yield clients.curl("-r", f"{size}-", url, **self.runArgs)
        self.assertEqual(response.status, 416)
        self.assertEqual(response.headers["content-range"], f"bytes */{size}")
        self.assertEqual(response.body, b"")

    @defer.inlineCallbacks
    def test_wgetResume(self):
        """
        C{wget -c} through the proxy completes a partly downloaded file with
        a Range request (answered 206) into a byte-identical copy.
        """
        name = self.media.blob
        data = self.read(name)
        target = self.output("download")
        os.makedirs(target)
        with open(os.path.join(target, name), "wb") as f:
            f.write(data[:3_000_000])
        result = yield clients.run(
            ["wget", "-c", "-S", "-nv", "-P", target, self.playlistURL(name)],
            **self.runArgs,
        )
        clients.check(result)
        self.assertIn("206 Partial Content", result.text, result.describe())
        self.assertEqual(fileDigest(os.path.join(target, name)), sha256(data))

    @defer.inlineCallbacks
    def test_aria2c(self):
        """
        aria2c through the proxy, on four connections in 1 MiB ranges, gets
        a byte-identical copy.
        """
        name = self.media.blob
        target = self.output("download")
        result = yield clients.run(
            [
                *("aria2c", "--no-conf", "-q", "-x4", "-s4", "-k1M"),
                *("--file-allocation=none", "-d", target, "-o", name),
                self.playlistURL(name),
            ],
            **self.runArgs,
        )
        clients.check(result)
        self.assertEqual(
            fileDigest(os.path.join(target, name)), sha256(self.read(name))
        )
        yield self.assertOverSPP(name)

    # Other sites, access

    @defer.inlineCallbacks
    def test_ordinarySite(self):
        """
        An ordinary web site (Twisted's static files on 127.0.0.5) is
        proxied as by any HTTP proxy: the body comes back byte-identical
        with its type, and a 404 stays a 404. The viewer fetches nothing
        over SPP.
        """
        from twisted.internet import reactor

        site = _IdleSite(File(self.media.directory))
        port = reactor.listenTCP(0, site, interface="127.0.0.5")  # type: ignore[arg-type]
        self.addCleanup(site.whenIdle, reactor)
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.5:{port.getHost().port}"  # type: ignore[attr-defined]
        name = self.media.blob
        response = yield clients.curl(f"{base}/{name}", **self.runArgs)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/octet-stream")
        self.assertEqual(sha256(response.body), sha256(self.read(name)))
        response = yield clients.curl("-r", "10-19", f"{base}/{name}", **self.runArgs)
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.read(name)[10:20])
        response = yield clients.curl(f"{base}/missing.bin", **self.runArgs)
        self.assertEqual(response.status, 404)
        state = yield self.status(self.viewer)
        self.assertEqual(state["downloads"], [])

    @defer.inlineCallbacks
    def test_loopbackGranted(self):
        """
        A viewer started without grants serves any client on the local
        host: every 127.x.y.z address is loopback, so a client connecting
        from 127.0.0.3 is served. (Refusal of other hosts is tested with a
        non-loopback peer address in L{tests.unit.test_proxy.AccessTests}.)
        """
        name = self.media.blob
        response = yield clients.curl(
            "--interface", "127.0.0.3", "-r", "0-99", self.playlistURL(name),
            **self.runArgs,
        )  # fmt: skip
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.read(name)[:100])
        yield self.viewer.waitForLine(r'^\S+ \[\S+\] "127\.0\.0\.3" ')

    @defer.inlineCallbacks
    def test_allowHost(self):
        """
        A viewer started with C{-A} for another host refuses the origin's
        URLs with 403 saying why, and fetches nothing.
        """
        viewer = yield self.startViewer("-A", "127.0.0.9", address="127.0.0.4")
        response = yield clients.curl(
            self.playlistURL(self.media.blob), **self.proxyArgs(viewer)
        )
        self.assertEqual(response.status, 403)
        self.assertIn(b"is not an allowed origin", response.body)
        state = yield self.status(viewer)
        self.assertEqual(state["downloads"], [])

    # The origin going away

    @defer.inlineCallbacks
    def test_cachedWithoutOrigin(self):
        """
        Once a viewer has fetched a file, it plays it with the origin
        stopped: from its running download, and after a restart from its
        cache, reached by the playlist URL (the proxy cannot ask the origin
        whether it is a p2pd node, and serves what it holds).
        """
        name = self.media.blob
        data = self.read(name)
        url = self.playlistURL(name)
        first = yield clients.curl(url, **self.runArgs)
        self.assertEqual(sha256(first.body), sha256(data))
        yield self.origin.stop()
        again = yield clients.curl(url, **self.runArgs)
        self.assertEqual(again.status, 200)
        self.assertEqual(sha256(again.body), sha256(data))
        cache = self.viewer.args[self.viewer.args.index("-c") + 1]
        yield self.viewer.stop()
        restarted = yield self.startViewer(cache=cache, name="viewer restarted")
        response = yield clients.curl(url, **self.proxyArgs(restarted))
        self.assertEqual(response.status, 200)
        self.assertEqual(sha256(response.body), sha256(data))
        self.assertIn("playing from the cache", restarted.log)

    @defer.inlineCallbacks
    def test_originGoneMidStream(self):
        """
        Viewer A fetches a file whole; viewer B starts reading it slowly
        and learns of A from the origin; then the origin is stopped. B's
        player still gets the whole file, byte-identical, the rest from A.

        Only the origin vouches for blocks (its digests), and a node asks it
        for them L{DIGEST_CHUNK} blocks at a time; so B first reads a byte
        in each stretch of that many blocks, and holds every digest before
        the origin goes.
        """
        clients.require("curl")
        data = self.read(BIG)
        url = self.playlistURL(BIG)
        a = self.viewer
        whole = yield clients.curl(url, **self.runArgs)
        self.assertEqual(sha256(whole.body), sha256(data))
        b = yield self.startViewer(address="127.0.0.3", name="viewer B")
        bArgs = self.proxyArgs(b)
        stretch = DIGEST_CHUNK * parseSize(DEFAULT_BLOCK_SIZE)
        for offset in range(0, BIG_SIZE, stretch):
            part = yield clients.curl("-r", f"{offset}-{offset}", url, **bArgs)
            self.assertEqual(part.body, data[offset : offset + 1])
        target = self.output("b.bin")
        reading = clients.run(
            ["curl", "-sS", "--fail", "--limit-rate", "8M", "-o", target, url],
            **bArgs,
        )
        for _ in range(100):
            state = yield self.status(b)
            downloads = [d for d in state["downloads"] if d["readers"]]
            if downloads and any(
                s.startswith(f"{a.address}:") for s in downloads[0]["sources"]
            ):
                break
        else:
            self.fail(f"B never read from A: {state}")
        yield self.origin.stop()
        result = yield reading
        clients.check(result)
        self.assertEqual(fileDigest(target), sha256(data))
        state = yield self.status(b)
        (download,) = state["downloads"]
        fromA = sum(
            count
            for source, count in download["bytesBySource"].items()
            if source.startswith(f"{a.address}:")
        )
        self.assertGreater(fromA, BIG_SIZE // 4, download)
