"""Core benchmarks: broker start/stop latency and in-process topic routing throughput.

Run with ``python benchmarks/bench_core.py`` (not part of the test suite). Prints a small table.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

import fakebroker
from fakebroker.clock import VirtualClock
from fakebroker.model import Broker, Channel


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def bench_start_stop(runs: int) -> dict[str, float]:
    """``fakebroker.start()`` (returns once every listener accepts) then ``stop()``, in ms."""
    t0 = time.perf_counter()
    fakebroker.start().stop()  # the first one pays for imports and the like; reported separately
    cold = (time.perf_counter() - t0) * 1000
    total, starts, stops = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        broker = fakebroker.start()
        t1 = time.perf_counter()
        broker.stop()
        t2 = time.perf_counter()
        starts.append((t1 - t0) * 1000)
        stops.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)
    return {
        "cold": cold,
        "median": statistics.median(total), "p90": percentile(total, 90),
        "start_median": statistics.median(starts), "stop_median": statistics.median(stops),
    }


def topic_bindings(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct binding keys mixing literal words, ``*`` and ``#``, shaped like device topics."""
    shapes: list[Callable[[], str]] = [
        lambda: f"site{rng.randrange(20)}.dev{rng.randrange(100)}.*",
        lambda: f"site{rng.randrange(20)}.*.temp{rng.randrange(10)}",
        lambda: f"site{rng.randrange(20)}.#.alarm{rng.randrange(10)}",
        lambda: f"#.dev{rng.randrange(100)}.status",
        lambda: f"*.dev{rng.randrange(100)}.#",
        lambda: f"site{rng.randrange(20)}.dev{rng.randrange(100)}.temp{rng.randrange(10)}",
    ]
    keys: set[str] = set()
    while len(keys) < n:
        keys.add(rng.choice(shapes)())
    return sorted(keys)


def routing_keys(n: int, rng: random.Random) -> list[str]:
    words = ["temp{}", "alarm{}", "status"]
    out = []
    for _ in range(n):
        last = rng.choice(words).format(rng.randrange(10))
        out.append(f"site{rng.randrange(20)}.dev{rng.randrange(100)}.{last}")
    return out


def bench_topic(bindings: int, queues: int, messages: int, repeats: int) -> dict[str, float]:
    """publish + basic.get of every copy, through a topic exchange with ``bindings`` distinct binding keys.

    Runs ``repeats`` times on a fresh broker; the best run is the figure (the least disturbed by other
    processes), the median is shown next to it.
    """
    runs = [_topic_run(bindings, queues, messages) for _ in range(repeats)]
    rates = sorted(messages / elapsed for elapsed, _ in runs)
    best = max(runs, key=lambda r: messages / r[0])
    return {"msgs_per_s": rates[-1], "median_msgs_per_s": statistics.median(rates),
            "copies_per_msg": best[1] / messages, "us_per_msg": best[0] / messages * 1e6}


def _topic_run(bindings: int, queues: int, messages: int) -> tuple[float, int]:
    rng = random.Random(42)
    broker = Broker(VirtualClock())
    vhost = broker.vhost()
    vhost.declare_exchange("bench", "topic")
    names = [vhost.declare_queue(f"q{i}").name for i in range(queues)]
    for i, key in enumerate(topic_bindings(bindings, rng)):
        vhost.bind(names[i % queues], "bench", key)
    channel = Channel(vhost, object(), "bench")
    keys = routing_keys(messages, rng)
    publish, get = broker.publish, channel.get
    copies = 0
    gc.collect()
    t0 = time.perf_counter()
    for key in keys:
        for queue in publish("bench", key, b"payload").queues:
            get(queue)
            copies += 1
    elapsed = time.perf_counter() - t0
    assert all(vhost.queue(q).message_count == 0 for q in names)
    return elapsed, copies


def bench_threaded_publish(messages: int) -> float:
    """For scale: the same publish+get from the test's thread through ``fakebroker.start()``'s portal."""
    with fakebroker.start() as broker:
        broker.declare_queue("q")
        broker.bind("q", "amq.topic", "a.*")
        t0 = time.perf_counter()
        for _ in range(messages):
            broker.publish("amq.topic", "a.b", b"payload")
            broker.get("q")
        return messages / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100, help="start/stop runs (default 100)")
    parser.add_argument("--messages", type=int, default=100_000, help="messages for the topic benchmark")
    parser.add_argument("--repeats", type=int, default=5, help="topic benchmark runs (best is reported)")
    args = parser.parse_args()

    ss = bench_start_stop(args.runs)
    topic = bench_topic(1000, 100, args.messages, args.repeats)
    threaded = bench_threaded_publish(2000)

    rows = [
        ("start()->ready->stop(), median", f"{ss['median']:.2f} ms", "< 5 ms"),
        ("start()->ready->stop(), p90", f"{ss['p90']:.2f} ms", "< 5 ms"),
        ("  of which start() / stop() (medians)", f"{ss['start_median']:.2f} / {ss['stop_median']:.2f} ms", ""),
        ("  first start+stop in the process (cold)", f"{ss['cold']:.1f} ms", ""),
        ("topic publish+get, 1,000 bindings (model), best", f"{topic['msgs_per_s']:,.0f} msg/s", ">= 100,000 msg/s"),
        ("  median of the runs", f"{topic['median_msgs_per_s']:,.0f} msg/s", ""),
        ("  copies per message / time per message", f"{topic['copies_per_msg']:.2f} / {topic['us_per_msg']:.2f} us",
         ""),
        ("publish+get via start()'s portal (1 binding)", f"{threaded:,.0f} msg/s", "(for scale)"),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<{width}}  {'result':>{vwidth}}  target")
    print(f"{'-' * width}  {'-' * vwidth}  {'-' * 16}")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {target}")
    print(f"({args.runs} start/stop runs; {args.repeats} x {args.messages:,} topic messages, 1,000 bindings over "
          "100 queues)")


if __name__ == "__main__":
    main()
