#!/usr/bin/env python3
"""
The cache's eviction policy: byte hit ratio of p2pd's policy against plain
LRU, S3-FIFO, SIEVE and LFUDA on viewings, with and without
popularity churn, at cache sizes from 5% to 50% of the catalogue.

Each workload (benchmarks/_cacheworkload.py: Zipf popularity over films of
100 MB to 4 GB, samplers, seekers and viewers to the end, seeded) is a
trace of requests for whole segments (SEGMENT_BLOCKS blocks of 256 KiB).
It is replayed against each policy as the store drives it: a segment read
is a hit when held (then touched); a miss stores and touches it, and when
the bytes held pass the capacity, the victims are pulled and forgotten
until they fit again, the segment being read pinned. The byte hit ratio
counts the bytes of the requests after the first quarter of the trace
(the cache's warm-up). Each eviction pass (the victims pulled for one
miss, and their forget() calls) is timed in CPU time of the thread: mean
and worst. libcachesim (PyPI), when installed, replays the same traces
with its LRU and S3-FIFO as a cross-check.

    python3 benchmarks/cache.py [--titles 400] [--viewings 6000] [--seed 1]
        [--sizes 5,10,20,30,40,50] [--policies NAME,...] [--no-libcachesim]
        [--no-doc] [--json FILE]

Prints the tables, writes the results as JSON (for scripts/bench), the
picture docs/cache.png and, unless --no-doc, its section of
docs/performance.md.
"""

import argparse
import os
import statistics
import sys
import time

from _cachepolicies import LFUDA, LRU, SIEVE
from _cacheworkload import BLOCK, SEGMENT_BLOCKS, makeTrace
from common import ROOT, log, p2pdVersion, writeResult, writeSection

sys.path.insert(0, ROOT)
from p2pd.store import eviction, limit  # noqa: E402

sys.path.remove(ROOT)

DOC = os.path.join(ROOT, "docs", "performance.md")
PICTURE = os.path.join(ROOT, "docs", "cache.png")
WORK = os.path.join(ROOT, "benchmarks", "work")
WARMUP = 0.25

POLICIES = {
    "LRU": LRU,
    "S3-FIFO": eviction.S3FIFO,
    "SIEVE": SIEVE,
    "LFUDA": LFUDA,
    "p2pd": eviction.newPolicy,
}


def replay(trace, policy, capacity):
    """
    Replay C{trace} against C{policy} in a store of C{capacity} bytes: the
    byte hit ratio after the warm-up, and the CPU nanoseconds of each
    eviction pass.
    """
    keys, sizes = trace.keys, trace.sizes
    start = int(len(keys) * WARMUP)
    held = {}
    used = hits = asked = 0
    passes = []
    reading = None

    def pinned(segment):
        return segment == reading

    clock = time.thread_time_ns
    for index, reading in enumerate(keys):
        size = sizes[index]
        if index >= start:
            asked += size
        if reading in held:
            if index >= start:
                hits += size
            policy.touch(reading, size)
            continue
        policy.touch(reading, size)
        held[reading] = size
        used += size
        if used > capacity:
            began = clock()
            evicted = []
            for victim in policy.victims(pinned):
                evicted.append(victim)
                used -= held[victim]
                if used <= capacity:
                    break
            for victim in evicted:
                policy.forget(victim)
                del held[victim]
            passes.append(clock() - began)
    return hits / asked, passes


def replayStore(trace, capacity):
    """
    The byte hit ratio of C{trace} replayed against the store's own limit
    (p2pd/store/limit.py, with p2pd's policy) of C{capacity} bytes, as the
    cache drives it, block by block: room made before each block is
    stored (a block, a journal unit, a new version's own files), the
    block charged, a version removed once all its blocks are evicted; a
    hit, a segment whose blocks are all held, is read. Nothing is written:
    evicting a segment only forgets it.
    """
    complete = set()
    storing = None

    def drop(segment, freed):
        complete.discard(segment)
        freed()
        return True

    def emptied(key):
        if key != storing:
            store.remove(key)

    store = limit.CacheLimit(capacity, drop, emptied)
    start = int(len(trace.keys) * WARMUP)
    hits = asked = 0
    for index, segment in enumerate(trace.keys):
        size = trace.sizes[index]
        key, number = segment
        fileSize = trace.fileSizes[key]
        account = store.account(key, -(-fileSize // BLOCK))
        first = number * SEGMENT_BLOCKS
        if index >= start:
            asked += size
        if segment in complete:
            if index >= start:
                hits += size
            account.read(first)
            continue
        storing = key
        for block in range(first, first + -(-size // BLOCK)):
            length = min(BLOCK, fileSize - block * BLOCK)
            need = limit.allocated(length) + limit.ALLOCATION
            if not account.segments and not account.metadataBytes:
                need += limit.VERSION_OVERHEAD
            if not account.room(need, block):
                break
            if not account.metadataBytes:
                account.files(0, 0)
            account.stored(block, length)
        else:
            complete.add(segment)
        storing = None
    return hits / asked


def replayLibcachesim(trace, name, capacity):
    """
    The byte hit ratio of libcachesim's policy C{name} on C{trace}, counted
    as L{replay} counts it.
    """
    import libcachesim

    cache = {"LRU": libcachesim.LRU, "S3-FIFO": libcachesim.S3FIFO}[name](capacity)
    start = int(len(trace.ids) * WARMUP)
    hits = asked = 0
    request = libcachesim.Request
    for index, (identifier, size) in enumerate(zip(trace.ids, trace.sizes)):
        hit = cache.get(request(obj_size=size, obj_id=identifier))
        if index >= start:
            asked += size
            hits += size if hit else 0
    return hits / asked


def measure(traces, shares, policies, crossCheck, storeShares):
    """
    Every policy on every trace at every size: rows of results.
    """
    rows = []
    for trace in traces:
        for share in shares:
            capacity = int(trace.catalogueBytes * share / 100)
            row = {"workload": trace.name, "share": share, "policies": {}}
            for name in policies:
                began = time.monotonic()
                ratio, passes = replay(trace, POLICIES[name](capacity), capacity)
                row["policies"][name] = {
                    "byte_hit_ratio": ratio,
                    "passes": len(passes),
                    "pass_us_mean": statistics.fmean(passes) / 1000 if passes else 0,
                    "pass_us_worst": max(passes, default=0) / 1000,
                    "passes_over_1ms": sum(1 for p in passes if p > 1_000_000),
                }
                log(
                    f"{trace.name} {share}% {name}: byte hit ratio {ratio:.4f} "
                    f"({time.monotonic() - began:.1f} s)"
                )
            if share in storeShares:
                began = time.monotonic()
                row["store"] = replayStore(trace, capacity)
                log(
                    f"{trace.name} {share}% p2pd in the store: byte hit ratio "
                    f"{row['store']:.4f} ({time.monotonic() - began:.1f} s)"
                )
            if crossCheck:
                row["libcachesim"] = {
                    name: replayLibcachesim(trace, name, capacity)
                    for name in ("LRU", "S3-FIFO")
                }
            rows.append(row)
    return rows


def fewerMisses(row, name):
    """
    How much lower policy C{name}'s byte miss ratio is than LRU's, relative.
    """
    lru = 1 - row["policies"]["LRU"]["byte_hit_ratio"]
    mine = 1 - row["policies"][name]["byte_hit_ratio"]
    return (lru - mine) / lru


def markdown(rows, policies, crossCheck, traces, args):
    workloads = ", ".join(
        f"{t.name}: {t.films} films, {t.catalogueBytes / 1e9:.0f} GB live, "
        f"{len(t.keys)} requests, {t.requestedBytes / 1e12:.2f} TB asked"
        for t in traces
    )
    lines = [
        f"Command: `python3 benchmarks/cache.py --titles {args.titles} "
        f"--viewings {args.viewings} --seed {args.seed}`; segments of "
        f"{SEGMENT_BLOCKS} blocks of 256 KiB; {args.viewings} viewings per "
        f"workload ({workloads}). Byte hit ratio after the first quarter of the "
        "trace, per policy; the column before last is p2pd's byte miss ratio against "
        "LRU's (relative, negative is fewer misses; the target is -10% or less "
        "at 10% and 20%, and never above 0); the last, p2pd's policy in the "
        "store's own limit (p2pd/store/limit.py), driven block by block as the "
        "cache drives it, at the sizes of `--store-sizes`. Picture: "
        "[cache.png](cache.png).",
        "",
        "| workload | cache size | "
        + " | ".join(policies)
        + " | p2pd's misses vs LRU | p2pd in the store |",
        "|---|---:|" + "---:|" * len(policies) + "---:|---:|",
    ]
    for row in rows:
        cells = [f"{row['policies'][n]['byte_hit_ratio']:.3f}" for n in policies]
        store = f"{row['store']:.3f}" if "store" in row else ""
        lines.append(
            f"| {row['workload']} | {row['share']}% | "
            + " | ".join(cells)
            + f" | {-100 * fewerMisses(row, 'p2pd'):+.1f}% | {store} |"
        )
    lines += [
        "",
        "CPU time of one eviction pass (the victims pulled for one miss and "
        "their forget()), in microseconds, mean and worst over every run:",
        "",
        "| policy | passes | mean µs | worst µs | over 1 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in policies:
        results = [row["policies"][name] for row in rows]
        count = sum(r["passes"] for r in results)
        mean = sum(r["pass_us_mean"] * r["passes"] for r in results) / max(count, 1)
        worst = max(r["pass_us_worst"] for r in results)
        over = sum(r["passes_over_1ms"] for r in results)
        lines.append(f"| {name} | {count} | {mean:.1f} | {worst:.0f} | {over} |")
    if crossCheck:
        lines += [
            "",
            "Cross-check with libcachesim on the same traces (byte hit ratio, "
            "ours / libcachesim's):",
            "",
            "| workload | cache size | LRU | S3-FIFO |",
            "|---|---:|---:|---:|",
        ]
        for row in rows:
            cells = [
                f"{row['policies'][n]['byte_hit_ratio']:.3f} / "
                f"{row['libcachesim'][n]:.3f}"
                for n in ("LRU", "S3-FIFO")
            ]
            lines.append(
                f"| {row['workload']} | {row['share']}% | " + " | ".join(cells) + " |"
            )
    else:
        lines += ["", "libcachesim was not installed: no cross-check."]
    return "\n".join(lines)


def plot(rows, policies, path):
    """
    Byte hit ratio against cache size, one line per policy, one panel per
    workload.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    workloads = list(dict.fromkeys(row["workload"] for row in rows))
    figure, axes = pyplot.subplots(
        1, len(workloads), figsize=(5 * len(workloads), 4), sharey=True
    )
    for axis, workload in zip(figure.axes, workloads):
        mine = [row for row in rows if row["workload"] == workload]
        for name in policies:
            axis.plot(
                [row["share"] for row in mine],
                [row["policies"][name]["byte_hit_ratio"] for row in mine],
                marker="o",
                linewidth=2.5 if name == "p2pd" else 1.2,
                label=name,
            )
        axis.set_title(f"{workload} popularity")
        axis.set_xlabel("cache size (% of the catalogue)")
        axis.grid(alpha=0.3)
    figure.axes[0].set_ylabel("byte hit ratio")
    figure.axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    log(f"wrote {os.path.relpath(path, ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--titles", type=int, default=400)
    parser.add_argument("--viewings", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default="5,10,20,30,40,50")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--store-sizes", default="10,20")
    parser.add_argument("--no-libcachesim", action="store_true")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", default=os.path.join(WORK, "cache.json"))
    args = parser.parse_args()
    shares = [int(share) for share in args.sizes.split(",")]
    policies = args.policies.split(",")
    if "LRU" not in policies or "p2pd" not in policies:
        sys.exit("cache: the policies compared must include LRU and p2pd")
    crossCheck = not args.no_libcachesim
    if crossCheck:
        try:
            import libcachesim  # noqa: F401
        except ImportError:
            log("libcachesim is not installed: no cross-check")
            crossCheck = False
    started = time.monotonic()
    traces = [
        makeTrace(churn, args.titles, args.viewings, args.seed)
        for churn in (False, True)
    ]
    storeShares = [int(share) for share in args.store_sizes.split(",") if share]
    rows = measure(traces, shares, policies, crossCheck, storeShares)
    elapsed = time.monotonic() - started
    table = markdown(rows, policies, crossCheck, traces, args)
    print(table)
    plot(rows, policies, PICTURE)
    result = {
        "benchmark": "cache",
        "title": "The cache's eviction policy: byte hit ratio against LRU, "
        "S3-FIFO, SIEVE, LFUDA",
        "versions": {"p2pd": p2pdVersion()},
        "rows": rows,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)
    if not args.no_doc:
        writeSection(DOC, result)


if __name__ == "__main__":
    main()
