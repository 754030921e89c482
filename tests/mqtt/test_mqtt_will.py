"""Last Will and Testament, and keepalive expiry on the broker's clock."""

from __future__ import annotations

import time

import pytest

from fakebroker.protocols.mqtt.codec import Connack, Connect, Pingreq, Pingresp, Publish, Will


@pytest.fixture
def watcher(client):
    """A subscriber to ``will/#`` at QoS 1."""
    w = client("watcher")
    w.subscribe("will/#", 1)
    return w


def test_will_on_socket_close(raw, broker, watcher, level, gone):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "will.#")
    r = raw()
    name = "MQIsdp" if level == 3 else "MQTT"
    r.connect(client_id="dies", will=Will("will/one", b"gone", 1), protocol_level=level, protocol_name=name)
    r.close()  # no DISCONNECT
    m = watcher.expect_one()
    assert (m.topic, m.payload, m.qos, m.retain) == ("will/one", b"gone", 1, False)
    msg = broker.get("tap")
    assert (msg.exchange, msg.routing_key, msg.body) == ("amq.topic", "will.one", b"gone")
    assert msg.properties == {"delivery_mode": 2, "headers": {"x-mqtt-publish-qos": 1, "x-mqtt-dup": False}}
    (logged,) = broker.messages.filter(protocol="mqtt-will")
    assert logged.client_id == "dies"


def test_will_on_broker_disconnect(client, broker, watcher, protocol, transport, gone):
    client("device", will=("will/device", b"offline", 1, False))
    broker.disconnect("device")
    m = watcher.expect_one()
    assert (m.topic, m.payload, m.qos) == ("will/device", b"offline", 1)
    assert broker.clients.get("device") is None


def test_will_on_protocol_error(raw, watcher):
    r = raw()
    r.connect(client_id="broken", will=Will("will/broken", b"malformed", 0))
    r.send(b"\x30\x80\x80\x80\x80\x01")  # a Remaining Length of five bytes
    assert r.closed() == []
    m = watcher.expect_one()
    assert (m.topic, m.payload, m.qos) == ("will/broken", b"malformed", 0)


def test_clean_disconnect_publishes_no_will_over_tcp_only(client, broker, watcher, protocol, transport):
    # RabbitMQ 3.10's web_mqtt publishes the will however the connection ends, DISCONNECT included.
    c = client("polite", will=("will/polite", b"websocket only", 1, False))
    c.disconnect()
    wills = [b"websocket only"] if transport == "websockets" else []
    if wills:
        broker.wait_for_message(protocol="mqtt-will")
    assert broker.messages.filter(protocol="mqtt-will").bodies == wills
    client("p").publish("will/marker", b"m", 1)
    assert [m.payload for m in watcher.expect(1 + len(wills))] == [*wills, b"m"]


def test_no_will_for_a_refused_connect(raw, broker):
    r = raw()
    r.send(Connect(client_id="refused", username="guest", password=b"wrong", will=Will("will/x", b"x")))
    assert r.closed() == [Connack(False, 4)]
    assert len(broker.messages) == 0


def test_retained_will(raw, client, broker, gone):
    r = raw()
    r.connect(client_id="ret-will", will=Will("will/retained", b"last words", 1, True))
    r.close()
    gone("ret-will")
    assert broker.retained() == {"will/retained": b"last words"}
    late = client("late")
    late.subscribe("will/retained", 1)
    m = late.expect_one()
    assert (m.payload, m.qos, m.retain) == (b"last words", 1, True)


def test_qos2_will_keeps_its_qos_in_the_header(raw, broker, watcher):
    broker.declare_queue("tap")
    broker.bind("tap", "amq.topic", "will.#")
    r = raw()
    r.connect(client_id="q2will", will=Will("will/q2", b"x", 2))
    r.close()
    assert watcher.expect_one().qos == 1
    assert broker.get("tap").properties["headers"] == {"x-mqtt-publish-qos": 2, "x-mqtt-dup": False}


# -- keepalive -----------------------------------------------------------------------------------------------


def test_keepalive_expiry_publishes_the_will(raw, broker, watcher, level):
    r = raw()
    name = "MQIsdp" if level == 3 else "MQTT"
    r.connect(client_id="silent", keepalive=10, will=Will("will/silent", b"timed out", 1), protocol_level=level,
              protocol_name=name)
    broker.clock.advance(14.9)  # 1.5 x keepalive is 15 s
    assert broker.clients.get("silent") is not None
    assert len(broker.messages) == 0
    broker.clock.advance(0.2)
    assert r.closed() == []
    m = watcher.expect_one()
    assert (m.topic, m.payload) == ("will/silent", b"timed out")
    assert broker.clients.get("silent") is None


def test_keepalive_is_reset_by_any_packet(raw, broker):
    r = raw()
    r.connect(client_id="pinger", keepalive=10)
    broker.clock.advance(10)
    r.send(Pingreq())
    assert r.recv() == Pingresp()
    broker.clock.advance(10)  # 20 s since CONNECT, 10 since the ping
    r.send(Publish("k/a", b"x", 1, packet_id=1))
    r.recv()
    broker.clock.advance(14.9)
    assert broker.clients.get("pinger") is not None
    broker.clock.advance(0.2)
    assert r.closed() == []


def test_keepalive_zero_never_expires(raw, broker):
    r = raw()
    r.connect(client_id="forever", keepalive=0)
    broker.clock.advance(10**7)
    r.send(Pingreq())
    assert r.recv() == Pingresp()


def test_paho_client_expires_after_one_and_a_half_keepalives(client, broker, watcher, protocol, transport):
    # paho would ping after 5 s of real time; the test is over long before, so only the clock decides.
    c = client("paho-ka", keepalive=5, will=("will/paho", b"expired", 0, False))
    broker.clock.advance(7.4)
    assert broker.clients.get("paho-ka") is not None
    broker.clock.advance(0.2)
    assert c.disconnected.wait(3)
    assert watcher.expect_one().payload == b"expired"


def test_keepalive_does_not_run_on_real_time(raw, broker, watcher):
    r = raw()
    r.connect(client_id="realtime", keepalive=1, will=Will("will/realtime", b"x", 1))
    time.sleep(0.3)  # real time passes; only broker.clock.advance() moves the broker's time
    broker.clock.advance(1.4)  # 1.4 s of broker time (+0.3 s real) is still under 1.5 x keepalive
    assert broker.clients.get("realtime") is not None
    r.send(Pingreq())
    assert r.recv() == Pingresp()
    broker.clock.advance(1.49)
    assert broker.clients.get("realtime") is not None
    broker.clock.advance(0.02)
    assert r.closed() == []
    assert watcher.expect_one().topic == "will/realtime"


def test_no_will_on_takeover(client, broker, watcher, protocol):
    first = client("taken", will=("will/taken", b"x", 1, False))
    client("taken")
    assert first.disconnected.wait(3)
    client("p").publish("will/marker", b"m", 1)
    assert [m.payload for m in watcher.expect(1)] == [b"m"]
    assert len(broker.messages.filter(protocol="mqtt-will")) == 0
