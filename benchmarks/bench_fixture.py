"""Per-test overhead of the ``fakebroker`` fixture.

Runs pytest (in a subprocess, as a user would) on N trivial tests that use the fixture and on N that do not, a
few times each in interleaved rounds (so that load from other processes hits every suite alike), and divides the
difference of the best times by N. The target is < 3 ms per test.

    python benchmarks/bench_fixture.py [--tests 200] [--repeat 5] [-- extra pytest args, e.g. -n 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITES = {
    "plain": "def test_{n}():\n    assert True\n",
    "fakebroker": "def test_{n}(fakebroker):\n    assert fakebroker.mqtt.port\n",
    "fakebroker+mqtt": (
        "def test_{n}(fakebroker):\n"
        "    with socket.create_connection(tuple(fakebroker.mqtt)) as s:\n"
        "        s.sendall(CONNECT)\n"
        "        assert s.recv(4) == b'\\x20\\x02\\x00\\x00'\n"
    ),
}
HEADERS = {
    "fakebroker+mqtt": "import socket\n"
                       "from fakebroker.protocols.mqtt.codec import Connect, encode\n"
                       "CONNECT = encode(Connect(client_id='bench'))\n\n",
}


def run(directory: Path, name: str, extra: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"test_{name.replace('+', '_')}.py",
         *extra],
        cwd=directory, capture_output=True, text=True,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} suite failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        (directory / "pytest.ini").write_text("[pytest]\n")
        for name, template in SUITES.items():
            body = HEADERS.get(name, "") + "\n".join(template.format(n=n) for n in range(args.tests))
            (directory / f"test_{name.replace('+', '_')}.py").write_text(body)
        times: dict[str, list[float]] = {name: [] for name in SUITES}
        for _ in range(args.repeat):
            for name in SUITES:
                times[name].append(run(directory, name, args.pytest_args))
        best = {name: min(t) for name, t in times.items()}
    print(f"{args.tests} tests, best of {args.repeat} interleaved runs, pytest {' '.join(args.pytest_args)}".rstrip()
          + f"; load average {os.getloadavg()[0]:.2f}")
    for name, seconds in best.items():
        print(f"  {name:16} {seconds:6.2f} s")
    for name in ("fakebroker", "fakebroker+mqtt"):
        overhead = (best[name] - best["plain"]) / args.tests * 1000
        print(f"  per-test overhead of {name}: {overhead:.2f} ms")


if __name__ == "__main__":
    main()
