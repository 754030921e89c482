"""stomp.py 9 end to end against a real fakebroker over real sockets, on STOMP 1.0, 1.1 and 1.2 (TCP) and over
Web STOMP. Waiting is always "until something happened, or fail after a timeout"."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import pytest
import stomp

from fakebroker import ThreadedBroker

TIMEOUT = 5.0
VERSIONS = ["1.0", "1.1", "1.2"]


class Listener(stomp.ConnectionListener):  # type: ignore[misc]
    """Collects what stomp.py hands over, in queues a test can wait on."""

    def __init__(self) -> None:
        self.messages: queue.Queue[Any] = queue.Queue()
        self.errors: queue.Queue[Any] = queue.Queue()
        self.receipts: queue.Queue[str] = queue.Queue()
        self.connected: queue.Queue[Any] = queue.Queue()
        self.disconnected = threading.Event()

    def on_connected(self, frame: Any) -> None:
        self.connected.put(frame)

    def on_message(self, frame: Any) -> None:
        self.messages.put(frame)

    def on_error(self, frame: Any) -> None:
        self.errors.put(frame)

    def on_receipt(self, frame: Any) -> None:
        self.receipts.put(frame.headers["receipt-id"])

    def on_disconnected(self) -> None:
        self.disconnected.set()

    def message(self) -> Any:
        return self.messages.get(timeout=TIMEOUT)

    def receipt(self, receipt_id: str) -> None:
        assert self.receipts.get(timeout=TIMEOUT) == receipt_id

    def no_message(self, wait: float = 0.1) -> None:
        with pytest.raises(queue.Empty):
            self.messages.get(timeout=wait)


class Client:
    def __init__(self, conn: Any, version: str) -> None:
        self.conn = conn
        self.version = version
        self.listener = Listener()
        conn.set_listener("test", self.listener)

    def connect(self, **kwargs: Any) -> Any:
        self.conn.connect("guest", "guest", wait=True, **kwargs)
        return self.listener.connected.get(timeout=TIMEOUT)

    def subscribe(self, destination: str, sub_id: str, ack: str = "auto", **headers: Any) -> None:
        receipt = f"sub-{sub_id}"
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers={**headers, "receipt": receipt})
        self.listener.receipt(receipt)

    def send(self, destination: str, body: str | bytes, receipt: str | None = None, **headers: Any) -> None:
        if receipt is not None:
            headers["receipt"] = receipt
        self.conn.send(destination, body, headers=headers)
        if receipt is not None:
            self.listener.receipt(receipt)

    # stomp.py's ACK and NACK take the subscription on 1.1 only; 1.2 acknowledges by the MESSAGE's ack header.
    def ack(self, frame: Any, sub_id: str) -> None:
        if self.version == "1.1":
            self.conn.ack(frame.headers["message-id"], sub_id)
        else:
            self.conn.ack(frame.headers["ack" if self.version == "1.2" else "message-id"])

    def nack(self, frame: Any, sub_id: str, **kwargs: Any) -> None:
        if self.version == "1.1":
            self.conn.nack(frame.headers["message-id"], sub_id, **kwargs)
        else:
            self.conn.nack(frame.headers["ack"], **kwargs)

    def disconnect(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect(receipt=f"bye-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def make_client(fakebroker: ThreadedBroker) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(version: str = "1.2", *, websocket: bool = False, heartbeats: tuple[int, int] = (0, 0)) -> Client:
        if websocket:
            url = urlparse(fakebroker.web_stomp_url)
            conn = stomp.WSStompConnection([(url.hostname, url.port)], ws_path="/ws", vhost="/",
                                           heartbeats=heartbeats)
        else:
            cls = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}[version]
            kwargs: dict[str, Any] = {} if version == "1.0" else {"heartbeats": heartbeats}
            if version == "1.2":
                kwargs["vhost"] = "/"  # stomp.py's 1.2 connection sends host:<hostname> otherwise (a vhost)
            conn = cls([tuple(fakebroker.stomp)], **kwargs)
        client = Client(conn, "1.2" if websocket else version)
        made.append(client)
        return client

    yield make
    for client in made:
        with contextlib.suppress(Exception):  # a test may have left it broken on purpose
            client.disconnect()


def connected(make_client: Callable[..., Client], version: str, **kwargs: Any) -> Client:
    client = make_client(version, **kwargs)
    client.connect()
    return client


# -- per version ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_connect_negotiates_the_version(make_client: Callable[..., Client], version: str) -> None:
    client = make_client(version)
    frame = client.connect()
    assert frame.headers["version"] == version
    assert frame.headers["server"] == "RabbitMQ/3.10.8"
    assert frame.headers["session"].startswith("session-")


@pytest.mark.parametrize("version", VERSIONS)
def test_topic_round_trip_with_headers(make_client: Callable[..., Client], version: str) -> None:
    client = connected(make_client, version)
    client.subscribe("/topic/orders.*", "s1")
    client.send("/topic/orders.created", "order 1", receipt="r1", **{"content-type": "text/plain", "x-trace": "t1"})
    frame = client.listener.message()
    assert frame.body == "order 1"
    assert frame.headers["destination"] == "/topic/orders.created"
    assert frame.headers["subscription"] == "s1"
    assert (frame.headers["x-trace"], frame.headers["content-type"]) == ("t1", "text/plain")
    assert frame.headers["message-id"].startswith("T_s1@@session-")


@pytest.mark.parametrize("version", VERSIONS)
def test_queue_destination_and_the_model(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                         version: str) -> None:
    client = connected(make_client, version)
    client.send("/queue/jobs", "job-1", receipt="r", persistent="true", priority="4")
    q = fakebroker.queues["jobs"]
    assert (q.durable, q.auto_delete, q.exclusive) == (True, False, False)
    message = fakebroker.get("jobs")
    assert message is not None and message.body == b"job-1"
    assert (message.properties["delivery_mode"], message.properties["priority"]) == (2, 4)
    fakebroker.assert_published(1, destination="/queue/jobs")


@pytest.mark.parametrize("version", VERSIONS)
def test_client_ack_is_cumulative(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                  version: str) -> None:
    fakebroker.declare_queue("work")
    client = connected(make_client, version)
    client.subscribe("/amq/queue/work", "w", ack="client")
    for i in range(3):
        fakebroker.publish("", "work", f"m{i}".encode())
    frames = [client.listener.message() for _ in range(3)]
    assert ("ack" in frames[0].headers) == (version == "1.2")
    client.ack(frames[1], "w")
    client.send("/topic/sync", "x", receipt="sync")  # frames are handled in order: the ACK is done
    assert fakebroker.queues["work"].unacked == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_client_individual_ack_and_nack(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                        version: str) -> None:
    fakebroker.declare_queue("work")
    client = connected(make_client, version)
    client.subscribe("/amq/queue/work", "w", ack="client-individual")
    for i in range(3):
        fakebroker.publish("", "work", f"m{i}".encode())
    frames = [client.listener.message() for _ in range(3)]
    client.ack(frames[1], "w")
    client.send("/topic/sync", "x", receipt="sync0")
    assert fakebroker.queues["work"].unacked == 2
    if version == "1.0":
        return  # STOMP 1.0 has no NACK
    client.nack(frames[0], "w")
    again = client.listener.message()
    assert (again.body, again.headers["redelivered"]) == ("m0", "true")
    client.nack(frames[2], "w", requeue=False)
    client.send("/topic/sync", "x", receipt="sync")
    assert fakebroker.queues["work"].unacked == 1 and fakebroker.queues["work"].messages == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_transactions(make_client: Callable[..., Client], fakebroker: ThreadedBroker, version: str) -> None:
    client = connected(make_client, version)
    tx = client.conn.begin()
    client.conn.send("/queue/txq", "in tx", transaction=tx)
    client.send("/topic/sync", "x", receipt="sync")
    assert fakebroker.get("txq") is None
    client.conn.commit(tx)
    client.send("/topic/sync", "x", receipt="sync2")
    message = fakebroker.get("txq")
    assert message is not None and message.body == b"in tx"
    tx2 = client.conn.begin()
    client.conn.send("/queue/txq", "aborted", transaction=tx2)
    client.conn.abort(tx2)
    client.send("/topic/sync", "x", receipt="sync3")
    assert fakebroker.get("txq") is None


@pytest.mark.parametrize("version", VERSIONS)
def test_durable_subscription_survives_the_client(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                                  version: str) -> None:
    durable = {"durable": "true", "auto-delete": "false"}
    first = connected(make_client, version)
    first.subscribe("/topic/news", "news-1", **durable)
    first.disconnect()
    fakebroker.publish("amq.topic", "news", b"while you were away")
    second = connected(make_client, version)
    second.subscribe("/topic/news", "news-1", **durable)
    assert second.listener.message().body == "while you were away"


@pytest.mark.parametrize("version", VERSIONS)
def test_errors_reach_the_client(make_client: Callable[..., Client], version: str) -> None:
    client = connected(make_client, version)
    client.conn.send("/nowhere/x", "x")
    error = client.listener.errors.get(timeout=TIMEOUT)
    assert error.headers["message"] == "Unknown destination"
    client.send("/topic/still.open", "x", receipt="open")


@pytest.mark.parametrize("version", VERSIONS)
def test_temp_queue_request_reply(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                  version: str) -> None:
    server = connected(make_client, version)
    server.subscribe("/queue/rpc", "rpc")
    requester = connected(make_client, version)
    requester.send("/queue/rpc", "2+2", **{"reply-to": "/temp-queue/answers", "correlation-id": "q1"})
    request = server.listener.message()
    assert request.headers["reply-to"].startswith("/reply-queue/amq.gen-")
    server.send(request.headers["reply-to"], "4", **{"correlation-id": request.headers["correlation-id"]})
    answer = requester.listener.message()
    assert (answer.body, answer.headers["correlation-id"]) == ("4", "q1")
    assert answer.headers["subscription"] == "/temp-queue/answers"


# -- the handle and the fixture -------------------------------------------------------------------------
def test_clients_list_stomp_connections(make_client: Callable[..., Client], fakebroker: ThreadedBroker) -> None:
    client = connected(make_client, "1.2")
    client.subscribe("/topic/a.#", "a1", ack="client-individual")
    [info] = [c for c in fakebroker.clients if c.protocol == "stomp"]
    assert (info.user, info.vhost, info.listener, info.version) == ("guest", "/", "stomp", "1.2")
    assert info.subscriptions == {"a1": "/topic/a.#"}
    assert info.subscription_details["a1"]["ack"] == "client-individual"
    assert info.client_id == info.session


def test_disconnect_drops_a_stomp_client(make_client: Callable[..., Client], fakebroker: ThreadedBroker) -> None:
    client = connected(make_client, "1.2")
    client_id = next(c.client_id for c in fakebroker.clients if c.protocol == "stomp")
    fakebroker.disconnect(client_id)
    assert client.listener.disconnected.wait(TIMEOUT)
    assert not [c for c in fakebroker.clients if c.protocol == "stomp"]


def test_heart_beat_expiry_on_clock_advance(make_client: Callable[..., Client], fakebroker: ThreadedBroker) -> None:
    # The client promises a beat every 10 s (stomp.py would send them on its own thread, in real time).
    client = make_client("1.2", heartbeats=(10_000, 0))
    frame = client.connect()
    assert frame.headers["heart-beat"] == "0,10000"
    fakebroker.clock.advance(19)
    client.send("/topic/x", "still alive", receipt="alive")
    fakebroker.clock.advance(31)  # two checks with no byte from the client: the broker closes
    assert client.listener.disconnected.wait(TIMEOUT)


def test_mqtt_publish_reaches_stomp_and_back(make_client: Callable[..., Client], fakebroker: ThreadedBroker) -> None:
    client = connected(make_client, "1.2")
    client.subscribe("/topic/sensors.*", "s")
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sensor-1")
    paho.on_message = lambda c, u, m: got.put(m)
    paho.connect(*fakebroker.mqtt)
    paho.loop_start()
    try:
        paho.subscribe("commands/#", qos=1)[0]
        paho.publish("sensors/t1", b"21.5", qos=1).wait_for_publish(TIMEOUT)
        frame = client.listener.message()
        assert (frame.headers["destination"], frame.body, frame.headers["persistent"]) == (
            "/topic/sensors.t1", "21.5", "true")
        deadline = time.monotonic() + TIMEOUT
        while not fakebroker.queues.get("mqtt-subscription-sensor-1qos1"):
            assert time.monotonic() < deadline, "the MQTT subscription never arrived"
            time.sleep(0.01)
        client.send("/topic/commands.t1", "calibrate", receipt="c")
        message = got.get(timeout=TIMEOUT)
        assert (message.topic, message.payload, message.qos) == ("commands/t1", b"calibrate", 1)
    finally:
        paho.loop_stop()
        paho.disconnect()


def test_web_stomp_with_stomp_py(make_client: Callable[..., Client], fakebroker: ThreadedBroker) -> None:
    ws = make_client(websocket=True)
    assert ws.connect().headers["version"] == "1.2"
    ws.subscribe("/topic/ws.*", "w")
    tcp = connected(make_client, "1.2")
    tcp.send("/topic/ws.hello", "from tcp", receipt="t")
    assert ws.listener.message().body == "from tcp"
    ws.send("/topic/ws.echo", "from ws", receipt="w")
    [entry] = fakebroker.messages.filter(destination="/topic/ws.echo")
    assert entry.body == b"from ws" and entry.protocol == "stomp"
    [info] = [c for c in fakebroker.clients if c.listener == "web_stomp"]
    # stomp.py offers no subprotocol; like RabbitMQ, the upgrade succeeds without one.
    assert (info.transport, info.subprotocol) == ("websocket", None)


@pytest.mark.parametrize("version", VERSIONS)
def test_exchange_and_amq_queue_destinations(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                             version: str) -> None:
    fakebroker.declare_exchange("events", "direct")
    fakebroker.declare_queue("audit")
    fakebroker.bind("audit", "events", "login")
    client = connected(make_client, version)
    client.subscribe("/exchange/events/login", "ex")
    client.subscribe("/amq/queue/audit", "q")
    client.send("/exchange/events/login", "alice", receipt="r")
    got = sorted((f.headers["subscription"], f.headers["destination"], f.body)
                 for f in (client.listener.message(), client.listener.message()))
    assert got == [("ex", "/exchange/events/login", "alice"), ("q", "/exchange/events/login", "alice")]
    client.send("/amq/queue/missing", "dropped", receipt="r2")  # silently dropped, as in RabbitMQ
    assert "missing" not in fakebroker.queues


@pytest.mark.parametrize("version", VERSIONS)
def test_unsubscribe_and_server_cancel(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                       version: str) -> None:
    fakebroker.declare_queue("doomed")
    client = connected(make_client, version)
    client.subscribe("/topic/news.*", "n")
    client.conn.unsubscribe(id="n", headers={"receipt": "u"})
    client.listener.receipt("u")
    fakebroker.publish("amq.topic", "news.x", b"nobody hears")
    client.subscribe("/amq/queue/doomed", "d")
    fakebroker.delete_queue("doomed")
    error = client.listener.errors.get(timeout=TIMEOUT)
    assert (error.headers["message"], error.headers["subscription"]) == ("Server cancelled subscription", "d")
    client.send("/topic/still.open", "x", receipt="open")
    client.listener.no_message()


@pytest.mark.parametrize("version", VERSIONS)
def test_header_mapping_both_ways(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                  version: str) -> None:
    fakebroker.declare_queue("mapped")
    client = connected(make_client, version)
    client.send("/amq/queue/mapped", "{}", receipt="r", persistent="true", priority="7",
                **{"content-type": "application/json", "correlation-id": "c-1", "amqp-message-id": "m-1",
                   "x-custom": "v"})
    message = fakebroker.get("mapped")
    assert message is not None
    props = message.properties
    assert (props["delivery_mode"], props["priority"], props["content_type"], props["correlation_id"],
            props["message_id"], props["headers"]["x-custom"]) == (2, 7, "application/json", "c-1", "m-1", "v")
    client.subscribe("/amq/queue/mapped", "m")
    fakebroker.publish("", "mapped", b"back", {"app_id": "api", "timestamp": 1700000000, "reply_to": "rq",
                                               "headers": {"n": 3}})
    frame = client.listener.message()
    assert (frame.headers["app-id"], frame.headers["timestamp"], frame.headers["reply-to"], frame.headers["n"]) == (
        "api", "1700000000", "/reply-queue/rq", "3")


@pytest.mark.parametrize("version", VERSIONS)
def test_disconnect_receipt_and_queue_cleanup(make_client: Callable[..., Client], fakebroker: ThreadedBroker,
                                              version: str) -> None:
    client = connected(make_client, version)
    client.subscribe("/topic/temp.*", "t")
    assert any(name.startswith("stomp-subscription-") for name in fakebroker.queues)
    client.conn.disconnect(receipt="bye")
    assert client.listener.disconnected.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while any(name.startswith("stomp-subscription-") for name in fakebroker.queues):
        assert time.monotonic() < deadline, "the subscription queue outlived its connection"
        time.sleep(0.01)
