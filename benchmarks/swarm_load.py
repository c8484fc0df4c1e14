#!/usr/bin/env python3
"""
Origin load of a p2pd swarm: ten rate-limited clients on one file.

One origin (twistd p2pd -p DIR on 127.0.0.1) publishes a 200 MB file of
random bytes; ten clients fetch it with

    python3 -m p2pd fetch spp://127.0.0.1:PORT/bench.bin -i 127.0.0.N
        --rate 20M --linger SECONDS

(127.0.0.2 to 127.0.0.11, each with an empty cache, reading like a player
at no more than 20 MiB/s), in two scenarios:

  staggered     the clients start 1 s apart
  simultaneous  they all start at once

The figure is what the origin sent over SPP (from its /.status page)
divided by the file's size: plain HTTP would be 10 in both. Clients that
finish keep serving the others (--linger) until the last one is done; then
they are all stopped. Also reported: when the clients finished (against the
size / rate a player needs), and CPU seconds per GB of the origin and of the
clients.

    python3 benchmarks/swarm_load.py [--clients 10] [--size-mb 200]
        [--rate 20M] [--stagger 1] [--block-size 256K] [--json FILE]

Prints a table and writes the results as JSON (for scripts/bench).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

from common import writeResult
from spp_download import (
    MB,
    NAME,
    ROOT,
    WORK,
    Node,
    childEnvironment,
    log,
    makeFile,
    p2pdVersion,
    parseSize,
    stopProcess,
)

SWARM = os.path.join(WORK, "swarm")
TARGETS = {"staggered": 1.5, "simultaneous": 3.0}


class Client:
    """
    One C{p2pd fetch} process on its own loopback address.
    """

    def __init__(self, number, url, rate, linger):
        self.number = number
        self.interface = f"127.0.0.{number + 2}"
        self.directory = os.path.join(SWARM, f"client-{number + 1}")
        self.output = os.path.join(self.directory, NAME)
        self.url = url
        self.rate = rate
        self.linger = linger
        self.process = None
        self.started = None
        self.finished = None
        self.exited = None
        self.cpu = None
        self.returncode = None
        self._stderr = None

    def start(self):
        shutil.rmtree(self.directory, ignore_errors=True)
        os.makedirs(self.directory)
        self._stderr = open(os.path.join(self.directory, "stderr.log"), "wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "p2pd",
                "fetch",
                self.url,
                "-o",
                self.output,
                "-c",
                os.path.join(self.directory, "cache"),
                "-i",
                self.interface,
                "-q",
                "--rate",
                self.rate,
                "--linger",
                str(self.linger),
            ],
            cwd=ROOT,
            env=childEnvironment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def poll(self):
        """
        Note when the output is complete (the fetch renames it into place)
        and when the process exits; reaped here for its CPU time.
        """
        now = time.monotonic()
        if self.finished is None and os.path.exists(self.output):
            self.finished = now
        if self.exited is None and self.process is not None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.exited = now
                self.returncode = os.waitstatus_to_exitcode(status)
                self.process.returncode = self.returncode
                self.cpu = usage.ru_utime + usage.ru_stime

    def stop(self):
        """
        End a lingering client (SIGTERM) and reap it.
        """
        if self.process is None:
            return
        if self.exited is None:
            self.process.terminate()
            try:
                pid, status, usage = os.wait4(self.process.pid, 0)
            except ChildProcessError:
                pid = 0
            if pid:
                self.exited = time.monotonic()
                self.returncode = os.waitstatus_to_exitcode(status)
                self.process.returncode = self.returncode
                self.cpu = usage.ru_utime + usage.ru_stime
        stopProcess(self.process)
        if self._stderr is not None:
            self._stderr.close()

    def errors(self):
        try:
            with open(
                os.path.join(self.directory, "stderr.log"), errors="replace"
            ) as f:
                return f.read().strip()
        except OSError:
            return ""

    def cleanUp(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def runScenario(name, origin, args, size, stagger):
    """
    Start the clients C{stagger} seconds apart, wait until every one has
    its file, stop them, and return what the origin sent.
    """
    url = origin.sppURL()
    rate = parseSize(args.rate)
    ideal = size / rate
    linger = (args.clients - 1) * stagger + ideal * 3 + 30
    clients = [Client(n, url, args.rate, linger) for n in range(args.clients)]
    before = origin.status()["served"]["bytesByFile"].get(NAME, 0)
    originCpu = origin.cpu()
    started = time.monotonic()
    deadline = started + (args.clients - 1) * stagger + ideal * 10 + 60
    try:
        pending = list(clients)
        while pending or not all(c.finished or c.exited for c in clients):
            now = time.monotonic()
            while pending and now >= started + pending[0].number * stagger:
                pending.pop(0).start()
            for client in clients:
                if client.process is not None:
                    client.poll()
                    if client.exited is not None and client.finished is None:
                        raise RuntimeError(
                            f"{name}: client {client.number + 1} exited "
                            f"({client.returncode}) without its file: "
                            f"{client.errors()}"
                        )
            if now > deadline:
                raise RuntimeError(f"{name}: the clients did not finish in time")
            time.sleep(0.01)
        lastDone = max(c.finished for c in clients)
        sent = origin.status()["served"]["bytesByFile"].get(NAME, 0) - before
        originCpu = origin.cpu() - originCpu
    finally:
        for client in clients:
            client.stop()
    for client in clients:
        got = os.path.getsize(client.output)
        if got != size:
            raise RuntimeError(f"{name}: client {client.number + 1} got {got} bytes")
    # Spot-check the bytes of one client (all verified block by block anyway).
    if args.check:
        from spp_download import sha256File

        if sha256File(clients[-1].output) != sha256File(origin.published):
            raise RuntimeError(f"{name}: a client's file differs from the origin's")
    durations = [c.finished - c.started for c in clients]
    clientCpu = [c.cpu / (size / 10**9) for c in clients if c.cpu is not None]
    for client in clients:
        client.cleanUp()
    result = {
        "stagger_s": stagger,
        "origin_bytes": sent,
        "origin_over_size": sent / size,
        "target": TARGETS.get(name),
        "seconds": lastDone - started,
        "ideal_client_s": ideal,
        "client_s": durations,
        "origin_cpu_s": originCpu,
        "origin_cpu_s_per_GB_sent": originCpu / (sent / 10**9) if sent else None,
        "client_cpu_s_per_GB": clientCpu,
    }
    log(
        f"{name}: origin sent {sent / size:.2f}x the file; clients took "
        f"{min(durations):.1f}-{max(durations):.1f} s (ideal {ideal:.1f} s)"
    )
    return result


def markdown(results, args, size, blockSize, version):
    lines = [
        f"{args.clients} `p2pd fetch` clients (127.0.0.2 to "
        f"127.0.0.{args.clients + 1}, empty caches, `--rate {args.rate}`, "
        f"lingering until the last has its file) on one {size // MB} MB file "
        f"from one origin (p2pd {version}, `-b {blockSize}`). Origin / file = "
        "bytes the origin sent over SPP (its `/.status`) divided by the file "
        f"size; plain HTTP would be {args.clients}. Client time = start to "
        f"complete file; a player reading at {parseSize(args.rate) / 2**20:g} "
        f"MiB/s needs {size / parseSize(args.rate):.1f} s. CPU = user+system "
        "seconds per "
        "GB (origin: per GB it sent; clients: per GB each downloaded, Python "
        "start-up and uploads to peers included).",
        "",
        "| start | origin / file | target | client time s (min / median / max) "
        "| origin CPU s/GB | client CPU s/GB (median) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, r in results.items():
        target = r["target"]
        met = r["origin_over_size"] <= target if target else None
        mark = "" if met is None else (" (met)" if met else " (**not met**)")
        label = f"{name}, {r['stagger_s']:g} s apart" if r["stagger_s"] else name
        d = r["client_s"]
        lines.append(
            f"| {label} | **{r['origin_over_size']:.2f}**{mark} | <= {target:g} "
            f"| {min(d):.1f} / {statistics.median(d):.1f} / {max(d):.1f} "
            f"| {r['origin_cpu_s_per_GB_sent']:.2f} "
            f"| {statistics.median(r['client_cpu_s_per_GB']):.2f} |"
        )
    lines += ["", f"Command: `{commandLine(args)}`"]
    return "\n".join(lines)


def commandLine(args):
    words = ["python3", "benchmarks/swarm_load.py"]
    defaults = {"clients": 10, "size_mb": 200, "rate": "20M", "stagger": 1.0}
    for key, default in defaults.items():
        value = getattr(args, key)
        if value != default:
            words += [
                "--" + key.replace("_", "-"),
                f"{value:g}" if isinstance(value, float) else str(value),
            ]
    if args.block_size != "256K":
        words += ["--block-size", args.block_size]
    return " ".join(words)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--rate", default="20M")
    parser.add_argument("--stagger", type=float, default=1.0)
    parser.add_argument("--block-size", default="256K")
    parser.add_argument(
        "--scenarios",
        default="staggered,simultaneous",
        help="which to run (default: %(default)s)",
    )
    parser.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the hash check"
    )
    parser.add_argument(
        "--json",
        default=os.path.join(WORK, "swarm_load.json"),
        help="where to write the results (default: %(default)s)",
    )
    args = parser.parse_args()
    if not 1 <= args.clients <= 250:
        sys.exit("swarm_load: --clients must be 1 to 250")
    parseSize(args.rate)
    blockSize = args.block_size.upper()
    size = args.size_mb * MB
    path = makeFile(size)
    version = p2pdVersion()
    origin = Node(
        "swarm-origin",
        "127.0.0.1",
        os.path.join(SWARM, "origin-cache"),
        public=os.path.dirname(path),
        blockSize=blockSize,
    )
    origin.published = path
    results = {}
    started = time.monotonic()
    shutil.rmtree(SWARM, ignore_errors=True)
    os.makedirs(SWARM)
    try:
        origin.start()
        log(f"origin on 127.0.0.1:{origin.port}")
        # Let the origin hash the file first, as it would have long before a
        # crowd arrives.
        served = origin.status()["served"]["bytes"]
        warmUp = subprocess.run(
            [
                sys.executable,
                "-m",
                "p2pd",
                "fetch",
                origin.sppURL(),
                "-o",
                os.path.join(SWARM, "warm-up.bin"),
                "-c",
                os.path.join(SWARM, "warm-up-cache"),
                "-i",
                "127.0.0.2",
                "-q",
            ],
            cwd=ROOT,
            env=childEnvironment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if warmUp.returncode != 0:
            raise RuntimeError(f"warm-up fetch failed: {warmUp.stderr}")
        shutil.rmtree(os.path.join(SWARM, "warm-up-cache"), ignore_errors=True)
        os.remove(os.path.join(SWARM, "warm-up.bin"))
        log(
            f"warm-up: origin sent {(origin.status()['served']['bytes'] - served) / size:.2f}x"
        )
        for name in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            if name not in TARGETS:
                raise SystemExit(f"swarm_load: unknown scenario {name!r}")
            stagger = args.stagger if name == "staggered" else 0.0
            results[name] = runScenario(name, origin, args, size, stagger)
    finally:
        origin.stop()
    elapsed = time.monotonic() - started
    table = markdown(results, args, size, blockSize, version)
    print(table)
    result = {
        "benchmark": "swarm_load",
        "title": "Origin load of a swarm of rate-limited clients",
        "command": commandLine(args),
        "file_MB": size // MB,
        "clients": args.clients,
        "rate": args.rate,
        "block_size": blockSize,
        "p2pd": version,
        "scenarios": results,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)


if __name__ == "__main__":
    main()
