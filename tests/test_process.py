"""What a broker does to the process it runs in: it never keeps it alive, and importing fakebroker is cheap."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# A subprocess gets this long to exit; a hang (the failure these tests look for) hits it.
EXIT_TIMEOUT = 60


def _run(code: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=EXIT_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"no exit within {EXIT_TIMEOUT} s:\n{exc.stdout!r}\n{exc.stderr!r}") from None


def test_a_process_that_never_stops_its_brokers_exits_and_they_are_stopped_first() -> None:
    result = _run("""
        import atexit, socket

        seen = []

        def check():  # registered before fakebroker's own handler, so it runs after it
            for broker, (host, port) in seen:
                try:
                    socket.create_connection((host, port), timeout=5).close()
                    print("still listening", port)
                except ConnectionRefusedError:
                    print("stopped" if broker.stopped else "not stopped")

        atexit.register(check)

        import fakebroker

        for _ in range(2):
            broker = fakebroker.start()
            seen.append((broker, broker.mqtt))
        # A client that stays connected, mid-session, when the script ends.
        client = socket.create_connection(tuple(seen[0][1]))
        client.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 0, 0, 1]) + b"c")
        assert client.recv(4) == b"\\x20\\x02\\x00\\x00"
        print("end of script", flush=True)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:3] == ["end of script", "stopped", "stopped"], result.stdout


def test_a_script_that_fails_with_a_running_broker_exits_with_its_error() -> None:
    result = _run("""
        import fakebroker
        broker = fakebroker.start()
        raise SystemExit(3)
    """)
    assert result.returncode == 3, result.stderr


def test_importing_fakebroker_imports_only_what_is_used() -> None:
    result = _run("""
        import sys
        import fakebroker
        assert fakebroker.__version__
        heavy = sorted(m for m in sys.modules if m.startswith(("fakebroker.", "anyio", "asyncio")))
        print(heavy)
        from fakebroker import Address, NotFound, start
        import fakebroker.errors
        assert fakebroker.NotFound is NotFound is fakebroker.errors.NotFound
        assert "start" in dir(fakebroker) and "model" in dir(fakebroker)
        try:
            fakebroker.no_such_name
        except AttributeError as exc:
            print("AttributeError:", exc)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "AttributeError: module 'fakebroker' has no attribute 'no_such_name'"


def test_the_cli_imports_no_event_loop_until_it_serves() -> None:
    result = _run("""
        import sys
        import fakebroker.cli
        try:
            fakebroker.cli.main(["--version"])
        except SystemExit:
            pass
        print(sorted(m for m in sys.modules if m.startswith(("anyio", "asyncio", "fakebroker.model"))))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


GARBAGE = """
import gc, socket, sys, time
import fakebroker
from fakebroker.protocols.mqtt.codec import Connect, Disconnect, Subscribe, encode

sys.path.insert(0, {kit!r})
from kit.websocket import ws_frame, ws_upgrade

broker = fakebroker.start(stomp_port=None, web_stomp_port=None, amqp_port=None, http_port=None,
                          management_port=None)
address = ("127.0.0.1", broker.mqtt.port)


def over_websocket(n):  # raw bytes: a client library's own cycles would count here too
    with socket.create_connection(("127.0.0.1", broker.addresses["web_mqtt"].port)) as s:
        s.sendall(ws_upgrade("/ws", "mqtt"))
        got = b""
        while b"\\r\\n\\r\\n" not in got:
            got += s.recv(4096)
        s.sendall(ws_frame(encode(Connect(client_id=f"w{{n}}"))))
        while len(got.split(b"\\r\\n\\r\\n", 1)[1]) < 6:  # the CONNACK in a binary frame
            got += s.recv(64)


def session(n, subscribe, goodbye):
    with socket.create_connection(address) as s:
        s.sendall(encode(Connect(client_id=f"c{{n}}")) + (encode(Subscribe(1, [("a/b", 1)])) if subscribe else b""))
        got = b""
        while len(got) < (9 if subscribe else 4):
            got += s.recv(64)
        if goodbye:
            s.sendall(encode(Disconnect()))


for n in range(20):
    session(n, True, True)
time.sleep(0.2)
gc.collect()
gc.disable()
for n in range(300):
    session(n, n % 2 == 0, n % 3 != 0)  # with and without a subscription, a DISCONNECT or just the close
for n in range(50):
    over_websocket(n)
deadline = time.monotonic() + 10
while len(broker.clients) and time.monotonic() < deadline:
    time.sleep(0.01)
time.sleep(0.2)
print(gc.collect())
broker.stop()
"""


def test_a_closed_connection_leaves_nothing_for_the_cyclic_collector() -> None:
    # Freed by reference counting the moment it ends: reference cycles (a session's hooks bound to its
    # connection, the channel pointing back at its session, asyncio's transport at itself) kept each closed
    # connection's objects until the collector ran, and `fakebroker serve` runs it seldom.
    result = _run(GARBAGE.format(kit=str(Path(__file__).parent)))
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) < 100, result.stdout  # 20 (TCP) to 40 (WebSocket) per connection before


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _idle_wave(port: int, n: int, prefix: str) -> None:
    """Open ``n`` idle MQTT connections, then close them all."""
    from kit.mqtt import connect, s

    socks = []
    try:
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(connect(payload=s(f"{prefix}-{i}"), keepalive=0))
            socks.append(sock)
        for sock in socks:
            assert sock.recv(4) == b"\x20\x02\x00\x00"
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident set from /proc")
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_serve_gives_back_the_memory_of_connections_that_closed(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is the fast extra (installed by the test extra, not on Windows)")
    # Freed objects of thousands of closed connections stayed in the interpreter's free lists, spread over the
    # heap, and kept about 3 KiB a connection from going back to the system.
    proc = subprocess.Popen([sys.executable, "-m", "fakebroker", "serve", "--loop", loop, "--free-ports"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(2)]
        port = int(banner[1].split("mqtt://127.0.0.1:")[1])
        _idle_wave(port, 200, "warm")  # what the first connections import and build stays
        time.sleep(1)
        before = _rss_kib(proc.pid)
        _idle_wave(port, 4000, "idle")
        opened = _rss_kib(proc.pid)
        deadline = time.monotonic() + 10
        while _rss_kib(proc.pid) - before > (opened - before) / 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = _rss_kib(proc.pid)
        assert after - before <= (opened - before) / 2, (before, opened, after)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=EXIT_TIMEOUT)
