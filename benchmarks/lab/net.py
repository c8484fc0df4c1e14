"""
The lab's network: one namespace per node, joined by a bridge that lives in
a namespace of its own (the switch), with a token bucket (tc tbf) on each
node's uplink and downlink.

Every name starts with the run's prefix, C{p2l} and the runner's process id
in six hex digits (C{p2l00a1b2-v3}), so that leftovers of a run whose runner
died can be found and removed (L{cleanup}) without touching another run's.
Addresses are in the benchmarking range 198.18.0.0/15 and exist only inside
these namespaces; the host's own namespace gets nothing.
"""

import os
import re
import signal
import subprocess
import time

PREFIX_PATTERN = re.compile(r"^p2l([0-9a-f]{6})-")
NETWORK_BITS = 15
# A FIFO at each bottleneck, as in a home router: how long a full queue
# takes to drain at the link's rate.
QUEUE_SECONDS = 0.2
# The smallest bucket tbf is given: a few full-size packets.
MIN_BURST = 16 * 1024


def prefixFor(pid):
    return f"p2l{pid:06x}"


def run(*command, namespace=None, check=True, env=None, cwd=None):
    """
    Run a command (in C{namespace}), returning its standard output.
    """
    argv = list(command)
    if namespace is not None:
        argv = ["ip", "netns", "exec", namespace] + argv
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def parseRate(text):
    """
    Bits per second from C{6M}, C{512K} or C{1.5M}.
    """
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", text.strip().upper())
    if match is None:
        raise ValueError(f"{text!r} is not a rate like 6M")
    return int(
        float(match.group(1))
        * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}[match.group(2)]
    )


def tbf(device, bitsPerSecond, namespace):
    """
    Shape C{device}'s egress to C{bitsPerSecond}, behind a FIFO holding
    L{QUEUE_SECONDS} of traffic.
    """
    bytesPerSecond = bitsPerSecond // 8
    burst = max(MIN_BURST, bytesPerSecond // 100)
    limit = burst + int(bytesPerSecond * QUEUE_SECONDS)
    run(
        "tc",
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "tbf",
        "rate",
        str(bitsPerSecond),
        "burst",
        str(burst),
        "limit",
        str(limit),
        namespace=namespace,
    )


def sentBytes(device, namespace):
    """
    Bytes the root qdisc of C{device} has sent, from C{tc -s qdisc}.
    """
    out = run("tc", "-s", "qdisc", "show", "dev", device, namespace=namespace)
    match = re.search(r"Sent (\d+) bytes", out)
    return int(match.group(1)) if match else 0


class Host:
    """
    One node of the lab: a namespace with one interface on the bridge.

    @ivar up: uplink in bits/s (shaped on the node's interface).
    @ivar down: downlink in bits/s (shaped on the switch's side).
    """

    def __init__(self, lab, name, address, up, down):
        self.lab = lab
        self.name = name
        self.namespace = f"{lab.prefix}-{name}"
        self.device = f"{lab.prefix}-{name}"
        self.switchPort = f"{lab.prefix}-{name}s"
        assert len(self.switchPort) <= 15, "interface names have 15 characters"
        self.address = address
        self.up = up
        self.down = down

    def create(self):
        ns = self.namespace
        run("ip", "netns", "add", ns)
        self.lab.namespaces.append(ns)
        sw = self.lab.switch
        run(
            "ip",
            "link",
            "add",
            self.device,
            "netns",
            ns,
            "type",
            "veth",
            "peer",
            "name",
            self.switchPort,
            "netns",
            sw,
        )
        run(
            "ip",
            "link",
            "set",
            self.switchPort,
            "master",
            self.lab.bridge,
            namespace=sw,
        )
        run("ip", "link", "set", self.switchPort, "up", namespace=sw)
        run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", namespace=ns)
        run("sysctl", "-qw", "net.ipv4.tcp_no_metrics_save=1", namespace=ns)
        run("ip", "link", "set", "lo", "up", namespace=ns)
        run(
            "ip",
            "addr",
            "add",
            f"{self.address}/{NETWORK_BITS}",
            "dev",
            self.device,
            namespace=ns,
        )
        run("ip", "link", "set", self.device, "up", namespace=ns)
        self.shape()

    def shape(self):
        tbf(self.device, self.up, self.namespace)
        tbf(self.switchPort, self.down, self.lab.switch)

    def uplinkBytes(self):
        return sentBytes(self.device, self.namespace)

    def downlinkBytes(self):
        return sentBytes(self.switchPort, self.lab.switch)

    def command(self, argv):
        """
        C{argv} run inside this node's namespace.
        """
        return ["ip", "netns", "exec", self.namespace] + list(argv)


class Lab:
    """
    The namespaces, links and processes of one run; L{close} removes them
    all, and is safe to call more than once.
    """

    def __init__(self, pid=None):
        self.prefix = prefixFor(os.getpid() if pid is None else pid)
        self.switch = f"{self.prefix}-switch"
        self.bridge = f"{self.prefix}-br"
        self.namespaces = []
        self.hosts = []
        self.processes = []

    def open(self):
        if os.geteuid() != 0:
            raise SystemExit("the lab makes network namespaces: run it as root")
        run("ip", "netns", "add", self.switch)
        self.namespaces.append(self.switch)
        run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", namespace=self.switch)
        run("ip", "link", "add", self.bridge, "type", "bridge", namespace=self.switch)
        run("ip", "link", "set", self.bridge, "up", namespace=self.switch)
        return self

    def add(self, name, address, up, down):
        host = Host(self, name, address, up, down)
        host.create()
        self.hosts.append(host)
        return host

    def spawn(self, host, argv, log, env=None, cwd=None):
        """
        Start C{argv} in C{host}'s namespace, in a process group of its own,
        its output to the file C{log}.
        """
        with open(log, "ab") as out:
            process = subprocess.Popen(
                host.command(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def close(self):
        # A second Ctrl-C must not leave half of the lab behind.
        previous = {
            n: signal.signal(n, signal.SIG_IGN)
            for n in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        try:
            for process in self.processes:
                stop(process)
            self.processes = []
            for namespace in reversed(self.namespaces):
                removeNamespace(namespace)
            self.namespaces = []
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def stop(process, timeout=10.0):
    """
    SIGTERM to the process group, SIGKILL if it is still there after
    C{timeout} seconds; waits for it.
    """
    if process.poll() is not None:
        return
    signalGroup(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        signalGroup(process.pid, signal.SIGKILL)
        process.wait()


def signalGroup(pid, number):
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        pass


def removeNamespace(namespace):
    """
    Kill what still runs in C{namespace}, then delete it (and with it its
    interfaces; a veth's peer goes too).
    """
    for attempt in range(50):
        pids = [
            int(p) for p in run("ip", "netns", "pids", namespace, check=False).split()
        ]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL if attempt else signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    run("ip", "netns", "delete", namespace, check=False)


def leftovers(everything=False):
    """
    Namespaces and host interfaces of lab runs whose runner is gone (or of
    every run, with C{everything}).
    """
    names = [
        line.split()[0]
        for line in run("ip", "netns", "list").splitlines()
        if line.strip()
    ]
    links = [
        line.split(":")[1].strip().split("@")[0]
        for line in run("ip", "-o", "link", "show").splitlines()
    ]

    def stale(name):
        match = PREFIX_PATTERN.match(name)
        if match is None:
            return False
        return everything or not os.path.exists(f"/proc/{int(match.group(1), 16)}")

    return [n for n in names if stale(n)], [n for n in links if stale(n)]


def cleanup(everything=False):
    """
    Remove the leftovers of lab runs: their processes, namespaces and links.
    """
    namespaces, links = leftovers(everything)
    for namespace in namespaces:
        removeNamespace(namespace)
    for link in links:
        run("ip", "link", "delete", link, check=False)
    return namespaces + links
