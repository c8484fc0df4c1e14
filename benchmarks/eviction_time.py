#!/usr/bin/env python3
"""
The store's eviction under -C: reactor time per evicted segment, on the
real cache on disk.

A cache (p2pd.store.cache.BlockCache) with a limit of --limit-mb MiB, in
benchmarks/work/, is given --files files of --file-mb MiB one after the
other, 256 KiB blocks stored in order as a download stores them; each
file's handle stays open while it is stored (its own older segments are
evicted through its open state) and is closed after (its segments are then
evicted without reading its journal). Once the cache is full every store
evicts. Each store that evicted is timed (wall clock and CPU time of the
thread, from the limit's check to the last segment freed: journal records
appended, hole punched, charges taken off) and divided by the segments it
evicted. Reports the median, 99th percentile and worst per evicted
segment (target: under 1 ms), and the stores' own time for comparison.
After each store a block held is read, as a peer would, through the
memory cache of --memory-mb MiB: reports the most it held (target: never
above it).

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

from common import ROOT, log, p2pdVersion, writeResult, writeSection

sys.path.insert(0, ROOT)
from p2pd.core.meta import FileMeta  # noqa: E402
from p2pd.store.cache import BlockCache  # noqa: E402
from p2pd.store.eviction import SEGMENT_BLOCKS  # noqa: E402

sys.path.remove(ROOT)

DOC = os.path.join(ROOT, "docs", "performance.md")
WORK = os.path.join(ROOT, "benchmarks", "work")
BLOCK = 256 * 1024
TARGET_MS = 1.0


def run(limitMB, files, fileMB, memoryMB, directory):
    shutil.rmtree(directory, ignore_errors=True)
    cache = BlockCache(directory, capacity=limitMB << 20, memory=memoryMB << 20)
    rng = random.Random(1)
    peakMemory = 0
    policy = cache.limit.policy
    makeRoom = cache.limit.makeRoom
    perSegment = {"wall": [], "cpu": []}
    stores = []

    def timedRoom(need, keep=None):
        # Evicted segments leave the policy; nothing enters it meanwhile.
        before = len(policy)
        wall, cpu = time.perf_counter(), time.thread_time()
        fits = makeRoom(need, keep)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        evicted = before - len(policy)
        if evicted:
            perSegment["wall"].append(wall / evicted)
            perSegment["cpu"].append(cpu / evicted)
        return fits

    # The stores call the limit through this attribute.
    cache.limit.makeRoom = timedRoom
    data = hashlib.sha512(b"block").digest() * (BLOCK // 64)
    for n in range(files):
        meta = FileMeta(
            f"spp://origin.example:1111/film{n}.mp4", fileMB << 20, BLOCK, "sha256", "1"
        )
        cached = cache.open(meta)
        cached.setDigests(0, meta.digest(data) * meta.blocks)
        for index in range(meta.blocks):
            started = time.perf_counter()
            cached.write(index, data)
            stores.append(time.perf_counter() - started)
            # A peer reads a block held, through the memory cache.
            first, count = rng.choice(cached.held())
            cached.read(first + rng.randrange(count))
            peakMemory = max(peakMemory, cache.memory.size)
        cached.close()
        assert cache.limit.used <= limitMB << 20
    shutil.rmtree(directory, ignore_errors=True)
    return perSegment, stores, peakMemory


def ms(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def markdown(perSegment, stores, peakMemory, args):
    rows = [
        "| per evicted segment | median | 99th percentile | worst |",
        "|---|---|---|---|",
    ]
    for kind, name in (("wall", "reactor time (wall clock)"), ("cpu", "CPU time")):
        values = perSegment[kind]
        rows.append(
            f"| {name} | {statistics.median(values) * 1000:.3f} ms | "
            f"{ms(values, 0.99):.3f} ms | {max(values) * 1000:.3f} ms |"
        )
    rows.append(
        f"| a whole store (for comparison) | {statistics.median(stores) * 1000:.3f} ms "
        f"| {ms(stores, 0.99):.3f} ms | {max(stores) * 1000:.3f} ms |"
    )
    rows.append("")
    rows.append(
        "Where the wall clock passes the CPU time, it is the disk: punching a "
        "hole waits for "
        "pages of its range still being written back, which this benchmark "
        "causes by storing far faster than the disk writes; a node streaming "
        "evicts blocks stored long before."
    )
    rows.append("")
    rows.append(
        f"Memory cache (`-M {args.memory_mb}M`), a block held read after each "
        f"store: at most {peakMemory / 2**20:.2f} MiB held (target: never above "
        f"{args.memory_mb} MiB)."
    )
    return (
        f"{len(perSegment['wall'])} stores that evicted, "
        f"{args.files} files of {args.file_mb} MiB through a {args.limit_mb} MiB "
        f"cache, segments of {SEGMENT_BLOCKS} blocks of 256 KiB. Target: under "
        f"{TARGET_MS:.0f} ms per evicted segment.\n\n" + "\n".join(rows)
    )


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
    directory = os.path.join(WORK, "eviction_time")
    perSegment, stores, peakMemory = run(
        args.limit_mb, args.files, args.file_mb, args.memory_mb, directory
    )
    elapsed = time.monotonic() - started
    if not perSegment["wall"]:
        sys.exit("eviction_time: nothing was evicted; store more than the limit")
    if peakMemory > args.memory_mb << 20:
        sys.exit(f"eviction_time: the memory cache held {peakMemory} bytes")
    table = markdown(perSegment, stores, peakMemory, args)
    print(table)
    result = {
        "benchmark": "eviction_time",
        "title": "The store's eviction: reactor time per evicted segment",
        "versions": {"p2pd": p2pdVersion()},
        "medianMs": statistics.median(perSegment["wall"]) * 1000,
        "worstMs": max(perSegment["wall"]) * 1000,
        "peakMemoryBytes": peakMemory,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)
    if not args.no_doc:
        writeSection(DOC, result)
    log(f"eviction_time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
