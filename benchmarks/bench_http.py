"""HTTP throughput of ``fakebroker serve`` (its own process, wall clock), measured with wrk (Debian's ``wrk``):

1. statelessd publishes per second over keep-alive connections: ``POST /%2F/amq.topic/bench.http`` with a
   form body and Basic credentials, each answered 204 and routed to a queue;
2. the management API's ``GET /api/queues`` with 1,000 queues declared.

    python benchmarks/bench_http.py                          # 10 s each, 1 wrk thread, 8 connections
    python benchmarks/bench_http.py --duration 5 --connections 16 --queues 1000

wrk and fakebroker share the machine; pin them apart with ``taskset`` for steadier figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

from rawkit import AUTH, free_port, management, wait_port

from fakebroker.protocols import listener_specs


@contextlib.contextmanager
def sidecar() -> Iterator[tuple[int, int]]:
    """``fakebroker serve`` with only its HTTP listeners, in a process of its own; yields (http, management)."""
    http_port, management_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakebroker", "serve", "--http-port", str(http_port),
         "--management-port", str(management_port),
         *(f"--no-{spec.name.replace('_', '-')}" for spec in listener_specs() if spec.protocol != "http")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(management_port, proc)
        yield http_port, management_port
    finally:
        proc.terminate()
        proc.wait(10)


def wrk(url: str, script: str, duration: float, threads: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", f.name,
                              url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)

    def ms(m: re.Match[str] | None) -> float:
        if m is None:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return {"rate": rate, "errors": float(bad.group(1)) if bad else 0.0, "p50_ms": ms(p50), "p99_ms": ms(p99)}


PUBLISH = f"""
wrk.method = "POST"
wrk.body = "body=hello%20from%20wrk&content_type=text%2Fplain&delivery_mode=2"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "{AUTH}"
"""
LIST = f"""
wrk.method = "GET"
wrk.headers["Authorization"] = "{AUTH}"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--queues", type=int, default=1000)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2

    with sidecar() as (http_port, management_port):
        management(management_port, "PUT", "/api/queues/%2F/bench-http", {})
        management(management_port, "POST", "/api/bindings/%2F/e/amq.topic/q/bench-http",
                   {"routing_key": "bench.#"})
        pub = wrk(f"http://127.0.0.1:{http_port}/%2F/amq.topic/bench.http", PUBLISH, args.duration, args.threads,
                  args.connections)
        status, body = management(management_port, "GET", "/api/queues/%2F/bench-http?columns=messages")
        routed = json.loads(body)["messages"]
        print(f"statelessd publish, keep-alive, {args.connections} connections: {pub['rate']:,.0f} requests/s "
              f"(p50 {pub['p50_ms']:.2f} ms, p99 {pub['p99_ms']:.2f} ms, non-2xx {pub['errors']:.0f}); "
              f"{routed:,} messages routed")

    with sidecar() as (_, management_port):
        for n in range(args.queues):
            management(management_port, "PUT", f"/api/queues/%2F/bench-{n:04d}", {"durable": n % 2 == 0})
        status, body = management(management_port, "GET", "/api/queues")
        assert status == 200 and len(json.loads(body)) == args.queues
        size = len(body)
        listing = wrk(f"http://127.0.0.1:{management_port}/api/queues", LIST, args.duration, args.threads,
                      min(args.connections, 4))
        print(f"management GET /api/queues with {args.queues:,} queues ({size / 1024:,.0f} KiB of JSON): "
              f"{listing['rate']:,.1f} requests/s (p50 {listing['p50_ms']:.1f} ms, p99 {listing['p99_ms']:.1f} ms, "
              f"non-2xx {listing['errors']:.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
