"""A real browser against fakebroker: headless Chromium opens examples/web_stomp.html, which uses @stomp/stompjs over
plain WebSocket (/ws) and sockjs-client over SockJS (/stomp); the test checks both sides.

Needs Debian's ``chromium`` and the npm packages in ``.browser/node_modules`` (``.ci/run`` installs both). Without
them the tests skip, unless ``FAKEBROKER_REQUIRE_ALL=1`` (set by .ci/run), where a missing piece fails them. Chromium is
driven over the DevTools protocol with websocket-client: no browser-automation package needed.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import websocket
from kit.needs import need

from fakebroker import ThreadedBroker

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "examples" / "web_stomp.html"
MODULES = ROOT / ".browser" / "node_modules"
VENDOR = {
    "stomp.umd.min.js": MODULES / "@stomp" / "stompjs" / "bundles" / "stomp.umd.min.js",
    "sockjs.min.js": MODULES / "sockjs-client" / "dist" / "sockjs.min.js",
}
TIMEOUT = 20.0  # a page load and two STOMP sessions take well under a second; this only bounds a failure


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "no chromium (apt-get install chromium)"
    absent = [str(p) for p in VENDOR.values() if not p.is_file()]
    if absent:
        return f"npm packages missing ({', '.join(absent)}): npm install --prefix .browser @stomp/stompjs@7 " \
               "sockjs-client@1"
    return None


@pytest.fixture(scope="module", autouse=True)
def _browser_available() -> None:
    need(_missing())


class _Files(http.server.SimpleHTTPRequestHandler):
    """The example page and the two libraries, from a server of its own: the page's origin is not the broker's,
    so SockJS's requests are cross-origin, as in the book's setup."""

    def translate_path(self, path: str) -> str:
        name = path.partition("?")[0].rsplit("/", 1)[-1]
        if path.startswith("/vendor/") and name in VENDOR:
            return str(VENDOR[name])
        return str(PAGE) if name == PAGE.name else str(ROOT / "nonexistent")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="fakebroker-chromium-")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = self._devtools_port()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=TIMEOUT,
                                              suppress_origin=True)
        self._ids = 0

    def _devtools_port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not marker.is_file() or not marker.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        return int(marker.read_text().split()[0])

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._ids += 1
        self.ws.send(json.dumps({"id": self._ids, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._ids:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]  # type: ignore[no-any-return]

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = self.evaluate("JSON.stringify(window.results)")
                raise AssertionError(f"timed out waiting for {what}; page state: {state}")
            time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    yield browser
    browser.close()


def open_page(chromium: Chromium, page_server: str, **params: str) -> None:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    chromium.call("Page.navigate", url=f"{page_server}/web_stomp.html?{query}")


@pytest.mark.parametrize("transports", ["websocket", "xhr-streaming", "xhr-polling"])
def test_browser_over_ws_and_sockjs(fakebroker: ThreadedBroker, chromium: Chromium, page_server: str,
                                    transports: str) -> None:
    open_page(chromium, page_server, ws=fakebroker.web_stomp_url, sockjs=fakebroker.sockjs_url,
              transports=transports)
    chromium.wait_for("window.results && results.ws.subscribed && results.sockjs.subscribed", "both subscriptions")
    # Each client sent one message once subscribed; both subscriptions see both.
    chromium.wait_for("results.ws.received.length >= 2 && results.sockjs.received.length >= 2", "the messages")
    fakebroker.publish("amq.topic", "example.python", b"hello from python")
    results = chromium.wait_for(
        "results.ws.received.length >= 3 && results.sockjs.received.length >= 3 && JSON.stringify(results)",
        "the Python message")
    state = json.loads(results)
    assert state["errors"] == []
    for name in ("ws", "sockjs"):
        assert state[name]["version"] == "1.2"
        got = sorted((m["destination"], m["body"], m["from"]) for m in state[name]["received"])
        assert got == [("/topic/example.python", "hello from python", None),
                       ("/topic/example.sockjs", "hello from sockjs", "sockjs"),
                       ("/topic/example.ws", "hello from ws", "ws")]
    # The broker's side: what the browser published, and who is connected how.
    sent = {m.routing_key: m for m in fakebroker.messages.filter(protocol="stomp")}
    assert sent["example.ws"].body == b"hello from ws"
    # stomp.js sends content-length, which RabbitMQ (and fakebroker) copy into the AMQP headers.
    assert sent["example.sockjs"].headers == {"x-from": "sockjs", "content-length": "17"}
    assert sent["example.sockjs"].properties["content_type"] == "text/plain"
    clients = [c for c in fakebroker.clients if c.listener == "web_stomp" and c.client_id]
    sockjs = [c for c in clients if c.details.get("sockjs_session")]
    # sockjs-client used the transport it was given: SockJS over a WebSocket, or over plain HTTP requests.
    assert {c.transport for c in sockjs} == {"websocket" if transports == "websocket" else "sockjs"}
    assert any(c.subscriptions == {"ws-sub": "/topic/example.*"} for c in clients)


def test_the_page_sees_a_stomp_py_client(fakebroker: ThreadedBroker, chromium: Chromium, page_server: str) -> None:
    import stomp

    open_page(chromium, page_server, ws=fakebroker.web_stomp_url)
    chromium.wait_for("window.results && results.ws.subscribed", "the subscription")
    conn = stomp.Connection12([tuple(fakebroker.stomp)], vhost="/")
    conn.connect("guest", "guest", wait=True)
    try:
        conn.send("/topic/example.tcp", "from stomp.py", headers={"x-from": "stomp.py"})
        chromium.wait_for("results.ws.received.some(m => m.from === 'stomp.py')", "the stomp.py message")
    finally:
        conn.disconnect()


def test_the_books_stomp_over_sockjs_code(fakebroker: ThreadedBroker, chromium: Chromium, page_server: str) -> None:
    """stomp.js's Stomp.over(SockJS) with connect(login, passcode, onConnect, onError, vhost), as the book's page
    was written, beside a modern client over /ws."""
    open_page(chromium, page_server, legacy=fakebroker.sockjs_url, ws=fakebroker.web_stomp_url)
    chromium.wait_for("window.results && results.legacy && results.legacy.subscribed && results.ws.subscribed",
                      "both subscriptions")
    state = json.loads(chromium.wait_for(
        "results.legacy.received.length >= 2 && results.ws.received.length >= 2 && JSON.stringify(results)",
        "the messages"))
    assert state["errors"] == []
    for name in ("legacy", "ws"):
        assert sorted(m["body"] for m in state[name]["received"]) == ["hello from legacy", "hello from ws"]
