"""MQTT over WebSocket (RabbitMQ's web_mqtt): broker.web_mqtt_url, path /ws, subprotocol mqtt."""

from __future__ import annotations

import pytest
import websocket

from fakebroker.protocols.mqtt.codec import Connack, Connect, MqttDecoder, Packet, Suback, Subscribe, Will, encode


class RawWs:
    """MQTT packets in binary WebSocket messages, through websocket-client."""

    def __init__(self, url: str, subprotocols: list[str] | None = None) -> None:
        self.ws = websocket.create_connection(url, timeout=3, subprotocols=subprotocols)
        self.decoder = MqttDecoder(allow_wildcards_in_publish_topic=True)

    def send(self, data: bytes | Packet) -> None:
        self.ws.send_binary(data if isinstance(data, bytes) else encode(data))

    def recv(self) -> Packet:
        while (packet := self.decoder.next_packet()) is None:
            opcode, data = self.ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY, opcode
            self.decoder.feed(data)
        return packet

    def closed(self) -> int | None:
        """Wait for the server's close frame; returns its status code."""
        while True:
            try:
                opcode, data = self.ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                return None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(data[:2], "big") if len(data) >= 2 else None


@pytest.fixture
def raw_ws(broker):
    made: list[RawWs] = []

    def make(subprotocols: list[str] | None = None) -> RawWs:
        c = RawWs(broker.web_mqtt_url, subprotocols)
        made.append(c)
        return c

    yield make
    for c in made:
        c.ws.close()


def test_web_mqtt_url(broker):
    url = broker.web_mqtt_url
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/ws")
    assert url != f"ws://127.0.0.1:{broker.mqtt.port}/ws"


def test_paho_over_websockets_publish_and_subscribe(client, broker, protocol):
    sub = client("ws-sub", transport="websockets")
    assert sub.subscribe("ws/#", 1) == [1]
    pub = client("ws-pub", transport="websockets")
    pub.publish("ws/hello", b"over websocket", 1)
    m = sub.expect_one()
    assert (m.topic, m.payload, m.qos) == ("ws/hello", b"over websocket", 1)
    info = broker.clients.get("ws-sub")
    assert (info.protocol, info.listener, info.transport, info.subprotocol) == ("mqtt", "web_mqtt", "websocket",
                                                                                "mqtt")
    assert info.subscriptions == {"ws/#": 1}
    assert broker.messages[0].client_id == "ws-pub"


def test_websocket_and_tcp_clients_meet_in_amq_topic(client, broker, protocol):
    ws = client("ws-side", transport="websockets")
    tcp = client("tcp-side", transport="tcp")
    ws.subscribe("from/tcp", 1)
    tcp.subscribe("from/ws", 1)
    tcp.publish("from/tcp", b"to ws", 1)
    ws.publish("from/ws", b"to tcp", 1)
    assert ws.expect_one().payload == b"to ws"
    assert tcp.expect_one().payload == b"to tcp"
    broker.publish("amq.topic", "from.tcp", b"from amqp")
    assert ws.expect_one().payload == b"from amqp"


def test_subprotocol_mqtt_is_selected(raw_ws):
    r = raw_ws(["mqtt"])
    assert r.ws.subprotocol == "mqtt"
    r.send(Connect(client_id="raw-ws"))
    assert r.recv() == Connack(False, 0)


def test_packets_may_span_websocket_messages(raw_ws, broker):
    r = raw_ws(["mqtt"])
    data = encode(Connect(client_id="split")) + encode(Subscribe(1, [("s/t", 1)]))
    for i in range(0, len(data), 5):
        r.send(data[i : i + 5])
    assert r.recv() == Connack(False, 0)
    assert r.recv() == Suback(1, [1])
    broker.publish("amq.topic", "s.t", b"x")
    assert r.recv().payload == b"x"


def test_malformed_packet_over_websocket_closes_only_that_connection(raw_ws, client, broker):
    bystander = client("bystander", transport="websockets")
    bystander.subscribe("by/t", 1)
    r = raw_ws(["mqtt"])
    r.send(Connect(client_id="bad-ws", will=Will("by/t", b"will of bad-ws", 1)))
    assert r.recv() == Connack(False, 0)
    r.send(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
    assert r.closed() == 1000
    assert bystander.expect_one().payload == b"will of bad-ws"  # a protocol error publishes the will
    client("pub").publish("by/t", b"still here", 1)
    assert bystander.expect_one().payload == b"still here"


def test_websocket_close_without_disconnect_publishes_the_will(raw_ws, client):
    watcher = client("watcher")
    watcher.subscribe("will/#", 1)
    r = raw_ws(["mqtt"])
    r.send(Connect(client_id="ws-will", will=Will("will/ws", b"ws gone", 1)))
    assert r.recv() == Connack(False, 0)
    r.ws.close()  # a WebSocket close frame, but no MQTT DISCONNECT
    assert watcher.expect_one().payload == b"ws gone"


def test_websocket_level5_is_refused(raw_ws, broker):
    r = raw_ws(["mqtt"])
    r.send(Connect(client_id="v5", protocol_level=5))
    assert r.recv() == Connack(False, 1)  # unacceptable protocol version, [MQTT-3.1.2-2]
    assert r.closed() == 1000
    assert broker.clients.get("v5") is None


def test_wrong_path_is_rejected(broker):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(broker.web_mqtt_url.replace("/ws", "/mqtt"), timeout=3)
    assert info.value.status_code == 404
