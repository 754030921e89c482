"""The AMQP frame reader: strict where rabbit_reader is, any split of the stream, fuzzed with hypothesis."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kit.amqp import HEADER, content, method
from pamqp import commands as c

from fakebroker.protocols.amqp.codec import (
    BodyFrame,
    FrameError,
    FrameReader,
    HeaderFrame,
    HeaderMismatch,
    HeartbeatFrame,
    MethodFrame,
    UndecodableMethod,
    UnknownMethod,
    encode_content,
    erlang_binary,
    from_pamqp_properties,
)


def read_all(data: bytes, frame_max: int = 131072) -> list[object]:
    reader = FrameReader()
    reader.frame_max = frame_max
    reader.feed(data)
    return list(reader)


def test_the_protocol_header_then_frames() -> None:
    frames = read_all(HEADER + method(1, c.Channel.Open()) + b"\x08\x00\x00\x00\x00\x00\x00\xce")
    assert isinstance(frames[0], MethodFrame) and frames[0].channel == 1
    assert isinstance(frames[0].method, c.Channel.Open)
    assert isinstance(frames[1], HeartbeatFrame)


@pytest.mark.parametrize("wrong", [b"AMQP\x00\x00\x09\x00", b"HELLO WORLD!", b"AMQP\x01\x01\x00\x09",
                                   b"GET / HTTP/1.1"])
def test_any_other_header_is_a_mismatch(wrong: bytes) -> None:
    with pytest.raises(HeaderMismatch):
        read_all(wrong)


def test_a_wrong_header_is_refused_before_eight_bytes_arrive() -> None:
    reader = FrameReader()
    reader.feed(b"AMQ")
    assert reader.next_frame() is None
    reader.feed(b"X")
    with pytest.raises(HeaderMismatch):
        reader.next_frame()


def test_content_frames_decode_with_their_properties() -> None:
    data = HEADER + content(1, c.Basic.Publish(exchange="x", routing_key="k"), b"body", content_type="text/plain",
                            headers={"a": 1}, delivery_mode=2)
    publish, header, body = read_all(data)
    assert isinstance(publish, MethodFrame) and publish.method.routing_key == "k"
    assert isinstance(header, HeaderFrame) and header.class_id == 60 and header.body_size == 4
    assert from_pamqp_properties(header.properties) == {"content_type": "text/plain", "headers": {"a": 1},
                                                         "delivery_mode": 2}
    assert isinstance(body, BodyFrame) and body.data == b"body"


def test_a_wrong_frame_end_is_rabbitmqs_frame_error() -> None:
    data = HEADER + method(1, c.Channel.Open())[:-1] + b"\x00"
    with pytest.raises(FrameError) as err:
        read_all(data)
    assert err.value.code == 501
    assert err.value.text == "FRAME_ERROR - type 1, all octets = <<0,20,0,10,1,48>>: {invalid_frame_end_marker,0}"


def test_a_frame_over_frame_max_is_refused_on_its_header() -> None:
    reader = FrameReader()
    reader.frame_max = 131072
    reader.feed(HEADER + struct.pack(">BHI", 1, 1, 200000))
    with pytest.raises(FrameError) as err:
        reader.next_frame()
    assert err.value.text == "FRAME_ERROR - type 1, all octets = <<>>: {frame_too_large,200000,131064}"


def test_frame_max_is_4096_until_tuned() -> None:
    reader = FrameReader()
    reader.feed(HEADER + struct.pack(">BHI", 1, 0, 5000))
    with pytest.raises(FrameError, match="frame_too_large,5000,4088"):
        reader.next_frame()


def test_an_unknown_frame_type() -> None:
    with pytest.raises(FrameError) as err:
        read_all(HEADER + struct.pack(">BHI", 9, 0, 3) + b"abc\xce")
    assert err.value.text == 'FRAME_ERROR - type 9, all octets = <<"abc">>: unknown_frame'


def test_an_undecodable_method_names_its_class_and_method() -> None:
    with pytest.raises(FrameError) as err:
        read_all(HEADER + struct.pack(">BHI", 1, 1, 5) + struct.pack(">HH", 50, 10) + b"\x00\xce")
    assert (err.value.code, err.value.text, err.value.class_id, err.value.method_id) == (
        501, "FRAME_ERROR - cannot decode <<0>>", 50, 10)


@pytest.mark.parametrize("ids", [(60, 999), (99, 10)])
def test_an_undefined_method(ids: tuple[int, int]) -> None:
    with pytest.raises(UnknownMethod):
        read_all(HEADER + struct.pack(">BHI", 1, 1, 4) + struct.pack(">HH", *ids) + b"\xce")


def test_erlang_binary_formatting() -> None:
    assert erlang_binary(b"") == "<<>>"
    assert erlang_binary(b"abc") == '<<"abc">>'
    assert erlang_binary(b'a"b\n') == '<<"a\\"b\\n">>'
    assert erlang_binary(b"\x00\x01") == "<<0,1>>"


def test_bodies_are_cut_to_frame_max() -> None:
    data = encode_content(1, c.Basic.Deliver("t", 1, False, "", "q"), b"x" * 10000, {}, frame_max=4096)
    frames = read_all(HEADER + data, frame_max=4096)
    bodies = [f for f in frames if isinstance(f, BodyFrame)]
    assert [len(b.data) for b in bodies] == [4088, 4088, 1824]


def test_properties_round_trip_through_the_model_form() -> None:
    props = {"content_type": "application/json", "content_encoding": "utf-8", "headers": {"k": "v", "n": 7},
             "delivery_mode": 2, "priority": 3, "correlation_id": "c", "reply_to": "r", "expiration": "1000",
             "message_id": "m", "timestamp": 1_700_000_000, "type": "t", "user_id": "guest", "app_id": "a"}
    data = encode_content(1, c.Basic.Deliver("t", 1, False, "", "q"), b"", props, frame_max=131072)
    _, header = read_all(HEADER + data)
    assert isinstance(header, HeaderFrame)
    assert from_pamqp_properties(header.properties) == props


STREAM = HEADER + b"".join([
    method(0, c.Connection.StartOk(client_properties={"product": "x"}, mechanism="PLAIN", response="\0guest\0guest")),
    method(1, c.Channel.Open()),
    content(1, c.Basic.Publish(exchange="", routing_key="q"), b"payload" * 50, headers={"h": [1, "two"]}),
    b"\x08\x00\x00\x00\x00\x00\x00\xce",
    method(1, c.Basic.Ack(5, multiple=True)),
])


def _describe(frames: list[object]) -> list[object]:
    out: list[object] = []
    for f in frames:
        if isinstance(f, MethodFrame):
            out.append((f.channel, f.method.name, dict(f.method)))
        elif isinstance(f, HeaderFrame):
            out.append((f.channel, f.body_size, from_pamqp_properties(f.properties)))
        else:
            out.append(f)
    return out


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=20))
def test_any_split_of_the_stream_gives_the_same_frames(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    reader = FrameReader()
    reader.frame_max = 131072
    frames: list[object] = []
    last = 0
    for point in [*points, len(STREAM)]:
        reader.feed(STREAM[last:point])
        frames.extend(reader)
        last = point
    assert _describe(frames) == _describe(read_all(STREAM))


@settings(max_examples=300)
@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 8]), st.integers(0, 3))
def test_fuzzed_frames_only_fail_the_declared_ways(payload: bytes, frame_type: int, channel: int) -> None:
    """Any payload under a valid frame header: a frame, or one of the errors the session answers."""
    data = HEADER + struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"
    with contextlib.suppress(FrameError, UnknownMethod):
        read_all(data)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_fuzzed_streams_only_fail_the_declared_ways(data: bytes) -> None:
    with contextlib.suppress(FrameError, UnknownMethod):
        read_all(HEADER + data)


@settings(max_examples=200)
@given(st.binary(min_size=4, max_size=64))
def test_fuzzed_method_arguments(args: bytes) -> None:
    """A known method id with arbitrary arguments: decoded, or FRAME_ERROR 'cannot decode'."""
    for class_id, method_id in ((60, 40), (50, 10), (40, 10), (10, 11), (60, 20)):
        payload = struct.pack(">HH", class_id, method_id) + args
        try:
            read_all(HEADER + struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce")
        except FrameError as exc:
            assert exc.code == 501 and exc.text.startswith("FRAME_ERROR - cannot decode")


@given(st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True), st.text(max_size=60), st.booleans(), st.booleans(),
       st.integers(0, 2**63 - 1), st.booleans())  # pamqp builds tags as signed 64-bit
def test_the_hand_decoded_methods_match_pamqp(exchange: str, key: str, mandatory: bool, immediate: bool,
                                              tag: int, multiple: bool) -> None:
    from fakebroker.protocols.amqp.codec import decode_method

    for m in (c.Basic.Publish(exchange=exchange, routing_key=key, mandatory=mandatory, immediate=immediate),
              c.Basic.Ack(tag, multiple)):
        assert dict(decode_method(method(1, m)[7:-1])) == dict(m)


_SAMPLES = {"bit": True, "octet": 7, "short": 300, "long": 70000, "longlong": 2**40, "shortstr": "name",
            "longstr": "text", "table": {"k": 1}}


def _every_method() -> list[Any]:
    """One instance of each AMQP 0-9-1 method, every argument set (so that a lost one would show)."""
    from fakebroker.protocols.amqp.codec import unchecked

    return [unchecked(kind, *(0 if name == "ticket" else _SAMPLES[kind.amqp_type(name)] for name in kind.__slots__))
            for kind in c.INDEX_MAPPING.values()]


@pytest.mark.filterwarnings("ignore:This command is deprecated:DeprecationWarning")  # basic.recover-async
@settings(max_examples=100)
@given(st.binary(min_size=1, max_size=8))
def test_trailing_bytes_after_any_method_are_undecodable(extra: bytes) -> None:
    """RabbitMQ's decoders match a method's arguments against the whole payload: bytes left over fail it."""
    from fakebroker.protocols.amqp.codec import decode_method

    for m in _every_method():
        payload = method(1, m)[7:-1]
        assert dict(decode_method(payload)) == dict(m)
        with pytest.raises(UndecodableMethod) as err:
            decode_method(payload + extra)
        assert (err.value.class_id << 16 | err.value.method_id) == m.index
        assert err.value.text == "FRAME_ERROR - cannot decode <<" + ",".join(map(str, payload[4:] + extra)) + ">>"


def test_a_ninth_bit_starts_a_new_octet() -> None:
    from fakebroker.protocols.amqp.codec import _unmarshal

    class NineBits(c.Basic.Ack):
        __slots__ = ("a", "b", "c", "d", "e", "f", "g", "h", "i")
        _a = _b = _c = _d = _e = _f = _g = _h = _i = "bit"

    decoded = NineBits.__new__(NineBits)
    assert _unmarshal(decoded, b"\x81\x01")
    assert [getattr(decoded, n) for n in NineBits.__slots__] == [True] + [False] * 6 + [True, True]
    assert not _unmarshal(decoded, b"\x81")
    assert not _unmarshal(decoded, b"\x81\x01\x00")


def test_a_frame_reader_tells_the_channel_of_an_undecodable_method() -> None:
    payload = method(1, c.Tx.Select())[7:-1] + b"\x00"
    with pytest.raises(UndecodableMethod) as err:
        read_all(HEADER + struct.pack(">BHI", 1, 7, len(payload)) + payload + b"\xce")
    assert (err.value.channel, err.value.text) == (7, "FRAME_ERROR - cannot decode <<0>>")


@given(st.text(max_size=40), st.integers(0, 2**63 - 1), st.booleans(),
       st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True), st.text(max_size=40), st.integers(0, 65535))
def test_the_hand_encoded_methods_match_pamqp(consumer_tag: str, tag: int, flag: bool, exchange: str, key: str,
                                              channel: int) -> None:
    from pamqp import frame

    from fakebroker.protocols.amqp.codec import encode_method

    for m in (c.Basic.Ack(tag, flag), c.Basic.Deliver(consumer_tag, tag, flag, exchange, key)):
        assert encode_method(channel, m) == frame.marshal(m, channel)
