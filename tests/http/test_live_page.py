"""The live page in headless Chromium (Debian's ``chromium``), driven over the DevTools protocol: a message
published over MQTT appears on the page within a second. ``FAKEBROKER_SCREENSHOT=path.png`` saves what the page
shows (docs/live-page.png was made so)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests
import websocket
from kit.needs import need

import fakebroker

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    """One headless Chromium page, reached through the DevTools protocol."""

    def __init__(self) -> None:
        assert CHROMIUM is not None
        self.profile = tempfile.mkdtemp(prefix="fakebroker-chromium-")
        # The flags keep Chromium from reaching for the network on its own (this machine has none).
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}", "--window-size=1400,1000",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and self.proc.poll() is None, "chromium did not start"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=10, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                assert "error" not in reply, reply
                return reply["result"]  # type: ignore[no-any-return]

    def text(self) -> str:
        result = self.send("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
        return str(result["result"].get("value", ""))

    def wait_for_text(self, needle: str, timeout: float) -> float:
        """Seconds until ``needle`` shows on the page; fails after ``timeout``."""
        start = time.monotonic()
        while needle not in self.text():
            assert time.monotonic() - start < timeout, f"{needle!r} not on the page after {timeout} s"
            time.sleep(0.02)
        return time.monotonic() - start

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Browser]:
    need(None if CHROMIUM is not None else "needs Debian's chromium (apt-get install chromium)")
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def test_the_page_is_self_contained(browser: Browser) -> None:
    with fakebroker.start() as broker:
        html = requests.get(broker.management_url + "/", timeout=5).text
    assert "<script" in html and 'src="http' not in html and "href=\"http" not in html


def test_a_message_published_over_mqtt_appears_within_a_second(browser: Browser) -> None:
    with fakebroker.start() as broker:
        broker.declare_queue("kitchen-sensors", durable=True)
        broker.bind("kitchen-sensors", "amq.topic", "sensors.kitchen.#")
        dashboard = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dashboard")
        dashboard.connect(*broker.mqtt)
        dashboard.loop_start()
        dashboard.subscribe("sensors/#", qos=1)
        broker.wait_for_client("dashboard", subscribed="sensors/#")

        browser.send("Page.enable")
        browser.send("Page.navigate", url=broker.management_url + "/")
        browser.wait_for_text("dashboard", timeout=10)  # the page is live: it lists the subscriber

        sensor = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="kitchen-sensor")
        sensor.connect(*broker.mqtt)
        sensor.loop_start()
        sensor.publish("sensors/kitchen/temperature", b"21.5 C", qos=1).wait_for_publish(5)
        elapsed = browser.wait_for_text("21.5 C", timeout=1.0)
        assert elapsed < 1.0
        text = browser.text()
        assert "sensors.kitchen.temperature" in text and "kitchen-sensors" in text
        assert "mqtt-subscription-dashboardqos1" in text

        shot = os.environ.get("FAKEBROKER_SCREENSHOT")
        if shot:
            time.sleep(1.6)  # let the highlight of the new row fade, for a calm picture
            data = browser.send("Page.captureScreenshot", format="png")["data"]
            Path(shot).write_bytes(base64.b64decode(data))
        for client in (sensor, dashboard):
            client.loop_stop()
            client.disconnect()
