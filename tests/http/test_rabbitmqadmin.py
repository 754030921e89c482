"""``rabbitmqadmin``, the CLI a real RabbitMQ serves at ``/cli/rabbitmqadmin``, works against fakebroker's
management listener unchanged: it lists, declares, publishes and gets.

The script is RabbitMQ's own (MPL), so it is never part of this repository: the test downloads it from the local
node that ``FAKEBROKER_RABBITMQ`` names (as CI sets it), or takes the file ``FAKEBROKER_RABBITMQADMIN`` names.
Without either it is skipped; with ``FAKEBROKER_RABBITMQ`` set, a failed download fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit.needs import need

import fakebroker


@pytest.fixture(scope="module")
def rabbitmqadmin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("FAKEBROKER_RABBITMQADMIN")
    if given:
        return Path(given)
    host = os.environ.get("FAKEBROKER_RABBITMQ")
    if not host:
        need("needs rabbitmqadmin, which a real RabbitMQ serves: set FAKEBROKER_RABBITMQ (scripts/rabbitmq.sh "
             "start) or FAKEBROKER_RABBITMQADMIN")
    path = tmp_path_factory.mktemp("cli") / "rabbitmqadmin"
    with urllib.request.urlopen(f"http://{host}:15672/cli/rabbitmqadmin", timeout=10) as resp:
        path.write_bytes(resp.read())
    return path


@pytest.fixture
def admin(rabbitmqadmin: Path) -> Iterator[tuple[fakebroker.ThreadedBroker, list[str]]]:
    with fakebroker.start() as broker:
        port = broker.addresses["management"].port
        yield broker, [sys.executable, str(rabbitmqadmin), "-H", "127.0.0.1", "-P", str(port)]


def run(cmd: list[str], *args: str) -> str:
    out = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_declare_publish_get_list_delete(admin: tuple[fakebroker.ThreadedBroker, list[str]]) -> None:
    broker, cmd = admin
    assert "queue declared" in run(cmd, "declare", "queue", "name=adm", "durable=true")
    assert "exchange declared" in run(cmd, "declare", "exchange", "name=admx", "type=topic")
    assert "binding declared" in run(cmd, "declare", "binding", "source=admx", "destination=adm",
                                     "routing_key=a.#")
    run(cmd, "publish", "exchange=admx", "routing_key=a.b", "payload=hello admin")
    assert broker.queues["adm"].durable
    assert [m.body for m in broker.peek("adm")] == [b"hello admin"]

    queues = json.loads(run(cmd, "-f", "raw_json", "list", "queues"))
    assert [(q["name"], q["messages"]) for q in queues] == [("adm", 1)]
    bindings = json.loads(run(cmd, "-f", "raw_json", "list", "bindings"))
    assert [(b["source"], b["destination"], b["routing_key"]) for b in bindings] == [("", "adm", "adm"),
                                                                                    ("admx", "adm", "a.#")]
    got = json.loads(run(cmd, "-f", "raw_json", "get", "queue=adm", "ackmode=ack_requeue_false"))
    assert [(m["payload"], m["routing_key"], m["exchange"]) for m in got] == [("hello admin", "a.b", "admx")]
    assert broker.peek("adm") == []

    overview = json.loads(run(cmd, "-f", "raw_json", "show", "overview"))
    assert overview[0]["rabbitmq_version"] == "3.10.8"
    assert "queue deleted" in run(cmd, "delete", "queue", "name=adm")
    assert "adm" not in broker.queues


def test_list_connections_shows_an_mqtt_client(admin: tuple[fakebroker.ThreadedBroker, list[str]]) -> None:
    import paho.mqtt.client as mqtt

    broker, cmd = admin
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="adm-device")
    client.connect(*broker.mqtt)
    client.loop_start()
    try:
        _wait(broker, "adm-device")
        conns = json.loads(run(cmd, "-f", "raw_json", "list", "connections"))
        assert [(c["protocol"], c["client_properties"]["client_id"]) for c in conns] == [("MQTT 3.1.1",
                                                                                         "adm-device")]
    finally:
        client.loop_stop()
        client.disconnect()


def _wait(broker: fakebroker.ThreadedBroker, client_id: str) -> None:
    import time

    deadline = time.monotonic() + 5
    while broker.clients.get(client_id) is None:
        assert time.monotonic() < deadline, f"{client_id} never connected"
        time.sleep(0.01)
