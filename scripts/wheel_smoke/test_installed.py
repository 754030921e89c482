"""Smoke tests of the installed wheel, run by scripts/wheel_smoke.sh in a fresh venv outside the checkout.

They see fakebroker only as a user does after ``pip install fakebroker``: the package from site-packages, the
pytest plugin through its entry point (there is no conftest.py here), the ``fakebroker`` console script.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

import fakebroker
from fakebroker.protocols import listener_specs

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"]).resolve()
CONSOLE_SCRIPT = Path(sysconfig.get_paths()["scripts"]) / "fakebroker"


def test_fakebroker_is_imported_from_the_installed_wheel() -> None:
    package = Path(fakebroker.__file__).resolve().parent
    assert package == SITE_PACKAGES / "fakebroker", f"imported from {package}, not from the venv"
    checkout = os.environ.get("FAKEBROKER_CHECKOUT")
    if checkout:
        assert not package.is_relative_to(Path(checkout).resolve()), "the checkout is importable"
    # Not an editable install: the files are in site-packages, listed in the wheel's RECORD.
    files = importlib.metadata.files("fakebroker") or []
    assert any(str(f) == "fakebroker/cli.py" for f in files)


def test_py_typed_is_installed() -> None:
    assert importlib.resources.files("fakebroker").joinpath("py.typed").is_file()
    assert any(str(f) == "fakebroker/py.typed" for f in importlib.metadata.files("fakebroker") or [])


def test_a_type_checker_sees_the_annotations(tmp_path: Path) -> None:
    # With py.typed, mypy reads the installed package's annotations: a wrong type is an error, not an Any.
    (tmp_path / "app.py").write_text(
        "import fakebroker\n"
        "with fakebroker.start() as broker:\n"
        "    name: str = broker.declare_queue('q')\n"
        "    wrong: bytes = broker.declare_queue('r')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / ".mypy_cache"), "app.py"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("app.py:4: error: Incompatible types in assignment"), (
        out.stdout + out.stderr
    )


def test_one_version_everywhere() -> None:
    version = importlib.metadata.version("fakebroker")
    assert fakebroker.__version__ == version
    out = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout == f"fakebroker {version}\n"


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert [ep.value for ep in entry_points if ep.name == "fakebroker"] == ["fakebroker.pytest_plugin"]
    plugin = pytestconfig.pluginmanager.get_plugin("fakebroker")
    assert plugin is not None, "pytest did not load the fakebroker plugin"
    assert Path(plugin.__file__).resolve().is_relative_to(SITE_PACKAGES)


def test_the_fixture_serves_a_real_mqtt_client(fakebroker: fakebroker.ThreadedBroker) -> None:
    fakebroker.declare_queue("smoke")
    fakebroker.bind("smoke", "amq.topic", "smoke.#")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wheel-smoke")
    client.connect(*fakebroker.mqtt)
    client.loop_start()
    try:
        client.publish("smoke/test", b"from the wheel", qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()
    fakebroker.assert_published(topic="smoke/test", payload=b"from the wheel")
    message = fakebroker.get("smoke")
    assert message is not None and message.body == b"from the wheel"


def connects(client: mqtt.Client, host: str, port: int) -> bool:
    """A CONNECT answered by a CONNACK that accepts it."""
    accepted: queue.Queue[bool] = queue.Queue()
    client.on_connect = lambda c, u, flags, reason, props: accepted.put(not reason.is_failure)
    client.connect(host, port)
    client.loop_start()
    try:
        return accepted.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_serve_accepts_clients_on_free_ports_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        # Every listener on a free port: RabbitMQ's own ports may be taken on this machine.
        [str(CONSOLE_SCRIPT), "serve", *(a for spec in listener_specs() for a in (spec.cli_flag, "0"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        banner = "".join(proc.stdout.readline() for _ in range(1 + len(listener_specs())))
        mqtt_port = re.search(r"mqtt://127\.0\.0\.1:(\d+)", banner)
        ws_port = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
        assert mqtt_port and ws_port, f"unexpected banner: {banner!r}"

        tcp = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wheel-smoke-tcp")
        assert connects(tcp, "127.0.0.1", int(mqtt_port[1]))
        ws = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="wheel-smoke-ws", transport="websockets")
        ws.ws_set_options(path="/ws")
        assert connects(ws, "127.0.0.1", int(ws_port[1]))

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert "SIGTERM, stopping" in proc.stdout.read()
        for port in (mqtt_port[1], ws_port[1]):
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", int(port))) != 0, f"port {port} still open after SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_python_version_is_one_the_package_declares() -> None:
    classifiers = importlib.metadata.metadata("fakebroker").get_all("Classifier") or []
    running = f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
    assert running in classifiers, f"tested on {running.rsplit(' ', 1)[-1]}, which the classifiers do not list"
