"""The hostile-client harness: random and mutated input, slow-loris connections, a subscriber that never reads,
oversized packets and frames, and deep and pathological topics, against every listener of one broker, while a
bystander client must keep working and the broker must stay alive.

Short form (CI): ``tests/hostile/test_harness.py``. Long form, on demand::

    python tests/hostile/harness.py --long            # the figures in docs/reliability.md
    python tests/hostile/harness.py --fuzz 5000 --seed 7 --listener mqtt

It prints one line per scenario and listener, then the totals, and exits non-zero if anything failed: a crash
(an ERROR logged by the broker), a hang (the bystander got no answer in time), a connection the broker kept
after the handshake timeout, or output buffered past its limit.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import random
import socket
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from targets import TARGETS, Target  # noqa: E402
from wire import Bystander, RawMqtt  # noqa: E402

import fakebroker  # noqa: E402
from fakebroker import ThreadedBroker  # noqa: E402
from fakebroker.protocols.mqtt.codec import Puback, Publish, Subscribe, encode  # noqa: E402
from fakebroker.protocols.mqtt.state import MqttState  # noqa: E402

OUTPUT_LIMIT = 1024 * 1024  # the broker's output_buffer_limit in harness runs: small, so floods reach it fast
BYSTANDER_TIMEOUT = 5.0  # seconds without an answer that count as a hang


@dataclass
class Result:
    scenario: str
    listener: str
    inputs: int = 0
    crashes: int = 0  # ERROR records the broker logged
    hangs: int = 0  # bystander round trips that timed out
    failures: list[str] = field(default_factory=list)  # invariants broken, one line each
    worst_bystander: float = 0.0  # seconds
    seconds: float = 0.0
    rss_before: float = 0.0  # MB, this process (broker and harness clients)
    rss_after: float = 0.0
    notes: list[str] = field(default_factory=list)  # figures worth printing

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.hangs or self.failures)

    def line(self) -> str:
        status = "ok" if self.ok else "FAILED"
        text = (f"{self.scenario:<12} {self.listener:<10} inputs={self.inputs:<7} crashes={self.crashes} "
                f"hangs={self.hangs} bystander_max={self.worst_bystander * 1000:.0f}ms "
                f"rss={self.rss_before:.0f}->{self.rss_after:.0f}MB time={self.seconds:.1f}s {status}")
        return text + "".join(f"\n    {f}" for f in self.notes + self.failures[:10])


class ErrorCounter(logging.Handler):
    """Counts the broker's ERROR records (a session or runtime bug shows up here, with its traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def rss_mb() -> float:
    """Resident set size of this process (broker and harness clients), in MB; 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return 0.0


# -- mutation -------------------------------------------------------------------------------------------------
def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, boundary bytes, deletions, insertions, duplications, truncation."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 16))
            continue
        i = rng.randrange(len(buf))
        op = rng.randrange(7)
        if op == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[i] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0D, 0x0A, 0x20])
        elif op == 2:
            del buf[i:i + rng.randint(1, 16)]
        elif op == 3:
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            j = rng.randrange(i, len(buf))
            buf[j:j] = buf[i:j + 1]
        elif op == 5:
            del buf[i:]
        else:
            buf[i:i + 2] = struct.pack("!H", rng.choice([0, 1, 0x7FFF, 0xFFFF]))
    return bytes(buf)


def random_input(target: Target, seeds: list[bytes], rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.15:
        return rng.randbytes(rng.randint(0, 200))  # noise
    if roll < 0.25:
        return rng.choice(seeds)  # a valid session, to keep the broker's state moving
    return mutate(rng.choice(seeds), rng)


# -- the run ----------------------------------------------------------------------------------------------------
class Harness:
    """One broker (in this process, virtual clock), a bystander, and the scenarios."""

    def __init__(self, seed: int = 1, **options: Any) -> None:
        self.rng = random.Random(seed)
        self.errors = ErrorCounter()
        logging.getLogger("fakebroker").addHandler(self.errors)
        # The message log capped, so that what the fuzzing publishes does not read as growth.
        self.broker: ThreadedBroker = fakebroker.start(output_buffer_limit=OUTPUT_LIMIT, retain_log=200, **options)
        self.bystander = Bystander(tuple(self.broker.mqtt))  # type: ignore[arg-type]
        self.baseline = len(self.broker.clients)
        self.handshake_timeout = float(self.broker.options.handshake_timeout or 10.0)

    def close(self) -> None:
        try:
            self.bystander.close()
            self.broker.stop()
        finally:
            logging.getLogger("fakebroker").removeHandler(self.errors)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uncovered(self) -> list[str]:
        """Listeners of the broker with no hostile target."""
        return sorted(set(self.broker.addresses) - set(TARGETS))

    def targets(self, only: list[str] | None = None) -> Iterator[Target]:
        for name in self.broker.addresses:
            if name in TARGETS and (not only or name in only):
                yield TARGETS[name]()

    # -- invariants --------------------------------------------------------------------------------------------
    def _check(self, result: Result) -> None:
        """The bystander answers in time and the broker logged no error."""
        try:
            result.worst_bystander = max(result.worst_bystander, self.bystander.check(BYSTANDER_TIMEOUT))
        except AssertionError as exc:
            result.hangs += 1
            result.failures.append(f"bystander: {exc}")
            self.bystander.close()
            self.bystander = Bystander(tuple(self.broker.mqtt))  # type: ignore[arg-type]
        new = self.errors.records
        if new:
            result.crashes += len(new)
            result.failures += [f"ERROR logged: {r.getMessage()}{_last_frames(r)}" for r in new]
            self.errors.records = []

    def _settle(self, result: Result) -> None:
        """Advance the broker clock past the handshake timeout: no connection that has not completed its
        opening may then be older than the timeout (those that did may stay: their clients still hold them)."""
        self.broker.clock.advance(self.handshake_timeout + 1)
        now = self.broker.clock.now()
        # A connection still in the listen backlog at the advance is accepted, and timed, after it: younger.
        runtime = self.broker._node.runtime  # the harness may look inside: `established` is not in the views

        def stale() -> list[tuple[str, tuple[str, int]]]:
            return [(c.listener, c.peer) for c in runtime.connections.values()
                    if not c.session.established and c.opened_at <= now - self.handshake_timeout]

        left = self.broker._call(stale)
        if left:
            result.failures.append(f"{len(left)} unestablished connection(s) still open after the handshake "
                                   f"timeout: {left[:5]}")

    def _run(self, scenario: str, target: Target, body: Callable[[Result], None]) -> Result:
        result = Result(scenario, target.listener)
        gc.collect()
        result.rss_before = rss_mb()
        start = time.monotonic()
        try:
            body(result)
        except Exception as exc:  # the harness itself must report, not stop, when the broker misbehaves
            result.failures.append(f"{type(exc).__name__}: {exc}")
        self._check(result)
        result.seconds = time.monotonic() - start
        gc.collect()
        result.rss_after = rss_mb()
        return result

    # -- scenarios ---------------------------------------------------------------------------------------------
    def fuzz(self, target: Target, inputs: int, batch: int = 200) -> Result:
        """Random and mutated sessions, split at random, ended by a close, a reset, or not at all."""
        rng = self.rng
        seeds = target.seeds(rng)

        def body(result: Result) -> None:
            address = target.address(self.broker)
            lingering: list[socket.socket] = []
            for n in range(inputs):
                if n % 50 == 0:
                    seeds[rng.randrange(len(seeds))] = target.seeds(rng)[0]  # fresh seeds now and then
                data = random_input(target, seeds, rng)
                sock = socket.create_connection(address, timeout=5)
                try:
                    rest = data
                    while rest:
                        cut = rng.randint(1, len(rest))
                        sock.sendall(rest[:cut])
                        rest = rest[cut:]
                except OSError:
                    pass  # the broker closed first: fine
                _drain(sock)
                end = rng.random()
                if end < 0.4:
                    sock.close()
                elif end < 0.7:
                    _reset(sock)
                else:
                    lingering.append(sock)
                result.inputs += 1
                if (n + 1) % batch == 0 or n + 1 == inputs:
                    self._check(result)
                    self._settle(result)
                    for s in lingering:
                        s.close()
                    lingering.clear()
            _wait(lambda: len(self.broker.clients) == self.baseline, 10)  # every fuzzed connection is gone

        return self._run("fuzz", target, body)

    def slow_loris(self, target: Target, connections: int) -> Result:
        """Connections that send part of their opening, a byte at a time, then nothing: all are closed once
        the handshake timeout passes on the broker clock, and the bystander never notices."""

        def body(result: Result) -> None:
            address = target.address(self.broker)
            opening = target.opening("loris")
            socks = []
            for n in range(connections):
                sock = socket.create_connection(address, timeout=5)
                for byte in opening[: n % len(opening)]:
                    sock.send(bytes((byte,)))
                socks.append(sock)
                result.inputs += 1
            _wait(lambda: len(self.broker.clients) >= self.baseline + connections, 10)
            self._check(result)
            self._settle(result)
            open_after = sum(1 for s in socks if not _closed(s))
            if open_after:
                result.failures.append(f"{open_after} slow connection(s) not closed by the handshake timeout")
            for s in socks:
                s.close()

        return self._run("slow-loris", target, body)

    def non_reader(self, target: Target, megabytes: int) -> Result:
        """A subscriber that never reads, and ``megabytes`` published to it: its buffered output stays under
        the limit, the excess is counted as dropped, and the bystander keeps working."""

        def body(result: Result) -> None:
            client_id = f"non-reader-{target.listener}"
            opening = target.subscriber(client_id, "flood.#")
            if opening is None:
                result.notes.append("skipped: no non-reading subscriber for this listener (Target.subscriber)")
                return
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(target.address(self.broker))
            runtime = self.broker._node.runtime  # the harness may look inside: the output is not in the views

            def find() -> Any:
                return next((c.session for c in runtime.connections.values() if c.peer == sock.getsockname()), None)

            def consumers() -> int:
                return sum(q.consumer_count for q in self.broker.queues.values())

            before_consumers = consumers()
            sock.sendall(opening)
            _wait(lambda: consumers() > before_consumers, 5)
            session = self.broker._call(find)
            body_bytes = b"f" * 65_000
            before = rss_mb()
            for n in range(megabytes * 1_000_000 // len(body_bytes)):
                self.broker.publish("amq.topic", f"flood.{n}", body_bytes)
                result.inputs += 1
                if n % 200 == 0:
                    self._check(result)
            buffered = self.broker._call(session.output_backlog)
            if session.closed:
                result.failures.append("the non-reading subscriber was disconnected")
            elif buffered > OUTPUT_LIMIT + 2 * len(body_bytes):
                result.failures.append(f"buffered {buffered} bytes for a client that does not read")
            # The rest was dropped at most once (MQTT QoS 0), or waits in the subscriber's queue.
            dropped = self.broker._call(lambda: getattr(getattr(session, "inner", None) or session, "dropped", 0))
            waiting = sum(q.message_count for q in self.broker.queues.values())
            result.notes.append(f"buffered {buffered / 1e6:.1f} MB; dropped {dropped}; waiting in queues {waiting}")
            if not dropped and not waiting:
                result.failures.append("nothing dropped or held back: the whole flood was buffered")
            grew = rss_mb() - before
            if grew > 100:
                result.failures.append(f"RSS grew {grew:.0f} MB during the flood")
            sock.close()

        return self._run("non-reader", target, body)

    def oversized(self, target: Target) -> Result:
        """Each oversized input closes its connection promptly (before the announced body could arrive)."""

        def body(result: Result) -> None:
            for data in target.oversized():
                sock = socket.create_connection(target.address(self.broker), timeout=5)
                with contextlib.suppress(OSError):  # the broker may close before all is sent
                    sock.sendall(data)
                if not _closed(sock, timeout=5):
                    result.failures.append(f"still open after {data[:24]!r}...{data[-24:]!r}")
                sock.close()
                result.inputs += 1
                self._check(result)

        return self._run("oversized", target, body)

    def deep_topics(self, count: int) -> Result:
        """Deep and pathological filters and topics (nested '#', long runs of '+', 30,000 levels): every
        publish is answered quickly and the bystander never waits."""
        rng = self.rng
        target = TARGETS["mqtt"]()

        def body(result: Result) -> None:
            sub = RawMqtt(tuple(self.broker.mqtt), timeout=10)  # type: ignore[arg-type]
            sub.connect("deep-sub", keepalive=0)
            pub = RawMqtt(tuple(self.broker.mqtt), timeout=10)  # type: ignore[arg-type]
            pub.connect("deep-pub", keepalive=0)
            worst = 0.0
            for n in range(count):
                depth = rng.choice([10, 500, 2_000, 30_000])
                words = rng.choices(["#", "+", "a"], weights=[2, 3, 5], k=depth)
                sub.send(encode(Subscribe(n % 0xFFFE + 1, [("/".join(words), 0)])))
                topic = "/".join(rng.choices(["a", "b"], k=rng.choice([1, 100, 10_000, 32_767])))
                start = time.monotonic()
                pub.send(Publish(topic, b"", 1, packet_id=n % 0xFFFE + 1))
                while not isinstance(pub.recv(), Puback):
                    pass
                took = time.monotonic() - start
                worst = max(worst, took)
                if took > BYSTANDER_TIMEOUT:
                    result.failures.append(f"PUBACK after {took:.1f} s for a {depth}-level filter")
                result.inputs += 1
                if n % 20 == 0:
                    self._check(result)
            result.notes.append(f"slowest PUBACK {worst:.2f} s")
            sub.close()
            pub.close()

        return self._run("deep-topics", target, body)

    def leak(self, target: Target, inputs: int) -> Result:
        """Whether fuzzing leaves anything behind: the Python heap (tracemalloc) after a warm-up round and after
        ``inputs`` more, each time once the state clients may legitimately leave has gone (persistent sessions
        expired on the clock, retained messages cleared). Growth past 2 MB fails."""

        def cleaned_heap() -> float:
            self.broker.clock.advance(2 * 86_400)  # past mqtt_subscription_ttl: persistent sessions expire
            node = self.broker._node  # the harness may look inside: retained messages never expire

            def clear() -> None:
                node.state(MqttState).retained.clear()

            self.broker._call(clear)
            gc.collect()
            return tracemalloc.get_traced_memory()[0] / 1e6

        def body(result: Result) -> None:
            tracemalloc.start()
            try:
                # Long enough to fill what is bounded on purpose: the message log (retain_log) and the journal
                # of connection events behind the failure report.
                self.fuzz(target, max(4000, inputs // 5))
                before = cleaned_heap()
                inner = self.fuzz(target, inputs)
                after = cleaned_heap()
            finally:
                tracemalloc.stop()
            result.inputs = inner.inputs
            result.crashes, result.hangs = inner.crashes, inner.hangs
            result.failures += inner.failures
            result.notes.append(f"Python heap after clean-up: {before:.2f} MB before, {after:.2f} MB after")
            if after - before > 2:
                result.failures.append(f"heap grew {after - before:.2f} MB over {inputs} inputs")

        return self._run("leak", target, body)


def _last_frames(record: logging.LogRecord) -> str:
    """The end of a record's traceback: where the broker failed, and with what."""
    if not record.exc_info:
        return ""
    text = logging.Formatter().formatException(record.exc_info)
    return "\n      " + "\n      ".join(text.splitlines()[-6:])


def _drain(sock: socket.socket) -> None:
    """Read what the broker answered so far, without waiting (its answers must not fill our buffers)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
    finally:
        sock.setblocking(True)


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _closed(sock: socket.socket, timeout: float = 2.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def _wait(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        time.sleep(0.005)


# -- the forms ----------------------------------------------------------------------------------------------
@dataclass
class Plan:
    fuzz: int
    slow_loris: int
    flood_mb: int
    deep: int
    leak: int


SHORT = Plan(fuzz=300, slow_loris=40, flood_mb=20, deep=8, leak=0)
LONG = Plan(fuzz=30_000, slow_loris=1_000, flood_mb=300, deep=200, leak=10_000)


def run(plan: Plan, seed: int = 1, listeners: list[str] | None = None,
        report: Callable[[str], None] = print) -> list[Result]:
    results: list[Result] = []
    gc.collect()
    with Harness(seed) as h:
        uncovered = h.uncovered()
        rss_before = rss_mb()
        report(f"broker listeners: {', '.join(h.broker.addresses)}; seed {seed}; RSS {rss_before:.1f} MB")
        for target in h.targets(listeners):
            for result in (h.oversized(target), h.slow_loris(target, plan.slow_loris),
                           h.non_reader(target, plan.flood_mb), h.fuzz(target, plan.fuzz)):
                results.append(result)
                report(result.line())
            if plan.leak:
                results.append(h.leak(target, plan.leak))
                report(results[-1].line())
        if not listeners or "mqtt" in listeners:
            results.append(h.deep_topics(plan.deep))
            report(results[-1].line())
        gc.collect()
        rss_after = rss_mb()
        missing = Result("coverage", ",".join(uncovered) or "-")
        if uncovered:
            missing.failures.append(f"listener(s) without a hostile target in tests/hostile/targets.py: {uncovered}")
        results.append(missing)
    total = sum(r.inputs for r in results)
    report(f"total inputs={total} crashes={sum(r.crashes for r in results)} hangs={sum(r.hangs for r in results)} "
           f"failures={sum(len(r.failures) for r in results)} RSS before={rss_before:.1f} MB "
           f"after={rss_after:.1f} MB")
    if uncovered:
        report(missing.line())
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="the long form (the figures in docs/reliability.md)")
    parser.add_argument("--fuzz", type=int, help="fuzzed connections per listener")
    parser.add_argument("--slow-loris", type=int, help="slow connections per listener")
    parser.add_argument("--flood-mb", type=int, help="MB published to a subscriber that never reads")
    parser.add_argument("--deep", type=int, help="pathological filter/topic pairs")
    parser.add_argument("--leak", type=int, help="fuzzed connections per listener under tracemalloc (0: skip)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--listener", action="append", help="only this listener (repeatable)")
    args = parser.parse_args(argv)
    base = LONG if args.long else SHORT
    plan = Plan(fuzz=args.fuzz if args.fuzz is not None else base.fuzz,
                slow_loris=args.slow_loris if args.slow_loris is not None else base.slow_loris,
                flood_mb=args.flood_mb if args.flood_mb is not None else base.flood_mb,
                deep=args.deep if args.deep is not None else base.deep,
                leak=args.leak if args.leak is not None else base.leak)
    start = time.monotonic()
    results = run(plan, args.seed, args.listener, report=lambda line: print(line, flush=True))
    print(f"{time.monotonic() - start:.0f} s; python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
