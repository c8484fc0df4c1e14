#!/usr/bin/env python3
"""
What TLS costs: one file from an origin to one client over spps:// against
spp://, side by side in the same run.

One origin (twistd p2pd -p DIR --tls-cert ... on 127.0.0.1, digests already
computed) serves a 200 MB page-cached file of random bytes both ways: plain
SPP and SPP over TLS share its port. For each measurement a new client node
(twistd p2pd -c EMPTYDIR --tls-ca CA on 127.0.0.2) is read through its
gateway with curl:

  spp    http://127.0.0.2:PORT/.spp/127.0.0.1:ORIGINPORT/bench.bin
  spps   http://127.0.0.2:PORT/.spps/127.0.0.1:ORIGINPORT/bench.bin

The certificate is made by the benchmark (a CA of its own, an ECDSA P-256
certificate for 127.0.0.1), and the client verifies it. Each round measures
both once, in a rotating order: the first MiB from a cold client node (TLS
handshake included), then a whole download (throughput, CPU seconds per GB
of the origin and the client).

    python3 benchmarks/tls.py [--rounds 5] [--size-mb 200] [--no-doc]
        [--json FILE]

Prints a table, writes the results as JSON (for scripts/bench) and, unless
--no-doc, its section of docs/performance.md. Needs curl.
"""

import argparse
import os
import shutil
import sys
import time

from common import ROOT, log, p2pdVersion, writeResult, writeSection
from spp_download import (
    CLIENT,
    DEFAULT_BLOCK,
    MB,
    NAME,
    ORIGIN,
    WORK,
    Node,
    P2pdContestant,
    makeFile,
    measureInTurn,
)

DOC = os.path.join(ROOT, "docs", "performance.md")
SCHEMES = ("spp", "spps")


class TLSNode(Node):
    """
    A node with extra options, read through the gateway of C{scheme}.
    """

    def __init__(self, name, interface, cacheDir, extra=(), scheme="spp", **kwargs):
        super().__init__(name, interface, cacheDir, **kwargs)
        self.extra = list(extra)
        self.scheme = scheme

    def command(self):
        return super().command() + self.extra

    def gatewayURL(self, origin, name=NAME):
        return (
            f"http://{self.interface}:{self.port}/.{self.scheme}/"
            f"{origin.interface}:{origin.port}/{name}"
        )


class SchemeContestant(P2pdContestant):
    """
    The shared origin read over C{scheme}, by a new client node each time.
    """

    def __init__(self, scheme, origin, caFile, path, size):
        super().__init__(DEFAULT_BLOCK, path, size)
        self.scheme = scheme
        self.label = f"{scheme}://"
        self.origin = origin
        self.caFile = caFile

    def start(self):
        pass  # the origin is shared, started once

    def stop(self):
        pass

    def client(self):
        self._clients += 1
        cacheDir = os.path.join(WORK, "client-cache", f"{self.scheme}-{self._clients}")
        shutil.rmtree(cacheDir, ignore_errors=True)
        return TLSNode(
            f"client-{self.scheme}",
            CLIENT,
            cacheDir,
            extra=["--tls-ca", self.caFile],
            scheme=self.scheme,
        )


def markdown(summary, args, size):
    spp, spps = summary["spp"], summary["spps"]
    lines = [
        f"{size // MB} MB file of random bytes, page-cached at one origin "
        f"(`twistd p2pd -p DIR --tls-cert ... --tls-key ...` on {ORIGIN}, "
        f"block size {DEFAULT_BLOCK}iB, digests computed before the first "
        "sample) serving plain SPP and SPP over TLS on one port; each sample "
        f"a new client node on {CLIENT} (`--tls-ca` the benchmark's CA, an "
        "ECDSA P-256 certificate for the origin's address, verified) read "
        "through its gateway with curl (`/.spp/...` or `/.spps/...`); "
        f"{args.rounds} rounds, each contestant once per round in a rotating "
        "order; medians. First byte = curl's `time_starttransfer` of a "
        "`curl -r 0-1048575` on a cold client (the client's connection to the "
        "origin, and over spps its TLS handshake, included); first MiB = that "
        "request's total. MB/s = 10^6 bytes/s over a whole download. CPU = "
        "user+system seconds per GB moved.",
        "",
        "| scheme | total s | MB/s | best MB/s | first byte ms | first MiB ms "
        "| origin CPU s/GB | client CPU s/GB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for scheme in SCHEMES:
        s = summary[scheme]
        lines.append(
            f"| `{scheme}://` | {s['median_total_s']:.2f} | {s['median_MBps']:.0f} "
            f"| {s['best_MBps']:.0f} | {s['median_first_byte_ms']:.1f} "
            f"| {s['median_first_MiB_ms']:.1f} | {s['origin_cpu_s_per_GB']:.2f} "
            f"| {s['client_cpu_s_per_GB']:.2f} |"
        )
    lines += [
        "",
        f"spps / spp: throughput **{spps['median_MBps'] / spp['median_MBps']:.2f}x**, "
        f"first byte **{spps['median_first_byte_ms'] / spp['median_first_byte_ms']:.2f}x** "
        f"(+{spps['median_first_byte_ms'] - spp['median_first_byte_ms']:.1f} ms), "
        f"first MiB {spps['median_first_MiB_ms'] / spp['median_first_MiB_ms']:.2f}x, "
        f"origin CPU per GB {spps['origin_cpu_s_per_GB'] / spp['origin_cpu_s_per_GB']:.2f}x, "
        f"client CPU per GB {spps['client_cpu_s_per_GB'] / spp['client_cpu_s_per_GB']:.2f}x.",
        "",
        "Load average (1, 5, 15 min) at the end of the run: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
        + ": on a shared 2-core machine the figures move with it.",
        "",
        f"Command: `python3 benchmarks/tls.py --rounds {args.rounds} "
        f"--size-mb {args.size_mb}`",
    ]
    return "\n".join(lines)


def makeCertificates(directory):
    """
    A CA of the benchmark's and a certificate for the origin's address.
    """
    sys.path.insert(0, ROOT)
    try:
        from tests.certs import CA
    finally:
        sys.path.remove(ROOT)
    shutil.rmtree(directory, ignore_errors=True)
    ca = CA(directory)
    return ca, ca.issue(ORIGIN)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", default=os.path.join(WORK, "tls.json"))
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("tls: curl is not installed")
    size = args.size_mb * MB
    os.makedirs(WORK, exist_ok=True)
    path = makeFile(size)
    ca, issued = makeCertificates(os.path.join(WORK, "tls-certs"))
    originCache = os.path.join(WORK, "origin-cache", "tls")
    shutil.rmtree(originCache, ignore_errors=True)
    origin = TLSNode(
        "origin-tls",
        ORIGIN,
        originCache,
        extra=["--tls-cert", issued.certFile, "--tls-key", issued.keyFile],
        public=os.path.dirname(path),
        blockSize=DEFAULT_BLOCK,
    )
    contestants = [
        SchemeContestant(s, origin, ca.certFile, path, size) for s in SCHEMES
    ]
    started = time.monotonic()
    try:
        origin.start()
        log(f"origin on {ORIGIN}:{origin.port}")
        for contestant in contestants:
            log(f"warm-up: {contestant.label}")
            contestant.warmUp()
        measureInTurn(contestants, args.rounds, path)
    finally:
        origin.stop()
    elapsed = time.monotonic() - started
    summary = {c.scheme: c.summary() for c in contestants}
    summary["versions"] = {"p2pd": p2pdVersion()}
    table = markdown(summary, args, size)
    print(table)
    result = {
        "benchmark": "tls",
        "title": "What TLS costs: spps against spp, origin to one client",
        "command": f"python3 benchmarks/tls.py --rounds {args.rounds} "
        f"--size-mb {args.size_mb}",
        "file_MB": size // MB,
        "rounds": args.rounds,
        "results": summary,
        "markdown": table,
    }
    writeResult(args.json, result, elapsed)
    if not args.no_doc:
        writeSection(DOC, result)


if __name__ == "__main__":
    main()
