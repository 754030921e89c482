"""The broker's own cost, measured with MQTT clients that cost next to nothing, beside mosquitto.

    python benchmarks/bench_raw.py                       # every scenario, 5 interleaved rounds
    python benchmarks/bench_raw.py --rounds 7 --only connect,qos0
    python benchmarks/bench_raw.py --idle 10000 --only idle
    python benchmarks/bench_raw.py --fakebroker-loop asyncio,uvloop,trio   # one column per event loop

Both brokers run in their own processes (``fakebroker serve`` and ``mosquitto -c <a config written here>``) on
free loopback ports; the clients are raw sockets in this process, pre-encoded packets written in batches and
subscribers that count bytes (asyncio protocols), so that the broker, not the client library, sets the pace.
Scenarios run in rounds, each round once per broker with the order alternating, and the report gives the median
of each broker and the median of the per-round ratios (fakebroker / mosquitto; above 1 fakebroker is faster,
except for memory and start-up, where a ratio above 1 means fakebroker costs more). Rounds interleave so that
load from other processes on the machine hits both brokers alike; the load average is printed with the results.

Scenarios:
  connect  sequential TCP connect, CONNECT, CONNACK, DISCONNECT, close; connections per second
  qos0     one publisher -> one subscriber, QoS 0, 64-byte payloads; messages per second
  fanout   one publisher -> 100 subscribers of one topic, QoS 0; deliveries per second
  qos1     one publisher (QoS 1, PUBACKs) -> one subscriber (QoS 1, sends PUBACKs); messages per second
  idle     N idle connections: broker RSS before, with them open and after they closed; KiB per connection
  startup  process start until the MQTT port accepts a connection; milliseconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

# -- MQTT 3.1.1 packets, encoded by hand (independent of fakebroker's codec) ----------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect(client_id: str, keepalive: int = 0) -> bytes:
    return packet(0x10, _str("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive) + _str(client_id))


def subscribe(topic: str, qos: int, pid: int = 1) -> bytes:
    return packet(0x82, struct.pack("!H", pid) + _str(topic) + bytes([qos]))


def publish0(topic: str, payload: bytes) -> bytes:
    return packet(0x30, _str(topic) + payload)


def publish1_parts(topic: str, payload: bytes) -> tuple[bytes, bytes]:
    """(everything before the packet id, the payload) of a QoS 1 PUBLISH: a packet is head + pid + payload."""
    body_len = len(_str(topic)) + 2 + len(payload)
    return bytes([0x32]) + _varint(body_len) + _str(topic), payload


CONNACK = b"\x20\x02\x00\x00"
DISCONNECT = b"\xe0\x00"
SUBACK_LEN = 5
TOPIC = "bench/t"

# -- the brokers ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> float:
    """Poll until ``port`` accepts a connection; returns the monotonic time it first did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return time.monotonic()
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.args!r} did not listen on {port}") from None
            time.sleep(0.0005)


@dataclass
class Broker:
    name: str
    command: Callable[[int, str], list[str]]  # (port, scratch dir) -> argv
    env: dict[str, str] | None = None  # for the process, if not this one's
    cwd: str | None = None  # where it runs (``python -m`` looks for the package there first)


def mosquitto_cmd(port: int, tmp: str) -> list[str]:
    conf = os.path.join(tmp, f"mosquitto-{port}.conf")
    with open(conf, "w") as f:
        # No persistence and no queue limit: the default max_queued_messages (1000) drops QoS 1 messages for a
        # subscriber that lags, which fakebroker (as RabbitMQ) never does. max_inflight_messages 20 is
        # mosquitto's default, and fakebroker runs with --prefetch 20 to match it.
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                "max_inflight_messages 20\nlog_dest none\n")
    return ["mosquitto", "-c", conf]


def fakebroker_cmd(extra: Sequence[str]) -> Callable[[int, str], list[str]]:
    def cmd(port: int, tmp: str) -> list[str]:
        return [sys.executable, "-m", "fakebroker", "serve", "--mqtt-port", str(port), "--no-web-mqtt",
                *_other_listeners_off(), "--prefetch", "20", *extra]

    return cmd


def _other_listeners_off() -> list[str]:
    """--no-<listener> for every listener but MQTT, whichever protocols this fakebroker has."""
    from fakebroker.protocols import listener_specs

    return [f"--no-{spec.name.replace('_', '-')}" for spec in listener_specs() if spec.name not in ("mqtt", "web_mqtt")]


@contextlib.contextmanager
def running(broker: Broker, tmp: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(broker.command(port, tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=broker.env, cwd=broker.cwd)
    try:
        wait_port(port, proc)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# -- the clients ----------------------------------------------------------------------------------------------


def connect_loop(port: int, seconds: float) -> tuple[int, float]:
    """Sequential connect/CONNECT/CONNACK/DISCONNECT/close for ``seconds``; (connections, seconds taken)."""
    addr = ("127.0.0.1", port)
    packets = [connect(f"c{i}") for i in range(64)]
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        s = socket.create_connection(addr)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(packets[n & 63])
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                raise RuntimeError("connection closed before CONNACK")
            got += chunk
        if got != CONNACK:
            raise RuntimeError(f"unexpected CONNACK {got!r}")
        s.sendall(DISCONNECT)
        s.close()
        n += 1
        if n % 16 == 0 and time.perf_counter() >= end:
            return n, time.perf_counter() - start


class Counter(asyncio.Protocol):
    """Counts the bytes a connection receives; ``on_data`` runs after each read."""

    def __init__(self, on_data: Callable[[], None], tally: list[int] | None = None) -> None:
        self.received = 0
        self.on_data = on_data
        self.tally = tally if tally is not None else [0]  # bytes received, shared by a group of counters
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.tally[0] += len(data)
        self.on_data()


class Qos1Subscriber(asyncio.Protocol):
    """Receives QoS 1 PUBLISHes of one known size and acknowledges each (one write per read)."""

    def __init__(self, size: int, pid_offset: int, on_data: Callable[[], None]) -> None:
        self.size, self.pid_offset, self.on_data = size, pid_offset, on_data
        self.buf = b""
        self.messages = 0
        self.ready = False  # CONNACK and SUBACK read
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.ready:
            if len(buf) < 4 + SUBACK_LEN:
                self.buf = buf
                return
            buf = buf[4 + SUBACK_LEN:]
            self.ready = True
        size, off = self.size, self.pid_offset
        whole = len(buf) // size
        if whole:
            acks = []
            for i in range(0, whole * size, size):
                if buf[i] & 0xF6 != 0x32:  # a QoS 1 PUBLISH (dup/retain bits aside)
                    raise RuntimeError(f"unexpected packet 0x{buf[i]:02x} in the QoS 1 stream")
                acks.append(b"\x40\x02" + buf[i + off:i + off + 2])
            assert self.transport is not None
            self.transport.write(b"".join(acks))
            self.messages += whole
            buf = buf[whole * size:]
        self.buf = buf
        self.on_data()


async def _open(port: int, protocol: asyncio.Protocol, first: bytes) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport.write(first)


async def _until(predicate: Callable[[], bool], progress: asyncio.Event, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RuntimeError("the broker stopped delivering") from None


async def qos0(port: int, count: int, subscribers: int, payload: bytes, tag: str) -> tuple[int, float]:
    """QoS 0 from one publisher to ``subscribers`` subscribers; (deliveries, seconds taken)."""
    progress = asyncio.Event()
    pub_packet = publish0(TOPIC, payload)
    size = len(pub_packet)
    tally = [0]
    subs = [Counter(progress.set, tally) for _ in range(subscribers)]
    for i, sub in enumerate(subs):
        await _open(port, sub, connect(f"{tag}-s{i}") + subscribe("bench/#", 0))
    await _until(lambda: all(s.received >= 4 + SUBACK_LEN for s in subs), progress)
    pub = Counter(progress.set)
    await _open(port, pub, connect(f"{tag}-p"))
    await _until(lambda: pub.received >= 4, progress)
    assert pub.transport is not None
    head = 4 + SUBACK_LEN
    total = count * subscribers
    batch = 100
    window = max(2000, 2 * batch) * subscribers  # deliveries in flight at most: no broker has to drop any

    def delivered() -> int:
        return (tally[0] - head * subscribers) // size

    sent = 0
    start = time.perf_counter()
    while sent < count:
        await _until(functools.partial(lambda s: s * subscribers - delivered() < window, sent), progress)
        n = min(batch, count - sent)
        pub.transport.write(pub_packet * n)
        sent += n
    await _until(lambda: delivered() >= total, progress)
    elapsed = time.perf_counter() - start
    for c in (pub, *subs):
        assert c.transport is not None
        c.transport.write(DISCONNECT)
        c.transport.close()
    if delivered() != total:
        raise RuntimeError(f"{delivered()} deliveries, expected {total}")
    return total, elapsed


async def qos1(port: int, count: int, payload: bytes, tag: str) -> tuple[int, float]:
    """QoS 1 one publisher -> one subscriber, both sides acknowledging; (messages, seconds taken)."""
    progress = asyncio.Event()
    head, body = publish1_parts(TOPIC, payload)
    size = len(head) + 2 + len(body)
    sub = Qos1Subscriber(size, len(head), progress.set)
    await _open(port, sub, connect(f"{tag}-s") + subscribe("bench/#", 1))
    await _until(lambda: sub.ready, progress)
    pub = Counter(progress.set)
    await _open(port, pub, connect(f"{tag}-p"))
    await _until(lambda: pub.received >= 4, progress)
    assert pub.transport is not None
    window, batch = 200, 50  # PUBLISHes awaiting their PUBACK at most; sent per write

    def acked() -> int:
        return (pub.received - 4) // 4

    sent = 0
    start = time.perf_counter()
    while sent < count:
        await _until(functools.partial(lambda s: s - acked() <= window - batch, sent), progress)
        n = min(batch, count - sent)
        pub.transport.write(b"".join(head + struct.pack("!H", (sent + i) % 65535 + 1) + body for i in range(n)))
        sent += n
    await _until(lambda: sub.messages >= count and acked() >= count, progress)
    elapsed = time.perf_counter() - start
    for c in (pub, sub):
        assert c.transport is not None
        c.transport.write(DISCONNECT)
        c.transport.close()
    if sub.messages != count:
        raise RuntimeError(f"{sub.messages} messages, expected {count}")
    return count, elapsed


def idle(port: int, pid: int, n: int) -> tuple[float, float, float]:
    """Open ``n`` idle MQTT connections; the broker's RSS in KiB (before, open, after close)."""
    time.sleep(0.3)
    before = rss_kib(pid)
    socks = []
    addr = ("127.0.0.1", port)
    try:
        for start in range(0, n, 100):
            group = [socket.create_connection(addr) for _ in range(min(100, n - start))]
            for i, s in enumerate(group):
                s.sendall(connect(f"idle-{start + i}"))
            for s in group:
                got = b""
                while len(got) < 4:
                    chunk = s.recv(4 - len(got))
                    if not chunk:
                        raise RuntimeError("idle connection closed before CONNACK")
                    got += chunk
            socks.extend(group)
        time.sleep(0.5)
        opened = rss_kib(pid)
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.sendall(DISCONNECT)
            s.close()
    time.sleep(1.5)
    return before, opened, rss_kib(pid)


def startup(command: list[str], port: int, mqtt: bool = True, env: dict[str, str] | None = None,
            cwd: str | None = None) -> tuple[float, float]:
    """Milliseconds from starting the process until its port accepts a TCP connection, and until it answers a
    CONNECT with a CONNACK (``mqtt``)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    try:
        accepted = (wait_port(port, proc) - t0) * 1000
        if not mqtt:
            return accepted, accepted
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(connect("startup"))
            if s.recv(4) != CONNACK:
                raise RuntimeError("no CONNACK")
        return accepted, (time.monotonic() - t0) * 1000
    finally:
        proc.terminate()
        proc.wait(10)


#: The floor for any Python server: an interpreter that binds, listens and does nothing else.
PYTHON_FLOOR = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
                "s.listen(); time.sleep(60)")


# -- rounds and the report ------------------------------------------------------------------------------------


@dataclass
class Figure:
    title: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)


def interleave(brokers: list[Broker], rounds: int) -> Iterator[tuple[int, Broker]]:
    for r in range(rounds):
        for b in brokers if r % 2 == 0 else list(reversed(brokers)):
            yield r, b


def run(args: argparse.Namespace, brokers: list[Broker], tmp: str) -> list[Figure]:
    only = set(args.only.split(","))
    payload = os.urandom(args.payload)
    figures: list[Figure] = []

    def fig(title: str, unit: str, higher: bool) -> Figure:
        f = Figure(title, unit, higher, {b.name: [] for b in brokers})
        figures.append(f)
        return f

    scenarios: list[tuple[str, str, str, Callable[[int, str], tuple[int, float]]]] = [
        ("connect", "sequential connect + CONNACK + DISCONNECT", "conn",
         lambda port, tag: connect_loop(port, args.seconds)),
        ("qos0", f"QoS 0, {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(qos0(port, args.messages, 1, payload, tag + "q0"))),
        ("fanout", f"QoS 0 fan-out 1 -> {args.fanout}", "delivery",
         lambda port, tag: asyncio.run(qos0(port, max(1, args.messages * 5 // args.fanout), args.fanout, payload,
                                            tag + "fan"))),
        ("qos1", f"QoS 1 with PUBACKs, {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(qos1(port, args.messages // 2, payload, tag + "q1"))),
    ]
    chosen = [(fig(title, f"{unit}/s", True), fig(f"  broker CPU per {unit}", "µs", False), fn)
              for key, title, unit, fn in scenarios if key in only]
    if chosen:
        with contextlib.ExitStack() as stack:
            started = {b.name: stack.enter_context(running(b, tmp)) for b in brokers}
            for r, b in interleave(brokers, args.rounds):
                port, proc = started[b.name]
                for rate, cost, fn in chosen:
                    cpu0 = cpu_seconds(proc.pid)
                    ops, seconds = fn(port, f"r{r}")
                    rate.values[b.name].append(ops / seconds)
                    cost.values[b.name].append((cpu_seconds(proc.pid) - cpu0) / ops * 1e6)
                print(f"  round {r + 1} {b.name}: done", file=sys.stderr, flush=True)
    if "idle" in only:
        per = fig(f"extra RSS per idle connection, {args.idle:,} open", "KiB", False)
        kept = fig("RSS not returned after they closed, per connection", "KiB", False)
        total = fig(f"RSS with {args.idle:,} idle connections", "MB", False)
        for _, b in interleave(brokers, max(1, args.rounds // 2)):
            with running(b, tmp) as (port, proc):
                before, opened, after = idle(port, proc.pid, args.idle)
            per.values[b.name].append((opened - before) / args.idle)
            kept.values[b.name].append(max(0.0, after - before) / args.idle)
            total.values[b.name].append(opened / 1024)
    if "startup" in only:
        f_start = fig("process start until the port accepts", "ms", False)
        f_ack = fig("process start until the first CONNACK", "ms", False)
        floor: list[float] = []
        for _ in range(3):
            for _, b in interleave(brokers, args.rounds):
                port = free_port()
                accepted, acked = startup(b.command(port, tmp), port, env=b.env, cwd=b.cwd)
                f_start.values[b.name].append(accepted)
                f_ack.values[b.name].append(acked)
                port = free_port()
                floor.append(startup([sys.executable, "-c", PYTHON_FLOOR, str(port)], port, mqtt=False)[0])
        print(f"python floor (an interpreter that only binds and listens): median {statistics.median(floor):.1f} ms, "
              f"best {min(floor):.1f} ms", flush=True)
        for b in brokers:
            print(f"{b.name}: best {min(f_start.values[b.name]):.1f} ms until it accepts, "
                  f"{min(f_ack.values[b.name]):.1f} ms until the first CONNACK", flush=True)
    return figures


def report(figures: list[Figure], brokers: list[Broker], rounds: int, load: tuple[float, float]) -> str:
    base = brokers[-1].name  # mosquitto
    names = [b.name for b in brokers]
    header = f"| figure | {' | '.join(names)} | " + " | ".join(f"{n} / {base}" for n in names[:-1]) + " |"
    lines = [f"medians of {rounds} interleaved rounds; load average {load[0]:.2f} before, {load[1]:.2f} after",
             header, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for f in figures:
        cells = [f"{statistics.median(f.values[n]):,.1f} {f.unit}" if f.values[n] else "-" for n in names]
        ratios = []
        for n in names[:-1]:
            pairs = list(zip(f.values[n], f.values[base], strict=True))
            ratios.append(f"{statistics.median(a / b for a, b in pairs if b):.2f}" if pairs else "-")
        lines.append(f"| {f.title} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="connect,qos0,fanout,qos1,idle,startup")
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one connect-loop run")
    parser.add_argument("--messages", type=int, default=50_000, help="QoS 0 messages per run (QoS 1: half)")
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--idle", type=int, default=5_000, help="idle connections")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run the fakebroker of another checkout (e.g. a worktree of an older commit), "
                             "from its source tree, with its default event loop")
    parser.add_argument("--fakebroker-loop", default="",
                        help="comma-separated event loops for `fakebroker serve --loop` (one column each); "
                             "default: what `fakebroker serve` picks")
    args = parser.parse_args()
    if not shutil.which("mosquitto"):
        raise SystemExit("mosquitto is not on PATH: `apt-get install -y mosquitto`")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, args.idle + 1000):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the brokers inherit it
    loops = [x for x in args.fakebroker_loop.split(",") if x]
    brokers = [Broker(f"fakebroker ({loop})", fakebroker_cmd(["--loop", loop])) for loop in loops] or [
        Broker("fakebroker", fakebroker_cmd([]))]
    if args.baseline:
        checkout = os.path.abspath(args.baseline)
        brokers.insert(0, Broker("baseline", fakebroker_cmd([]), {**os.environ, "PYTHONPATH": checkout}, checkout))
    brokers.append(Broker("mosquitto", mosquitto_cmd))
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args, brokers, tmp)
    print(report(figures, brokers, args.rounds, (load0, os.getloadavg()[0])), flush=True)


if __name__ == "__main__":
    main()
