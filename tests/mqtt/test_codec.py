"""Tests for the sans-I/O MQTT 3.1/3.1.1 codec: byte vectors, malformed input, round-trips, stream splits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kit.mqtt import connect as connect_bytes
from kit.mqtt import pkt, s

from fakebroker.protocols.mqtt.codec import (
    MAX_REMAINING_LENGTH,
    SUBACK_FAILURE,
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttProtocolError,
    Packet,
    PacketType,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
    validate_topic_filter,
    validate_topic_name,
)


def decode(data: bytes, **options: object) -> list[Packet]:
    decoder = MqttDecoder(**options)  # type: ignore[arg-type]
    decoder.feed(data)
    packets = list(decoder)
    assert decoder.pending_bytes == 0, "decoder left bytes behind"
    return packets


# -- known byte vectors --------------------------------------------------------------------------------------

VECTORS: list[tuple[Packet, bytes]] = [
    # What paho-mqtt sends for Client("test") with clean_session and keepalive 60.
    (
        Connect(client_id="test"),
        bytes.fromhex("10 10 0004") + b"MQTT" + bytes.fromhex("04 02 003c 0004") + b"test",
    ),
    (
        Connect(
            clean_session=False,
            keepalive=30,
            client_id="c1",
            will=Will("w/t", b"bye", 1, True),
            username="u",
            password=b"p",
        ),
        bytes.fromhex("10 1e 0004")
        + b"MQTT"
        + bytes.fromhex("04 ec 001e 0002")
        + b"c1"
        + bytes.fromhex("0003")
        + b"w/t"
        + bytes.fromhex("0003")
        + b"bye"
        + bytes.fromhex("0001")
        + b"u"
        + bytes.fromhex("0001")
        + b"p",
    ),
    (
        Connect(protocol_name="MQIsdp", protocol_level=3, client_id="c3"),
        bytes.fromhex("10 10 0006") + b"MQIsdp" + bytes.fromhex("03 02 003c 0002") + b"c3",
    ),
    (
        Connect(client_id="", username="guest", password=b"\x00\xffbin"),
        bytes.fromhex("10 1a 0004")
        + b"MQTT"
        + bytes.fromhex("04 c2 003c 0000 0005")
        + b"guest"
        + bytes.fromhex("0005 00ff")
        + b"bin",
    ),
    (Connack(), bytes.fromhex("20 02 00 00")),
    (Connack(True, ConnackCode.ACCEPTED), bytes.fromhex("20 02 01 00")),
    (Connack(False, ConnackCode.NOT_AUTHORIZED), bytes.fromhex("20 02 00 05")),
    (Publish("a/b"), bytes.fromhex("30 05 0003") + b"a/b"),
    (
        Publish("a/b", b"hi", qos=1, retain=True, dup=True, packet_id=10),
        bytes.fromhex("3b 09 0003 612f62 000a 6869"),
    ),
    (Publish("ü", b"x", qos=2, packet_id=0xFFFF), bytes.fromhex("34 07 0002 c3bc ffff 78")),
    (Puback(1), bytes.fromhex("40 02 0001")),
    (Pubrec(2), bytes.fromhex("50 02 0002")),
    (Pubrel(3), bytes.fromhex("62 02 0003")),
    (Pubcomp(0x1234), bytes.fromhex("70 02 1234")),
    (
        Subscribe(1, [("a/b", 1), ("c/#", 0), ("", 2)]),
        bytes.fromhex("82 11 0001 0003") + b"a/b" + b"\x01\x00\x03c/#\x00\x00\x00\x02",
    ),
    (Suback(1, [0, 1, 2, SUBACK_FAILURE]), bytes.fromhex("90 06 0001 00 01 02 80")),
    (Unsubscribe(2, ["a/b", "x"]), bytes.fromhex("a2 0a 0002 0003") + b"a/b" + bytes.fromhex("0001") + b"x"),
    (Unsuback(2), bytes.fromhex("b0 02 0002")),
    (Pingreq(), bytes.fromhex("c0 00")),
    (Pingresp(), bytes.fromhex("d0 00")),
    (Disconnect(), bytes.fromhex("e0 00")),
]


@pytest.mark.parametrize(("packet", "data"), VECTORS, ids=[type(p).__name__ for p, _ in VECTORS])
def test_known_vector_encode(packet: Packet, data: bytes) -> None:
    assert encode(packet) == data


@pytest.mark.parametrize(("packet", "data"), VECTORS, ids=[type(p).__name__ for p, _ in VECTORS])
def test_known_vector_decode(packet: Packet, data: bytes) -> None:
    assert decode(data) == [packet]


def test_every_packet_type_has_a_vector() -> None:
    assert {p.packet_type for p, _ in VECTORS} == set(PacketType)


def test_decoded_fields_have_plain_types() -> None:
    [p] = decode(bytes.fromhex("3b 09 0003 612f62 000a 6869"))
    assert isinstance(p, Publish)
    assert type(p.payload) is bytes
    assert p.retain is True and p.dup is True and p.qos == 1 and p.packet_id == 10
    [c] = decode(VECTORS[1][1])
    assert isinstance(c, Connect)
    assert c.will is not None and type(c.will.payload) is bytes and type(c.password) is bytes
    assert c.clean_session is False


@pytest.mark.parametrize(
    ("length", "encoded"),
    [
        (3, "03"),
        (127, "7f"),
        (128, "8001"),
        (16383, "ff7f"),
        (16384, "808001"),
        (2097151, "ffff7f"),
        (2097152, "80808001"),
    ],
)
def test_remaining_length_encoding(length: int, encoded: str) -> None:
    topic = "t"
    payload = b"p" * (length - 3)  # topic field takes 3 bytes
    data = encode(Publish(topic, payload))
    assert data[1 : 1 + len(encoded) // 2] == bytes.fromhex(encoded)
    assert len(data) == 1 + len(encoded) // 2 + length
    assert decode(data) == [Publish(topic, payload)]


def test_remaining_length_zero_and_max_header() -> None:
    assert encode(Pingreq())[1] == 0
    # The largest legal header is accepted and waits for the body rather than failing.
    decoder = MqttDecoder()
    decoder.feed(bytes.fromhex("30 ffffff7f"))
    assert list(decoder) == []
    assert decoder.pending_bytes == 5
    assert MAX_REMAINING_LENGTH == 0x0FFFFFFF


def test_non_minimal_remaining_length_is_accepted() -> None:
    # 3.1.1 does not require the shortest encoding (MQTT 5 does); 0x80 0x00 is zero.
    assert decode(bytes.fromhex("c0 8000")) == [Pingreq()]


def test_several_packets_in_one_chunk_and_partial_tail() -> None:
    decoder = MqttDecoder()
    stream = encode(Pingreq()) + encode(Puback(5)) + encode(Publish("x", b"y"))
    decoder.feed(stream + encode(Puback(6))[:3])
    assert list(decoder) == [Pingreq(), Puback(5), Publish("x", b"y")]
    assert decoder.pending_bytes == 3
    decoder.feed(b"\x06")
    assert decoder.next_packet() == Puback(6)
    assert decoder.next_packet() is None


def test_one_byte_at_a_time() -> None:
    decoder = MqttDecoder()
    stream = b"".join(data for _, data in VECTORS)
    got: list[Packet] = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        got.extend(decoder)
    assert got == [p for p, _ in VECTORS]
    assert decoder.pending_bytes == 0


def test_lazy_iteration_yields_packets_before_the_error_and_the_error_is_sticky() -> None:
    decoder = MqttDecoder()
    decoder.feed(encode(Pingreq()) + encode(Puback(1)) + bytes.fromhex("f0 00") + encode(Pingreq()))
    it = iter(decoder)
    assert next(it) == Pingreq()
    assert next(it) == Puback(1)
    with pytest.raises(MqttProtocolError, match="reserved packet type 15"):
        next(it)
    with pytest.raises(MqttProtocolError):
        decoder.next_packet()
    with pytest.raises(MqttProtocolError):
        decoder.feed(b"")
        list(decoder)


# -- options -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["a/+", "a/#", "#", "+", "j/a#", "j/+/x"])
def test_wildcards_in_publish_topic(topic: str) -> None:
    data = encode(Publish(topic, b"m", qos=1, packet_id=3))
    with pytest.raises(MqttProtocolError, match="wildcard") as exc:
        decode(data)
    assert exc.value.connack_code is None
    assert decode(data, allow_wildcards_in_publish_topic=True) == [Publish(topic, b"m", qos=1, packet_id=3)]


def test_wildcard_option_can_be_flipped_on_a_live_decoder() -> None:
    decoder = MqttDecoder()
    decoder.allow_wildcards_in_publish_topic = True
    decoder.feed(encode(Publish("a/#")))
    assert list(decoder) == [Publish("a/#")]


def test_max_packet_size_fires_on_the_header_before_the_body() -> None:
    decoder = MqttDecoder(max_packet_size=100)
    header = bytes.fromhex("30 e501")  # remaining length 0x65 + 1 * 128 = 229
    decoder.feed(header)
    with pytest.raises(MqttProtocolError, match="max_packet_size") as exc:
        decoder.next_packet()
    assert exc.value.connack_code is None
    assert decoder.pending_bytes == len(header)


def test_max_packet_size_boundary() -> None:
    at_limit = encode(Publish("t", b"x" * 97))  # remaining length 2 + 1 + 97 = 100
    assert decode(at_limit, max_packet_size=100) == [Publish("t", b"x" * 97)]
    with pytest.raises(MqttProtocolError, match="max_packet_size"):
        decode(encode(Publish("t", b"x" * 98)), max_packet_size=100)


def test_max_packet_size_can_change_between_packets() -> None:
    decoder = MqttDecoder(max_packet_size=10)
    decoder.feed(encode(Publish("t", b"abc")))
    assert list(decoder) == [Publish("t", b"abc")]
    decoder.max_packet_size = 4
    decoder.feed(encode(Publish("t", b"abc")))
    with pytest.raises(MqttProtocolError):
        list(decoder)


# -- malformed input -----------------------------------------------------------------------------------------

BAD_UTF8 = [
    b"\xff",
    b"\xc3",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"a\x00b",
]  # invalid, truncated, overlong, surrogate, NUL

MALFORMED: list[tuple[str, bytes, str]] = [
    # fixed header
    ("remaining length 5 bytes", bytes.fromhex("30 ffffffff01") + b"\x00" * 10, "more than 4 bytes"),
    ("reserved type 0", bytes.fromhex("00 00"), "reserved packet type 0"),
    ("reserved type 15", bytes.fromhex("f0 00"), "reserved packet type 15"),
    ("PUBREL flags 0", bytes.fromhex("60 02 0001"), "PUBREL with fixed header flags"),
    ("PUBREL flags 3", bytes.fromhex("63 02 0001"), "PUBREL with fixed header flags"),
    ("SUBSCRIBE flags 0", pkt(0x80, b"\x00\x01" + s("a") + b"\x00"), "SUBSCRIBE with fixed header flags"),
    ("SUBSCRIBE flags 0xa", pkt(0x8A, b"\x00\x01" + s("a") + b"\x00"), "SUBSCRIBE with fixed header flags"),
    ("UNSUBSCRIBE flags 0", pkt(0xA0, b"\x00\x01" + s("a")), "UNSUBSCRIBE with fixed header flags"),
    ("CONNECT flags", connect_bytes(0x02, s("c"), first=0x12), "CONNECT with fixed header flags"),
    ("CONNACK flags", bytes.fromhex("21 02 0000"), "CONNACK with fixed header flags"),
    ("PUBACK flags", bytes.fromhex("42 02 0001"), "PUBACK with fixed header flags"),
    ("PUBREC flags", bytes.fromhex("52 02 0001"), "PUBREC with fixed header flags"),
    ("PUBCOMP flags", bytes.fromhex("72 02 0001"), "PUBCOMP with fixed header flags"),
    ("SUBACK flags", bytes.fromhex("92 03 0001 00"), "SUBACK with fixed header flags"),
    ("UNSUBACK flags", bytes.fromhex("b2 02 0001"), "UNSUBACK with fixed header flags"),
    ("PINGREQ flags", bytes.fromhex("c1 00"), "PINGREQ with fixed header flags"),
    ("PINGRESP flags", bytes.fromhex("d8 00"), "PINGRESP with fixed header flags"),
    ("DISCONNECT flags", bytes.fromhex("e2 00"), "DISCONNECT with fixed header flags"),
    ("PUBLISH qos 3", pkt(0x36, s("a") + b"\x00\x01"), "QoS 3"),
    ("PUBLISH qos 0 dup", pkt(0x38, s("a")), "DUP"),
    # CONNECT
    ("CONNECT reserved flag", connect_bytes(0x03, s("c")), "reserved flag"),
    ("will qos without will flag", connect_bytes(0x0A, s("c")), "without the will flag"),
    ("will retain without will flag", connect_bytes(0x22, s("c")), "without the will flag"),
    ("will qos 3", connect_bytes(0x1E, s("c") + s("w") + s("m")), "will qos 3"),
    ("password without user name", connect_bytes(0x42, s("c") + s("pw")), "password flag without user name"),
    ("unknown protocol name", connect_bytes(0x02, s("c"), name="XXXX"), "unknown protocol name"),
    ("empty protocol name", connect_bytes(0x02, s("c"), name=""), "unknown protocol name"),
    ("lowercase protocol name", connect_bytes(0x02, s("c"), name="mqtt"), "unknown protocol name"),
    ("CONNECT name truncated", pkt(0x10, b"\x00\x04MQ"), "CONNECT protocol name truncated"),
    ("CONNECT header truncated", pkt(0x10, s("MQTT") + b"\x04\x02\x00"), "CONNECT variable header truncated"),
    ("CONNECT no client id", connect_bytes(0x02, b""), "CONNECT client id truncated"),
    ("CONNECT client id truncated", connect_bytes(0x02, b"\x00\x05abc"), "CONNECT client id truncated"),
    ("CONNECT will topic missing", connect_bytes(0x06, s("c")), "CONNECT will topic truncated"),
    ("CONNECT will message missing", connect_bytes(0x06, s("c") + s("w")), "CONNECT will message truncated"),
    ("CONNECT user name missing", connect_bytes(0x82, s("c")), "CONNECT user name truncated"),
    ("CONNECT password missing", connect_bytes(0xC2, s("c") + s("u")), "CONNECT password truncated"),
    ("CONNECT password truncated", connect_bytes(0xC2, s("c") + s("u") + b"\x00\x09p"), "password truncated"),
    ("CONNECT trailing bytes", connect_bytes(0x02, s("c") + b"x"), "trailing bytes"),
    ("CONNECT user name without flag", connect_bytes(0x02, s("c") + s("u")), "trailing bytes"),
    # PUBLISH
    ("PUBLISH empty topic", pkt(0x30, s("") + b"payload"), "empty topic"),
    ("PUBLISH no topic", pkt(0x30, b""), "PUBLISH topic truncated"),
    ("PUBLISH topic length 1 byte", pkt(0x30, b"\x00"), "PUBLISH topic truncated"),
    ("PUBLISH topic truncated", pkt(0x30, b"\x00\x05abc"), "PUBLISH topic truncated"),
    ("PUBLISH qos1 no packet id", pkt(0x32, s("a")), "PUBLISH packet id truncated"),
    ("PUBLISH qos2 half packet id", pkt(0x34, s("a") + b"\x00"), "PUBLISH packet id truncated"),
    ("PUBLISH qos1 packet id 0", pkt(0x32, s("a") + b"\x00\x00data"), "packet id 0"),
    ("PUBLISH qos2 packet id 0", pkt(0x34, s("a") + b"\x00\x00"), "packet id 0"),
    # acks
    ("PUBACK packet id 0", bytes.fromhex("40 02 0000"), "packet id 0"),
    ("PUBREC packet id 0", bytes.fromhex("50 02 0000"), "packet id 0"),
    ("PUBREL packet id 0", bytes.fromhex("62 02 0000"), "packet id 0"),
    ("PUBCOMP packet id 0", bytes.fromhex("70 02 0000"), "packet id 0"),
    ("UNSUBACK packet id 0", bytes.fromhex("b0 02 0000"), "packet id 0"),
    ("PUBACK length 1", bytes.fromhex("40 01 01"), "remaining length 1, expected 2"),
    ("PUBACK length 3", bytes.fromhex("40 03 0001 00"), "remaining length 3, expected 2"),
    ("PUBREL length 0", bytes.fromhex("62 00"), "remaining length 0, expected 2"),
    ("PUBCOMP length 4", bytes.fromhex("70 04 0001 0002"), "remaining length 4, expected 2"),
    ("UNSUBACK length 3", bytes.fromhex("b0 03 0001 00"), "remaining length 3, expected 2"),
    ("PINGREQ length 1", bytes.fromhex("c0 01 00"), "PINGREQ with remaining length 1"),
    ("PINGRESP length 2", bytes.fromhex("d0 02 0000"), "PINGRESP with remaining length 2"),
    ("DISCONNECT length 1", bytes.fromhex("e0 01 00"), "DISCONNECT with remaining length 1"),
    ("CONNACK length 1", bytes.fromhex("20 01 00"), "CONNACK with remaining length 1"),
    ("CONNACK length 3", bytes.fromhex("20 03 000000"), "CONNACK with remaining length 3"),
    ("CONNACK reserved flags", bytes.fromhex("20 02 0200"), "CONNACK reserved flags"),
    ("CONNACK return code 6", bytes.fromhex("20 02 0006"), "reserved return code"),
    # SUBSCRIBE / UNSUBSCRIBE / SUBACK
    ("SUBSCRIBE packet id 0", pkt(0x82, b"\x00\x00" + s("a") + b"\x00"), "packet id 0"),
    ("SUBSCRIBE no packet id", pkt(0x82, b"\x00"), "SUBSCRIBE packet id truncated"),
    ("SUBSCRIBE no filters", pkt(0x82, b"\x00\x01"), "no topic filters"),
    ("SUBSCRIBE qos 3", pkt(0x82, b"\x00\x01" + s("a") + b"\x03"), "requested QoS byte 0x03"),
    ("SUBSCRIBE qos upper bits", pkt(0x82, b"\x00\x01" + s("a") + b"\x81"), "requested QoS byte 0x81"),
    ("SUBSCRIBE qos 4", pkt(0x82, b"\x00\x01" + s("a") + b"\x04"), "requested QoS byte 0x04"),
    (
        "SUBSCRIBE second qos bad",
        pkt(0x82, b"\x00\x01" + s("a") + b"\x01" + s("b") + b"\x03"),
        "QoS byte 0x03",
    ),
    ("SUBSCRIBE qos missing", pkt(0x82, b"\x00\x01" + s("a")), "requested QoS missing"),
    ("SUBSCRIBE filter truncated", pkt(0x82, b"\x00\x01\x00\x09ab"), "topic filter truncated"),
    ("SUBSCRIBE trailing byte", pkt(0x82, b"\x00\x01" + s("a") + b"\x00\x00"), "topic filter truncated"),
    ("UNSUBSCRIBE packet id 0", pkt(0xA2, b"\x00\x00" + s("a")), "packet id 0"),
    ("UNSUBSCRIBE no filters", pkt(0xA2, b"\x00\x01"), "no topic filters"),
    ("UNSUBSCRIBE filter truncated", pkt(0xA2, b"\x00\x01" + s("a") + b"\x00"), "topic filter truncated"),
    ("SUBACK packet id 0", bytes.fromhex("90 03 0000 00"), "packet id 0"),
    ("SUBACK no codes", bytes.fromhex("90 02 0001"), "no return codes"),
    ("SUBACK code 3", bytes.fromhex("90 04 0001 00 03"), "reserved return code 0x03"),
    ("SUBACK code 0x81", bytes.fromhex("90 03 0001 81"), "reserved return code 0x81"),
]
for i, bad in enumerate(BAD_UTF8):
    MALFORMED += [
        (f"client id {i}", connect_bytes(0x02, s(bad)), "CONNECT client id"),
        (f"will topic {i}", connect_bytes(0x06, s("c") + s(bad) + s("m")), "CONNECT will topic"),
        (f"user name {i}", connect_bytes(0x82, s("c") + s(bad)), "CONNECT user name"),
        (f"protocol name {i}", pkt(0x10, s(bad) + b"\x04\x02\x00\x3c" + s("c")), "CONNECT protocol name"),
        (f"publish topic {i}", pkt(0x30, s(b"t/" + bad) + b"payload"), "PUBLISH topic"),
        (f"subscribe filter {i}", pkt(0x82, b"\x00\x01" + s(bad) + b"\x00"), "SUBSCRIBE topic filter"),
        (f"unsubscribe filter {i}", pkt(0xA2, b"\x00\x01" + s("ok") + s(bad)), "UNSUBSCRIBE topic filter"),
    ]


@pytest.mark.parametrize(
    ("data", "reason"), [(d, r) for _, d, r in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(MqttProtocolError) as exc:
        decode(data)
    assert reason in exc.value.reason
    assert str(exc.value) == exc.value.reason
    assert exc.value.connack_code is None


@pytest.mark.parametrize(
    ("data", "reason"), [(d, r) for _, d, r in MALFORMED], ids=[n for n, _, _ in MALFORMED]
)
def test_malformed_byte_by_byte_raises_the_same(data: bytes, reason: str) -> None:
    decoder = MqttDecoder()
    with pytest.raises(MqttProtocolError) as exc:
        for i in range(len(data)):
            decoder.feed(data[i : i + 1])
            list(decoder)
    assert reason in exc.value.reason


def test_bad_utf8_message_says_what() -> None:
    with pytest.raises(MqttProtocolError, match="not valid UTF-8"):
        decode(pkt(0x30, s(b"\xff")))
    with pytest.raises(MqttProtocolError, match="U\\+0000"):
        decode(pkt(0x30, s(b"a\x00")))


@pytest.mark.parametrize(
    "first",
    [0x00, 0xF0, 0x36, 0x38, 0x60, 0x80, 0xA0, 0x11, 0x41, 0xC4],
)
def test_bad_first_byte_fails_before_anything_else_arrives(first: int) -> None:
    decoder = MqttDecoder()
    decoder.feed(bytes((first,)))
    with pytest.raises(MqttProtocolError):
        decoder.next_packet()


def test_wrong_fixed_length_fails_before_the_body_arrives() -> None:
    decoder = MqttDecoder()
    decoder.feed(bytes.fromhex("c0 ffff7f"))  # PINGREQ announcing 2 MiB
    with pytest.raises(MqttProtocolError, match="PINGREQ with remaining length 2097151, expected 0"):
        decoder.next_packet()


def test_long_remaining_length_fails_on_the_fourth_byte() -> None:
    decoder = MqttDecoder()
    decoder.feed(bytes.fromhex("30 ffffff"))
    assert decoder.next_packet() is None
    decoder.feed(b"\xff")
    with pytest.raises(MqttProtocolError, match="more than 4 bytes"):
        decoder.next_packet()


@pytest.mark.parametrize(
    ("name", "level"),
    [("MQTT", 5), ("MQTT", 3), ("MQTT", 6), ("MQTT", 0), ("MQIsdp", 4), ("MQIsdp", 5)],
)
def test_unacceptable_protocol_level_carries_connack_code(name: str, level: int) -> None:
    with pytest.raises(MqttProtocolError, match="protocol level") as exc:
        decode(connect_bytes(0x02, s("c"), name=name, level=level))
    assert exc.value.connack_code == ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION
    assert exc.value.connack_code == 1


def test_mqtt5_connect_gets_connack_code_1() -> None:
    # paho MQTTv5 CONNECT: same header, then a properties length (0) before the payload.
    data = pkt(0x10, s("MQTT") + bytes.fromhex("05 02 003c 00") + s("v5"))
    with pytest.raises(MqttProtocolError) as exc:
        decode(data)
    assert exc.value.connack_code == 1


def test_bad_protocol_name_has_no_connack_code() -> None:
    with pytest.raises(MqttProtocolError) as exc:
        decode(connect_bytes(0x02, s("c"), name="MQTX", level=4))
    assert exc.value.connack_code is None


@pytest.mark.parametrize(
    "packet",
    [
        Subscribe(1, [("", 0)]),
        Unsubscribe(1, [""]),
        Connect(client_id="", clean_session=False),
        Connect(will=Will("", b"", 0, False)),
        Connect(will=Will("w/#", b"x", 2, True)),
        Connect(keepalive=0),
        Connect(username=""),
        Connect(username="u", password=b""),
        Publish("t", b"", qos=1, packet_id=1),
        Subscribe(1, [("a/#/b", 0), ("a+", 1)]),
        Connack(True, 5),
    ],
)
def test_session_level_questions_are_decodable(packet: Packet) -> None:
    # The codec leaves these to the session (RabbitMQ grants "" as QoS 0, rejects an empty client id with
    # clean_session=0 via CONNACK 2, and so on).
    assert decode(encode(packet)) == [packet]


# -- encoder edge cases --------------------------------------------------------------------------------------


def test_encode_refuses_what_cannot_be_framed() -> None:
    with pytest.raises(ValueError, match="packet_id"):
        encode(Publish("t", b"", qos=1))
    with pytest.raises(ValueError, match="65535"):
        encode(Publish("t" * 65536))
    with pytest.raises(ValueError, match="65535"):
        encode(Connect(password=b"x" * 65536, username="u"))
    with pytest.raises(ValueError, match="2 bits"):
        encode(Publish("t", qos=4, packet_id=1))
    with pytest.raises(TypeError):
        encode("PINGREQ")  # type: ignore[arg-type]


def test_encode_qos0_ignores_packet_id() -> None:
    assert encode(Publish("a", b"", packet_id=9)) == encode(Publish("a", b""))


def test_encode_can_build_packets_a_strict_decoder_rejects() -> None:
    # Raw test clients use the encoder to send protocol violations to the broker.
    assert encode(Publish("a/+", b"")) == pkt(0x30, s("a/+"))
    assert encode(Connect(client_id="c", password=b"p")) == connect_bytes(0x42, s("c") + s("p"))
    assert encode(Subscribe(1, [("a", 3)])) == pkt(0x82, b"\x00\x01" + s("a") + b"\x03")
    assert encode(Publish("a", b"", qos=3, packet_id=1))[0] == 0x36


# -- topic helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter", ["a", "#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "+/#", "/#", "sport/tennis/+", "ü/+"]
)
def test_valid_topic_filters(topic_filter: str) -> None:
    assert validate_topic_filter(topic_filter)


@pytest.mark.parametrize(
    "topic_filter", ["", "a#", "a/#/b", "a+", "a/b+", "##", "#/a", "++", "a/+b/c", "a/\x00", "sport/tennis#"]
)
def test_invalid_topic_filters(topic_filter: str) -> None:
    assert not validate_topic_filter(topic_filter)


def test_topic_names() -> None:
    assert validate_topic_name("a/b")
    assert validate_topic_name("/")
    assert not validate_topic_name("")
    assert not validate_topic_name("a/+")
    assert not validate_topic_name("a/#")
    assert not validate_topic_name("a\x00")


# -- property tests ------------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
topic_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=30)
# Repeating a short string reaches multi-byte remaining lengths without huge hypothesis buffers.
payloads = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(0, 3000)),
)
packet_ids = st.integers(1, 0xFFFF)
wills = st.builds(Will, texts, st.binary(max_size=40), st.integers(0, 2), st.booleans())


@st.composite
def connects(draw: st.DrawFn) -> Connect:
    name, level = draw(st.sampled_from([("MQTT", 4), ("MQIsdp", 3)]))
    username = draw(st.none() | texts)
    password = None if username is None else draw(st.none() | st.binary(max_size=40))
    return Connect(
        name,
        level,
        draw(st.booleans()),
        draw(st.integers(0, 0xFFFF)),
        draw(texts),
        draw(st.none() | wills),
        username,
        password,
    )


@st.composite
def publishes(draw: st.DrawFn) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(topic_names),
        draw(payloads),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(packet_ids) if qos else None,
    )


packets: st.SearchStrategy[Packet] = st.one_of(
    connects(),
    st.builds(Connack, st.booleans(), st.integers(0, 5)),
    publishes(),
    st.builds(Puback, packet_ids),
    st.builds(Pubrec, packet_ids),
    st.builds(Pubrel, packet_ids),
    st.builds(Pubcomp, packet_ids),
    st.builds(Subscribe, packet_ids, st.lists(st.tuples(texts, st.integers(0, 2)), min_size=1, max_size=5)),
    st.builds(
        Suback, packet_ids, st.lists(st.sampled_from([0, 1, 2, SUBACK_FAILURE]), min_size=1, max_size=5)
    ),
    st.builds(Unsubscribe, packet_ids, st.lists(texts, min_size=1, max_size=5)),
    st.builds(Unsuback, packet_ids),
    st.just(Pingreq()),
    st.just(Pingresp()),
    st.just(Disconnect()),
)


@given(packets)
def test_roundtrip(packet: Packet) -> None:
    data = encode(packet)
    assert decode(data) == [packet]


@given(st.lists(packets, min_size=1, max_size=8), st.data())
@settings(max_examples=200)
def test_split_stream(packet_list: list[Packet], data: st.DataObject) -> None:
    stream = b"".join(encode(p) for p in packet_list)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    decoder = MqttDecoder()
    got: list[Packet] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[prev:cut])
        got.extend(decoder)
        prev = cut
    assert got == packet_list
    assert decoder.pending_bytes == 0
    # Payloads are bytes whether the decoder read them from the bytes as fed or from the bytearray it keeps
    # while a packet is incomplete (a bytearray would compare equal above).
    for packet in got:
        if isinstance(packet, Publish):
            assert type(packet.payload) is bytes
        elif isinstance(packet, Connect):
            assert packet.password is None or type(packet.password) is bytes
            assert packet.will is None or type(packet.will.payload) is bytes


def test_a_packet_split_over_feeds_decodes_to_bytes_and_the_decoder_lets_go_after() -> None:
    data = encode(Publish("a/b", b"x" * 300, 1, packet_id=9))
    decoder = MqttDecoder()
    decoder.feed(data[:7])
    assert decoder.next_packet() is None
    decoder.feed(data[7:100])
    decoder.feed(data[100:] + data[:3])  # the rest, and the start of the next packet
    packet = decoder.next_packet()
    assert packet == Publish("a/b", b"x" * 300, 1, packet_id=9) and type(packet.payload) is bytes
    assert decoder.next_packet() is None and decoder.pending_bytes == 3
    decoder.feed(data[3:])
    assert decoder.next_packet() == packet and decoder.pending_bytes == 0
    assert decoder.next_packet() is None
    assert decoder._buf == b""  # nothing kept for an idle connection


@given(packets, st.data())
@settings(max_examples=300)
def test_corrupted_packets_raise_only_protocol_errors(packet: Packet, data: st.DataObject) -> None:
    raw = bytearray(encode(packet))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    _decode_or_protocol_error(bytes(raw))


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(raw: bytes) -> None:
    _decode_or_protocol_error(raw)


def _decode_or_protocol_error(raw: bytes) -> None:
    decoder = MqttDecoder(allow_wildcards_in_publish_topic=True)
    decoder.feed(raw)
    try:
        for packet in decoder:
            # Whatever decodes must survive a re-encode/decode unchanged.
            assert decode(encode(packet), allow_wildcards_in_publish_topic=True) == [packet]
    except MqttProtocolError as exc:
        assert exc.reason
