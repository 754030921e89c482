"""What the raw-socket benchmarks (``bench_raw.py``, ``bench_raw_stomp.py``, ``bench_raw_amqp.py``) share.

Brokers in their own processes (or one already running, such as a RabbitMQ node), their CPU time read from
``/proc``, clients that cost next to nothing (blocking sockets for connection loops, asyncio protocols that count
what they receive, publishers that write pre-encoded frames in batches within a window), scenarios run in
interleaved rounds and the report of medians and per-round ratios against the last broker, the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: A scenario: (port, a tag unique to the round) -> (operations, seconds they took).
Scenario = Callable[[int, str], tuple[int, float]]

# -- the brokers ----------------------------------------------------------------------------------------------


#: This run's mark in queue and exchange names, so that an earlier run's leftovers never meet it.
RUN = f"{os.getpid()}-{int(time.time()) % 100_000}"
#: The guest user's credentials for a management API.
AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()


def management(port: int, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    """One management API request on 127.0.0.1 as guest: (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


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
    command: Callable[[int, str], list[str]] | None  # (port, scratch dir) -> argv; None: ``port`` already listens
    env: dict[str, str] | None = None  # for the process, if not this one's
    cwd: str | None = None  # where it runs (``python -m`` looks for the package there first)
    port: int | None = None  # of a broker that runs already (its CPU is that of the process listening there)


def fakebroker_cmd(listener: str, extra: Sequence[str] = ()) -> Callable[[int, str], list[str]]:
    """``fakebroker serve`` with ``listener`` (``mqtt``, ``stomp``, ``amqp``) on the port and no other listener."""

    def cmd(port: int, tmp: str) -> list[str]:
        from fakebroker.protocols import listener_specs

        others = [f"--no-{spec.name.replace('_', '-')}" for spec in listener_specs() if spec.name != listener]
        return [sys.executable, "-m", "fakebroker", "serve", f"--{listener}-port", str(port), *others, *extra]

    return cmd


@contextlib.contextmanager
def running(broker: Broker, tmp: str) -> Iterator[tuple[int, int]]:
    """Start the broker (unless it runs already); (port, pid of the broker's process)."""
    if broker.command is None:
        assert broker.port is not None
        yield broker.port, listening_pid(broker.port)
        return
    port = free_port()
    proc = subprocess.Popen(broker.command(port, tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=broker.env, cwd=broker.cwd)
    try:
        wait_port(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def listening_pid(port: int) -> int:
    """The process with a socket listening on TCP ``port`` (from /proc/net/tcp and the processes' fds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(f"socket:[{cols[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return int(pid)
    raise RuntimeError(f"no process on this machine listens on port {port} (or it is not ours to see)")


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


# -- blocking clients -----------------------------------------------------------------------------------------


def dial(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


class Reader:
    """A blocking socket with a receive buffer: read an exact count, or up to a marker."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError(f"the broker closed the connection; last bytes {self.buf[-200:]!r}")
        self.buf += chunk

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker``."""
        while (i := self.buf.find(marker)) < 0:
            self._more()
        i += len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out


def connect_loop(port: int, seconds: float, converse: Callable[[Reader, int], None]) -> tuple[int, float]:
    """Sequential TCP connect, ``converse(reader, n)`` (the protocol's opening and closing), close, for
    ``seconds``; (connections, seconds taken)."""
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        reader = Reader(dial(port))
        converse(reader, n)
        reader.sock.close()
        n += 1
        if n % 16 == 0 and time.perf_counter() >= end:
            return n, time.perf_counter() - start


# -- asyncio clients ------------------------------------------------------------------------------------------


class Peer(asyncio.Protocol):
    """A client connection whose ``on_data`` runs after each read; ``lost`` once the broker closed it."""

    def __init__(self, on_data: Callable[[], None]) -> None:
        self.on_data = on_data
        self.lost = False
        self.error: str | None = None  # what was wrong with what the broker sent
        self.transport: asyncio.Transport | None = None
        self.pending = b""  # read before the connection was handed over (``adopt``)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.pending:  # before the loop reads anything more from the socket
            self.data_received(self.pending)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.on_data()

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def fail(self, error: str) -> None:
        """Stop on something the broker should not have sent; ``until`` raises it."""
        self.error = error
        assert self.transport is not None
        self.transport.close()
        self.on_data()

    def close(self, last: bytes = b"") -> None:
        assert self.transport is not None
        self.transport.write(last)
        self.transport.close()


class Counter(Peer):
    """Counts the bytes a connection receives (or, with ``marker``, how often the marker occurs in them: a
    frame terminator that no payload contains)."""

    def __init__(self, on_data: Callable[[], None], tally: list[int] | None = None,
                 marker: bytes | None = None) -> None:
        super().__init__(on_data)
        self.received = 0
        self.marker = marker
        self.tally = tally if tally is not None else [0]  # what a group of counters received

    def data_received(self, data: bytes) -> None:
        n = len(data) if self.marker is None else data.count(self.marker)
        self.received += n
        self.tally[0] += n
        self.on_data()


async def open_conn(port: int, protocol: asyncio.Protocol, first: bytes) -> None:
    """Connect ``protocol`` to the broker and write ``first``."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport.write(first)


async def adopt(reader: Reader, protocol: Peer) -> None:
    """Hand a connection opened with blocking calls to ``protocol``; what the reader has buffered is fed to it."""
    reader.sock.setblocking(False)
    protocol.pending = reader.buf
    await asyncio.get_running_loop().create_connection(lambda: protocol, sock=reader.sock)


async def until(predicate: Callable[[], bool], progress: asyncio.Event, watch: Sequence[Peer] = (),
                timeout: float = 30.0) -> None:
    """Wait until ``predicate()``; fail if no progress for ``timeout`` or the broker closes a watched peer."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in watch:
            if p.error or p.lost:
                raise RuntimeError(p.error or "the broker closed a connection")
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RuntimeError("the broker stopped delivering") from None


async def pump(write: Callable[[int, int], None], count: int, batch: int, in_flight: Callable[[int], int],
               limit: int, progress: asyncio.Event, watch: Sequence[Peer] = ()) -> None:
    """Write ``count`` messages as ``write(first, n)`` batches of ``batch``, each once ``in_flight(sent)``
    (sent but not yet delivered or acknowledged) is below ``limit``: no broker has to drop or buffer much."""
    sent = 0

    def room() -> bool:
        return in_flight(sent) < limit

    while sent < count:
        await until(room, progress, watch)
        n = min(batch, count - sent)
        write(sent, n)
        sent += n


async def stream(write: Callable[[int, int], None], count: int, batch: int, in_flight: Callable[[int], int],
                 limit: int, done: Callable[[], bool], progress: asyncio.Event, watch: Sequence[Peer]) -> float:
    """``pump``, then wait until ``done()``; the seconds from the first write until then."""
    start = time.perf_counter()
    await pump(write, count, batch, in_flight, limit, progress, watch)
    await until(done, progress, watch)
    return time.perf_counter() - start


async def fan_out(pub: Peer, subs: Sequence[Peer], frame: bytes, count: int, delivered: Callable[[], int],
                  goodbye: bytes, progress: asyncio.Event, watch: Sequence[Peer]) -> float:
    """``frame`` ``count`` times from ``pub`` in writes of 100, each subscriber getting every one, at most 2,000
    deliveries per subscriber in flight (no broker has to drop any), until ``delivered()`` counts them all; then
    every peer says ``goodbye``. The seconds it took."""
    n = len(subs)
    total = count * n
    elapsed = await stream(lambda first, k: pub.write(frame * k), count, 100, lambda sent: sent * n - delivered(),
                           2000 * n, lambda: delivered() >= total, progress, watch)
    for c in (pub, *subs):
        c.close(goodbye)
    return elapsed


async def acknowledged(pub: Peer, sub: Any, write: Callable[[int, int], None], count: int, acked: Callable[[], int],
                       goodbye: bytes, progress: asyncio.Event, names: tuple[str, str]) -> float:
    """``count`` messages from ``pub`` (``write(first, n)``) in writes of 50, at most 200 awaiting their
    acknowledgement (``acked()`` so far), until ``sub`` has them all and every one is acknowledged; then both say
    ``goodbye`` and the counts are checked (``names``: what the subscriber and the acknowledgements are called).
    The seconds it took."""
    window, batch = 200, 50
    elapsed = await stream(write, count, batch, lambda sent: sent - acked(), window - batch + 1,
                           lambda: sub.messages >= count and acked() >= count, progress, (pub, sub))
    for c in (pub, sub):
        c.close(goodbye)
    check_count(names[0], sub.messages, count)
    check_count(names[1], acked(), count)
    return elapsed


def check_count(what: str, got: int, expected: int) -> None:
    """Fail loudly unless the receivers got exactly what was sent: no loss, no duplicates."""
    if got != expected:
        raise RuntimeError(f"{got} {what}, expected {expected}")


def payload_text(size: int) -> bytes:
    """A payload of ASCII letters: no NUL (STOMP's frame end), no line break (its header lines)."""
    return bytes(random.choices(range(ord("a"), ord("z") + 1), k=size))


# -- rounds and the report ------------------------------------------------------------------------------------


@dataclass
class Figure:
    title: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)


def figure(title: str, unit: str, brokers: list[Broker]) -> Figure:
    """A figure with an empty list of values for each broker."""
    return Figure(title, unit, {b.name: [] for b in brokers})


def interleave(brokers: list[Broker], rounds: int) -> Iterator[tuple[int, Broker]]:
    for r in range(rounds):
        for b in brokers if r % 2 == 0 else list(reversed(brokers)):
            yield r, b


Measured = tuple[Figure, Figure, Figure, Scenario]


def rate_figures(brokers: list[Broker], scenarios: Sequence[tuple[str, str, str, Scenario]],
                 only: set[str]) -> list[Measured]:
    """For each chosen (key, title, unit, scenario): figures of the rate, the broker's CPU per operation and the
    clients' (this process's) CPU per operation, and the scenario. The clients' figure shows whether a rate is
    held back by CPU or by the two sides waiting for each other."""
    chosen = []
    for key, title, unit, fn in scenarios:
        if key in only:
            chosen.append((figure(title, f"{unit}/s", brokers), figure(f"  broker CPU per {unit}", "µs", brokers),
                           figure(f"  clients' CPU per {unit}", "µs", brokers), fn))
    return chosen


def run_scenarios(brokers: list[Broker], tmp: str, scenarios: Sequence[tuple[str, str, str, Scenario]],
                  only: set[str], rounds: int) -> list[Figure]:
    """Start the brokers, run the chosen scenarios in interleaved rounds; the figures (rate, CPU per op)."""
    chosen = rate_figures(brokers, scenarios, only)
    if chosen:
        with contextlib.ExitStack() as stack:
            started = {b.name: stack.enter_context(running(b, tmp)) for b in brokers}
            measure(brokers, started, chosen, rounds)
    return [f for rate, cost, clients, _ in chosen for f in (rate, cost, clients)]


def measure(brokers: list[Broker], started: Mapping[str, tuple[int, int]], chosen: Sequence[Measured],
            rounds: int) -> None:
    """Run every chosen scenario on every broker (``started``: name -> (port, pid)) in interleaved rounds."""
    for r, b in interleave(brokers, rounds):
        port, pid = started[b.name]
        for rate, cost, clients, fn in chosen:
            cpu0, own0 = cpu_seconds(pid), time.process_time()
            ops, seconds = fn(port, f"r{r}")
            rate.values[b.name].append(ops / seconds)
            cost.values[b.name].append((cpu_seconds(pid) - cpu0) / ops * 1e6)
            clients.values[b.name].append((time.process_time() - own0) / ops * 1e6)
        print(f"  round {r + 1} {b.name}: done", file=sys.stderr, flush=True)


def report(figures: list[Figure], brokers: list[Broker], rounds: int, load: tuple[float, float]) -> str:
    """A markdown table: each broker's median, and the median per-round ratio of each to the last broker."""
    base = brokers[-1].name
    names = [b.name for b in brokers]
    header = f"| figure | {' | '.join(names)} | " + " | ".join(f"{n} / {base}" for n in names[:-1]) + " |"
    lines = [f"medians of {rounds} interleaved rounds; load average {load[0]:.2f} before, {load[1]:.2f} after",
             header, "|" + "---|" * (1 + 2 * len(names) - 1)]
    for f in figures:
        cells = [f"{statistics.median(f.values[n]):,.1f} {f.unit}" if f.values[n] else "-" for n in names]
        ratios = []
        for n in names[:-1]:
            # A reference figure that rounds to nothing (memory not grown) makes no ratio worth printing.
            pairs = [(a, b) for a, b in zip(f.values[n], f.values[base], strict=True) if b >= 0.05]
            ratios.append(f"{statistics.median(a / b for a, b in pairs):.2f}" if pairs else "-")
        lines.append(f"| {f.title} | {' | '.join(cells)} | {' | '.join(ratios)} |")
    return "\n".join(lines)


def arguments(doc: str, only: str, messages: int) -> argparse.ArgumentParser:
    """The options every raw benchmark has."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default=only)
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one connect-loop run")
    parser.add_argument("--messages", type=int, default=messages,
                        help="messages per one-to-one run (fan-out: 5x as many deliveries; with acks: half)")
    parser.add_argument("--fanout", type=int, default=100)
    parser.add_argument("--payload", type=int, default=64)
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also run the fakebroker of another checkout (e.g. a worktree of an older commit), "
                             "from its source tree, with its default event loop")
    parser.add_argument("--fakebroker-loop", default="",
                        help="comma-separated event loops for `fakebroker serve --loop` (one column each); "
                             "default: what `fakebroker serve` picks")
    return parser


def fakebrokers(args: argparse.Namespace, listener: str, extra: Sequence[str] = ()) -> list[Broker]:
    """One ``fakebroker serve`` per ``--fakebroker-loop``, and the ``--baseline`` checkout's first if given."""
    loops = [x for x in args.fakebroker_loop.split(",") if x]
    brokers = [Broker(f"fakebroker ({loop})", fakebroker_cmd(listener, [*extra, "--loop", loop])) for loop in loops]
    brokers = brokers or [Broker("fakebroker", fakebroker_cmd(listener, extra))]
    if args.baseline:
        checkout = os.path.abspath(args.baseline)
        brokers.insert(0, Broker("baseline", fakebroker_cmd(listener, extra), {**os.environ, "PYTHONPATH": checkout},
                                 checkout))
    return brokers


def print_report(brokers: list[Broker], rounds: int, run: Callable[[str], list[Figure]]) -> None:
    """``run(scratch dir)`` and print the report with the load average before and after."""
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(tmp)
    print(report(figures, brokers, rounds, (load0, os.getloadavg()[0])), flush=True)


# -- beside a RabbitMQ node -----------------------------------------------------------------------------------


def beside_rabbitmq(doc: str, listener: str, rabbitmq_port: int, only: str,
                    scenarios: Callable[[argparse.Namespace], Sequence[tuple[str, str, str, Scenario]]],
                    cleanup: Callable[[], None] = lambda: None) -> None:
    """The main of a benchmark of fakebroker's ``listener`` beside a RabbitMQ node already running on this
    machine (its CPU is the node's ``beam.smp``, found as the process listening on the port)."""
    parser = arguments(doc, only, 20_000)
    parser.add_argument("--rabbitmq-port", type=int, default=rabbitmq_port,
                        help="the port of a RabbitMQ on 127.0.0.1 (0: fakebroker only)")
    args = parser.parse_args()
    brokers = fakebrokers(args, listener)
    if args.rabbitmq_port:
        brokers.append(Broker("RabbitMQ", None, port=args.rabbitmq_port))
        pid = listening_pid(args.rabbitmq_port)
        cpu0 = cpu_seconds(pid)
        time.sleep(1.0)
        print(f"RabbitMQ (pid {pid}) uses {(cpu_seconds(pid) - cpu0) * 1000:.0f} ms of CPU per second when this "
              "benchmark does not talk to it", flush=True)
    try:
        print_report(brokers, args.rounds, lambda tmp: run_scenarios(brokers, tmp, scenarios(args),
                                                                     set(args.only.split(",")), args.rounds))
    finally:
        if args.rabbitmq_port:
            cleanup()
