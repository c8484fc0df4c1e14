"""
Helpers every benchmark uses: logging, the checkout's version, CPU time of
a process, how to run twistd, timed curl downloads, and writing a result
file.
"""

import datetime
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(message, file=sys.stderr, flush=True)


def relative(path):
    """
    A path as it may be shown or stored: relative to the checkout.
    """
    return os.path.relpath(path, ROOT)


def p2pdVersion():
    """
    The version of the checkout under test, with its commit when known.
    """
    sys.path.insert(0, ROOT)
    try:
        from p2pd import __version__
    finally:
        sys.path.remove(ROOT)
    commit = subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{__version__} ({commit})" if commit else __version__


def cpuSeconds(pid):
    """
    User plus system CPU seconds a process (all its threads) has used.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5), counted from the state (field 3) here.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def twistdCommand():
    """
    twistd of the Python running this benchmark.
    """
    sibling = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(sibling, os.X_OK):
        return [sibling]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def curl(url, byteRange=None, output=os.devnull, timeout=300):
    """
    One download: (time to first byte, total time, bytes, HTTP status).
    """
    command = [
        "curl",
        "-s",
        "--noproxy",
        "*",
        "-o",
        output,
        "-w",
        "%{time_starttransfer} %{time_total} %{size_download} %{http_code}",
    ]
    if byteRange is not None:
        command += ["-r", f"{byteRange[0]}-{byteRange[1] - 1}"]
    out = subprocess.run(
        command + [url], capture_output=True, text=True, timeout=timeout
    ).stdout
    ttfb, total, size, code = out.split()
    return float(ttfb), float(total), int(size), int(code)


def writeResult(path, result, elapsed):
    """
    Write a benchmark's C{result} as JSON to C{path}, which scripts/bench
    turns into docs/performance.md, with what every result records: when,
    how long, on which Python, and how busy the machine was.
    """
    result = {
        **result,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(elapsed, 1),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    log(f"wrote {relative(os.path.abspath(path))} ({elapsed:.0f} s)")
