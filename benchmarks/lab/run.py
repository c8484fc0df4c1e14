"""
One scenario, every contestant in turn on the same shaped network.

Contestants:

  http        every viewer's player fetches the origin's fallback URL
              (/.direct/NAME) from the origin directly: no proxy, no peers
  p2pd        every viewer runs a p2pd node and its player uses it as its
              HTTP proxy (http://127.0.0.1:1111 in the viewer's namespace)
              for that same URL; the site cache, if any, is a node with -n
  libtorrent  a seeder in the origin's namespace, one streaming session per
              viewer (benchmarks/lab/torrent.py)

Each contestant starts on idle links with empty caches (the origin has
hashed the file before, as a libtorrent seeder has), its viewers arrive on
the scenario's schedule, and it ends when every viewer has played its part
or the run's time bound is reached; then every process it started is
stopped. Counters are the qdiscs' (tc -s qdisc): bytes on the wire, headers
included.
"""

import json
import os
import shutil
import statistics
import sys
import time

from benchmarks.common import ROOT, log, twistdCommand
from benchmarks.lab import media, net, player, torrent

PORT = 1111
ORIGIN_ADDRESS = "198.18.0.1"
# The time bound of a contestant's run beyond its schedule: the last arrival
# plus what it plays.
SLACK_SECONDS = 60.0
SAMPLE_SECONDS = 0.5
START_TIMEOUT = 30.0
CONTESTANTS = ("http", "p2pd", "libtorrent")
MAX_VIEWERS = 60
MAX_ROUNDS = 5


def originCache(work):
    """
    The origin's cache directory, kept through a scenario's contestants for
    the digests it holds.
    """
    return os.path.join(os.path.dirname(work), "origin-cache")


def viewerAddress(n):
    return f"198.18.1.{n + 1}"


def cacheAddress():
    return "198.18.0.2"


def environment():
    """
    What every process of the lab runs with: this checkout first on the
    path, no proxy variables.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")
    }
    env["PYTHONPATH"] = ROOT
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Network:
    """
    The lab's hosts for one scenario: the origin, the cache if any, and the
    viewers.
    """

    def __init__(self, lab, scenario):
        self.lab = lab
        self.origin = lab.add(
            "o", ORIGIN_ADDRESS, scenario.originUp, scenario.originDown
        )
        self.cache = None
        if scenario.cache:
            self.cache = lab.add(
                "c", cacheAddress(), scenario.cacheUp, scenario.cacheDown
            )
        self.viewers = [
            lab.add(f"v{n + 1}", viewerAddress(n), scenario.up(n), scenario.down)
            for n in range(scenario.viewers)
        ]

    @property
    def hosts(self):
        return [self.origin] + ([self.cache] if self.cache else []) + self.viewers

    def uplinks(self):
        return {host.name: host.uplinkBytes() for host in self.hosts}


def waitForLine(path, text, process, timeout=START_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, errors="replace") as f:
            if text in f.read():
                return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    with open(path, errors="replace") as f:
        tail = "".join(f.readlines()[-20:])
    raise RuntimeError(f"{path}: no {text!r} (exit {process.poll()}):\n{tail}")


class Contestant:
    """
    What every contestant shares: its work directory, its processes, its
    viewers' schedule.
    """

    name = ""
    # Seconds before its arrival a viewer's process starts.
    lead = 0.0

    def __init__(self, network, scenario, path, bitrate, work, mpv=False, label=None):
        self.mpv = mpv
        self.network = network
        self.lab = network.lab
        self.scenario = scenario
        self.path = path
        self.bitrate = bitrate
        self.fileSeconds = os.path.getsize(path) / bitrate
        self.work = os.path.join(work, (label or self.name).replace(" #", "-"))
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.work)
        self.processes = []
        self.nodes = {}
        self.bySource = {}

    def spawn(self, host, argv, name):
        process = self.lab.spawn(
            host,
            argv,
            os.path.join(self.work, name + ".log"),
            env=environment(),
            cwd=ROOT,
        )
        self.processes.append(process)
        return process

    def twistd(self, host, name, *options, cache=None):
        """
        A p2pd node in C{host}'s namespace, listening on every address of it.
        """
        cache = cache or os.path.join(self.work, name + "-cache")
        argv = (
            twistdCommand()
            + ["-n", "--pidfile=", "p2pd", "-c", cache, "--listen", f"tcp:{PORT}"]
            + list(options)
        )
        process = self.spawn(host, argv, name)
        waitForLine(
            os.path.join(self.work, name + ".log"), "serving HTTP and SPP", process
        )
        return process

    def url(self):
        return f"http://{ORIGIN_ADDRESS}:{PORT}/.direct/{media.NAME}"

    def segments(self, n):
        return [
            (int(start * self.bitrate) // 188 * 188, seconds)
            for start, seconds in self.scenario.segments(n, self.fileSeconds)
        ]

    def segmentArgument(self, n):
        return ",".join(f"{offset}:{seconds}" for offset, seconds in self.segments(n))

    def timeout(self):
        return self.scenario.play + SLACK_SECONDS

    def playingArguments(self, n):
        """
        What every viewer's player is told: the bitrate, the segments it
        plays, its time bound and where its results go.
        """
        return [
            "--bitrate",
            str(self.bitrate),
            "--segments",
            self.segmentArgument(n),
            "--timeout",
            str(self.timeout()),
            "--json",
            self.result(n),
        ]

    def playerCommand(self, n, proxy=None):
        """
        The viewer's player: the model, or mpv.
        """
        argv = [
            sys.executable,
            "-m",
            "benchmarks.lab.player",
            self.url(),
            *self.playingArguments(n),
        ]
        if proxy is not None:
            argv += ["--proxy", proxy]
        if self.mpv:
            argv.append("--mpv")
        return argv

    def result(self, n):
        return os.path.join(self.work, f"viewer{n + 1}.json")

    def start(self):
        """
        Start the servers (and nodes) before the first viewer arrives.
        """

    def startViewer(self, n, at):
        """
        Start viewer C{n}, which asks for the file at C{at} (monotonic).
        """
        raise NotImplementedError

    def viewerDone(self, n):
        """
        Viewer C{n}'s player has exited: a leaver's node leaves with it.
        """

    def finish(self):
        """
        Just before everything stops.
        """

    def stop(self):
        for process in self.processes:
            net.stop(process)
        self.processes = []


class HTTP(Contestant):
    name = "http"

    def start(self):
        self.twistd(
            self.network.origin,
            "origin",
            "-p",
            os.path.dirname(self.path),
            cache=originCache(self.work),
        )

    def startViewer(self, n, at):
        return self.spawn(
            self.network.viewers[n], self.playerCommand(n), f"player{n + 1}"
        )


def nodeStatus(host, address="127.0.0.1"):
    """
    A node's /.status, asked from inside its namespace; None if it does not
    answer.
    """
    out = net.run(
        *host.command(
            [
                "curl",
                "-s",
                "--noproxy",
                "*",
                "-m",
                "5",
                f"http://{address}:{PORT}/.status",
            ]
        ),
        check=False,
    )
    try:
        return json.loads(out)
    except ValueError:
        return None


class P2pd(Contestant):
    name = "p2pd"

    def start(self):
        self.twistd(
            self.network.origin,
            "origin",
            "-p",
            os.path.dirname(self.path),
            cache=originCache(self.work),
        )
        if self.network.cache is not None:
            self.twistd(
                self.network.cache, "cache", "-n", f"198.18.0.0/{net.NETWORK_BITS}"
            )
        for n, host in enumerate(self.network.viewers):
            if not self.scenario.behindCache(n):
                self.nodes[n] = self.twistd(host, f"node{n + 1}")

    def startViewer(self, n, at):
        host = self.network.viewers[n]
        proxy = (
            f"{cacheAddress()}:{PORT}"
            if self.scenario.behindCache(n)
            else f"127.0.0.1:{PORT}"
        )
        return self.spawn(host, self.playerCommand(n, proxy), f"player{n + 1}")

    def collect(self, n):
        status = nodeStatus(self.network.viewers[n])
        if status is not None:
            sources = {}
            for download in status["downloads"]:
                for source, count in download["bytesBySource"].items():
                    sources[source] = sources.get(source, 0) + count
            self.bySource[n] = sources

    def viewerDone(self, n):
        if n in self.nodes:
            self.collect(n)
            if self.scenario.leaves(n):
                net.stop(self.nodes.pop(n))

    def finish(self):
        for n in list(self.nodes):
            self.collect(n)


class Libtorrent(Contestant):
    name = "libtorrent"
    # A session runs before its viewer asks, as TorrServer's does: it has
    # its listening socket and its first tick behind it.
    lead = 3.0

    def start(self):
        import libtorrent as lt

        self.torrent = os.path.join(self.work, "movie.torrent")
        torrent.makeTorrent(lt, self.path, self.torrent)
        origin = self.network.origin
        process = self.spawn(
            origin,
            [
                sys.executable,
                "-m",
                "benchmarks.lab.torrent",
                "seed",
                self.torrent,
                os.path.dirname(self.path),
                origin.address,
            ],
            "seeder",
        )
        waitForLine(os.path.join(self.work, "seeder.log"), "seeding", process)

    def startViewer(self, n, at):
        host = self.network.viewers[n]
        directory = os.path.join(self.work, f"viewer{n + 1}-data")
        os.makedirs(directory)
        peers = [ORIGIN_ADDRESS] + [viewerAddress(m) for m in range(n)]
        argv = [
            sys.executable,
            "-m",
            "benchmarks.lab.torrent",
            "view",
            self.torrent,
            directory,
            host.address,
            "--peers",
            ",".join(peers),
            *self.playingArguments(n),
        ]
        if not self.scenario.leaves(n):
            argv.append("--linger")
        return self.spawn(host, argv + ["--start-at", str(at)], f"viewer{n + 1}")


KINDS = {c.name: c for c in (HTTP, P2pd, Libtorrent)}


def cpuTimes():
    """
    The machine's CPU time so far: (busy, total), in ticks.
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def busy(before, after):
    """
    How busy the machine's CPUs were in between, 0 to 1: a lab on a
    saturated machine measures the machine, not the links.
    """
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total else 0.0


def resultWritten(contestant, n):
    return os.path.exists(contestant.result(n))


def runContestant(network, scenario, kind, path, bitrate, work, mpv=False, label=None):
    """
    One contestant through the scenario: its viewers' records, the origin's
    uplink over time, every node's upload.
    """
    contestant = KINDS[kind](network, scenario, path, bitrate, work, mpv, label)
    log(f"== {scenario.name}: {label or kind}")
    try:
        contestant.start()
        before = network.uplinks()
        cpuBefore = cpuTimes()
        started = time.monotonic() + contestant.lead
        arrivals = [started + n * scenario.stagger for n in range(scenario.viewers)]
        bound = arrivals[-1] + contestant.timeout() + 5.0
        players = {}
        done = set()
        samples = []
        nextSample = started
        while len(done) < scenario.viewers and time.monotonic() < bound:
            now = time.monotonic()
            for n, at in enumerate(arrivals):
                if n not in players and now >= at - contestant.lead:
                    players[n] = contestant.startViewer(n, at)
                    log(f"  viewer {n + 1} arrives at {now - started:.1f} s")
            for n, process in players.items():
                if n not in done and (
                    process.poll() is not None or resultWritten(contestant, n)
                ):
                    done.add(n)
                    contestant.viewerDone(n)
                    log(f"  viewer {n + 1} done at {time.monotonic() - started:.1f} s")
            if now >= nextSample:
                samples.append(
                    (
                        now - started,
                        network.origin.uplinkBytes() - before[network.origin.name],
                    )
                )
                nextSample += SAMPLE_SECONDS
            time.sleep(0.05)
        contestant.finish()
        after = network.uplinks()
        cpuAfter = cpuTimes()
    finally:
        contestant.stop()
    viewers = []
    for n in range(scenario.viewers):
        record = {"segments": [], "missing": True}
        if resultWritten(contestant, n):
            with open(contestant.result(n)) as f:
                record = json.load(f)
        if n in contestant.bySource:
            record["bytesBySource"] = contestant.bySource[n]
        record["arrival"] = arrivals[n] - started
        record["segmentsPlanned"] = contestant.segments(n)
        for segment in record["segments"]:
            for key in ("requested", "ended"):
                if key in segment:
                    segment[key] -= started
            segment["arrivals"] = [[t - started, b] for t, b in segment["arrivals"]]
        viewers.append(record)
    return {
        "kind": kind,
        "viewers": viewers,
        "origin_samples": samples,
        "upload": {name: after[name] - before[name] for name in after},
        "cpu_busy": busy(cpuBefore, cpuAfter),
    }


def summarizeViewer(record, bitrate):
    if "mpv" in record:
        return {"seek_waits_s": [], "errors": [], **record["mpv"]}
    summary = player.summarize(record["segments"], bitrate)
    if record.get("missing") or not record["segments"]:
        summary["complete"] = False
    summary["errors"] = [s["error"] for s in record["segments"] if "error" in s]
    return summary


def playedBytes(viewers, bitrate, size):
    """
    Bytes of the file that any viewer played, each counted once.
    """
    intervals = []
    for record in viewers:
        if "mpv" in record:
            intervals.append((0, int((record["mpv"]["played_s"] or 0) * bitrate)))
        for segment in record["segments"]:
            playback = player.replay(segment, bitrate)
            begin = segment.get("offset", 0)
            intervals.append(
                (begin, min(size, begin + int(playback.position * bitrate)))
            )
    total, reach = 0, 0
    for begin, end in sorted(intervals):
        begin = max(begin, reach)
        if end > begin:
            total += end - begin
            reach = end
    return total


def summarizeRun(run, scenario, bitrate, size):
    viewers = [summarizeViewer(v, bitrate) for v in run["viewers"]]
    played = playedBytes(run["viewers"], bitrate, size)
    startups = [v["startup_s"] for v in viewers]
    known = sorted(s for s in startups if s is not None)
    originUp = run["upload"]["o"]
    return {
        "viewers": viewers,
        "stalled": sum(1 for v in viewers if v["stalls"] or not v["complete"]),
        "stall_s": sum(v["stall_s"] for v in viewers),
        "no_start": sum(1 for s in startups if s is None),
        "startup_median_s": statistics.median(known) if known else None,
        "startup_max_s": None if None in startups or not known else known[-1],
        "played_bytes": played,
        "origin_up_bytes": originUp,
        "origin_copies": originUp / played if played else None,
        "seek_wait_max_s": max(
            (w for v in viewers for w in v["seek_waits_s"] if w is not None),
            default=None,
        ),
    }


def runScenario(
    scenario, contestants, synthetic=False, fileSeconds=90, mpv=False, rounds=1
):
    """
    Build the network, run every contestant (C{rounds} times, in a rotating
    order), remove everything; with C{mpv}, the players of http and p2pd
    are mpv (libtorrent has no HTTP side for it).
    """
    if scenario.viewers > MAX_VIEWERS:
        raise SystemExit(f"the lab runs at most {MAX_VIEWERS} viewers")
    if not 1 <= rounds <= MAX_ROUNDS:
        raise SystemExit(f"the lab runs 1 to {MAX_ROUNDS} rounds")
    if mpv and (synthetic or scenario.seekEvery is not None):
        raise SystemExit(
            "mpv plays the MPEG-TS from its start: no --synthetic, no seeks"
        )
    path = media.make(fileSeconds, synthetic)
    bitrate = media.bitrate(path, fileSeconds)
    work = os.path.join(ROOT, "benchmarks", "work", "lab", "runs", scenario.name)
    lab = net.Lab()
    results = {}
    try:
        lab.open()
        network = Network(lab, scenario)
        hashOrigin(network, path, work)
        for r in range(rounds):
            shift = r % len(contestants)
            for kind in contestants[shift:] + contestants[:shift]:
                label = kind if rounds == 1 else f"{kind} #{r + 1}"
                run = runContestant(
                    network, scenario, kind, path, bitrate, work, mpv, label
                )
                run["round"] = r + 1
                run["summary"] = summarizeRun(
                    run, scenario, bitrate, os.path.getsize(path)
                )
                results[label] = run
    finally:
        lab.close()
    results = dict(
        sorted(
            results.items(),
            key=lambda item: (CONTESTANTS.index(item[1]["kind"]), item[1]["round"]),
        )
    )
    return {
        "scenario": scenario,
        "bitrate": bitrate,
        "file": path,
        "size": os.path.getsize(path),
        "results": results,
    }


def hashOrigin(network, path, work):
    """
    Have the origin's digests on disk before any contestant, as a libtorrent
    seeder has checked its file: an origin fetched from once, from its own
    namespace, then stopped.
    """
    directory = os.path.join(work, "warm-up")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(directory)
    lab = network.lab
    origin = network.origin
    log_ = os.path.join(directory, "origin.log")
    argv = twistdCommand() + [
        "-n",
        "--pidfile=",
        "p2pd",
        "-c",
        originCache(directory),
        "--listen",
        f"tcp:{PORT}",
        "-p",
        os.path.dirname(path),
    ]
    process = lab.spawn(origin, argv, log_, env=environment(), cwd=ROOT)
    try:
        waitForLine(log_, "serving HTTP and SPP", process)
        net.run(
            *origin.command(
                [
                    sys.executable,
                    "-m",
                    "p2pd",
                    "fetch",
                    "-q",
                    f"spp://127.0.0.1:{PORT}/{media.NAME}",
                    "-o",
                    os.devnull,
                    "-c",
                    os.path.join(directory, "fetch-cache"),
                ]
            ),
            env=environment(),
            cwd=ROOT,
        )
    finally:
        net.stop(process)
