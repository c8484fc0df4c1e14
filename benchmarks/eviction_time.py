#!/usr/bin/env python3
"""
The store's eviction under -C: reactor time per evicted segment, on the
real cache on disk, with the reactor running.

A cache (p2pd.store.cache.BlockCache) with a limit of --limit-mb MiB, in
benchmarks/work/, is given --files files of --file-mb MiB one after the
other, 256 KiB blocks stored in order as a download stores them, one
store per reactor turn; each file's handle stays open while it is stored
(its own older segments are evicted through its open state) and is closed
after (its segments are then evicted without reading its journal). Once
the cache is full, stores evict. Run twice: holes punched at once, on the
reactor (as at start-up), then in the reactor's thread pool (as while the
node runs).

Reactor time per evicted segment: its share of the store's eviction (from
the limit's check to the last segment journaled and its hole punched or
queued, divided by the segments it evicted) plus, with the thread, the
reactor's turn that applies its punched hole (charges taken off, the next
hole handed to the thread). The reactor thread's wall clock, the same less
its waits for a CPU (on a shared machine), and its CPU time; median, 99th
percentile and worst (target: under 1 ms). Also: the
stores' own time, the time each hole took in the thread, and the stores
refused because the holes they needed were not punched yet (the block then
stays in memory, as a download keeps it). After each store a block held is
read, as a peer would, through the memory cache of --memory-mb MiB: reports
the most it held (target: never above it).

    python3 benchmarks/eviction_time.py [--limit-mb 256] [--files 12]
        [--file-mb 64] [--memory-mb 16] [--no-doc] [--json FILE]
"""

import argparse
import hashlib
import os
import random
import shutil
import statistics
import sys
import time
from collections import deque

from common import ROOT, log, p2pdVersion, writeResult, writeSection
from twisted.internet import defer, reactor

sys.path.insert(0, ROOT)
from p2pd.core.meta import FileMeta  # noqa: E402
from p2pd.store import fileio  # noqa: E402
from p2pd.store.cache import BlockCache  # noqa: E402
from p2pd.store.cachedfile import CacheFull  # noqa: E402
from p2pd.store.eviction import SEGMENT_BLOCKS  # noqa: E402

sys.path.remove(ROOT)

DOC = os.path.join(ROOT, "docs", "performance.md")
WORK = os.path.join(ROOT, "benchmarks", "work")
BLOCK = 256 * 1024
TARGET_MS = 1.0
MODES = (("reactor", "holes punched on the reactor"), ("thread", "holes in a thread"))


class Timings:
    """
    What one run measured, in seconds.
    """

    def __init__(self):
        self.wall = []
        self.own = []
        self.cpu = []
        self.stores = []
        self.holes = []
        self.refused = 0
        self.peakMemory = 0
        # From the first store to the last.
        self.seconds = 0.0
        # Each queued hole's share of its store's eviction, oldest first.
        self.shares = deque()

    def add(self, spent):
        """
        One evicted segment's reactor time, as L{since} gives it.
        """
        wall, own, cpu = spent
        self.wall.append(wall)
        self.own.append(own)
        self.cpu.append(cpu)


def clocks():
    """
    The wall clock, the CPU time of this thread and the time it waited for
    a CPU (Linux's schedstat), in seconds.
    """
    with open("/proc/thread-self/schedstat") as f:
        waited = int(f.read().split()[1]) / 1e9
    return time.perf_counter(), time.thread_time(), waited


def since(before):
    """
    The time spent since C{before} (from L{clocks}): on the wall clock, on
    the wall clock less the waits for a CPU (what this thread spent running
    or blocked in the kernel, whatever else the machine runs), and in CPU.
    """
    wall, cpu, waited = (now - then for now, then in zip(clocks(), before))
    return wall, wall - waited, cpu


class TimedReactor:
    """
    The reactor as the punches see it: each turn a punched hole is applied
    in is timed, and added to that hole's share of its eviction.
    """

    def __init__(self, timings):
        self.timings = timings

    def getThreadPool(self):
        return reactor.getThreadPool()

    def callFromThread(self, f, *args):
        def timed():
            before = clocks()
            f(*args)
            spent = since(before)
            share = self.timings.shares.popleft()
            self.timings.add(tuple(a + b for a, b in zip(share, spent)))

        reactor.callFromThread(timed)


def timeHoles(timings):
    """
    Time every hole punched (in whichever thread) into C{timings.holes}.
    """
    punchHole = fileio.punchHole

    def timed(fd, offset, length):
        started = time.perf_counter()
        try:
            punchHole(fd, offset, length)
        finally:
            timings.holes.append(time.perf_counter() - started)

    fileio.punchHole = timed
    return lambda: setattr(fileio, "punchHole", punchHole)


@defer.inlineCallbacks
def run(mode, limitMB, files, fileMB, memoryMB, directory):
    shutil.rmtree(directory, ignore_errors=True)
    timings = Timings()
    cache = BlockCache(directory, capacity=limitMB << 20, memory=memoryMB << 20)
    if mode == "thread":
        cache.punches.start(TimedReactor(timings))
    rng = random.Random(1)
    policy = cache.limit.policy
    makeRoom = cache.limit.makeRoom
    punches = cache.punches

    def timedRoom(need, keep=None):
        # Evicted segments leave the policy; nothing enters it meanwhile.
        before, pending = len(policy), punches.pending
        started = clocks()
        fits = makeRoom(need, keep)
        spent = since(started)
        evicted = before - len(policy)
        queued = punches.pending - pending
        for n in range(evicted):
            share = tuple(value / evicted for value in spent)
            if n < queued:
                timings.shares.append(share)
            else:
                timings.add(share)
        return fits

    # The stores call the limit through this attribute.
    cache.limit.makeRoom = timedRoom
    restore = timeHoles(timings)
    data = hashlib.sha512(b"block").digest() * (BLOCK // 64)
    began = time.perf_counter()
    try:
        for n in range(files):
            meta = FileMeta(
                f"spp://origin.example:1111/film{n}.mp4",
                fileMB << 20,
                BLOCK,
                "sha256",
                "1",
            )
            cached = cache.open(meta)
            cached.setDigests(0, meta.digest(data) * meta.blocks)
            for index in range(meta.blocks):
                # One store per reactor turn, as a download stores them.
                yield nextTurn()
                started = time.perf_counter()
                try:
                    cached.write(index, data)
                except CacheFull:
                    timings.refused += 1
                timings.stores.append(time.perf_counter() - started)
                # A peer reads a block held, through the memory cache.
                held = cached.held()
                if held:
                    first, count = rng.choice(held)
                    cached.read(first + rng.randrange(count))
                timings.peakMemory = max(timings.peakMemory, cache.memory.size)
                assert cache.limit.used <= limitMB << 20
            cached.close()
        timings.seconds = time.perf_counter() - began
        while punches.pending:
            yield nextTurn()
    finally:
        restore()
        punches.stop()
    shutil.rmtree(directory, ignore_errors=True)
    return timings


def nextTurn():
    """
    A Deferred fired in the reactor's next turn.
    """
    d = defer.Deferred()
    reactor.callLater(0, d.callback, None)
    return d


def ms(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def row(name, values):
    return (
        f"| {name} | {statistics.median(values) * 1000:.3f} ms | "
        f"{ms(values, 0.99):.3f} ms | {max(values) * 1000:.3f} ms |"
    )


def markdown(results, args):
    parts = [
        f"{args.files} files of {args.file_mb} MiB through a {args.limit_mb} MiB "
        f"cache, segments of {SEGMENT_BLOCKS} blocks of 256 KiB, one store per "
        f"reactor turn. Target: under {TARGET_MS:.0f} ms of reactor time per "
        "evicted segment.",
        "",
        "| | median | 99th percentile | worst |",
        "|---|---|---|---|",
    ]
    for mode, title in MODES:
        timings = results[mode]
        parts += [
            f"| **{title}**: {len(timings.wall)} segments evicted | | | |",
            row("reactor time per evicted segment (wall clock)", timings.wall),
            row("the same, less the waits for a CPU", timings.own),
            row("reactor CPU time per evicted segment", timings.cpu),
            row("a whole store", timings.stores),
            row("a hole punched (the system call alone)", timings.holes),
        ]
    parts.append("")
    rates = [
        len(results[mode].stores) * BLOCK / results[mode].seconds / 1e6
        for mode, _ in MODES
    ]
    parts.append(
        f"Stores refused while the holes they needed were punched: "
        f"{results['reactor'].refused} on the reactor, "
        f"{results['thread'].refused} with the thread, of "
        f"{len(results['thread'].stores)}; blocks stored at {rates[0]:.0f} and "
        f"{rates[1]:.0f} MB/s (a node stores them as fast as the network "
        "brings them)."
    )
    parts.append("")
    parts.append(
        "The wall clock counts the reactor's thread waiting for a CPU, long "
        "on a shared machine; the row below it leaves those waits out "
        "(Linux's schedstat) and keeps what the reactor spends running or "
        "blocked: in the system call, when a hole punched on the reactor "
        "waits for pages of its range still being written back (this "
        "benchmark stores far faster than a disk writes), and, with the "
        "thread, waiting for Python's GIL while the punching thread holds it."
    )
    peak = max(timings.peakMemory for timings in results.values())
    parts.append("")
    parts.append(
        f"Memory cache (`-M {args.memory_mb}M`), a block held read after each "
        f"store: at most {peak / 2**20:.2f} MiB held (target: never above "
        f"{args.memory_mb} MiB)."
    )
    return "\n".join(parts)


@defer.inlineCallbacks
def measure(args):
    directory = os.path.join(WORK, "eviction_time")
    results = {}
    for mode, _ in MODES:
        results[mode] = yield run(
            mode, args.limit_mb, args.files, args.file_mb, args.memory_mb, directory
        )
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--limit-mb", type=int, default=256)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--file-mb", type=int, default=64)
    parser.add_argument("--memory-mb", type=int, default=16)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", default=os.path.join(WORK, "eviction_time.json"))
    args = parser.parse_args()
    started = time.monotonic()
    outcome = []

    def done(result):
        outcome.append(result)
        reactor.stop()

    reactor.callWhenRunning(lambda: measure(args).addBoth(done))
    reactor.run()
    results = outcome[0]
    if not isinstance(results, dict):
        results.raiseException()
    elapsed = time.monotonic() - started
    if not all(results[mode].wall for mode, _ in MODES):
        sys.exit("eviction_time: nothing was evicted; store more than the limit")
    peak = max(timings.peakMemory for timings in results.values())
    if peak > args.memory_mb << 20:
        sys.exit(f"eviction_time: the memory cache held {peak} bytes")
    table = markdown(results, args)
    print(table)
    threaded = results["thread"].own
    result = {
        "benchmark": "eviction_time",
        "title": "The store's eviction: reactor time per evicted segment",
        "versions": {"p2pd": p2pdVersion()},
        "medianMs": statistics.median(threaded) * 1000,
        "p99Ms": ms(threaded, 0.99),
        "worstMs": max(threaded) * 1000,
        "onTheReactorWorstMs": max(results["reactor"].own) * 1000,
        "refused": results["thread"].refused,
        "peakMemoryBytes": peak,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)
    if not args.no_doc:
        writeSection(DOC, result)
    log(f"eviction_time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
