"""
The player model, and a viewer reading over HTTP with it.

A player asks for the file (from an offset, after a seek), starts playing
once L{START_SECONDS} of media are buffered, reads at most
L{READ_AHEAD_SECONDS} ahead of what it plays (so it stops reading, and TCP
pushes back, when that much is buffered), and stalls when its buffer runs
dry, resuming once L{START_SECONDS} are buffered again (or all that is left
to play). Media seconds are bytes divided by the file's mean bitrate: the
lab's files are constant-bitrate MPEG-TS.

Everything is computed from the arrival times of the bytes, the same way
for every contestant: L{Playback} takes (time, bytes so far) and says where
playback is at any time, and afterwards its start-up, stalls and buffer.

Run in a viewer's namespace by the lab:

    python3 -m benchmarks.lab.player URL --bitrate BYTES_PER_S --play S
        [--proxy HOST:PORT] [--segments OFFSET:SECONDS,...] --json FILE
        [--mpv]

With C{--mpv}, a real player instead: mpv at real-time speed, its start-up
and buffering events read from its log (L{mpv}).
"""

import argparse
import http.client
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.parse

START_SECONDS = 2.0
READ_AHEAD_SECONDS = 10.0
# A viewer that has had no byte for this long gives up on the segment.
GIVE_UP_SECONDS = 60.0
CHUNK = 64 * 1024
# Arrival records are kept at least this far apart (seconds) or this many
# bytes apart, whichever comes first: enough for the buffer plots.
RECORD_EVERY = 0.05


class Playback:
    """
    Playback of one segment (a request from an offset), driven by arrivals.

    @ivar started: when playback first started (None until then).
    @ivar stalls: [begin, end] of each stall after the start (end None while
        it lasts).
    """

    def __init__(self, requested, bitrate, play, start=START_SECONDS):
        self.requested = requested
        self.bitrate = bitrate
        self.play = play
        self.total = math.ceil(play * bitrate)
        self.start = start
        self.clock = requested
        self.available = 0.0
        self.position = 0.0
        self.playing = False
        self.started = None
        self.stalls = []

    @property
    def finished(self):
        return self.position >= self.play - 1e-9

    def _need(self):
        return min(self.start, self.play - self.position)

    def _resume(self):
        if not self.playing and self.available - self.position >= self._need() - 1e-9:
            self.playing = True
            if self.started is None:
                self.started = self.clock
            elif self.stalls and self.stalls[-1][1] is None:
                self.stalls[-1][1] = self.clock

    def advance(self, now):
        """
        Play on until C{now}.
        """
        if now <= self.clock:
            return
        if self.playing and not self.finished:
            dry = self.clock + (min(self.available, self.play) - self.position)
            if dry >= now:
                self.position += now - self.clock
            else:
                self.position = min(self.available, self.play)
                self.playing = False
                if not self.finished:
                    self.stalls.append([dry, None])
        self.clock = now

    def arrive(self, now, received):
        """
        C{received} bytes of the segment have arrived by C{now}.
        """
        self.advance(now)
        self.available = (
            self.play if received >= self.total else received / self.bitrate
        )
        self._resume()

    def positionAt(self, now):
        self.advance(now)
        return self.position

    def wanted(self, now):
        """
        How many bytes the player reads by C{now}: up to its read-ahead.
        """
        ahead = self.positionAt(now) + READ_AHEAD_SECONDS
        return min(math.ceil(ahead * self.bitrate), self.total)


def replay(segment, bitrate):
    """
    A L{Playback} fed with a recorded segment's arrivals, played to its end.
    """
    playback = Playback(segment["requested"], bitrate, segment["play"])
    for t, received in segment["arrivals"]:
        playback.arrive(t, received)
    # Until the viewer stopped: a stall lasts until then at most.
    if "ended" in segment:
        playback.advance(segment["ended"])
    elif playback.playing:
        playback.advance(playback.clock + segment["play"])
    return playback


def summarize(segments, bitrate):
    """
    Start-up, seek waits and stalls of a viewer's recorded segments.
    """
    result = {
        "startup_s": None,
        "seek_waits_s": [],
        "stalls": 0,
        "stall_s": 0.0,
        "played_s": 0.0,
        "complete": True,
    }
    for n, segment in enumerate(segments):
        playback = replay(segment, bitrate)
        if playback.started is None:
            result["complete"] = False
            wait = None
        else:
            wait = playback.started - segment["requested"]
        if n == 0:
            result["startup_s"] = wait
        else:
            result["seek_waits_s"].append(wait)
        for begin, end in playback.stalls:
            result["stalls"] += 1
            result["stall_s"] += (end if end is not None else playback.clock) - begin
        result["played_s"] += playback.position
        if not playback.finished:
            result["complete"] = False
    return result


def bufferSeries(segments, bitrate, step=0.1):
    """
    (time, seconds buffered) through every segment, for the plots.
    """
    series = []
    for segment in segments:
        playback = Playback(segment["requested"], bitrate, segment["play"])
        arrivals = list(segment["arrivals"])
        end = segment.get(
            "ended", arrivals[-1][0] if arrivals else segment["requested"]
        )
        t = segment["requested"]
        index = 0
        while t <= end + segment["play"] and not playback.finished:
            while index < len(arrivals) and arrivals[index][0] <= t:
                playback.arrive(*arrivals[index])
                index += 1
            playback.advance(t)
            series.append((t, playback.available - playback.position))
            t += step
    return series


class Recorder:
    """
    Arrival records of one segment, thinned to one per L{RECORD_EVERY}.
    """

    def __init__(self, requested, play):
        self.segment = {"requested": requested, "play": play, "arrivals": []}
        self.last = None

    def record(self, now, received, force=False):
        arrivals = self.segment["arrivals"]
        if force or not arrivals or now - arrivals[-1][0] >= RECORD_EVERY:
            arrivals.append([now, received])
        else:
            arrivals[-1] = [arrivals[-1][0], received]


def readSegment(url, proxy, offset, bitrate, play, deadline):
    """
    Read one segment over HTTP as the player model does; its record.
    """
    requested = time.monotonic()
    recorder = Recorder(requested, play)
    playback = Playback(requested, bitrate, play)
    parsed = urllib.parse.urlsplit(url)
    host, port = (proxy or parsed.netloc).rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=GIVE_UP_SECONDS)
    target = url if proxy else (parsed.path or "/")
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    received = 0
    try:
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        if response.status not in (200, 206):
            recorder.segment["error"] = f"HTTP {response.status}"
            return recorder.segment
        while not playback.finished and time.monotonic() < deadline:
            now = time.monotonic()
            room = playback.wanted(now) - received
            if room <= 0:
                time.sleep(0.02)
                continue
            data = response.read1(min(CHUNK, room))
            if not data:
                break
            now = time.monotonic()
            received += len(data)
            playback.arrive(now, received)
            recorder.record(now, received)
            if received >= playback.total:
                break
        recorder.record(time.monotonic(), received, force=True)
    except (OSError, http.client.HTTPException) as e:
        recorder.segment["error"] = str(e)
    finally:
        connection.close()
    # Play out what is buffered before the next segment or the end.
    while not playback.finished and playback.playing and time.monotonic() < deadline:
        time.sleep(0.05)
        playback.advance(time.monotonic())
    recorder.segment["ended"] = time.monotonic()
    recorder.segment["offset"] = offset
    return recorder.segment


MPV_TIME = re.compile(r"^\[\s*(\d+\.\d+)\]")


def mpv(url, proxy, seconds, timeout):
    """
    Play the first C{seconds} of C{url} with mpv at real-time speed (no
    video or audio output), with a cache like the model's (start after
    L{START_SECONDS}, at most L{READ_AHEAD_SECONDS} ahead); its start-up
    and its buffering events from its log.
    """
    env = dict(os.environ)
    if proxy:
        env["http_proxy"] = f"http://{proxy}"
    command = [
        "mpv",
        "--no-config",
        "--vo=null",
        "--ao=null",
        "--ytdl=no",
        "--msg-level=all=no,cplayer=v",
        "--msg-time",
        "--cache=yes",
        f"--cache-secs={READ_AHEAD_SECONDS:g}",
        f"--demuxer-readahead-secs={READ_AHEAD_SECONDS:g}",
        "--cache-pause-initial=yes",
        f"--cache-pause-wait={START_SECONDS:g}",
        f"--length={seconds:g}",
        url,
    ]
    result = {"startup_s": None, "stalls": 0, "stall_s": 0.0, "complete": False}
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        result["error"] = "timed out"
    else:
        out = done.stdout + done.stderr
        result["complete"] = done.returncode == 0
    # With --cache-pause-initial, mpv's first playback restart is paused,
    # and playback starts when that first buffering ends: not a stall.
    result["log"] = []
    waitingForStart = False
    for line in out.splitlines():
        match = MPV_TIME.match(line)
        if match is None or not re.search("buffering|playback restart", line):
            continue
        result["log"].append(line)
        at = float(match.group(1))
        if "playback restart complete" in line and result["startup_s"] is None:
            if "(paused)" in line:
                waitingForStart = True
            else:
                result["startup_s"] = at
        elif "End buffering" in line and waitingForStart:
            waitingForStart = False
            result["startup_s"] = at
        elif result["startup_s"] is None:
            continue
        elif "Enter buffering" in line:
            result["stalls"] += 1
        elif waited := re.search(r"End buffering \(waited ([\d.]+) secs\)", line):
            result["stall_s"] += float(waited.group(1))
    result["played_s"] = seconds if result["complete"] else None
    return result


def writeResult(path, result):
    """
    Write a viewer's result whole: the lab takes its appearance for the
    viewer's end.
    """
    with open(path + ".part", "w") as f:
        json.dump(result, f)
    os.replace(path + ".part", path)


def parseSegments(text):
    return [
        (int(o), float(s)) for o, s in (part.split(":") for part in text.split(","))
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="A lab viewer: the player model over HTTP."
    )
    parser.add_argument("url")
    parser.add_argument("--proxy", help="HOST:PORT of an HTTP proxy")
    parser.add_argument("--bitrate", type=float, required=True, help="bytes/s")
    parser.add_argument(
        "--segments", required=True, help="OFFSET:SECONDS,... played in turn"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        required=True,
        help="seconds after which the viewer stops, whatever happened",
    )
    parser.add_argument("--json", required=True)
    parser.add_argument(
        "--mpv",
        action="store_true",
        help="play with mpv instead of the model (one segment)",
    )
    args = parser.parse_args(argv)
    if args.mpv:
        ((offset, seconds),) = parseSegments(args.segments)
        assert offset == 0, "mpv plays from the start only"
        writeResult(
            args.json,
            {"segments": [], "mpv": mpv(args.url, args.proxy, seconds, args.timeout)},
        )
        return
    deadline = time.monotonic() + args.timeout
    segments = []
    for offset, seconds in parseSegments(args.segments):
        segments.append(
            readSegment(args.url, args.proxy, offset, args.bitrate, seconds, deadline)
        )
    writeResult(args.json, {"segments": segments})


if __name__ == "__main__":
    sys.exit(main())
