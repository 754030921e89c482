"""CONNECT: protocol levels, client ids, credentials and vhosts, CONNACK codes, session present, takeover."""

from __future__ import annotations

import re

import paho.mqtt.client as mqtt
import pytest

from fakebroker.protocols.mqtt.codec import Connack, ConnackCode, Connect, Disconnect, Publish, Suback, Subscribe, Will


def test_connect_over_tcp_and_websocket_shows_in_clients(client, broker, protocol, level, transport):
    c = client("dev-1", keepalive=17, will=("status/dev-1", b"offline", 1, True))
    info = broker.clients.get("dev-1")
    assert info is not None
    assert info.protocol == "mqtt"
    assert info.protocol_level == level
    assert info.protocol_version == {3: "MQTT 3.1", 4: "MQTT 3.1.1"}[level]
    assert info.user == "guest" and info.vhost == "/"
    assert info.keepalive == 17
    assert info.clean_session is True
    assert info.will == {"topic": "status/dev-1", "payload": b"offline", "qos": 1, "retain": True}
    assert info.subscriptions == {}
    c.subscribe([("a/+", 1), ("b/#", 0)])
    assert broker.clients.get("dev-1").subscriptions == {"a/+": 1, "b/#": 0}
    assert broker.clients.get("dev-1").listener == ("web_mqtt" if transport == "websockets" else "mqtt")


@pytest.mark.parametrize("level", [3, 4])
def test_connack_accepted_for_levels_3_and_4(raw, level):
    r = raw()
    assert r.connect(client_id="lvl", protocol_level=level) == Connack(False, ConnackCode.ACCEPTED)


@pytest.mark.parametrize(("name", "level"), [("MQTT", 5), ("MQTT", 6), ("MQTT", 3), ("MQIsdp", 4)])
def test_unsupported_protocol_level_gets_connack_1_then_close(raw, broker, name, level):
    # [MQTT-3.1.2-2]; RabbitMQ 3.10 closes with no CONNACK (docs/differences.md).
    r = raw()
    r.send(Connect(protocol_name=name, protocol_level=level, client_id="v5"))
    assert r.closed() == [Connack(False, ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)]
    assert broker.clients.get("v5") is None


def test_paho_mqttv5_is_refused(broker, client):
    c = client("paho-v5", protocol=mqtt.MQTTv5, connect=False)
    c.paho.connect(*broker.mqtt)
    c.start_loop()
    assert c.disconnected.wait(3)
    assert broker.clients.get("paho-v5") is None


def test_empty_client_id_with_clean_session_gets_generated_id(raw, broker, level):
    r = raw()
    assert r.connect(client_id="", clean_session=True, protocol_level=level).return_code == 0
    (info,) = broker.clients
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", info.client_id)
    r.send(Subscribe(1, [("x/y", 1)]))
    assert isinstance(r.recv(), Suback)
    assert f"mqtt-subscription-{info.client_id}qos1" in broker.queues


def test_empty_client_id_with_paho_v311(client, broker):
    client("", protocol=mqtt.MQTTv311)
    (info,) = broker.clients
    assert len(info.client_id) == 22


def test_empty_client_id_with_persistent_session_is_refused_with_code_2(raw, broker, level):
    r = raw()
    r.send(Connect(client_id="", clean_session=False, protocol_level=level,
                   protocol_name="MQIsdp" if level == 3 else "MQTT"))
    assert r.closed() == [Connack(False, ConnackCode.IDENTIFIER_REJECTED)]
    assert len(broker.clients) == 0


def test_long_client_ids_are_accepted(raw):
    assert raw().connect(client_id="c" * 100).return_code == 0


def test_anonymous_is_guest_by_default(client, broker, protocol):
    client("anon")
    assert broker.clients.get("anon").user == "guest"


@pytest.mark.fakebroker(allow_anonymous=False)
def test_anonymous_refused_when_not_allowed(raw, client, broker, protocol):
    r = raw()
    r.send(Connect(client_id="anon"))
    assert r.closed() == [Connack(False, ConnackCode.BAD_USERNAME_OR_PASSWORD)]
    c = client("anon2", connect=False)
    session_present, code = c.connect()
    assert code == 4  # bad user name or password
    client("named", username="guest", password="guest")
    assert broker.clients.get("named").user == "guest"


@pytest.mark.fakebroker(default_user="device", default_pass="s3cret", users={"device": "s3cret", "guest": "guest"})
def test_anonymous_logs_in_as_default_user(client, broker, protocol):
    client("anon")
    assert broker.clients.get("anon").user == "device"


@pytest.mark.fakebroker(default_user="ghost", default_pass="boo")
def test_default_user_must_exist(raw):
    # RabbitMQ logs the anonymous client in as default_user; an unknown user fails like any login.
    r = raw()
    r.send(Connect(client_id="anon"))
    assert r.closed() == [Connack(False, ConnackCode.BAD_USERNAME_OR_PASSWORD)]


USERS = {"alice": "pw", "bob": {"password": "pw2", "vhosts": ["iot"]}, "guest": "guest"}


@pytest.mark.fakebroker(users=USERS, vhosts=("/", "iot"))
@pytest.mark.parametrize(
    ("username", "password", "code"),
    [
        ("alice", b"pw", ConnackCode.ACCEPTED),
        ("alice", b"wrong", ConnackCode.BAD_USERNAME_OR_PASSWORD),
        ("mallory", b"pw", ConnackCode.BAD_USERNAME_OR_PASSWORD),
        ("alice", None, ConnackCode.BAD_USERNAME_OR_PASSWORD),  # user name without password
        ("bob", b"pw2", ConnackCode.NOT_AUTHORIZED),  # bob may not use the default vhost "/"
        ("iot:bob", b"pw2", ConnackCode.ACCEPTED),
        ("iot:alice", b"pw", ConnackCode.ACCEPTED),  # a plain password string allows every vhost
        ("/:guest", b"guest", ConnackCode.ACCEPTED),
        ("nosuchvhost:alice", b"pw", ConnackCode.BAD_USERNAME_OR_PASSWORD),
        ("iot:bob", b"wrong", ConnackCode.BAD_USERNAME_OR_PASSWORD),
    ],
)
def test_credentials_and_vhosts(raw, broker, username, password, code):
    r = raw()
    r.send(Connect(client_id="cred", username=username, password=password))
    if code == ConnackCode.ACCEPTED:
        assert r.recv() == Connack(False, code)
        info = broker.clients.get("cred")
        vhost, _, user = username.rpartition(":")
        assert (info.user, info.vhost) == (user, vhost or "/")
    else:
        assert r.closed() == [Connack(False, code)]
        assert broker.clients.get("cred") is None


@pytest.mark.fakebroker(users=USERS, vhosts=("/", "iot"))
def test_vhost_user_form_with_paho_keeps_vhosts_apart(client, broker, protocol):
    sub_iot = client("s-iot", username="iot:bob", password="pw2")
    sub_root = client("s-root", username="alice", password="pw")
    sub_iot.subscribe("t", 1)
    sub_root.subscribe("t", 1)
    client("p-iot", username="iot:alice", password="pw").publish("t", b"for iot", 1)
    assert sub_iot.expect_one().payload == b"for iot"
    client("p-root", username="alice", password="pw").publish("t", b"for root", 1)
    assert sub_root.expect_one().payload == b"for root"
    # The model's delivery log is authoritative: each message reached only its own vhost's subscriber.
    assert broker.messages.filter(payload=b"for iot")[0].deliveries == [("mqtt-subscription-s-iotqos1", "s-iot")]
    assert broker.messages.filter(payload=b"for root")[0].deliveries == [("mqtt-subscription-s-rootqos1", "s-root")]
    assert broker.clients.get("s-iot").vhost == "iot"


def test_bad_password_with_paho(client, protocol):
    c = client("badpw", username="guest", password="nope", connect=False)
    session_present, code = c.connect()
    assert code != 0


def test_session_present_flag(raw, broker, level):
    name = "MQIsdp" if level == 3 else "MQTT"
    r = raw()
    assert r.connect(client_id="sp", clean_session=False, protocol_level=level, protocol_name=name) == Connack(
        False, 0)
    r.send(Subscribe(1, [("sp/t", 1)]))
    r.recv()
    r.send(Disconnect())
    r.closed()
    r2 = raw()
    assert r2.connect(client_id="sp", clean_session=False, protocol_level=level, protocol_name=name) == Connack(
        True, 0)
    r2.send(Disconnect())
    r2.closed()
    # A clean session throws the stored one away: no session afterwards.
    r3 = raw()
    assert r3.connect(client_id="sp", clean_session=True, protocol_level=level, protocol_name=name) == Connack(
        False, 0)
    assert "mqtt-subscription-spqos1" not in broker.queues
    r3.send(Disconnect())
    r3.closed()
    r4 = raw()
    assert r4.connect(client_id="sp", clean_session=False, protocol_level=level, protocol_name=name) == Connack(
        False, 0)


def test_persistent_session_without_subscription_has_no_session(raw, broker):
    r = raw()
    r.connect(client_id="nosub", clean_session=False)
    assert broker.queues == {}
    r.send(Disconnect())
    r.closed()
    assert raw().connect(client_id="nosub", clean_session=False).session_present is False


def test_takeover_closes_first_connection(client, broker, protocol, transport, gone):
    # RabbitMQ 3.10: no will for a TCP connection taken over, the will for a WebSocket one.
    watcher = client("watcher")
    watcher.subscribe("will/#", 1)
    first = client("dup-id", will=("will/dup", b"first died", 1, False))
    first.subscribe("first/t", 0)
    second = client("dup-id", transport="tcp")
    assert first.disconnected.wait(3), "the first connection was not closed"
    assert broker.clients.ids().count("dup-id") == 1
    assert broker.clients.get("dup-id").listener == "mqtt"
    wills = [b"first died"] if transport == "websockets" else []
    assert broker.messages.filter(protocol="mqtt-will").bodies == wills
    # The new connection works; the old subscriptions went with the old clean session.
    second.subscribe("second/t", 1)
    watcher.publish("second/t", b"hi", 1)
    watcher.publish("will/marker", b"m", 1)
    assert [m.payload for m in watcher.expect(1 + len(wills))] == [*wills, b"m"]
    assert second.expect_one().payload == b"hi"
    assert "mqtt-subscription-dup-idqos0" not in broker.queues


def test_takeover_of_persistent_session_hands_over_unacked_messages(raw, broker):
    first = raw()
    first.connect(client_id="handover", clean_session=False)
    first.send(Subscribe(1, [("h/t", 1)]))
    first.recv()
    broker.publish("amq.topic", "h.t", b"one")
    got = first.recv_publish()
    assert (got.payload, got.dup) == (b"one", False)
    second = raw()
    assert second.connect(client_id="handover", clean_session=False) == Connack(True, 0)
    again = second.recv_publish()
    assert (again.payload, again.qos, again.dup, again.packet_id) == (b"one", 1, True, 1)
    assert first.closed() == []


def test_second_connect_on_a_connection_closes_it(raw, client, broker):
    # The spec's rule [MQTT-3.1.0-2]; RabbitMQ 3.10 answers a second CONNACK instead (docs/differences.md).
    bystander = client("bystander")
    bystander.subscribe("b/t", 0)
    r = raw()
    r.connect(client_id="twice", will=Will("w/twice", b"x"))
    r.send(Connect(client_id="twice"))
    assert r.closed() == []
    client("pub").publish("b/t", b"still here")
    assert bystander.expect_one().payload == b"still here"


def test_packets_before_connect_close_the_connection(raw):
    r = raw()
    r.send(Publish("a/b", b"early", 0))
    assert r.closed() == []


@pytest.mark.fakebroker(vhosts=("/", "iot"))
def test_client_id_is_unique_across_vhosts(raw, broker):
    # RabbitMQ 3.10's client-id tracker is node-wide: the same id in another vhost takes the connection over.
    first = raw()
    first.connect(client_id="everywhere")
    second = raw()
    assert second.connect(client_id="everywhere", username="iot:guest", password=b"guest") == Connack(False, 0)
    assert first.closed() == []
    (info,) = broker.clients
    assert (info.client_id, info.vhost) == ("everywhere", "iot")
