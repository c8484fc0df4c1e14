#!/usr/bin/env python3
"""
Hostile peers and clients against real nodes: what each attack costs the
victim node, and how a normal client fares meanwhile.

An origin (twistd p2pd -p DIR on 127.0.0.1) publishes a 32 MB file of random
bytes; a viewer node (twistd p2pd on 127.0.0.2) plays it once through its
proxy. Both run with at most 1024 open files (ulimit -n 1024, as on a
desktop). Each attack, one after the other and against new nodes, runs
against its victim (the viewer, or the origin for the handle hoarder), from
127.0.0.66:

  trickler    SPP connections announcing a frame of the largest size
              (4 MiB + 64) and sending all but its last byte, slowly: 100
              after their Hello, 200 as their Hello
  hoarder     16 SPP connections each opening the file 80 times (the
              protocol allows 64 handles per connection) at the origin
  absurd      a fake origin (127.0.0.3) announcing four 16 TiB files with
              4 MiB blocks and sha512, each fetched through the viewer's
              gateway with curl -r 0-0
  liar        a fake peer (127.0.0.66) that registers with a second real
              origin (127.0.0.4, publishing 2 GiB of zeros) as a fetching
              node, then answers the viewer's Open with the authoritative
              flag and digests of its own bytes, and opens the file on the
              viewer unsolicited; a player reads the file's first MiB, the
              origin stops, and the player reads a MiB at 1.5 GiB (blocks
              whose digests the viewer was not given yet), twice: every byte
              it got is checked
  slowloris   1000 HTTP connections sending one header line every 2 s
              (more than the victim has descriptors for)
  post        2 POST requests of 200 MB bodies at full speed
  peerlist    a fake origin (127.0.0.6) serving a 1 GiB file at 1 MiB/s
              whose peer list names a plain TCP service (127.0.0.7, greeting
              like an SSH server); a player reads the file through the
              viewer's gateway; the service counts the connections it gets

For each: the victim's resident memory (VmRSS) and open descriptors
(/proc/PID/fd) before, at the peak during and a few seconds after the
attack, and a normal client's first byte (curl -r of 16 KiB at a random
offset of the played file, through the viewer's proxy, or at the origin's
HTTP side when the origin is the victim; median of several samples, every
body checked) idle and during the attack. Targets: RSS after within 10 MB of
before; first byte during within 5x of idle.

    python3 benchmarks/abuse.py [--quick] [--only NAME,...] [--hold S]
        [--after S] [--samples N] [--baseline JSON] [--no-baseline]
        [--no-doc] [--json FILE]

Prints a table, writes the results as JSON (for scripts/bench) and, unless
--quick or --no-doc, its section of docs/performance.md. --baseline adds the
rows of an earlier run's JSON; a full run of every attack shows those of
benchmarks/abuse-before.json (the code before the limits of issue 9).
"""

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time

from attacks import (
    ATTACKER,
    Attack,
    BigPost,
    FakeFile,
    FakePeer,
    Hoarder,
    Liar,
    PlainService,
    Slowloris,
    Trickler,
    codec,
)
from common import (
    ROOT,
    limitFiles,
    log,
    p2pdVersion,
    relative,
    writeResult,
    writeSection,
)
from spp_download import MB, NAME, Node, childEnvironment, makeFile

WORK = os.path.join(ROOT, "benchmarks", "work", "abuse")
DOC = os.path.join(ROOT, "docs", "performance.md")
# A full run against the code before the limits of issue 9 (c3d2c8f).
BASELINE = os.path.join(ROOT, "benchmarks", "abuse-before.json")
ORIGIN = "127.0.0.1"
VIEWER = "127.0.0.2"
ABSURD = "127.0.0.3"
SECOND = "127.0.0.4"
FAKE = "127.0.0.6"
PLAIN = "127.0.0.7"
FILE_LIMIT = 1024
FILE_MB = 32
PROBE_LENGTH = 16 * 1024
PROBE_TIMEOUT = 10
SAMPLE_INTERVAL = 0.2
TARGET_RSS_MB = 10
TARGET_RATIO = 5
TiB = 2**40
MiB = 2**20
# The lying peer's file: 2 GiB of zeros (sparse), the seek far enough that
# the viewer has not been given its digests with the first ones.
LIAR_NAME = "liar.bin"
LIAR_SIZE = 2 * 2**30
LIAR_SEEK = 1536 * MiB
# The peer list attack holds a minute (in a full run): a node should not
# try an address that did not speak SPP every few seconds.
PEERLIST_HOLD = 60.0
ATTACKS = ("trickler", "hoarder", "absurd", "liar", "slowloris", "post", "peerlist")


# -- the victim


def victimState(pid):
    """
    The victim's VmRSS (bytes), its open descriptors, and the bytes of the
    deleted files it holds open (request bodies Twisted keeps on disk).
    """
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    fds = temp = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(" (deleted)"):
                temp += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            pass
    return {"rss": rss, "fds": fds, "temp": temp}


async def watch(pid, peak):
    """
    Keep the highest of each figure of L{victimState} in C{peak}.
    """
    while True:
        try:
            state = victimState(pid)
        except OSError:
            peak["died"] = True
            return
        for key, value in state.items():
            peak[key] = max(peak.get(key, 0), value)
        await asyncio.sleep(SAMPLE_INTERVAL)


# -- curl, from asyncio


def curlEnvironment():
    """
    curl's environment: no proxy but the one on its command line.
    """
    env = childEnvironment()
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    return env


async def curl(url, proxy=None, byteRange=None, output=os.devnull, timeout=30):
    """
    One request: time to first byte (s, None if no answer came), HTTP
    status, bytes received.
    """
    command = ["curl", "-s", "-o", output, "--max-time", str(timeout)]
    command += ["-x", proxy] if proxy else ["--noproxy", "*"]
    if byteRange is not None:
        command += ["-r", f"{byteRange[0]}-{byteRange[1] - 1}"]
    command += ["-w", "%{time_starttransfer} %{http_code} %{size_download}", url]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=curlEnvironment(),
    )
    try:
        out, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    ttfb, code, size = out.decode().split()
    code = int(code)
    return (float(ttfb) if code else None), code, int(size)


def wrongBytes(got, expected):
    """
    How many bytes of C{got} differ from C{expected} (missing ones are not
    counted).
    """
    n = min(len(got), len(expected))
    if got[:n] == expected[:n]:
        return 0
    diff = int.from_bytes(got[:n], "big") ^ int.from_bytes(expected[:n], "big")
    return n - diff.to_bytes(n, "big").count(0)


class Probe:
    """
    The normal client: C{curl -r} of a few KiB at random offsets of the
    played file, checked against the file.
    """

    def __init__(self, url, proxy, content, seed):
        self.url, self.proxy, self.content = url, proxy, content
        self.random = random.Random(seed)
        self.sample = os.path.join(WORK, "probe.sample")

    async def once(self):
        """
        Time to first byte in ms (the timeout when none came), and whether
        the answer was wrong.
        """
        start = self.random.randrange(len(self.content) - PROBE_LENGTH)
        end = start + PROBE_LENGTH
        ttfb, code, size = await curl(
            self.url, self.proxy, (start, end), self.sample, PROBE_TIMEOUT
        )
        with open(self.sample, "rb") as f:
            got = f.read()
        bad = code != 206 or got != self.content[start:end]
        return (PROBE_TIMEOUT if ttfb is None else ttfb) * 1000, bad

    async def samples(self, count, spread=0.0):
        """
        C{count} samples, C{spread} seconds apart: their first bytes, and
        how many failed or were wrong.
        """
        times, bad = [], 0
        for n in range(count):
            if n:
                await asyncio.sleep(spread)
            ms, wrong = await self.once()
            times.append(ms)
            bad += wrong
        return times, bad


# -- the attacks made of several parts


class Scenario(Attack):
    """
    An attack made of fake servers and players: closes them all.
    """

    def __init__(self, setup):
        super().__init__()
        self.setup = setup
        self.parts = []

    def part(self, attack):
        attack.counters = self.counters
        self.parts.append(attack)
        return attack

    async def close(self):
        await super().close()
        for part in self.parts:
            await part.close()


class Absurd(Scenario):
    """
    A fake origin announcing 16 TiB files with 4 MiB blocks and sha512, each
    fetched through the viewer's gateway with C{curl -r 0-0}.
    """

    async def run(self):
        setup = self.setup
        files = {}
        origin = self.part(FakePeer(files))
        port = await origin.listen(ABSURD)
        paths = [f"absurd-{n}.bin" for n in range(setup.scale(4, 2))]
        for path in paths:
            files[f"spp://{ABSURD}:{port}/{path}"] = FakeFile(
                16 * TiB, 4 * MiB, "sha512"
            )
        answers = await asyncio.gather(
            *[
                curl(
                    f"http://{VIEWER}:{setup.viewer.port}/.spp/{ABSURD}:{port}/{path}",
                    byteRange=(0, 1),
                    timeout=setup.args.ramp,
                )
                for path in paths
            ]
        )
        for _, code, _ in answers:
            self.count(f"curl -r 0-0 answered {code or 'nothing'}")
        self.ready.set()
        await asyncio.Event().wait()


class Lying(Scenario):
    """
    A L{Liar} in every position: introduced by the origin, opening the file
    on the viewer unsolicited, and the only authority left once the origin
    has gone.
    """

    async def run(self):
        setup = self.setup
        second = setup.second
        await asyncio.to_thread(second.start)
        url = f"spp://{SECOND}:{second.port}/{LIAR_NAME}"
        plain = f"http://{SECOND}:{second.port}/{LIAR_NAME}"
        liar = self.part(Liar({}, blockBudget=10**6, digestBudget=10**6))
        # Where it connects from: the origin introduces it at that address.
        await liar.listen(ATTACKER)
        fake = await liar.register(SECOND, second.port, url)
        # A player starts the file: the viewer opens it at the origin, which
        # introduces the liar; the liar also opens the file on the viewer.
        await self.play(plain, 0, "the start, the origin up")
        await liar.dial(VIEWER, setup.viewer.port, [codec.Open(1, url, fake.version)])
        await asyncio.sleep(1)
        # The origin goes away; the player seeks to blocks whose digests the
        # viewer has not been given yet, twice.
        await asyncio.to_thread(second.stop)
        await self.play(plain, LIAR_SEEK, "a seek, the origin gone")
        await self.play(plain, LIAR_SEEK, "the same seek again")
        self.ready.set()
        await asyncio.Event().wait()

    async def play(self, url, start, what):
        """
        A player reads a MiB of the file (all zeros) from C{start}.
        """
        setup = self.setup
        output = os.path.join(WORK, "liar.body")
        _, code, size = await curl(
            url, setup.proxy, (start, start + MiB), output, timeout=setup.args.ramp / 4
        )
        # Nothing at all when the viewer refuses (it has no digest for it).
        got = b""
        if os.path.exists(output):
            with open(output, "rb") as f:
                got = f.read()
            os.remove(output)
        self.count("wrong bytes to a player", wrongBytes(got, bytes(len(got))))
        self.counters[what] = f"HTTP {code}, {size} bytes"

    async def close(self):
        await super().close()
        await asyncio.to_thread(self.setup.second.stop)


class PeerList(Scenario):
    """
    A fake origin, serving slowly so that the viewer keeps asking it for
    peers, whose peer list names a L{PlainService}.
    """

    async def run(self):
        setup = self.setup
        self.started = time.monotonic()
        service = self.part(PlainService())
        servicePort = await service.listen(PLAIN)
        files = {}
        origin = self.part(
            FakePeer(
                files,
                peers=[(PLAIN, servicePort)],
                blockBudget=10**6,
                digestBudget=10**6,
                interval=0.25,
            )
        )
        port = await origin.listen(FAKE)
        files[f"spp://{FAKE}:{port}/slow.bin"] = FakeFile(2**30, 256 * 1024)
        gateway = f"http://{VIEWER}:{setup.viewer.port}/.spp/{FAKE}:{port}/slow.bin"
        self.spawn(
            curl(gateway, timeout=setup.args.ramp + holdFor(setup.args, "peerlist"))
        )
        await asyncio.sleep(1)
        self.ready.set()
        await asyncio.Event().wait()

    async def close(self):
        received = self.counters.get("connections received", 0)
        minutes = (time.monotonic() - self.started) / 60
        self.counters["connections to the service per minute"] = round(
            received / minutes, 1
        )
        await super().close()


# -- the nodes of one attack


class Setup:
    """
    The nodes, the played file and the options of one attack.
    """

    def __init__(self, args, content, origin, viewer, second):
        self.args, self.content = args, content
        self.origin, self.viewer, self.second = origin, viewer, second
        self.proxy = f"http://{VIEWER}:{viewer.port}"

    def scale(self, full, quick):
        return quick if self.args.quick else full


def holdFor(args, name):
    """
    How long attack C{name} holds at full strength.
    """
    if name == "peerlist" and not args.quick:
        return max(args.hold, PEERLIST_HOLD)
    return args.hold


def attacks(setup):
    """
    Every attack: its victim and how to make it.
    """
    a = setup.args
    viewer, origin = setup.viewer, setup.origin
    url = f"spp://{ORIGIN}:{origin.port}/{NAME}"
    return {
        "trickler": (
            "viewer",
            lambda: Trickler(
                VIEWER, viewer.port, setup.scale(100, 10), setup.scale(200, 20)
            ),
        ),
        "hoarder": (
            "origin",
            lambda: Hoarder(ORIGIN, origin.port, url, setup.scale(16, 4), 80),
        ),
        "absurd": ("viewer", lambda: Absurd(setup)),
        "liar": ("viewer", lambda: Lying(setup)),
        "slowloris": (
            "viewer",
            lambda: Slowloris(
                VIEWER, viewer.port, setup.scale(1000, 100), a.line_interval
            ),
        ),
        "post": (
            "viewer",
            lambda: BigPost(VIEWER, viewer.port, 2, setup.scale(200, 20) * MB),
        ),
        "peerlist": ("viewer", lambda: PeerList(setup)),
    }


async def measure(setup, name, victimName, make, probes):
    """
    One attack: the victim before, during and after it, and the normal
    client idle and during it.
    """
    args = setup.args
    victim = setup.viewer if victimName == "viewer" else setup.origin
    probe = probes[victimName]
    await asyncio.sleep(args.settle)
    before = victimState(victim.pid)
    idle, idleBad = await probe.samples(args.samples)
    peak = dict(before)
    watcher = asyncio.ensure_future(watch(victim.pid, peak))
    attack = make()
    task = asyncio.ensure_future(attack.run())
    started = time.monotonic()
    error = None
    try:
        ready = asyncio.ensure_future(attack.ready.wait())
        await asyncio.wait(
            {task, ready}, timeout=args.ramp, return_when=asyncio.FIRST_COMPLETED
        )
        ready.cancel()
        ramp = time.monotonic() - started
        during, duringBad = await probe.samples(
            args.samples, holdFor(args, name) / max(1, args.samples)
        )
        end = started + ramp + holdFor(args, name)
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        if task.done() and task.exception() is not None:
            error = repr(task.exception())
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await attack.close()
    await asyncio.sleep(args.after)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    if victim.process.poll() is None:
        after = victimState(victim.pid)
    else:
        log(f"{name}: the victim exited:\n{victim.logTail()}")
        after = {"rss": 0, "fds": 0, "temp": 0}
        peak["died"] = True
    result = {
        "victim": victimName,
        "ramp_s": round(ramp, 1),
        "rss_MB": [before["rss"] / MB, peak["rss"] / MB, after["rss"] / MB],
        "fds": [before["fds"], peak["fds"], after["fds"]],
        "temp_MB_peak": peak["temp"] / MB,
        "first_byte_ms": [statistics.median(idle), statistics.median(during)],
        "first_byte_samples_ms": {"idle": idle, "during": during},
        "normal_client_failed_or_wrong": idleBad + duringBad,
        "counters": attack.counters,
        "error": error,
        "victim_died": peak.get("died", False),
    }
    result["rss_back_within_MB"] = result["rss_MB"][2] - result["rss_MB"][0]
    result["first_byte_ratio"] = result["first_byte_ms"][1] / result["first_byte_ms"][0]
    log(
        f"{name}: RSS {before['rss'] / MB:.0f} / {peak['rss'] / MB:.0f} / "
        f"{after['rss'] / MB:.0f} MB, fds {before['fds']} / {peak['fds']} / "
        f"{after['fds']}, first byte {result['first_byte_ms'][0]:.1f} -> "
        f"{result['first_byte_ms'][1]:.1f} ms; {attack.counters}"
        + (f"; error {error}" if error else "")
    )
    return result


async def attack(setup, name):
    """
    The player plays the file (the viewer holds it), then C{name} attacks.
    """
    probes = {
        "viewer": Probe(
            f"http://{ORIGIN}:{setup.origin.port}/{NAME}", setup.proxy, setup.content, 1
        ),
        "origin": Probe(
            f"http://{ORIGIN}:{setup.origin.port}/.direct/{NAME}",
            None,
            setup.content,
            2,
        ),
    }
    output = os.path.join(WORK, "played.bin")
    _, code, size = await curl(probes["viewer"].url, setup.proxy, output=output)
    with open(output, "rb") as f:
        played = f.read()
    os.remove(output)
    if code != 200 or played != setup.content:
        raise RuntimeError(
            f"playing the file gave HTTP {code}, {size} bytes, not the file"
        )
    victimName, make = attacks(setup)[name]
    return await measure(setup, name, victimName, make, probes)


def node(name, interface, public=None):
    """
    A node of the benchmark, with an empty cache, under C{ulimit -n}.
    """
    cacheDir = os.path.join(WORK, "cache", name)
    shutil.rmtree(cacheDir, ignore_errors=True)
    n = Node(name, interface, cacheDir, public=public)
    n.logPath = os.path.join(WORK, "logs", name + ".log")
    n.command = lambda: limitFiles(Node.command(n), FILE_LIMIT)
    return n


def withNewNodes(args, content, public, liarPublic, name):
    """
    Attack C{name} against new nodes, stopped afterwards whatever happens:
    no attack's leftovers count in the next one's figures.
    """
    nodes = [
        node(f"{name}-origin", ORIGIN, public),
        node(f"{name}-viewer", VIEWER),
        node(f"{name}-second-origin", SECOND, liarPublic),
    ]
    try:
        for n in nodes[:2]:
            n.start()
        return asyncio.run(attack(Setup(args, content, *nodes), name))
    finally:
        for n in nodes:
            n.stop()
            shutil.rmtree(n.cacheDir, ignore_errors=True)


# -- the report


def verdict(met):
    return "met" if met else "**not met**"


def row(label, r):
    rss, fds, fb = r["rss_MB"], r["fds"], r["first_byte_ms"]
    return (
        f"| {label} | {r['victim']} | {rss[0]:.0f} / {rss[1]:.0f} / {rss[2]:.0f} "
        f"| {rss[2] - rss[0]:+.0f} ({verdict(rss[2] - rss[0] <= TARGET_RSS_MB)}) "
        f"| {fds[0]} / {fds[1]} / {fds[2]} "
        f"| {fb[0]:.1f} / {fb[1]:.1f} "
        f"| {r['first_byte_ratio']:.1f}x "
        f"({verdict(r['first_byte_ratio'] <= TARGET_RATIO)}) "
        f"| {r['normal_client_failed_or_wrong']} |"
    )


def counterText(r):
    parts = []
    for key, value in r["counters"].items():
        if isinstance(value, list):
            value = f"median {statistics.median(value):g} ({len(value)})"
        elif key.startswith("wrong bytes") and value:
            value = f"**{value}**"
        parts.append(f"{key} {value}")
    if r["temp_MB_peak"] >= 1:
        parts.append(f"victim's temporary files at most {r['temp_MB_peak']:.0f} MB")
    if r["error"]:
        parts.append(f"attack failed: {r['error']}")
    if r["victim_died"]:
        parts.append("**the victim died**")
    return "; ".join(parts) or "-"


def markdown(results, args, version, baseline):
    lines = [
        f"p2pd {version}. An origin (127.0.0.1) and a viewer (127.0.0.2, which "
        f"has played the {FILE_MB} MB file through its proxy), both with "
        f"`ulimit -n {FILE_LIMIT}`, new for each attack; each attack from "
        "127.0.0.66 (see the script's docstring). RSS = VmRSS in MB (10^6 "
        f"bytes) before, at the peak during, and {args.after:g} s after the attacker closed "
        "everything; fds = the victim's open descriptors, the same way; first "
        "byte = median of a normal client's `curl -r` of 16 KiB at random "
        f"offsets ({args.samples} samples idle, then {args.samples} during "
        f"the {args.hold:g} s the attack holds, {holdFor(args, 'peerlist'):g} s "
        "for peerlist; through the viewer's proxy, "
        "or at the origin's HTTP side when the origin is the victim), in ms; "
        "bad = those samples that failed or had a wrong byte. Targets: RSS "
        f"after within {TARGET_RSS_MB} MB of before; first byte during within "
        f"{TARGET_RATIO}x of idle.",
        "",
        "| attack | victim | RSS MB before / peak / after | after - before "
        "| fds before / peak / after | first byte ms idle / during | ratio | bad |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    old = baseline.get("attacks", {}) if baseline else {}
    for name, r in results.items():
        lines.append(row(name, r))
        if name in old:
            lines.append(row(f"↳ before: {baseline['p2pd']}", old[name]))
    lines += ["", "What the attackers saw:", ""]
    for name, r in results.items():
        lines.append(f"- {name}: {counterText(r)}")
        if name in old:
            lines.append(f"  - before: {counterText(old[name])}")
    lines += ["", f"Command: `{commandLine(args)}`"]
    return "\n".join(lines)


def commandLine(args):
    words = ["python3", "benchmarks/abuse.py"]
    if args.quick:
        words.append("--quick")
    if args.only:
        words += ["--only", args.only]
    if args.baseline and os.path.abspath(args.baseline) != BASELINE:
        words += ["--baseline", relative(os.path.abspath(args.baseline))]
    return " ".join(words)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--quick", action="store_true", help="a short smoke run: weaker attacks"
    )
    parser.add_argument(
        "--only", default="", help="attacks to run, by name: " + ",".join(ATTACKS)
    )
    parser.add_argument("--hold", type=float, help="seconds each attack holds")
    parser.add_argument(
        "--after", type=float, help="seconds after an attack before the last look"
    )
    parser.add_argument("--samples", type=int, help="first-byte samples")
    parser.add_argument(
        "--ramp",
        type=float,
        default=30.0,
        help="the longest an attack may take to reach full strength",
    )
    parser.add_argument("--line-interval", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument(
        "--baseline",
        help="an earlier run's JSON, shown as before (default: "
        f"{relative(BASELINE)} for a full run of every attack)",
    )
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument(
        "--json",
        default=os.path.join(WORK, "abuse.json"),
        help="where to write the results (default: %(default)s)",
    )
    args = parser.parse_args()
    args.hold = args.hold or (3.0 if args.quick else 10.0)
    args.after = args.after or (2.0 if args.quick else 5.0)
    args.samples = args.samples or (3 if args.quick else 7)
    if args.samples < 1 or min(args.hold, args.after, args.ramp, args.settle) < 0:
        sys.exit("abuse: --samples must be at least 1, and no time negative")
    if shutil.which("curl") is None:
        sys.exit("abuse: curl is not installed")
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(ATTACKS)
    unknown = set(names) - set(ATTACKS)
    if unknown:
        sys.exit(
            f"abuse: unknown attack {', '.join(sorted(unknown))} "
            f"(the attacks: {', '.join(ATTACKS)})"
        )
    if args.baseline is None and not (args.quick or args.only or args.no_baseline):
        if os.path.exists(BASELINE):
            args.baseline = BASELINE
    baseline = None
    if args.baseline:
        with open(args.baseline) as f:
            baseline = json.load(f)
    # The attackers hold hundreds of sockets at once.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    shutil.rmtree(WORK, ignore_errors=True)
    liarPublic = os.path.join(WORK, "liar-www")
    os.makedirs(liarPublic)
    with open(os.path.join(liarPublic, LIAR_NAME), "wb") as f:
        f.truncate(LIAR_SIZE)
    path = makeFile(FILE_MB * MB)
    with open(path, "rb") as f:
        content = f.read()
    version = p2pdVersion()
    started = time.monotonic()
    results = {}
    try:
        for name in names:
            results[name] = withNewNodes(
                args, content, os.path.dirname(path), liarPublic, name
            )
    except KeyboardInterrupt:
        sys.exit("abuse: interrupted; the nodes and the attackers are stopped")
    elapsed = time.monotonic() - started
    table = markdown(results, args, version, baseline)
    print(table)
    result = {
        "benchmark": "abuse",
        "title": "Hostile peers and clients: the victim's memory and descriptors, "
        "a normal client's first byte",
        "command": commandLine(args),
        "p2pd": version,
        "quick": args.quick,
        "attacks": results,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)
    if not (args.quick or args.no_doc):
        writeSection(DOC, result)


if __name__ == "__main__":
    main()
