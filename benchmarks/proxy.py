#!/usr/bin/env python3
"""
The viewer's proxy: time to first byte, seeks, throughput and memory,
against plain HTTP from the origin, nginx and libtorrent.

An origin node (twistd p2pd -p DIR on 127.0.0.1) publishes a 200 MB file of
random bytes; a viewer node (twistd p2pd -c CACHE on 127.0.0.2) is used as
an HTTP proxy by curl (curl -x http://127.0.0.2:PORT), which asks for the
origin's URL http://127.0.0.1:PORT/bench.bin: the viewer serves it from its
SPP download engine. Measured in one run:

  first byte   curl's time_starttransfer of a whole-file GET through the
  throughput   proxy, cold (a new viewer process with an empty cache for
               every sample: the first contact with the origin, where the
               file is opened over SPP and the request forwarded only if
               that has not succeeded within 20 ms, the SPP connection, the file's metadata, first digests and
               first block are included) and warm (a second GET of the
               same viewer, which has just fetched the whole file); also
               cold with the origin's /.direct/bench.bin URL (SPP at once);
               against the same file fetched with curl from the origin's
               HTTP side (/.direct/bench.bin, no proxy), from a private
               nginx (sendfile on), and libtorrent's time to its first
               piece (a seeder and a sequential downloader over TCP on
               127.0.0.1, as in spp_download.py); every sample starts
               SETTLE seconds after the last, with the disk synced, as a
               request comes to an idle server, and a new viewer is asked
               once it answers /.status and has had SETTLE seconds to
               finish starting
  seeks        20 Range requests of 64 KiB at random offsets (fixed seed)
               through the proxy, on a viewer that has opened the file (one
               64 KiB request at offset 0 first, not counted) but holds none
               of the blocks asked for: the offsets are chosen in 20
               different blocks, none of those the engine fetches early (the
               first and last 512 KiB); the same 20 requests from the
               origin's HTTP side directly, interleaved
  memory       the viewer's resident memory (VmRSS, every 0.5 s) while a
               1 GB file streams to `curl --limit-rate 1M` for a bounded
               time, then during and after a full-speed read of the whole
               file through a new viewer, and a second (warm) read of it

Correctness is checked on the way: the SHA-256 of whole downloads through
the proxy (cold and warm), of the origin's and nginx's answers, of the 1 GB
reads, and every Range answer against the file's bytes.

    python3 benchmarks/proxy.py [--rounds 11] [--size-mb 200] [--seeks 20]
        [--memory-mb 1000] [--memory-seconds 60] [--no-nginx]
        [--no-libtorrent] [--no-memory] [--json FILE]

Prints a table and writes the results as JSON (for scripts/bench). Needs
curl; nginx and the libtorrent module for those baselines.
"""

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time

from common import writeResult
from http_throughput import Nginx, findNginx
from spp_download import (
    MB,
    NAME,
    ROOT,
    LibtorrentContestant,
    Node,
    childEnvironment,
    log,
    makeFile,
    p2pdVersion,
    sha256File,
    stopProcess,
    warm,
)

WORK = os.path.join(ROOT, "benchmarks", "work", "proxy")
ORIGIN = "127.0.0.1"
VIEWER = "127.0.0.2"
# p2pd's default block size, and the part of the file the engine fetches
# early (download.EDGE_BYTES): seeks avoid those blocks.
BLOCK = 256 * 1024
EDGE = 512 * 1024
SEEK_LENGTH = 65536
SEED = 20261125
RSS_INTERVAL = 0.5
SETTLE = 0.5
FORMAT = "%{time_starttransfer} %{time_total} %{size_download} %{http_code}"

TARGETS = {
    "cold_ttfb_vs_direct": 3.0,
    "cold_ttfb_vs_libtorrent": 0.1,
    "seek_vs_direct": 3.0,
    "warm_throughput_vs_direct": 0.5,
    "rss_MB": 100.0,
}


def curlEnvironment():
    """
    curl's environment: no proxy settings but the ones given on its command
    line (no_proxy would make it skip the proxy for 127.0.0.1).
    """
    env = childEnvironment()
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(name, None)
    return env


def curlCommand(url, proxy=None, byteRange=None, output=os.devnull, extra=()):
    command = ["curl", "-s", "-o", output]
    command += ["-x", proxy] if proxy else ["--noproxy", "*"]
    if byteRange is not None:
        command += ["-r", f"{byteRange[0]}-{byteRange[1] - 1}"]
    return command + list(extra) + [url]


def parseWriteOut(text):
    ttfb, total, size, code = text.split()[-4:]
    return {
        "ttfb_s": float(ttfb),
        "total_s": float(total),
        "bytes": int(size),
        "code": int(code),
    }


def curl(url, proxy=None, byteRange=None, output=os.devnull, timeout=600):
    """
    One request, its body to C{output}: ttfb_s, total_s, bytes, code.
    """
    command = curlCommand(url, proxy, byteRange, output, ["-w", FORMAT])
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=curlEnvironment()
    )
    return parseWriteOut(done.stdout)


def curlStream(url, consume, proxy=None, extra=(), timeout=3600):
    """
    One request whose body is handed to C{consume} as it arrives (to hash
    or compare it); curl's figures as for L{curl}, and its exit status.
    """
    command = curlCommand(url, proxy, output="-", extra=list(extra))
    command[-1:-1] = ["-w", "%{stderr}" + FORMAT]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=curlEnvironment(),
    )
    deadline = time.monotonic() + timeout
    try:
        while chunk := process.stdout.read1(1 << 20):
            consume(chunk)
            if time.monotonic() > deadline:
                raise RuntimeError(f"curl {url}: no end after {timeout} s")
        errors = process.stderr.read().decode("utf-8", "replace")
        process.wait(30)
    finally:
        stopProcess(process)
        process.stdout.close()
        process.stderr.close()
    result = parseWriteOut(errors)
    result["exit"] = process.returncode
    return result


def expect(result, what, code, length):
    if result["code"] != code or result["bytes"] != length:
        raise RuntimeError(
            f"{what}: HTTP {result['code']}, {result['bytes']} bytes "
            f"(expected {code}, {length})"
        )


def checkedDownload(url, digest, size, what, proxy=None):
    """
    A whole download whose SHA-256 must be the file's.
    """
    h = hashlib.sha256()
    result = curlStream(url, h.update, proxy)
    expect(result, what, 200, size)
    if h.hexdigest() != digest:
        raise RuntimeError(f"{what}: the body's SHA-256 is not the file's")
    return result


def checkedRange(url, path, start, length, what, proxy=None):
    """
    A Range request whose body must be the file's bytes there.
    """
    sample = os.path.join(WORK, "range.sample")
    try:
        result = curl(url, proxy, (start, start + length), output=sample)
        with open(sample, "rb") as f:
            got = f.read()
    finally:
        if os.path.exists(sample):
            os.remove(sample)
    expect(result, what, 206, length)
    with open(path, "rb") as f:
        f.seek(start)
        if got != f.read(length):
            raise RuntimeError(f"{what}: wrong bytes for {start}-{start + length - 1}")
    return result


def rssBytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class RSSSampler:
    """
    VmRSS of a process every C{interval} seconds, in a thread.
    """

    def __init__(self, pid, interval=RSS_INTERVAL):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = None

    def _run(self):
        while True:
            try:
                rss = rssBytes(self.pid)
            except (OSError, RuntimeError):
                return
            self.samples.append((time.monotonic() - self.started, rss))
            if self._stopping.wait(self.interval):
                return

    def start(self):
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self):
        self._stopping.set()
        self._thread.join()

    def at(self, seconds):
        """
        The sample nearest to C{seconds} after the start.
        """
        return min(self.samples, key=lambda s: abs(s[0] - seconds))[1]

    def max(self):
        return max(rss for _, rss in self.samples)


# -- the nodes


class Nodes:
    """
    The p2pd processes of the benchmark, all stopped by L{stopAll}.
    """

    def __init__(self):
        self.started = []
        self.viewers = 0

    def _node(self, name, interface, cacheDir, public=None):
        node = Node(name, interface, cacheDir, public=public)
        node.logPath = os.path.join(WORK, "logs", name + ".log")
        return node

    def origin(self, name, public):
        cacheDir = os.path.join(WORK, "cache", name)
        shutil.rmtree(cacheDir, ignore_errors=True)
        node = self._node(name, ORIGIN, cacheDir, public)
        self.started.append(node)
        node.start()
        return node

    def viewer(self):
        """
        A new viewer node with an empty cache.
        """
        self.viewers += 1
        cacheDir = os.path.join(WORK, "cache", f"viewer-{self.viewers}")
        shutil.rmtree(cacheDir, ignore_errors=True)
        node = self._node("viewer", VIEWER, cacheDir)
        self.started.append(node)
        node.start()
        # Up, as a player finds a viewer's node: its log says it listens
        # before its reactor has run its own start-up work, which a request
        # sent at once would wait behind.
        node.status()
        time.sleep(SETTLE)
        return node

    def stop(self, node):
        node.stop()
        if node in self.started:
            self.started.remove(node)
        if node.public is None:
            shutil.rmtree(node.cacheDir, ignore_errors=True)

    def stopAll(self):
        for node in list(self.started):
            self.stop(node)


def proxyOf(viewer):
    return f"http://{VIEWER}:{viewer.port}"


def heldBlocks(viewer):
    """
    Blocks the viewer holds, over all its downloads (from its /.status).
    """
    return sum(d["held"] for d in viewer.status()["downloads"])


def waitForQuiet(viewer, timeout=10.0, quiet=0.5):
    """
    Wait until the viewer's count of held blocks stops moving.
    """
    deadline = time.monotonic() + timeout
    last, since = heldBlocks(viewer), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        held = heldBlocks(viewer)
        if held != last:
            last, since = held, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


# -- 1. and 3.: first byte and throughput


class Contestant:
    def __init__(self, label):
        self.label = label
        self.runs = {}

    def record(self, **values):
        for key, value in values.items():
            self.runs.setdefault(key, []).append(value)

    def median(self, key):
        return statistics.median(self.runs[key])


class ProxyContestant(Contestant):
    """
    A new viewer per sample: a cold GET, then (C{warmToo}) a warm one.
    """

    def __init__(self, label, nodes, url, size, digest, warmToo):
        super().__init__(label)
        self.nodes = nodes
        self.url = url
        self.size = size
        self.digest = digest
        self.warmToo = warmToo

    def warmUp(self):
        viewer = self.nodes.viewer()
        try:
            checkedDownload(
                self.url,
                self.digest,
                self.size,
                self.label + " (cold)",
                proxyOf(viewer),
            )
            if self.warmToo:
                checkedDownload(
                    self.url,
                    self.digest,
                    self.size,
                    self.label + " (warm)",
                    proxyOf(viewer),
                )
        finally:
            self.nodes.stop(viewer)

    def measure(self):
        viewer = self.nodes.viewer()
        try:
            cold = curl(self.url, proxyOf(viewer))
            expect(cold, self.label, 200, self.size)
            self.record(
                cold_ttfb_s=cold["ttfb_s"], cold_MBps=self.size / cold["total_s"] / MB
            )
            outcome = (
                f"cold {cold['ttfb_s'] * 1000:.1f} ms, "
                f"{self.size / cold['total_s'] / MB:.0f} MB/s"
            )
            if self.warmToo:
                again = curl(self.url, proxyOf(viewer))
                expect(again, self.label + " (warm)", 200, self.size)
                self.record(
                    warm_ttfb_s=again["ttfb_s"],
                    warm_MBps=self.size / again["total_s"] / MB,
                )
                outcome += (
                    f"; warm {again['ttfb_s'] * 1000:.1f} ms, "
                    f"{self.size / again['total_s'] / MB:.0f} MB/s"
                )
            return outcome
        finally:
            self.nodes.stop(viewer)


class HTTPContestant(Contestant):
    """
    A server's plain HTTP (the origin's /.direct/ URL, or nginx), no proxy.
    """

    def __init__(self, label, url, size, digest):
        super().__init__(label)
        self.url = url
        self.size = size
        self.digest = digest

    def warmUp(self):
        checkedDownload(self.url, self.digest, self.size, self.label)

    def measure(self):
        result = curl(self.url)
        expect(result, self.label, 200, self.size)
        mbps = self.size / result["total_s"] / MB
        self.record(ttfb_s=result["ttfb_s"], MBps=mbps)
        return f"{result['ttfb_s'] * 1000:.1f} ms, {mbps:.0f} MB/s"


class TorrentContestant(Contestant):
    """
    spp_download.py's libtorrent pair, timed to its first piece.
    """

    def __init__(self, path, size):
        super().__init__("libtorrent")
        self.inner = LibtorrentContestant(path, size)
        self.inner.saveDir = os.path.join(WORK, "libtorrent")
        self.inner.torrentPath = os.path.join(WORK, f"bench-{size // MB}MB.torrent")
        self.version = self.inner.version

    def start(self):
        self.inner.start()
        # Its "first MiB" becomes the first piece: it waits for this many
        # pieces to pass their hash check.
        self.inner.firstPieces = 1

    def stop(self):
        self.inner.stop()

    def warmUp(self):
        self.inner.run()

    def measure(self):
        r = self.inner.run()
        self.record(
            first_piece_s=r["first_MiB_s"],
            connect_s=r["connect_s"],
            first_piece_after_connect_s=r["first_MiB_after_connect_s"],
            MBps=r["MBps"],
        )
        return (
            f"first piece {r['first_MiB_s'] * 1000:.0f} ms (connected at "
            f"{r['connect_s'] * 1000:.0f} ms), {r['MBps']:.0f} MB/s"
        )


def firstByteAndThroughput(contestants, path, rounds):
    for contestant in contestants:
        log(f"warm-up (checked): {contestant.label}")
        warm(path)
        contestant.warmUp()
    for n in range(rounds):
        shift = n % len(contestants)
        for contestant in contestants[shift:] + contestants[:shift]:
            warm(path)
            # The last sample's cache writes are flushed now, and its
            # processes have stopped and closed their connections, not
            # during this one.
            os.sync()
            time.sleep(SETTLE)
            outcome = contestant.measure()
            log(f"round {n + 1}/{rounds}: {contestant.label}: {outcome}")


# -- 2.: seeks


def seekOffsets(size, count, seed):
    """
    C{count} offsets of 64 KiB spans, each in blocks no other span touches
    and away from the blocks fetched early (head and tail).
    """
    rng = random.Random(seed)
    taken = set()
    edgeBlocks = EDGE // BLOCK
    lastBlock = (size - 1) // BLOCK
    offsets = []
    for _ in range(100000):
        if len(offsets) == count:
            return offsets
        offset = rng.randrange(EDGE, size - EDGE - SEEK_LENGTH)
        blocks = set(range(offset // BLOCK, (offset + SEEK_LENGTH - 1) // BLOCK + 1))
        if blocks & taken or min(blocks) < edgeBlocks:
            continue
        if max(blocks) > lastBlock - edgeBlocks:
            continue
        taken |= blocks
        offsets.append(offset)
    raise RuntimeError(f"cannot place {count} seeks in {size} bytes")


def percentile(values, fraction):
    """
    Nearest-rank percentile.
    """
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def seeks(nodes, origin, path, size, count, seed):
    offsets = seekOffsets(size, count, seed)
    proxyURL = f"http://{ORIGIN}:{origin.port}/{NAME}"
    directURL = f"http://{ORIGIN}:{origin.port}/.direct/{NAME}"
    viewer = nodes.viewer()
    runs = {"offsets": offsets, "proxy": [], "direct": [], "new_blocks": []}
    try:
        checkedRange(
            proxyURL, path, 0, SEEK_LENGTH, "proxy seek (prime)", proxyOf(viewer)
        )
        held = waitForQuiet(viewer)
        log(f"seeks: viewer primed, holds {held} blocks; {count} seeks")
        for n, offset in enumerate(offsets):
            what = f"seek {n + 1} at {offset}"
            p = checkedRange(
                proxyURL, path, offset, SEEK_LENGTH, what + " (proxy)", proxyOf(viewer)
            )
            d = checkedRange(directURL, path, offset, SEEK_LENGTH, what + " (direct)")
            now = heldBlocks(viewer)
            runs["new_blocks"].append(now - held)
            held = now
            runs["proxy"].append({"ttfb_s": p["ttfb_s"], "total_s": p["total_s"]})
            runs["direct"].append({"ttfb_s": d["ttfb_s"], "total_s": d["total_s"]})
            log(
                f"{what}: proxy {p['ttfb_s'] * 1000:.1f}/{p['total_s'] * 1000:.1f} ms, "
                f"direct {d['ttfb_s'] * 1000:.1f}/{d['total_s'] * 1000:.1f} ms, "
                f"{runs['new_blocks'][-1]} new block(s)"
            )
    finally:
        nodes.stop(viewer)
    summary = {"offsets": offsets, "new_blocks": runs["new_blocks"], "runs": runs}
    for side in ("proxy", "direct"):
        for key in ("ttfb_s", "total_s"):
            values = [r[key] for r in runs[side]]
            summary[f"{side}_{key[:-2]}_median_ms"] = statistics.median(values) * 1000
            summary[f"{side}_{key[:-2]}_p95_ms"] = percentile(values, 0.95) * 1000
    return summary


# -- 4.: memory


def rssRun(nodes, url, label, seconds=None, limit=None, check=None, viewer=None):
    """
    One read of C{url} through a viewer (a new one unless given), its
    VmRSS sampled throughout and 2 s after the end.
    """
    own = viewer is None
    if own:
        viewer = nodes.viewer()
    sampler = None
    try:
        before = rssBytes(viewer.pid)
        extra = []
        if limit:
            extra += ["--limit-rate", limit]
        if seconds:
            extra += ["--max-time", str(seconds)]
        sampler = RSSSampler(viewer.pid).start()
        result = curlStream(url, check, proxyOf(viewer), extra)
        time.sleep(2.0)
        after = rssBytes(viewer.pid)
        sampler.stop()
        elapsed = result["total_s"]
        summary = {
            "label": label,
            "bytes": result["bytes"],
            "seconds": elapsed,
            "MBps": result["bytes"] / elapsed / MB if elapsed else 0.0,
            "rss_before": before,
            "rss_10s": sampler.at(10.0) if elapsed >= 10.5 else None,
            "rss_max": sampler.max(),
            "rss_end": sampler.at(elapsed),
            "rss_after": after,
            "samples": [(round(t, 2), rss) for t, rss in sampler.samples],
            "curl_exit": result["exit"],
            "code": result["code"],
        }
        log(
            f"{label}: {result['bytes'] / MB:.0f} MB in {elapsed:.1f} s, RSS "
            f"{before / MB:.0f} MB before, max {summary['rss_max'] / MB:.0f}, "
            f"end {summary['rss_end'] / MB:.0f}, 2 s after {after / MB:.0f}"
        )
        return summary, viewer
    except BaseException:
        if own:
            nodes.stop(viewer)
        raise
    finally:
        if sampler is not None:
            sampler.stop()


class Comparer:
    """
    Checks a streamed body against the file's bytes as it arrives.
    """

    def __init__(self, path):
        self.file = open(path, "rb")
        self.good = True

    def __call__(self, chunk):
        if self.file.read(len(chunk)) != chunk:
            self.good = False

    def close(self):
        self.file.close()


def memory(nodes, size, seconds):
    path = makeFile(size)
    digest = sha256File(path)
    origin = nodes.origin("memory-origin", os.path.dirname(path))
    url = f"http://{ORIGIN}:{origin.port}/{NAME}"
    results = {}
    viewer = None
    try:
        comparer = Comparer(path)
        try:
            slow, viewer = rssRun(
                nodes,
                url,
                f"1 MiB/s reader, {seconds} s",
                seconds=seconds,
                limit="1M",
                check=comparer,
            )
        finally:
            comparer.close()
        nodes.stop(viewer)
        # curl stops it at --max-time (exit 28), or it is over.
        if (
            slow["curl_exit"] not in (0, 28)
            or slow["code"] != 200
            or not slow["bytes"]
            or not comparer.good
        ):
            raise RuntimeError(
                f"rate-limited read: curl exit {slow['curl_exit']}, HTTP "
                f"{slow['code']}, {slow['bytes']} bytes, "
                f"{'right' if comparer.good else 'WRONG'} bytes"
            )
        results["slow"] = slow
        h = hashlib.sha256()
        fast, viewer = rssRun(nodes, url, "full read, cold viewer", check=h.update)
        if fast["bytes"] != size or h.hexdigest() != digest:
            raise RuntimeError("full read through the proxy: wrong bytes")
        results["fast"] = fast
        h = hashlib.sha256()
        again, viewer = rssRun(
            nodes, url, "full read again, warm", check=h.update, viewer=viewer
        )
        if again["bytes"] != size or h.hexdigest() != digest:
            raise RuntimeError("warm full read through the proxy: wrong bytes")
        results["warm"] = again
    finally:
        if viewer is not None:
            nodes.stop(viewer)
        nodes.stop(origin)
    results["file_MB"] = size // MB
    return results


# -- the report


def ratio(a, b):
    return a / b if b else float("nan")


def verdict(met):
    return "met" if met else "**not met**"


def mb(value):
    return f"{value / MB:.0f}"


def markdown(summary, args, size):
    t = summary["throughput"]
    lines = [
        f"{size // MB} MB file of random bytes, page-cached at the origin "
        "(twistd p2pd -p, 127.0.0.1, default block size 256 KiB, its digests "
        "computed before the first sample); the viewer is a p2pd node on "
        "127.0.0.2 used as curl's proxy (`curl -x`) for the origin's URL "
        f"`http://127.0.0.1:PORT/{NAME}`. {args.rounds} samples each, in "
        f"rotating order, each {SETTLE} s after the last; medians. First byte = curl's `time_starttransfer` of "
        "a whole-file GET (cold: a new viewer process with an empty cache per "
        f"sample, asked once it answers `/.status` and has had {SETTLE} s to "
        "finish starting, so the first contact with the origin (the file "
        "opened over SPP, the request forwarded only if that has not "
        "succeeded within 20 ms), the SPP connection, the "
        "metadata, the first digests and the first block are included; warm: "
        "a second GET of the same viewer after that full "
        "fetch). libtorrent: from `connect_peer` to its first piece passing "
        "its hash check (new sessions, as in `spp_download.py`). MB/s = 10^6 "
        "bytes/s over the whole download.",
        "",
        "| path | first byte ms | MB/s | best MB/s |",
        "|---|--:|--:|--:|",
    ]
    proxy = t["proxy"]
    lines.append(
        f"| proxy, cold viewer (`/{NAME}`) | {proxy['cold_ttfb_ms']:.1f} "
        f"| {proxy['cold_MBps']:.0f} | {proxy['cold_best_MBps']:.0f} |"
    )
    if "proxy_direct" in t:
        d = t["proxy_direct"]
        lines.append(
            f"| proxy, cold viewer (`/.direct/{NAME}`: SPP at once) "
            f"| {d['cold_ttfb_ms']:.1f} | {d['cold_MBps']:.0f} "
            f"| {d['cold_best_MBps']:.0f} |"
        )
    lines.append(
        f"| proxy, warm (second GET, same viewer) | {proxy['warm_ttfb_ms']:.1f} "
        f"| {proxy['warm_MBps']:.0f} | {proxy['warm_best_MBps']:.0f} |"
    )
    o = t["origin"]
    lines.append(
        f"| origin's HTTP directly (`/.direct/{NAME}`, no proxy) "
        f"| {o['ttfb_ms']:.1f} | {o['MBps']:.0f} | {o['best_MBps']:.0f} |"
    )
    if "nginx" in t:
        n = t["nginx"]
        lines.append(
            f"| {n['label']} (sendfile) | {n['ttfb_ms']:.1f} | {n['MBps']:.0f} "
            f"| {n['best_MBps']:.0f} |"
        )
    lt = t.get("libtorrent")
    if lt is not None:
        lines.append(
            f"| {lt['label']}, first piece ({lt['piece_KiB']} KiB) from "
            f"`connect_peer` | {lt['first_piece_ms']:.0f} | {lt['MBps']:.0f} "
            f"| {lt['best_MBps']:.0f} |"
        )
        lines.append(
            f"| {lt['label']}, first piece after its TCP connection (made "
            f"{lt['connect_ms']:.0f} ms after `connect_peer`) "
            f"| {lt['first_piece_after_connect_ms']:.0f} | | |"
        )
    s = summary.get("seeks")
    if s is not None:
        lines += [
            "",
            f"Seeks: {len(s['offsets'])} Range requests of 64 KiB "
            f"(`curl -r OFFSET-(OFFSET+65535)`) at random offsets (seed {args.seed}), "
            "through the proxy of one new viewer that has opened the file (one "
            "request for the first 64 KiB, not counted) but holds none of the "
            "blocks asked for: the offsets lie in different 256 KiB blocks, away "
            "from the first and last 512 KiB the engine fetches early (blocks "
            "the viewer fetched per seek: "
            f"{min(s['new_blocks'])}-{max(s['new_blocks'])}); each followed by the "
            "same request to the origin's HTTP side. p95 = nearest rank "
            f"({math.ceil(0.95 * len(s['offsets']))}th of {len(s['offsets'])}).",
            "",
            "| seek | first byte median ms | first byte p95 ms | total median ms "
            "| total p95 ms |",
            "|---|--:|--:|--:|--:|",
        ]
        for side, label in (
            ("proxy", "proxy, blocks not held by the viewer"),
            ("direct", "origin's HTTP directly"),
        ):
            lines.append(
                f"| {label} | {s[side + '_ttfb_median_ms']:.1f} "
                f"| {s[side + '_ttfb_p95_ms']:.1f} | {s[side + '_total_median_ms']:.1f} "
                f"| {s[side + '_total_p95_ms']:.1f} |"
            )
    m = summary.get("memory")
    if m is not None:
        lines += [
            "",
            f"Memory: the viewer's VmRSS (sampled every {RSS_INTERVAL} s; MB = 10^6 "
            f"bytes) while a {m['file_MB']} MB file streams through its proxy: to "
            f"`curl --limit-rate 1M` for {args.memory_seconds} s (a new viewer), "
            "then to curl without a limit (another new viewer), then once more "
            "from that viewer's cache.",
            "",
            "| read | MB read | s | MB/s | RSS before | at 10 s | max | at the end "
            "| 2 s after |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for key in ("slow", "fast", "warm"):
            r = m.get(key)
            if r is None:
                continue
            lines.append(
                f"| {r['label']} | {mb(r['bytes'])} | {r['seconds']:.1f} "
                f"| {r['MBps']:.1f} | {mb(r['rss_before'])} "
                f"| {mb(r['rss_10s']) if r['rss_10s'] is not None else ''} "
                f"| {mb(r['rss_max'])} | {mb(r['rss_end'])} | {mb(r['rss_after'])} |"
            )
    lines += ["", "Targets:", ""]
    for line in summary["targets_text"]:
        lines.append(f"- {line}")
    lines += ["", f"Command: `{commandLine(args)}`"]
    return "\n".join(lines)


def targets(summary):
    """
    The targets as (key, text, met or None when not measured).
    """
    t = summary["throughput"]
    proxy, origin = t["proxy"], t["origin"]
    out = []
    coldVsDirect = ratio(proxy["cold_ttfb_ms"], origin["ttfb_ms"])
    out.append(
        (
            "cold_ttfb_vs_direct",
            f"cold first byte / direct HTTP first byte: **{coldVsDirect:.1f}x** "
            f"({proxy['cold_ttfb_ms']:.1f} / {origin['ttfb_ms']:.1f} ms; target <= "
            f"{TARGETS['cold_ttfb_vs_direct']}x): "
            + verdict(coldVsDirect <= TARGETS["cold_ttfb_vs_direct"]),
            coldVsDirect <= TARGETS["cold_ttfb_vs_direct"],
        )
    )
    lt = t.get("libtorrent")
    if lt is not None:
        r = ratio(proxy["cold_ttfb_ms"], lt["first_piece_ms"])
        after = ratio(proxy["cold_ttfb_ms"], lt["first_piece_after_connect_ms"])
        out.append(
            (
                "cold_ttfb_vs_libtorrent",
                f"cold first byte / libtorrent's first piece: **{r:.2f}x** (target "
                f"<= {TARGETS['cold_ttfb_vs_libtorrent']}x): "
                + verdict(r <= TARGETS["cold_ttfb_vs_libtorrent"])
                + f"; {after:.2f}x against its first piece after its connection",
                r <= TARGETS["cold_ttfb_vs_libtorrent"],
            )
        )
    s = summary.get("seeks")
    if s is not None:
        r = ratio(s["proxy_ttfb_median_ms"], s["direct_ttfb_median_ms"])
        total = ratio(s["proxy_total_median_ms"], s["direct_total_median_ms"])
        out.append(
            (
                "seek_vs_direct",
                f"seek first byte median / direct HTTP's: **{r:.1f}x** (target <= "
                f"{TARGETS['seek_vs_direct']}x): "
                + verdict(r <= TARGETS["seek_vs_direct"])
                + f"; total {total:.1f}x",
                r <= TARGETS["seek_vs_direct"],
            )
        )
    r = ratio(proxy["warm_MBps"], origin["MBps"])
    out.append(
        (
            "warm_throughput_vs_direct",
            f"warm throughput / direct HTTP's: **{r:.2f}x** (target >= "
            f"{TARGETS['warm_throughput_vs_direct']}x): "
            + verdict(r >= TARGETS["warm_throughput_vs_direct"])
            + (
                f"; cold {ratio(proxy['cold_MBps'], origin['MBps']):.2f}x; warm / "
                f"nginx {ratio(proxy['warm_MBps'], t['nginx']['MBps']):.2f}x"
                if "nginx" in t
                else ""
            ),
            r >= TARGETS["warm_throughput_vs_direct"],
        )
    )
    m = summary.get("memory")
    if m is not None:
        runs = [m[k] for k in ("slow", "fast", "warm") if k in m]
        peak = max(r["rss_max"] for r in runs)
        slow = m["slow"]
        # Growth over the second half of the rate-limited read against what
        # streamed meanwhile: a viewer that kept what it streams would grow
        # by about as much; bounded buffers and caches fill in the first
        # seconds (1 MiB/s plus the engine's read-ahead).
        half = slow["seconds"] / 2
        middle = min(slow["samples"], key=lambda s: abs(s[0] - half))[1]
        growth = slow["rss_end"] - middle
        streamed = slow["bytes"] / 2
        bounded = growth <= 0.1 * streamed
        m["flat"] = bounded
        out.append(
            (
                "rss_MB",
                f"viewer RSS: max **{peak / MB:.0f} MB** (target < "
                f"{TARGETS['rss_MB']:.0f} MB): "
                + verdict(peak < TARGETS["rss_MB"] * MB)
                + f"; at 1 MiB/s {slow['rss_10s'] / MB:.0f} MB at 10 s, "
                f"{middle / MB:.0f} MB at {half:.0f} s, {slow['rss_end'] / MB:.0f} MB "
                f"at {slow['seconds']:.0f} s ({growth / MB:+.0f} MB over the second "
                f"half, while about {streamed / MB:.0f} MB streamed): "
                + ("flat" if bounded else "**growing with the stream**"),
                peak < TARGETS["rss_MB"] * MB,
            )
        )
        summary["memory"]["bounded"] = bounded
    return out


def commandLine(args):
    words = ["python3", "benchmarks/proxy.py", "--rounds", str(args.rounds)]
    defaults = {
        "size_mb": 200,
        "seeks": 20,
        "memory_mb": 1000,
        "memory_seconds": 60,
        "seed": SEED,
    }
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            words += ["--" + key.replace("_", "-"), str(value)]
    for flag in ("no_nginx", "no_libtorrent", "no_memory", "no_seeks"):
        if getattr(args, flag):
            words.append("--" + flag.replace("_", "-"))
    return " ".join(words)


def summarize(contestants):
    out = {}
    proxy = contestants["proxy"]
    out["proxy"] = {
        "label": proxy.label,
        "cold_ttfb_ms": proxy.median("cold_ttfb_s") * 1000,
        "cold_MBps": proxy.median("cold_MBps"),
        "cold_best_MBps": max(proxy.runs["cold_MBps"]),
        "warm_ttfb_ms": proxy.median("warm_ttfb_s") * 1000,
        "warm_MBps": proxy.median("warm_MBps"),
        "warm_best_MBps": max(proxy.runs["warm_MBps"]),
        "runs": proxy.runs,
    }
    if "proxy_direct" in contestants:
        c = contestants["proxy_direct"]
        out["proxy_direct"] = {
            "label": c.label,
            "cold_ttfb_ms": c.median("cold_ttfb_s") * 1000,
            "cold_MBps": c.median("cold_MBps"),
            "cold_best_MBps": max(c.runs["cold_MBps"]),
            "runs": c.runs,
        }
    for key in ("origin", "nginx"):
        if key in contestants:
            c = contestants[key]
            out[key] = {
                "label": c.label,
                "ttfb_ms": c.median("ttfb_s") * 1000,
                "MBps": c.median("MBps"),
                "best_MBps": max(c.runs["MBps"]),
                "runs": c.runs,
            }
    if "libtorrent" in contestants:
        c = contestants["libtorrent"]
        out["libtorrent"] = {
            "label": f"libtorrent {c.version}",
            "piece_KiB": c.inner.pieceLength // 1024,
            "first_piece_ms": c.median("first_piece_s") * 1000,
            "connect_ms": c.median("connect_s") * 1000,
            "first_piece_after_connect_ms": c.median("first_piece_after_connect_s")
            * 1000,
            "MBps": c.median("MBps"),
            "best_MBps": max(c.runs["MBps"]),
            "runs": c.runs,
        }
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    # A cold first byte varies by a millisecond from one sample to the next.
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--seeks", type=int, default=20)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--memory-mb", type=int, default=1000)
    parser.add_argument(
        "--memory-seconds",
        type=int,
        default=60,
        help="how long the 1 MiB/s reader reads (default: %(default)s)",
    )
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--no-libtorrent", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--no-seeks", action="store_true")
    parser.add_argument(
        "--json",
        default=os.path.join(WORK, "proxy.json"),
        help="where to write the results (default: %(default)s)",
    )
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("proxy: curl is not installed")
    if args.memory_seconds < 12:
        sys.exit("proxy: --memory-seconds must be at least 12 (RSS at 10 s vs end)")
    if args.rounds < 1 or args.seeks < 1 or args.size_mb < 1:
        sys.exit("proxy: --rounds, --seeks and --size-mb must be at least 1")
    size = args.size_mb * MB
    os.makedirs(WORK, exist_ok=True)
    path = makeFile(size)
    digest = sha256File(path)

    import twisted

    versions = {"p2pd": p2pdVersion(), "twisted": twisted.__version__}
    nodes = Nodes()
    nginx = torrent = None
    started = time.monotonic()
    summary = {"versions": versions}
    try:
        origin = nodes.origin("origin", os.path.dirname(path))
        log(f"origin on {ORIGIN}:{origin.port}")
        plainURL = f"http://{ORIGIN}:{origin.port}/{NAME}"
        directURL = f"http://{ORIGIN}:{origin.port}/.direct/{NAME}"
        contestants = {
            "proxy": ProxyContestant(
                "proxy", nodes, plainURL, size, digest, warmToo=True
            ),
            "proxy_direct": ProxyContestant(
                "proxy (/.direct/)", nodes, directURL, size, digest, warmToo=False
            ),
            "origin": HTTPContestant("origin HTTP", directURL, size, digest),
        }
        binary = None if args.no_nginx else findNginx()
        if binary is not None:
            nginx = Nginx(
                binary, root=os.path.dirname(path), prefix=os.path.join(WORK, "nginx")
            )
            nginx.logPath = os.path.join(WORK, "logs", "nginx.log")
            os.makedirs(os.path.dirname(nginx.logPath), exist_ok=True)
            versions["nginx"] = nginx.version()
            nginx.start()
            contestants["nginx"] = HTTPContestant(
                f"nginx {versions['nginx']}", nginx.url(), size, digest
            )
        elif not args.no_nginx:
            log("nginx is not installed: not measured")
        if not args.no_libtorrent:
            try:
                torrent = TorrentContestant(path, size)
            except ImportError:
                log(
                    "libtorrent is not installed (pip install libtorrent): not measured"
                )
            else:
                torrent.start()
                versions["libtorrent"] = torrent.version
                contestants["libtorrent"] = torrent
        firstByteAndThroughput(list(contestants.values()), path, args.rounds)
        summary["throughput"] = summarize(contestants)
        if nginx is not None:
            nginx.stop()
        if not args.no_seeks:
            warm(path)
            summary["seeks"] = seeks(nodes, origin, path, size, args.seeks, args.seed)
        nodes.stop(origin)
        if not args.no_memory:
            summary["memory"] = memory(nodes, args.memory_mb * MB, args.memory_seconds)
    finally:
        if nginx is not None:
            nginx.stop()
        if torrent is not None:
            torrent.stop()
        nodes.stopAll()
    elapsed = time.monotonic() - started

    checks = targets(summary)
    summary["targets"] = {key: met for key, _, met in checks}
    summary["targets_text"] = [text for _, text, _ in checks]
    table = markdown(summary, args, size)
    print(table)
    result = {
        "benchmark": "proxy",
        "title": "The viewer's proxy: first byte, seeks, throughput, memory",
        "command": commandLine(args),
        "file_MB": size // MB,
        "rounds": args.rounds,
        "results": summary,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)


if __name__ == "__main__":
    main()
