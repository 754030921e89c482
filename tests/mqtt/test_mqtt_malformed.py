"""Malformed and out-of-order input on raw sockets: the offender gets what the MQTT 3.1.1 spec prescribes (a
CONNACK code where there is one, otherwise the connection is closed) and nobody else notices."""

from __future__ import annotations

import pytest
from kit.mqtt import connect as raw_connect
from kit.mqtt import pkt, s

from fakebroker.protocols.mqtt.codec import Connack, ConnackCode, Connect, Puback, Publish, encode


def connect(flags: int = 0x02, payload: bytes = s("bad"), name: str = "MQTT", level: int = 4) -> bytes:
    return raw_connect(flags, payload, name, level)


REFUSED = Connack(False, ConnackCode.IDENTIFIER_REJECTED)
BAD_LEVEL = Connack(False, ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION)

BEFORE_CONNECT = {
    "pingreq-first": (pkt(0xC0, b""), []),
    "publish-first": (encode(Publish("a/b", b"x")), []),
    "unknown-protocol-name": (connect(name="MQTX"), []),
    # [MQTT-3.1.2-2]: CONNACK 1, then the close (RabbitMQ 3.10 closes without it).
    "protocol-level-5": (connect(level=5), [BAD_LEVEL]),
    "mqtt-name-with-level-3": (connect(level=3), [BAD_LEVEL]),
    "reserved-connect-flag": (connect(flags=0x03), []),
    "will-qos-3": (connect(flags=0x02 | 0x04 | 0x18, payload=s("bad") + s("w") + s("x")), []),
    "will-retain-without-will-flag": (connect(flags=0x22), []),
    "password-without-username": (connect(flags=0x42, payload=s("bad") + s("pw")), []),  # RabbitMQ: CONNACK 4
    "client-id-not-utf8": (connect(payload=s(b"\xc3\x28")), []),
    "client-id-with-nul": (connect(payload=s("a\x00b")), []),
    "connect-trailing-bytes": (connect(payload=s("bad") + b"\x00"), []),
    "connect-fields-truncated": (pkt(0x10, s("MQTT") + bytes((4, 0x82, 0, 60)) + s("bad")), []),
    "connect-fixed-header-flags": (pkt(0x11, s("MQTT") + bytes((4, 2, 0, 60)) + s("bad")), []),
    "remaining-length-five-bytes": (b"\x10\x80\x80\x80\x80\x01", []),
    "empty-client-id-persistent-session": (connect(flags=0x00, payload=s("")), [REFUSED]),
}

AFTER_CONNECT = {
    "second-connect": encode(Connect(client_id="bad")),  # RabbitMQ 3.10 answers a second CONNACK
    "publish-qos-3": pkt(0x36, s("a/b") + b"\x00\x01x"),
    "publish-qos0-with-dup": pkt(0x38, s("a/b") + b"x"),
    "publish-empty-topic": pkt(0x32, s("") + b"\x00\x01x"),  # RabbitMQ 3.10 PUBACKs
    "publish-topic-with-nul": pkt(0x30, s("a\x00b") + b"x"),  # RabbitMQ 3.10 routes it
    "publish-topic-not-utf8": pkt(0x30, s(b"\xc3\x28") + b"x"),  # RabbitMQ 3.10 routes it
    "publish-topic-with-plus": pkt(0x32, s("a/+/b") + b"\x00\x01x"),  # RabbitMQ 3.10 routes it
    "publish-topic-with-hash": pkt(0x32, s("a/#") + b"\x00\x01x"),  # RabbitMQ 3.10 routes it
    "publish-packet-id-0": pkt(0x32, s("a/b") + b"\x00\x00x"),
    "publish-truncated-topic": pkt(0x30, b"\x00\x09a/b"),
    "subscribe-fixed-header-flags": pkt(0x80, b"\x00\x01" + s("a") + b"\x00"),
    "subscribe-requested-qos-3": pkt(0x82, b"\x00\x01" + s("a") + b"\x03"),  # RabbitMQ 3.10 crashes: closed
    "subscribe-no-filters": pkt(0x82, b"\x00\x01"),
    "subscribe-qos-missing": pkt(0x82, b"\x00\x01" + s("a")),
    "subscribe-filter-not-utf8": pkt(0x82, b"\x00\x01" + s(b"\xff") + b"\x00"),
    "unsubscribe-no-filters": pkt(0xA2, b"\x00\x01"),
    "unsubscribe-fixed-header-flags": pkt(0xA0, b"\x00\x01" + s("a")),
    "puback-too-long": pkt(0x40, b"\x00\x01\x00"),
    "puback-packet-id-0": pkt(0x40, b"\x00\x00"),
    "pingreq-with-body": pkt(0xC0, b"\x00"),
    "disconnect-with-flags": pkt(0xE1, b""),
    "reserved-type-0": pkt(0x00, b""),
    "reserved-type-15": pkt(0xF0, b""),
    "connack-from-client": pkt(0x20, b"\x00\x00"),
    "suback-from-client": pkt(0x90, b"\x00\x01\x00"),
    "unsuback-from-client": pkt(0xB0, b"\x00\x01"),
    "pingresp-from-client": pkt(0xD0, b""),
    "remaining-length-five-bytes": b"\x30\xff\xff\xff\xff\x7f",
}


@pytest.fixture
def bystander(client):
    """A well-behaved subscriber that must not notice anything."""
    b = client("bystander")
    b.subscribe("by/#", 1)
    return b


def still_working(client, bystander, broker) -> None:
    client("by-pub").publish("by/t", b"still here", 1)
    m = bystander.expect_one()
    assert (m.topic, m.payload) == ("by/t", b"still here")
    assert broker.clients.get("bystander") is not None


@pytest.mark.parametrize("case", list(BEFORE_CONNECT))
def test_malformed_before_connect(raw, client, broker, bystander, case):
    data, expected = BEFORE_CONNECT[case]
    r = raw()
    r.send(data)
    assert r.closed() == expected
    assert broker.clients.ids() == ["bystander"]
    still_working(client, bystander, broker)


@pytest.mark.parametrize("case", list(AFTER_CONNECT))
def test_malformed_after_connect(raw, client, broker, bystander, case):
    r = raw()
    assert r.connect(client_id="bad") == Connack(False, 0)
    r.send(AFTER_CONNECT[case])
    assert r.closed() == []
    assert broker.clients.get("bad") is None
    still_working(client, bystander, broker)


def test_packets_before_the_malformed_one_are_handled(raw, broker, bystander, client):
    # Good packets in the same read as a bad one still take effect, as in a real broker.
    r = raw()
    r.connect(client_id="bad")
    r.send(encode(Publish("by/first", b"before the garbage", 1, packet_id=1)) + AFTER_CONNECT["publish-qos-3"])
    assert r.closed() == [Puback(1)]
    assert bystander.expect_one().payload == b"before the garbage"
    still_working(client, bystander, broker)


def test_malformed_input_byte_by_byte(raw, client, broker, bystander):
    r = raw()
    for byte in encode(Connect(client_id="slow")) + AFTER_CONNECT["subscribe-requested-qos-3"]:
        r.send(bytes((byte,)))
    assert r.closed() == [Connack(False, 0)]
    still_working(client, bystander, broker)


@pytest.mark.fakebroker(max_packet_size=1024)
def test_max_packet_size(raw, client, broker, bystander):
    ok = raw()
    ok.connect(client_id="fits")
    ok.send(Publish("by/big", b"x" * 1000, 1, packet_id=1))
    assert ok.recv() == Puback(1)
    assert len(bystander.expect_one().payload) == 1000
    big = raw()
    big.connect(client_id="too-big")
    big.send(encode(Publish("by/big", b"x" * 1100, 1, packet_id=2)))
    assert big.closed() == []
    still_working(client, bystander, broker)


@pytest.mark.fakebroker(max_packet_size=64)
def test_oversized_declared_length_closes_before_the_body_arrives(raw, client, broker, bystander):
    r = raw()
    r.send(b"\x10\xff\xff\xff\x7f")  # a CONNECT announcing 256 MiB, and nothing after it
    assert r.closed() == []
    still_working(client, bystander, broker)


def test_default_max_packet_size_accepts_large_payloads(raw, bystander):
    r = raw()
    r.connect(client_id="large")
    r.send(Publish("by/large", b"y" * 300_000, 1, packet_id=1))
    assert r.recv() == Puback(1)
    assert len(bystander.expect_one().payload) == 300_000
