"""
Real processes over real sockets: p2pd started as operators start it
(C{twistd -n --pidfile= p2pd ...}), driven by the players and downloaders
viewers use (curl, mplayer, mpv, ffmpeg, ffprobe, aria2c, wget, VLC).

Each test starts its own node on port 0 of a loopback address and stops it,
waiting for the process to exit, in its cleanup. A test whose program is not
installed is skipped; scripts/test installs them all.
"""

import hashlib
import os
import re

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import clients
from tests.media import getMedia
from tests.nodes import Nodes, runTwistd

# A player that gets nowhere is stopped after this many seconds.
PLAYER_TIMEOUT = 60


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fileDigest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class _NodeTestCase(TestCase):
    """
    Starts one node publishing the test media (with C{redirect} set, as
    C{--redirect}; with C{debug} set, as C{--debug}) before each test.

    Clients run with C{self.runArgs}: an environment without proxy
    variables whose C{HOME} is an empty directory, so no user configuration
    (C{.curlrc}, C{.wgetrc}) applies, and that directory as working
    directory.
    """

    redirect = False
    debug = False  # type: ignore[assignment]

    @inlineCallbacks
    def setUp(self):  # type: ignore[override]
        self.media = yield getMedia()
        self.home = os.path.abspath(self.mktemp())
        os.makedirs(self.home)
        self.runArgs = dict(
            env=clients.environment(HOME=self.home),
            path=self.home,
            timeout=PLAYER_TIMEOUT,
        )
        self.nodes = Nodes(self)
        args = ["-p", self.media.directory]
        if self.redirect:
            args.append("--redirect")
        if self.debug:
            args.append("--debug")
        self.node = yield self.nodes.start(*args)

    def assertNear(self, actual, expected, delta):
        """
        C{actual} is within C{delta} of C{expected} (trial's
        C{assertAlmostEqual} has no C{delta}).
        """
        if abs(actual - expected) > delta:
            self.fail(f"{actual} is not within {delta} of {expected}")

    def client(self, argv):
        """
        Run C{argv} with C{self.runArgs}.
        """
        return clients.run(argv, **self.runArgs)

    def curl(self, *args):
        """
        C{curl -s -i ARGS}: a Deferred firing with the response.
        """
        return clients.curl(*args, **self.runArgs)

    def localDuration(self, name):
        """
        The duration ffprobe reads from the local copy of C{name}.
        """
        return clients.ffprobeDuration(self.media.path(name), **self.runArgs)


class RedirectTests(_NodeTestCase):
    """
    A node started with C{--redirect} answers a GET for a published file
    with a PLS playlist naming its C{spp://} URL and an HTTP fallback.
    """

    redirect = True

    @inlineCallbacks
    def test_playlist(self):
        """
        The playlist has status 200, type C{application/x-spp-playlist}, the
        file's C{spp://} URL as entry 1, the C{/.direct/} fallback on the
        same node as entry 2, and the file's size in bytes as both lengths.
        """
        name = self.media.ts
        size = self.media.size(name)
        response = yield self.curl(self.node.urlFor(name))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers["content-type"], "application/x-spp-playlist")
        lines = response.body.decode("utf-8").splitlines()
        self.assertEqual(lines[0], "[playlist]")
        self.assertIn("NumberOfEntries=2", lines)
        self.assertIn(f"File1=spp://{self.node.authority}/{name}", lines)
        self.assertIn(f"File2={self.node.url}/.direct/{name}", lines)
        self.assertIn(f"Length1={size}", lines)
        self.assertIn(f"Length2={size}", lines)
        self.assertIn("Version=2", lines)

    @inlineCallbacks
    def test_fallbackServesBytes(self):
        """
        The playlist's HTTP fallback URL gives the file's bytes, whole and
        by range, never the playlist again.
        """
        name = self.media.ts
        playlist = yield self.curl(self.node.urlFor(name))
        text = playlist.body.decode("utf-8")
        fallback = re.search(r"^File2=(.*)$", text, re.M).group(1)  # type: ignore[union-attr]
        whole = yield self.curl(fallback)
        self.assertEqual(whole.status, 200)
        self.assertEqual(whole.headers["content-type"], "video/mp2t")
        self.assertEqual(digest(whole.body), digest(self.media.read(name)))
        part = yield self.curl("-r", "1000-1999", fallback)
        self.assertEqual(part.status, 206)
        self.assertEqual(part.body, self.media.read(name)[1000:2000])

    @inlineCallbacks
    def test_missing(self):
        """
        A name that is not published gets 404, as a playlist request and as
        a fallback request.
        """
        response = yield self.curl(self.node.urlFor("missing.ts"))
        self.assertEqual(response.status, 404)
        response = yield self.curl(f"{self.node.url}/.direct/missing.ts")
        self.assertEqual(response.status, 404)

    @inlineCallbacks
    def playPlaylist(self, name, *options):
        """
        Save C{name}'s playlist to a file, as a browser does, and play it
        with C{mplayer -playlist}, 25 frames. mplayer has no handler for
        C{spp://}, skips entry 1 and plays the fallback, entry 2.

        @return: mplayer's C{-identify} values.
        """
        response = yield self.curl(self.node.urlFor(name))
        self.assertEqual(response.status, 200)
        playlist = os.path.join(self.home, "playlist.pls")
        with open(playlist, "wb") as f:
            f.write(response.body)
        # -endpos is not applied to an entry after a failed one; -frames is.
        result = yield clients.mplayer(
            "-frames", "25", *options, "-playlist", playlist, **self.runArgs
        )
        clients.check(result)
        ids = clients.identify(result.text)
        self.assertEqual(
            ids.get("FILENAME"),
            f"{self.node.url}/.direct/{name}",
            result.describe(),
        )
        return ids

    @inlineCallbacks
    def test_mplayerPlaylistMP4(self):
        """
        mplayer plays the playlist of an MP4 whose index is at the end: it
        finds the video format, and the length from the index.
        """
        ids = yield self.playPlaylist(self.media.mp4)
        duration = yield self.localDuration(self.media.mp4)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "H264")
        self.assertNear(float(ids["LENGTH"]), duration, delta=0.5)

    @inlineCallbacks
    def test_mplayerPlaylistTS(self):
        """
        mplayer plays the playlist of an MPEG-TS with libavformat's demuxer
        and finds its length, which takes reads at the end of the file.
        (mplayer's own TS and PS demuxers print C{ID_LENGTH=0.00} even for
        local files.)
        """
        ids = yield self.playPlaylist(self.media.ts, "-demuxer", "lavf")
        duration = yield self.localDuration(self.media.ts)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "H264")
        self.assertNear(float(ids["LENGTH"]), duration, delta=0.5)

    @inlineCallbacks
    def test_mplayerPlaylistTSNativeDemuxer(self):
        """
        mplayer plays the playlist of an MPEG-TS with its own demuxer, the
        default (its length is not reported, see above).
        """
        ids = yield self.playPlaylist(self.media.ts)
        self.assertEqual(ids.get("DEMUXER"), "mpegts")
        self.assertEqual(ids.get("VIDEO_FORMAT"), "0x10000005")  # H.264
        self.assertEqual(ids.get("VIDEO_WIDTH"), "320")

    @inlineCallbacks
    def test_mplayerPlaylistPS(self):
        """
        mplayer plays the playlist of an MPEG-PS and finds its length.
        """
        ids = yield self.playPlaylist(self.media.ps, "-demuxer", "lavf")
        duration = yield self.localDuration(self.media.ps)
        self.assertEqual(ids.get("VIDEO_FORMAT"), "mpg1")
        self.assertNear(float(ids["LENGTH"]), duration, delta=0.5)


class DirectTests(_NodeTestCase):
    """
    A node started without C{--redirect} serves published files over HTTP
    with Range support, to players that seek and to parallel downloaders.
    Its access log is on (C{--debug}).
    """

    debug = True

    @inlineCallbacks
    def test_mpvSeek(self):
        """
        C{mpv --start=50%} starts playing in the middle of the MPEG-TS (it
        needs the duration first, read from the end of the file) and plays
        two seconds.
        """
        name = self.media.ts
        duration = yield self.localDuration(name)
        result = yield clients.mpv(
            "--start=50%",
            "--length=2",
            "--term-playing-msg=P2PD-START ${=time-pos} ${=duration}",
            "--term-status-msg=",
            self.node.urlFor(name),
            **self.runArgs,
        )
        clients.check(result)
        match = re.search(r"^P2PD-START (\S+) (\S+)$", result.text, re.M)
        self.assertIsNotNone(match, result.describe())
        start, length = float(match.group(1)), float(match.group(2))  # type: ignore[union-attr]
        self.assertNear(length, duration, delta=0.5)
        self.assertNear(start, duration / 2, delta=1.5)
        self.assertIn("Exiting... (End of file)", result.text)

    @inlineCallbacks
    def test_ffmpegSeek(self):
        """
        C{ffmpeg -ss N -i URL -t 2} seeks by Range and decodes two seconds:
        the first frame it decodes comes from the second half of the file,
        and the node answered more than its first request with 206 (ffmpeg
        would also seek by reading from the start, were Range ignored).
        """
        name = self.media.ts
        size = self.media.size(name)
        result = yield clients.ffmpeg(
            *("-v", "info", "-ss", "10", "-i", self.node.urlFor(name), "-t", "2"),
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
        # The access log line of a request is written when it ends, which
        # may be just after ffmpeg has exited.
        yield self.node.waitForLines(f'"GET /{name} HTTP/1.1" 206 ', 2, timeout=10)

    @inlineCallbacks
    def test_ffprobeDuration(self):
        """
        ffprobe reads the same duration from the MPEG-TS over HTTP as from
        the local file (it reads the end of the file for it).
        """
        name = self.media.ts
        local = yield self.localDuration(name)
        remote = yield clients.ffprobeDuration(self.node.urlFor(name), **self.runArgs)
        self.assertNear(remote, local, delta=0.01)

    @inlineCallbacks
    def test_aria2cParallelRanges(self):
        """
        aria2c downloading on four connections at once, in 1 MiB ranges,
        gets a byte-identical copy of an 8 MiB file.
        """
        name = self.media.blob
        target = os.path.join(self.home, "download")
        result = yield self.client(
            [
                *("aria2c", "--no-conf", "-q", "-x4", "-s4", "-k1M"),
                *("--file-allocation=none", "-d", target, "-o", name),
                self.node.urlFor(name),
            ]
        )
        clients.check(result)
        self.assertEqual(
            fileDigest(os.path.join(target, name)),
            fileDigest(self.media.path(name)),
        )

    @inlineCallbacks
    def test_curlRanges(self):
        """
        C{curl -r} ranges (closed, open, suffix, the last byte, one running
        past the end) get 206 with the matching bytes and Content-Range.
        """
        name = self.media.blob
        data = self.media.read(name)
        size = len(data)
        cases = [
            ("0-0", 0, 1),
            ("100-199", 100, 200),
            ("1048576-2097151", 1048576, 2097152),
            (f"{size - 1000}-", size - 1000, size),
            ("-100", size - 100, size),
            (f"{size - 1}-{size - 1}", size - 1, size),
            (f"{size - 10}-{size + 1000}", size - 10, size),
        ]
        for spec, start, stop in cases:
            response = yield self.curl("-r", spec, self.node.urlFor(name))
            headers = response.headers
            self.assertEqual(response.status, 206, spec)
            self.assertEqual(
                headers["content-range"], f"bytes {start}-{stop - 1}/{size}", spec
            )
            self.assertEqual(int(headers["content-length"]), stop - start, spec)
            self.assertEqual(response.body, data[start:stop], spec)

    @inlineCallbacks
    def test_wgetResume(self):
        """
        C{wget -c} completes a partly downloaded file with a Range request
        (the server answers 206) into a byte-identical copy.
        """
        name = self.media.blob
        data = self.media.read(name)
        target = os.path.join(self.home, "download")
        os.makedirs(target)
        with open(os.path.join(target, name), "wb") as f:
            f.write(data[:3_000_000])
        result = yield self.client(
            ["wget", "-c", "-S", "-nv", "-P", target, self.node.urlFor(name)]
        )
        clients.check(result)
        self.assertIn("206 Partial Content", result.text, result.describe())
        self.assertEqual(fileDigest(os.path.join(target, name)), digest(data))

    @inlineCallbacks
    def playWithVLC(self, name):
        """
        Play C{name} for 3 seconds with VLC, as an ordinary user, and check
        that a picture was decoded.
        """
        runArgs = dict(self.runArgs, path="/")
        result = yield clients.vlc("--run-time=3", self.node.urlFor(name), **runArgs)
        clients.check(result)
        self.assertIn("Received first picture", result.text, result.describe())
        return result

    @inlineCallbacks
    def test_vlcTS(self):
        """
        VLC plays the MPEG-TS.
        """
        yield self.playWithVLC(self.media.ts)

    @inlineCallbacks
    def test_vlcMP4(self):
        """
        VLC plays the MP4 whose index is at the end of the file.
        """
        yield self.playWithVLC(self.media.mp4)

    @inlineCallbacks
    def test_rangeAtEnd(self):
        """
        C{Range: bytes=SIZE-}, VLC's probe past the end of an MP4, gets 416
        with C{Content-Range: bytes */SIZE}, and no body.
        """
        name = self.media.mp4
        size = self.media.size(name)
        response = yield self.curl(
            "-H", f"Range: bytes={size}-", self.node.urlFor(name)
        )
        self.assertEqual(response.status, 416)
        self.assertEqual(response.headers["content-range"], f"bytes */{size}")
        self.assertEqual(response.body, b"")


class CommandLineTests(TestCase):
    """
    Mistakes on the command line end p2pd with a non-zero status and one
    clear line, not a traceback.
    """

    def assertOneClearLine(self, result, pattern):
        """
        C{result} is a failure with exactly one output line matching
        C{pattern}, and no traceback.
        """
        self.assertNotEqual(result.code, 0, result.describe())
        self.assertFalse(result.timedOut, result.describe())
        self.assertNotIn("Traceback", result.text, result.describe())
        matching = [line for line in result.lines() if re.search(pattern, line)]
        self.assertEqual(len(matching), 1, result.describe())

    @inlineCallbacks
    def test_badPort(self):
        """
        C{-P abc} is refused: it is not a port number.
        """
        result = yield runTwistd(["p2pd", "-P", "abc"])
        self.assertOneClearLine(result, r"--port: 'abc' is not a port number")

    @inlineCallbacks
    def test_badCommandLines(self):
        """
        Each bad command line ends twistd with exit status 1 and one line
        saying what is wrong, never a traceback: an unknown endpoint type,
        an extra endpoint argument, a port past 65535, a cache directory
        under a regular file or where a file is in its way, a weak digest.
        """
        plain = os.path.abspath(self.mktemp())
        with open(plain, "w"):
            pass
        blocked = os.path.abspath(self.mktemp())
        os.mkdir(blocked)
        with open(os.path.join(blocked, "blocks"), "w"):
            pass
        cases = [
            (["--listen", "garbage:foo"], r"--listen: 'garbage:foo' is not"),
            (
                ["--listen", "tcp:2190:interface=127.0.0.1:extra=1"],
                r"--listen: .*extra",
            ),
            (
                ["-c", os.path.abspath(self.mktemp()), "--listen", "tcp:99999"],
                r"cannot listen on",
            ),
            (["-c", os.path.join(plain, "cache")], r"--cache-dir: cannot create"),
            (["-c", blocked], r"cannot use the cache directory"),
            (["-m", "md5"], r"--digest: md5 collisions are practical"),
            (["-m", "shake_128"], r"--digest: 'shake_128' is not"),
            (["-A", "origin:1111"], r"--allow-host: 'origin:1111' is not"),
        ]
        for args, pattern in cases:
            result = yield runTwistd(["p2pd", *args])
            self.assertEqual(result.code, 1, result.describe())
            self.assertOneClearLine(result, pattern)

    @inlineCallbacks
    def test_missingDirectory(self):
        """
        C{-p DIR} for a directory that does not exist is refused.
        """
        missing = os.path.abspath(self.mktemp())
        result = yield runTwistd(["p2pd", "-p", missing])
        self.assertOneClearLine(
            result, r"--public: '" + re.escape(missing) + r"' does not exist"
        )

    @inlineCallbacks
    def test_portInUse(self):
        """
        A second node on the address and port of a running one exits with
        one line saying it cannot listen there; the first keeps serving.
        """
        media = yield getMedia()
        nodes = Nodes(self)
        first = yield nodes.start("-p", media.directory)
        result = yield runTwistd(
            ["p2pd", "-p", media.directory, "-P", str(first.port), "-i", first.host]
        )
        self.assertOneClearLine(
            result, rf"p2pd: cannot listen on \S*{first.port}\S*: .*in use"
        )
        self.assertTrue(first.running)
        served = yield clients.run(
            [
                "curl",
                "-s",
                "-o",
                os.devnull,
                "-w",
                "%{http_code}",
                first.urlFor("random.bin"),
            ]
        )
        self.assertEqual(clients.check(served).stdout, "200")
