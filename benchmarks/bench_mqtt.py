"""MQTT throughput: one paho publisher -> one paho subscriber through fakebroker (wall clock), and, when
``mosquitto`` is on PATH, the same run through mosquitto for scale.

    python benchmarks/bench_mqtt.py                      # 20,000 QoS 0 and 5,000 QoS 1 messages
    python benchmarks/bench_mqtt.py --qos0 50000 --qos1 10000 --payload 256 --repeat 3

Each run: the subscriber subscribes to ``bench/#`` at the run's QoS, the publisher publishes N messages to
``bench/t`` at that QoS as fast as paho lets it (for QoS 1, paho's default window of 20 in-flight PUBLISHes),
and the clock runs from the first publish until the subscriber has received the N-th message. Throughput is
N / that time, best of ``--repeat`` runs. Publisher, subscriber and broker share this machine (and, for
fakebroker, this process: the broker's event loop runs in a thread, so it competes for the GIL with the two
paho network threads).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rawkit import fakebroker_cmd, free_port, wait_port

import fakebroker


@contextlib.contextmanager
def mosquitto() -> Iterator[tuple[str, int]]:
    """A mosquitto on a free loopback port with a throw-away config (no persistence, no queue limit)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            # max_queued_messages 0: the default (1000) silently drops QoS 1 messages for a slow subscriber.
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n")
        proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            yield "127.0.0.1", port
        finally:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def fakebroker_process() -> Iterator[tuple[str, int]]:
    """``fakebroker serve`` in its own process, as mosquitto runs: no GIL shared with the paho clients."""
    port = free_port()
    proc = subprocess.Popen(
        fakebroker_cmd("mqtt")(port, ""),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("fakebroker is serving"):
            raise RuntimeError("fakebroker serve did not start")
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(10)


def run_once(host: str, port: int, qos: int, count: int, payload: bytes) -> float:
    """Messages per second for ``count`` messages at ``qos`` from one publisher to one subscriber."""
    done = threading.Event()
    received = 0

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{os.getpid()}")
    sub.on_message = on_message
    sub.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe("bench/#", qos)
    if not subscribed.wait(10):
        raise RuntimeError("no SUBACK")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{os.getpid()}")
    pub.max_queued_messages_set(0)
    pub.connect(host, port)
    pub.loop_start()
    try:
        start = time.perf_counter()
        for _ in range(count):
            pub.publish("bench/t", payload, qos)
        if not done.wait(max(30.0, count / 500)):
            raise RuntimeError(f"only {received} of {count} messages arrived")
        elapsed = time.perf_counter() - start
    finally:
        for c in (pub, sub):
            c.disconnect()
            c.loop_stop()
    if received != count:
        raise RuntimeError(f"{received} messages arrived, expected {count}")
    return count / elapsed


def best(host: str, port: int, qos: int, count: int, payload: bytes, repeat: int) -> float:
    return max(run_once(host, port, qos, count, payload) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qos0", type=int, default=20_000, help="messages in the QoS 0 run")
    parser.add_argument("--qos1", type=int, default=5_000, help="messages in the QoS 1 run")
    parser.add_argument("--payload", type=int, default=64, help="payload size in bytes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario; the best is reported")
    args = parser.parse_args()
    payload = os.urandom(args.payload)
    runs = [(0, args.qos0), (1, args.qos1)]

    results: dict[str, list[float]] = {}
    with fakebroker.start(clock="wall") as broker:
        host, port = broker.mqtt
        results["fakebroker"] = [best(host, port, qos, n, payload, args.repeat) for qos, n in runs]
    with fakebroker_process() as (host, port):
        results["fakebroker serve"] = [best(host, port, qos, n, payload, args.repeat) for qos, n in runs]
    if shutil.which("mosquitto"):
        with mosquitto() as (host, port):
            results["mosquitto"] = [best(host, port, qos, n, payload, args.repeat) for qos, n in runs]

    names = list(results)
    print(f"paho-mqtt {paho.mqtt.__version__} publisher -> subscriber, "
          f"{args.payload}-byte payloads, best of {args.repeat}")
    print(f"{'run (msg/s)':<22}" + "".join(f"{name:>20}" for name in names))
    for i, (qos, n) in enumerate(runs):
        print(f"{f'QoS {qos}, {n:,} messages':<22}" + "".join(f"{results[name][i]:>20,.0f}" for name in names))
    print("fakebroker: in this process (start()); fakebroker serve: its own process, like mosquitto")
    if "mosquitto" not in results:
        print("(mosquitto is not on PATH: `apt-get install -y mosquitto` to compare)")


if __name__ == "__main__":
    main()
