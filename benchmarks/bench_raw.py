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
  idle     N idle connections: broker RSS before, with them open and after they closed, then with N more open;
           KiB per connection
  startup  process start until the MQTT port accepts a connection; milliseconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from rawkit import (
    Broker,
    Counter,
    Figure,
    Peer,
    Reader,
    Scenario,
    acknowledged,
    arguments,
    check_count,
    connect_loop,
    fakebrokers,
    fan_out,
    figure,
    free_port,
    interleave,
    open_conn,
    print_report,
    rss_kib,
    run_scenarios,
    running,
    until,
    wait_port,
)

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


def mosquitto_cmd(port: int, tmp: str) -> list[str]:
    conf = os.path.join(tmp, f"mosquitto-{port}.conf")
    with open(conf, "w") as f:
        # No persistence and no queue limit: the default max_queued_messages (1000) drops QoS 1 messages for a
        # subscriber that lags, which fakebroker (as RabbitMQ) never does. max_inflight_messages 20 is
        # mosquitto's default, and fakebroker runs with --prefetch 20 to match it.
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                "max_inflight_messages 20\nlog_dest none\n")
    return ["mosquitto", "-c", conf]


# -- the clients ----------------------------------------------------------------------------------------------

_CONNECTS = [connect(f"c{i}") for i in range(64)]


def mqtt_connect(reader: Reader, n: int) -> None:
    """CONNECT, CONNACK, DISCONNECT on a fresh connection."""
    reader.sock.sendall(_CONNECTS[n & 63])
    got = reader.exactly(4)
    if got != CONNACK:
        raise RuntimeError(f"unexpected CONNACK {got!r}")
    reader.sock.sendall(DISCONNECT)


class Qos1Subscriber(Peer):
    """Receives QoS 1 PUBLISHes of one known size and acknowledges each (one write per read)."""

    def __init__(self, size: int, pid_offset: int, on_data: Callable[[], None]) -> None:
        super().__init__(on_data)
        self.size, self.pid_offset = size, pid_offset
        self.buf = b""
        self.messages = 0
        self.ready = False  # CONNACK and SUBACK read

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
                    self.fail(f"unexpected packet 0x{buf[i]:02x} in the QoS 1 stream")
                    return
                acks.append(b"\x40\x02" + buf[i + off:i + off + 2])
            self.write(b"".join(acks))
            self.messages += whole
            buf = buf[whole * size:]
        self.buf = buf
        self.on_data()


async def qos0(port: int, count: int, subscribers: int, payload: bytes, tag: str) -> tuple[int, float]:
    """QoS 0 from one publisher to ``subscribers`` subscribers; (deliveries, seconds taken)."""
    progress = asyncio.Event()
    pub_packet = publish0(TOPIC, payload)
    size = len(pub_packet)
    tally = [0]
    subs = [Counter(progress.set, tally) for _ in range(subscribers)]
    for i, sub in enumerate(subs):
        await open_conn(port, sub, connect(f"{tag}-s{i}") + subscribe("bench/#", 0))
    await until(lambda: all(s.received >= 4 + SUBACK_LEN for s in subs), progress)
    pub = Counter(progress.set)
    await open_conn(port, pub, connect(f"{tag}-p"))
    await until(lambda: pub.received >= 4, progress)
    head = 4 + SUBACK_LEN

    def delivered() -> int:
        return (tally[0] - head * subscribers) // size

    elapsed = await fan_out(pub, subs, pub_packet, count, delivered, DISCONNECT, progress, subs)
    check_count("deliveries", delivered(), count * subscribers)
    return count * subscribers, elapsed


async def qos1(port: int, count: int, payload: bytes, tag: str) -> tuple[int, float]:
    """QoS 1 one publisher -> one subscriber, both sides acknowledging; (messages, seconds taken)."""
    progress = asyncio.Event()
    head, body = publish1_parts(TOPIC, payload)
    size = len(head) + 2 + len(body)
    sub = Qos1Subscriber(size, len(head), progress.set)
    await open_conn(port, sub, connect(f"{tag}-s") + subscribe("bench/#", 1))
    await until(lambda: sub.ready, progress)
    pub = Counter(progress.set)
    await open_conn(port, pub, connect(f"{tag}-p"))
    await until(lambda: pub.received >= 4, progress)

    def acked() -> int:
        return (pub.received - 4) // 4

    def publish(first: int, n: int) -> None:  # each with its own packet id
        pub.write(b"".join(head + struct.pack("!H", (first + i) % 65535 + 1) + body for i in range(n)))

    return count, await acknowledged(pub, sub, publish, count, acked, DISCONNECT, progress, ("messages", "PUBACKs"))


def idle(port: int, pid: int, n: int) -> tuple[float, float, float, float]:
    """Open ``n`` idle MQTT connections, close them, then open and close ``n`` more; the broker's RSS in KiB
    (before, with the first ``n`` open, after they closed, with the second ``n`` open). The last shows whether
    what was not given back is reused or lost."""
    time.sleep(0.3)
    before = rss_kib(pid)
    opened = _idle_wave(port, pid, n, "idle")
    time.sleep(1.5)
    after = rss_kib(pid)
    again = _idle_wave(port, pid, n, "again")
    return before, opened, after, again


def _idle_wave(port: int, pid: int, n: int, prefix: str) -> float:
    """Open ``n`` idle connections (CONNECT, keepalive 0), read the broker's RSS, close them."""
    socks = []
    addr = ("127.0.0.1", port)
    try:
        for start in range(0, n, 100):
            group = [socket.create_connection(addr) for _ in range(min(100, n - start))]
            for i, s in enumerate(group):
                s.sendall(connect(f"{prefix}-{start + i}"))
            for s in group:
                if Reader(s).exactly(4) != CONNACK:
                    raise RuntimeError("an idle connection got no CONNACK")
            socks.extend(group)
        time.sleep(0.5)
        return rss_kib(pid)
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.sendall(DISCONNECT)
            s.close()


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
            if Reader(s).exactly(4) != CONNACK:
                raise RuntimeError("no CONNACK")
        return accepted, (time.monotonic() - t0) * 1000
    finally:
        proc.terminate()
        proc.wait(10)


#: The floor for any Python server: an interpreter that binds, listens and does nothing else.
PYTHON_FLOOR = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
                "s.listen(); time.sleep(60)")


# -- rounds ---------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, brokers: list[Broker], tmp: str) -> list[Figure]:
    only = set(args.only.split(","))
    payload = os.urandom(args.payload)
    figures: list[Figure] = []

    def fig(title: str, unit: str) -> Figure:
        f = figure(title, unit, brokers)
        figures.append(f)
        return f

    scenarios: list[tuple[str, str, str, Scenario]] = [
        ("connect", "sequential connect + CONNACK + DISCONNECT", "conn",
         lambda port, tag: connect_loop(port, args.seconds, mqtt_connect)),
        ("qos0", f"QoS 0, {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(qos0(port, args.messages, 1, payload, tag + "q0"))),
        ("fanout", f"QoS 0 fan-out 1 -> {args.fanout}", "delivery",
         lambda port, tag: asyncio.run(qos0(port, max(1, args.messages * 5 // args.fanout), args.fanout, payload,
                                            tag + "fan"))),
        ("qos1", f"QoS 1 with PUBACKs, {args.payload} B, 1 -> 1", "msg",
         lambda port, tag: asyncio.run(qos1(port, args.messages // 2, payload, tag + "q1"))),
    ]
    figures += run_scenarios(brokers, tmp, scenarios, only, args.rounds)
    if "idle" in only:
        per = fig(f"extra RSS per idle connection, {args.idle:,} open", "KiB")
        kept = fig("RSS not returned after they closed, per connection", "KiB")
        total = fig(f"RSS with {args.idle:,} idle connections", "MB")
        grown = fig(f"RSS growth of a second {args.idle:,} after those closed, per connection", "KiB")
        for _, b in interleave(brokers, max(1, args.rounds // 2)):
            with running(b, tmp) as (port, pid):
                before, opened, after, again = idle(port, pid, args.idle)
            per.values[b.name].append((opened - before) / args.idle)
            kept.values[b.name].append(max(0.0, after - before) / args.idle)
            total.values[b.name].append(opened / 1024)
            grown.values[b.name].append(max(0.0, again - opened) / args.idle)
    if "startup" in only:
        f_start = fig("process start until the port accepts", "ms")
        f_ack = fig("process start until the first CONNACK", "ms")
        floor: list[float] = []
        for _ in range(3):
            for _, b in interleave(brokers, args.rounds):
                port = free_port()
                assert b.command is not None
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


def main() -> None:
    parser = arguments(__doc__, "connect,qos0,fanout,qos1,idle,startup", 50_000)
    parser.add_argument("--idle", type=int, default=5_000, help="idle connections")
    args = parser.parse_args()
    if not shutil.which("mosquitto"):
        raise SystemExit("mosquitto is not on PATH: `apt-get install -y mosquitto`")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, args.idle + 1000):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the brokers inherit it
    # --prefetch 20: mosquitto's max_inflight_messages (its default, in the config written here).
    brokers = [*fakebrokers(args, "mqtt", ["--prefetch", "20"]), Broker("mosquitto", mosquitto_cmd)]
    print_report(brokers, args.rounds, lambda tmp: run(args, brokers, tmp))


if __name__ == "__main__":
    main()
