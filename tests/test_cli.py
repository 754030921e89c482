"""The ``fakebroker serve`` command: starts, prints its listeners, serves real clients, stops on SIGTERM."""

from __future__ import annotations

import importlib.util
import queue
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from fakebroker.protocols import listener_specs

#: Every listener on a free port: RabbitMQ's own ports may be taken on a developer's machine (or in CI).
FREE_PORTS = [arg for spec in listener_specs() for arg in (spec.cli_flag, "0")]
#: Every listener but MQTT's off.
ONLY_MQTT = [f"--no-{spec.name.replace('_', '-')}" for spec in listener_specs() if spec.name != "mqtt"]


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"fakebroker serve ended: {proc.stderr.read() if proc.stderr else ''}")
    return line


def test_serve_prints_listeners_serves_mqtt_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakebroker", "serve", *FREE_PORTS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(7)]
        assert banner[0].startswith("fakebroker is serving")
        mqtt_port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner[1]).group(1))  # type: ignore[union-attr]
        assert re.search(r"web-mqtt +ws://127\.0\.0\.1:\d+/ws", banner[2])
        stomp_port = int(re.search(r"stomp +stomp://127\.0\.0\.1:(\d+)", banner[3]).group(1))  # type: ignore[union-attr]
        web_stomp_port = re.search(r"web-stomp +ws://127\.0\.0\.1:(\d+)/ws", banner[4]).group(1)  # type: ignore[union-attr]
        assert re.search(rf"sockjs +http://127\.0\.0\.1:{web_stomp_port}/stomp", banner[5])
        assert re.search(r"amqp +amqp://127\.0\.0\.1:\d+", banner[6])

        with socket.create_connection(("127.0.0.1", stomp_port), timeout=5) as s:
            s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00")
            assert s.recv(4096).startswith(b"CONNECTED\nserver:RabbitMQ/3.10.8\nsession:session-")

        received: queue.Queue[bytes] = queue.Queue()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cli-test")
        client.on_message = lambda c, u, m: received.put(m.payload)
        client.connect("127.0.0.1", mqtt_port)
        client.loop_start()
        try:
            # SUBSCRIBE and PUBLISH travel in order on one connection, so the binding exists first.
            client.subscribe("cli/test", qos=1)
            client.publish("cli/test", b"over the wire", qos=1).wait_for_publish(5)
            assert received.get(timeout=5) == b"over the wire"
        finally:
            client.loop_stop()
            client.disconnect()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "SIGTERM, stopping" in proc.stdout.read()
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", mqtt_port)) != 0, "the listener is still open after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_reports_a_taken_port_without_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "fakebroker", "serve", "--mqtt-port", str(port), *ONLY_MQTT],
            capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 1
    assert f"mqtt listener on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_verbose_logs_connections_subscriptions_and_messages() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakebroker", "serve", "--mqtt-port", "0", *ONLY_MQTT, "--verbose"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        banner = [_line(proc)]
        while not banner[-1].startswith("clock:"):
            banner.append(_line(proc))
        port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner[1]).group(1))  # type: ignore[union-attr]
        assert "clock: wall" in banner[-1] and "guest/guest" in banner[-1] and "Ctrl-C" in banner[-1]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="chatty")
        client.connect("127.0.0.1", port)
        client.loop_start()
        client.subscribe("v/#", qos=1)
        client.publish("v/1", b"logged", qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        seen: list[str] = []
        while not any("closed conn#" in line for line in seen):
            seen.append(_line(proc))
        text = "".join(seen)
        assert "connected conn#1 mqtt" in text
        assert "client 'chatty' (mqtt, user 'guest') subscriptions {'v/#': 1}" in text
        assert "mqtt:chatty -> exchange='amq.topic' routing_key='v.1' body=b'logged'" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_help_has_a_description_and_no_markup() -> None:
    for argv in (["--help"], ["serve", "--help"]):
        out = subprocess.run([sys.executable, "-m", "fakebroker", *argv], capture_output=True, text=True,
                             timeout=30).stdout
        assert "RabbitMQ" in out and "``" not in out and ":func:" not in out


def test_free_ports_opens_every_listener_on_a_free_port() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fakebroker", "serve", "--free-ports", "--mqtt-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = []
        while not (line := proc.stdout.readline()).startswith("clock:"):
            assert line, proc.stderr.read() if proc.stderr else "no banner"
            banner.append(line)
        ports = [int(m.group(1)) for line in banner if (m := re.search(r":(\d+)(?:/\S*)?$", line.strip()))]
        # Some listeners print more than one URL (SockJS beside Web STOMP): count the distinct ports.
        assert len(set(ports)) == len(listener_specs())
        defaults = {spec.default_port for spec in listener_specs()}
        assert not defaults & set(ports)
    finally:
        proc.terminate()
        proc.wait(10)

@pytest.mark.parametrize("loop", ["auto", "asyncio", "trio", "uvloop"])
def test_serve_on_each_event_loop(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is the fast extra (installed by the test extra, not on Windows)")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakebroker", "serve", "--mqtt-port", "0", *ONLY_MQTT, "--loop", loop],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        banner = [_line(proc) for _ in range(3)]
        port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner[1]).group(1))  # type: ignore[union-attr]
        expected = loop if loop != "auto" else ("uvloop" if importlib.util.find_spec("uvloop") else "asyncio")
        assert f"event loop: {expected};" in banner[2]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 0, 0, 1]) + b"c")
            assert s.recv(4) == b"\x20\x02\x00\x00"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads the limit from /proc")
def test_serve_raises_its_limit_on_open_files() -> None:
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    expected = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    low = min(256, expected // 2)  # under whatever this machine allows

    def low_limit() -> None:  # a shell's small default, in the child only
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    proc = subprocess.Popen([sys.executable, "-m", "fakebroker", "serve", "--free-ports"], preexec_fn=low_limit,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "fakebroker is serving" in _line(proc)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        soft = next(line.split()[3] for line in limits.splitlines() if line.startswith("Max open files"))
        assert int(soft) == expected, limits
    finally:
        proc.terminate()
        proc.wait(10)
