"""
The network lab: p2pd, plain HTTP and libtorrent streaming to viewers on
shaped links, each node a network namespace (root only).

    python3 -m benchmarks.lab run SCENARIO [--quick] [options]
    python3 -m benchmarks.lab list
    python3 -m benchmarks.lab check       # is the shaping what it says?
    python3 -m benchmarks.lab cleanup [--all]

See benchmarks/README.md.
"""

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from benchmarks.common import ROOT, log, relative
from benchmarks.lab import net, report, run, scenarios

RESULTS = os.path.join(ROOT, "benchmarks", "work", "lab", "results")
# How long the shaping check sends, per direction.
CHECK_SECONDS = 4.0

RECEIVER = """
import socket, sys, time
server = socket.create_server((sys.argv[1], 5001))
conn, _ = server.accept()
total, first = 0, None
while data := conn.recv(65536):
    if first is None:
        first = time.monotonic()
    total += len(data)
print(total * 8 / (time.monotonic() - first) / 1e6)
"""

SENDER = """
import socket, sys, time
for attempt in range(100):
    try:
        conn = socket.create_connection((sys.argv[1], 5001))
        break
    except OSError:
        time.sleep(0.05)
end = time.monotonic() + float(sys.argv[2])
chunk = bytes(65536)
while time.monotonic() < end:
    conn.sendall(chunk)
conn.close()
"""


def interrupt(number, frame):
    raise KeyboardInterrupt(f"signal {number}")


def check():
    """
    Measure one transfer through an uplink and one through a downlink.
    """
    lab = net.Lab()
    try:
        lab.open()
        a = lab.add("a", "198.18.0.1", 12 * 10**6, 40 * 10**6)
        b = lab.add("b", "198.18.0.2", 100 * 10**6, 100 * 10**6)
        for sender, receiver, limit, what in [
            (a, b, a.up, "a's uplink"),
            (b, a, a.down, "a's downlink"),
        ]:
            receiving = subprocess.Popen(
                receiver.command([sys.executable, "-c", RECEIVER, receiver.address]),
                stdout=subprocess.PIPE,
                text=True,
            )
            lab.processes.append(receiving)
            before = sender.uplinkBytes()
            started = time.monotonic()
            net.run(
                *sender.command(
                    [sys.executable, "-c", SENDER, receiver.address, str(CHECK_SECONDS)]
                )
            )
            wire = (sender.uplinkBytes() - before) * 8 / (time.monotonic() - started)
            goodput = float(receiving.communicate(timeout=30)[0])
            print(
                f"{what}, tbf at {limit / 1e6:g} Mbit/s: TCP goodput "
                f"{goodput:.2f} Mbit/s over {CHECK_SECONDS:g} s "
                f"({goodput / (limit / 1e6):.0%}); the sender's qdisc sent "
                f"{wire / 1e6:.2f} Mbit/s"
            )
    finally:
        lab.close()


def commandLine(args):
    words = ["python3", "-m", "benchmarks.lab", "run", args.scenario]
    for option in ("viewers", "play", "stagger"):
        value = getattr(args, option)
        if value is not None:
            words += [f"--{option}", f"{value:g}"]
    if args.rounds != 1:
        words += ["--rounds", str(args.rounds)]
    if args.quick:
        words.append("--quick")
    if args.contestants != ",".join(run.CONTESTANTS):
        words += ["--contestants", args.contestants]
    if args.synthetic:
        words.append("--synthetic")
    if args.mpv:
        words.append("--mpv")
    return " ".join(words)


def runCommand(args):
    scenario = scenarios.PRESETS[args.scenario]
    if args.quick:
        if args.write_docs:
            raise SystemExit(
                "a --quick run is a smoke test: its figures stay out of the docs"
            )
        scenario = scenarios.quick(scenario)
    overrides = {
        k: getattr(args, k)
        for k in ("viewers", "play", "stagger")
        if getattr(args, k) is not None
    }
    scenario = dataclasses.replace(scenario, **overrides)
    contestants = [c for c in args.contestants.split(",") if c]
    if args.mpv and "libtorrent" in contestants:
        contestants.remove("libtorrent")
    for c in contestants:
        if c not in run.CONTESTANTS:
            raise SystemExit(f"unknown contestant {c!r}: {', '.join(run.CONTESTANTS)}")
    started = time.monotonic()
    outcome = run.runScenario(
        scenario, contestants, args.synthetic, mpv=args.mpv, rounds=args.rounds
    )
    log(f"{scenario.name}: {time.monotonic() - started:.0f} s")
    print(report.terminal(outcome))
    os.makedirs(RESULTS, exist_ok=True)
    stem = scenario.name + ("-quick" if args.quick else "")
    path = os.path.join(RESULTS, f"{stem}.json")
    with open(path, "w") as f:
        json.dump(
            {
                **outcome,
                "scenario": dataclasses.asdict(scenario),
                "command": commandLine(args),
            },
            f,
        )
    log(f"wrote {relative(path)}")
    picture = os.path.join(
        report.PICTURES if args.write_docs else RESULTS, f"{stem}.png"
    )
    report.picture(outcome, picture)
    log(f"wrote {relative(picture)}")
    if args.write_docs:
        report.writeDoc(outcome, report.markdown(outcome, commandLine(args), picture))
        log(f"wrote the {scenario.name} figures into {relative(report.DOC)}")


def main():
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.lab",
        description="p2pd, plain HTTP and libtorrent streaming to viewers on "
        "shaped links, each node in its own network namespace (root only).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    runs = commands.add_parser("run", help="run one scenario with every contestant")
    runs.add_argument("scenario", choices=sorted(scenarios.PRESETS))
    runs.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: at most 4 viewers, 20 s played",
    )
    runs.add_argument("--viewers", type=int, help="override the number of viewers")
    runs.add_argument("--play", type=float, help="override the seconds played")
    runs.add_argument(
        "--stagger", type=float, help="override the seconds between arrivals"
    )
    runs.add_argument(
        "--contestants",
        default=",".join(run.CONTESTANTS),
        help="comma-separated, from %(default)s",
    )
    runs.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every contestant this many times, in a rotating order",
    )
    runs.add_argument(
        "--synthetic",
        action="store_true",
        help="random bytes instead of an MPEG-TS made with ffmpeg",
    )
    runs.add_argument(
        "--mpv",
        action="store_true",
        help="real players: mpv at real-time speed for http and p2pd "
        "(libtorrent is left out)",
    )
    runs.add_argument(
        "--write-docs",
        action="store_true",
        help="write the figures into docs/performance.md and the "
        "picture into docs/lab/",
    )
    commands.add_parser("list", help="the scenarios")
    commands.add_parser(
        "check",
        help="measure the shaping with one TCP transfer "
        "through an uplink and one through a downlink",
    )
    cleanups = commands.add_parser(
        "cleanup",
        help="remove what runs whose runner "
        "died left behind (namespaces, links, processes)",
    )
    cleanups.add_argument(
        "--all", action="store_true", help="also those of runs still going"
    )
    args = parser.parse_args()
    if args.command == "list":
        for name, s in scenarios.PRESETS.items():
            print(f"{name:12} {s.summary}")
        return
    if os.geteuid() != 0:
        raise SystemExit("the lab makes network namespaces: run it as root")
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, interrupt)
    if args.command == "cleanup":
        for name in net.cleanup(args.all):
            print(f"removed {name}")
    elif args.command == "check":
        check()
    else:
        runCommand(args)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as e:
        # The lab is gone by now: Lab.close ran on the way out.
        sys.exit(f"interrupted ({e}); everything the run made is removed")
