#!/usr/bin/env python3
"""
HTTP throughput of p2pd against Twisted's static.File and nginx.

One 200 MB file of random bytes (made once under benchmarks/work/) is
served page-cached over 127.0.0.1 by:

  p2pd         twistd -n p2pd -p DIR --listen tcp:0:interface=127.0.0.1
  static.File  twistd -n web --path DIR --listen tcp:PORT:interface=127.0.0.1
  nginx        a private nginx (sendfile on), when nginx is installed

and downloaded with curl, several rounds, the servers interleaved in each
round (in a rotating order) so that noise on a small machine hits them all
alike. Each round also asks every server for 1 MiB from the middle of the
file with a Range request. The CPU time of each server process is read from
/proc/PID/stat around its full downloads.

    python3 benchmarks/http_throughput.py [--rounds 15] [--json FILE]

Prints a table and writes the results as JSON (for scripts/bench). Needs
curl; run from anywhere, it uses the checkout it belongs to.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from common import (
    ROOT,
    cpuSeconds,
    curl,
    log,
    p2pdVersion,
    relative,
    twistdCommand,
    writeResult,
)

WORK = os.path.join(ROOT, "benchmarks", "work", "http_throughput")
DATA = os.path.join(WORK, "www")
NAME = "bench.bin"
MB = 10**6
MiB = 2**20
START_TIMEOUT = 20.0


def makeFile(size):
    """
    The benchmark file: random bytes, made once, then read through so that
    it is in the page cache.
    """
    os.makedirs(DATA, exist_ok=True)
    path = os.path.join(DATA, NAME)
    if not os.path.exists(path) or os.path.getsize(path) != size:
        log(f"writing {size // MB} MB of random bytes to {relative(path)}")
        partial = path + ".part"
        with open(partial, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 4 * MiB))
                f.write(chunk)
                left -= len(chunk)
        os.replace(partial, path)
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MiB):
            pass
    return path


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """
    One server process under test, its output in a log file in the work dir.
    """

    name = "?"
    process = None

    def __init__(self):
        self.logPath = os.path.join(WORK, self.slug + ".log")
        self.port = None
        self.cpu = 0.0
        self.bytes = 0

    def command(self):
        raise NotImplementedError

    def findPort(self):
        """
        The port, once the server listens on it, or None yet.
        """
        raise NotImplementedError

    def start(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in [env.get("PYTHONPATH")] if p]
        )
        env.pop("PYTHONSTARTUP", None)
        with open(self.logPath, "wb") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.process.returncode}) on start:\n"
                    + self.logTail()
                )
            port = self.findPort()
            if port is not None and self._accepts(port):
                self.port = port
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start listening:\n" + self.logTail())

    @staticmethod
    def _accepts(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    def logText(self):
        try:
            with open(self.logPath, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def logTail(self):
        return "\n".join(self.logText().splitlines()[-15:])

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def url(self):
        return f"http://127.0.0.1:{self.port}/{NAME}"


class P2pd(Server):
    name = "p2pd"
    slug = "p2pd"
    _announce = re.compile(r"serving HTTP and SPP on [^\s]*:(\d+)")

    def command(self):
        return twistdCommand() + [
            "-n",
            "--pidfile=",
            "p2pd",
            "-p",
            DATA,
            "--listen",
            "tcp:0:interface=127.0.0.1",
        ]

    def findPort(self):
        found = self._announce.search(self.logText())
        return int(found.group(1)) if found else None


class StaticFile(Server):
    name = "static.File"
    slug = "static-file"

    def command(self):
        self._chosen = freePort()
        return twistdCommand() + [
            "-n",
            "--pidfile=",
            "web",
            "--path",
            DATA,
            "--listen",
            f"tcp:{self._chosen}:interface=127.0.0.1",
        ]

    def findPort(self):
        return self._chosen


class Nginx(Server):
    name = "nginx"
    slug = "nginx"

    def __init__(self, binary, root=DATA, prefix=None):
        super().__init__()
        self.binary = binary
        self.root = root
        self.prefix = prefix or os.path.join(WORK, "nginx")

    def version(self):
        out = subprocess.run(
            [self.binary, "-v"], capture_output=True, text=True
        ).stderr.strip()
        return out.split("/", 1)[-1] if "/" in out else out

    def _config(self, port):
        p = self.prefix
        built = subprocess.run(
            [self.binary, "-V"], capture_output=True, text=True
        ).stderr
        temps = [f"client_body_temp_path {p}/client_body;"]
        for module in ("proxy", "fastcgi", "uwsgi", "scgi"):
            if f"--without-http_{module}_module" not in built:
                temps.append(f"{module}_temp_path {p}/{module};")
        temp = "\n        ".join(temps)
        return f"""\
daemon off;
master_process off;
worker_processes 1;
error_log {p}/error.log;
pid {p}/nginx.pid;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
        {temp}
    server {{
        listen 127.0.0.1:{port};
        root {self.root};
    }}
}}
"""

    def command(self):
        os.makedirs(self.prefix, exist_ok=True)
        self._chosen = freePort()
        config = os.path.join(self.prefix, "nginx.conf")
        with open(config, "w") as f:
            f.write(self._config(self._chosen))
        return [
            self.binary,
            "-p",
            self.prefix + "/",
            "-e",
            os.path.join(self.prefix, "error.log"),
            "-c",
            config,
        ]

    def findPort(self):
        return self._chosen


def findNginx():
    """
    The nginx binary, or None when it is not installed.
    """
    nginx = shutil.which("nginx")
    if nginx is None:
        for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):
            if os.access(candidate, os.X_OK):
                return candidate
    return nginx


def fullDownload(server, size):
    before = cpuSeconds(server.process.pid)
    ttfb, total, got, code = curl(server.url(), timeout=120)
    server.cpu += cpuSeconds(server.process.pid) - before
    server.bytes += got
    if code != 200 or got != size:
        raise RuntimeError(f"{server.name}: HTTP {code}, {got} of {size} bytes")
    return ttfb, got / total / MB


def rangeDownload(server, span):
    ttfb, _total, got, code = curl(server.url(), span, timeout=120)
    if code != 206 or got != span[1] - span[0]:
        raise RuntimeError(f"{server.name}: Range gave HTTP {code}, {got} bytes")
    return ttfb


def checkRange(server, path, span):
    """
    The bytes of a Range answer are the file's.
    """
    sample = os.path.join(WORK, "range.sample")
    try:
        curl(server.url(), span, output=sample, timeout=120)
        with open(sample, "rb") as f:
            got = f.read()
    finally:
        if os.path.exists(sample):
            os.remove(sample)
    with open(path, "rb") as f:
        f.seek(span[0])
        if got != f.read(span[1] - span[0]):
            raise RuntimeError(f"{server.name}: wrong bytes for a Range request")


def measure(servers, path, size, rounds):
    span = (size // 2, size // 2 + MiB)
    results = {s.name: {"mbps": [], "ttfb": [], "rangeTtfb": []} for s in servers}
    for server in servers:
        checkRange(server, path, span)
        fullDownload(server, size)  # warm-up, not counted
        server.cpu, server.bytes = 0.0, 0
    for n in range(rounds):
        order = servers[n % len(servers) :] + servers[: n % len(servers)]
        for server in order:
            ttfb, mbps = fullDownload(server, size)
            results[server.name]["mbps"].append(mbps)
            results[server.name]["ttfb"].append(ttfb)
            results[server.name]["rangeTtfb"].append(rangeDownload(server, span))
        log(
            f"round {n + 1}/{rounds}: "
            + ", ".join(
                f"{s.name} {results[s.name]['mbps'][-1]:.0f} MB/s" for s in servers
            )
        )
    summary = {}
    for server in servers:
        r = results[server.name]
        summary[server.name] = {
            "median_MBps": statistics.median(r["mbps"]),
            "best_MBps": max(r["mbps"]),
            "median_ttfb_ms": statistics.median(r["ttfb"]) * 1000,
            "median_range_ttfb_ms": statistics.median(r["rangeTtfb"]) * 1000,
            "cpu_s_per_GB": server.cpu / (server.bytes / 10**9),
            "runs": {
                "MBps": r["mbps"],
                "ttfb_s": r["ttfb"],
                "range_ttfb_s": r["rangeTtfb"],
            },
        }
    return summary


def markdown(summary, size, rounds, versions):
    lines = [
        f"{size // MB} MB file, page-cached, curl over 127.0.0.1; {rounds} "
        "downloads per server, interleaved. MB/s = 10^6 bytes/s; TTFB = curl's "
        "`time_starttransfer` (connect included); Range = 1 MiB from the middle "
        "of the file; CPU = user+system seconds of the server process per GB "
        "served.",
        "",
        "| server | median MB/s | best MB/s | median TTFB ms | Range TTFB ms "
        "| CPU s/GB |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, s in summary.items():
        label = f"{name} {versions[name]}".strip()
        lines.append(
            f"| {label} | {s['median_MBps']:.0f} | {s['best_MBps']:.0f} "
            f"| {s['median_ttfb_ms']:.1f} | {s['median_range_ttfb_ms']:.1f} "
            f"| {s['cpu_s_per_GB']:.2f} |"
        )
    lines.append("")
    p2pd = summary["p2pd"]["median_MBps"]
    ratios = []
    for other in ("static.File", "nginx"):
        if other in summary:
            ratios.append(
                f"p2pd / {other}: **{p2pd / summary[other]['median_MBps']:.2f}x**"
            )
    if "nginx" not in summary:
        ratios.append("nginx: not installed, not measured")
    lines.append("Median throughput ratios: " + "; ".join(ratios) + ".")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument(
        "--json",
        default=os.path.join(WORK, "http_throughput.json"),
        help="where to write the results (default: %(default)s)",
    )
    parser.add_argument("--no-nginx", action="store_true")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("http_throughput: curl is not installed")
    size = args.size_mb * MB
    os.makedirs(WORK, exist_ok=True)
    path = makeFile(size)

    import twisted

    twistedVersion = twisted.__version__
    servers = [P2pd(), StaticFile()]
    versions = {
        "p2pd": p2pdVersion(),
        "static.File": f"(Twisted {twistedVersion})",
    }
    nginx = None if args.no_nginx else findNginx()
    if nginx is not None:
        server = Nginx(nginx)
        versions["nginx"] = server.version()
        servers.append(server)
    else:
        log("nginx is not installed: measuring p2pd and static.File only")

    started = time.monotonic()
    try:
        for server in servers:
            server.start()
            log(f"{server.name} listening on 127.0.0.1:{server.port}")
        summary = measure(servers, path, size, args.rounds)
    finally:
        for server in servers:
            server.stop()
    elapsed = time.monotonic() - started

    table = markdown(summary, size, args.rounds, versions)
    print(table)
    result = {
        "benchmark": "http_throughput",
        "title": "HTTP throughput",
        "file_MB": size // MB,
        "rounds": args.rounds,
        "range_bytes": MiB,
        "twisted": twistedVersion,
        "p2pd": versions["p2pd"],
        "nginx": versions.get("nginx"),
        "servers": summary,
        "ratios": {
            other: summary["p2pd"]["median_MBps"] / summary[other]["median_MBps"]
            for other in ("static.File", "nginx")
            if other in summary
        },
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)


if __name__ == "__main__":
    main()
