"""AMQP 0-9-1 framing: an incremental, strict frame reader and the writers, on top of pamqp's method and property
codecs. No I/O.

pamqp encodes and decodes method arguments and content-header properties; this module cuts the byte stream into
frames and checks what RabbitMQ's reader checks (``rabbit_reader``): the protocol header, the frame-end octet,
``frame_max``, the frame type, and that a method's arguments decode. Each failure carries the reply RabbitMQ gives:
a :class:`FrameError` is answered with ``connection.close`` and its code and text; a :class:`HeaderMismatch` with
RabbitMQ's own protocol header and the close of the socket; an :class:`UnknownMethod` with the close of the socket
alone (RabbitMQ 3.10's reader crashes on one and sends nothing).
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from typing import Any, TypeVar

from pamqp import commands, exceptions
from pamqp import decode as pdecode
from pamqp import frame as pframe
from pamqp.base import Frame as Method
from pamqp.header import ContentHeader

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
_END = bytes([FRAME_END])
FRAME_MIN_SIZE = 4096  # rabbit_reader's frame_max until connection.tune-ok
EMPTY_FRAME_SIZE = 8  # frame header (7) and frame end (1)
HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"

_HEADER = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_CONTENT_HEADER = struct.Struct(">HHQ")


class FrameError(Exception):
    """A connection-level error found while reading frames: close the connection with ``code`` and ``text``."""

    def __init__(self, code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.class_id = class_id
        self.method_id = method_id


class UndecodableMethod(FrameError):
    """A method frame whose arguments do not decode to exactly its payload (too short, malformed, or followed by
    trailing bytes). Unlike the other frame errors it is not fatal at once: RabbitMQ answers it with
    ``connection.close`` and waits for the close-ok as for any connection error."""

    def __init__(self, args: bytes, class_id: int, method_id: int) -> None:
        super().__init__(501, f"FRAME_ERROR - cannot decode {erlang_bytes(args)}", class_id, method_id)
        self.channel = 0


class HeaderMismatch(Exception):
    """The client did not open with AMQP 0-9-1's protocol header."""


class UnknownMethod(Exception):
    """A method frame with a class or method id AMQP 0-9-1 does not define."""


@dataclass(slots=True)
class MethodFrame:
    channel: int
    method: Method


@dataclass(slots=True)
class HeaderFrame:
    channel: int
    class_id: int
    body_size: int
    properties: commands.Basic.Properties
    raw: bytes = b""  # the property flags and list as sent, for passing on verbatim


@dataclass(slots=True)
class BodyFrame:
    channel: int
    data: bytes


@dataclass(slots=True)
class HeartbeatFrame:
    channel: int


Frame = MethodFrame | HeaderFrame | BodyFrame | HeartbeatFrame


def erlang_binary(data: bytes) -> str:
    """``io_lib:format("~p", [Binary])``: ``<<"text">>`` when every byte is printable Latin-1, else the bytes."""
    if data and all(32 <= b <= 126 or 160 <= b <= 255 or b in b"\n\r\t\v\b\f\x1b" for b in data):
        escapes = {ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 8: "\\b",
                   12: "\\f", 27: "\\e"}
        return '<<"' + "".join(escapes.get(b, chr(b)) for b in data) + '">>'
    return erlang_bytes(data)


def erlang_bytes(data: bytes) -> str:
    """``io_lib:format("~w", [Binary])``: the bytes as numbers, printable or not."""
    return "<<" + ",".join(map(str, data)) + ">>"


def _snippet(payload: bytes) -> str:
    # rabbit_reader:payload_snippet/1
    if len(payload) > 16:
        return f"first 16 octets = {erlang_binary(payload[:16])}"
    return f"all octets = {erlang_binary(payload)}"


def frame_error(frame_type: int, payload: bytes, reason: str) -> FrameError:
    return FrameError(501, f"FRAME_ERROR - type {frame_type}, {_snippet(payload)}: {reason}")


class FrameReader:
    """Cuts a byte stream into frames. ``feed()`` bytes, then iterate; iteration stops when a frame is incomplete."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.header_seen = False
        #: The negotiated frame_max (0: no limit); rabbit_reader enforces 4096 until tune-ok.
        self.frame_max = FRAME_MIN_SIZE

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def __iter__(self) -> FrameReader:
        return self

    def __next__(self) -> Frame:
        frame = self.next_frame()
        if frame is None:
            raise StopIteration
        return frame

    def next_frame(self) -> Frame | None:
        buf, pos = self._buf, self._pos
        if not self.header_seen:
            if len(buf) - pos < 8:
                # RabbitMQ answers as soon as the bytes it has cannot begin the right header.
                if bytes(buf[pos:]) != PROTOCOL_HEADER[: len(buf) - pos]:
                    raise HeaderMismatch(bytes(buf[pos:]))
                return None
            if bytes(buf[pos:pos + 8]) != PROTOCOL_HEADER:
                raise HeaderMismatch(bytes(buf[pos:pos + 8]))
            self._pos += 8
            self.header_seen = True
            return self.next_frame()
        if len(buf) - pos < 7:
            return None
        frame_type, channel, size = _HEADER.unpack_from(buf, pos)
        if self.frame_max and size > self.frame_max:
            # Checked on the header alone, before the payload arrives (rabbit_reader's frame_header clause).
            raise frame_error(frame_type, b"", f"{{frame_too_large,{size},{self.frame_max - EMPTY_FRAME_SIZE}}}")
        end = pos + 7 + size
        if len(buf) < end + 1:
            return None
        payload = bytes(buf[pos + 7:end])
        if buf[end] != FRAME_END:
            raise frame_error(frame_type, payload, f"{{invalid_frame_end_marker,{buf[end]}}}")
        self._pos = end + 1
        return decode_frame(frame_type, channel, payload)


def decode_frame(frame_type: int, channel: int, payload: bytes) -> Frame:
    """One frame's payload, by type (``rabbit_binary_parser`` and ``rabbit_command_assembler``'s checks)."""
    if frame_type == FRAME_METHOD:
        try:
            return MethodFrame(channel, decode_method(payload))
        except UndecodableMethod as exc:
            exc.channel = channel
            raise
    if frame_type == FRAME_HEADER:
        if len(payload) < 14:
            raise frame_error(frame_type, payload, "malformed_header")
        class_id, _weight, body_size = _CONTENT_HEADER.unpack_from(payload)
        if len(payload) == 14 and payload[12:] == b"\x00\x00":
            return HeaderFrame(channel, class_id, body_size, _NO_PROPERTIES, b"\x00\x00")
        header = ContentHeader()
        try:
            header.unmarshal(payload)
        except (exceptions.UnmarshalingException, struct.error, ValueError, UnicodeDecodeError) as exc:
            raise frame_error(frame_type, payload, "malformed_header") from exc
        return HeaderFrame(channel, class_id, body_size, header.properties, payload[12:])
    if frame_type == FRAME_BODY:
        return BodyFrame(channel, payload)
    if frame_type == FRAME_HEARTBEAT:
        return HeartbeatFrame(channel)
    raise frame_error(frame_type, payload, "unknown_frame")


def decode_method(payload: bytes) -> Method:
    if len(payload) < 4:
        raise UnknownMethod(payload)
    class_id, method_id = _METHOD_ID.unpack_from(payload)
    if class_id == 60:
        # The two methods a busy client sends most, decoded by hand; anything unusual takes pamqp's path.
        fast = _FAST.get(method_id)
        if fast is not None:
            found = fast(payload)
            if found is not None:
                return found
    kind = commands.INDEX_MAPPING.get((class_id << 16) | method_id)
    if kind is None:
        raise UnknownMethod(payload)
    method: Method = kind()
    args = payload[4:]
    try:
        exact = _unmarshal(method, args)
    except (struct.error, ValueError, TypeError, IndexError, UnicodeDecodeError,
            exceptions.UnmarshalingException) as exc:
        raise UndecodableMethod(args, class_id, method_id) from exc
    if not exact:
        raise UndecodableMethod(args, class_id, method_id)
    return method


def _unmarshal(method: Method, args: bytes) -> bool:
    """Decode ``args`` into ``method``'s fields with pamqp's decoders, counting what they take: True when the
    arguments fill the payload exactly (RabbitMQ's generated decoders match the whole binary, so a short
    payload and trailing bytes are both undecodable)."""
    pos = 0
    bit = -1  # the next bit's position in the octet at ``pos`` while in a run of bits; -1 outside one
    for name in method.__slots__:
        kind = method.amqp_type(name)
        if kind == "bit":
            if bit == 8:  # a ninth bit starts a new octet
                pos, bit = pos + 1, -1
            if bit < 0:
                if pos >= len(args):
                    return False
                bit = 0
            value: Any = bool(args[pos] >> bit & 1)
            bit += 1
        else:
            if bit >= 0:
                pos, bit = pos + 1, -1
            used, value = pdecode.by_type(args[pos:], kind)
            pos += used
        setattr(method, name, value)
    if bit >= 0:
        pos += 1
    return pos == len(args)


def _fast_publish(payload: bytes) -> Method | None:
    try:
        n = payload[6]
        exchange = payload[7:7 + n].decode()
        pos = 7 + n
        m = payload[pos]
        key = payload[pos + 1:pos + 1 + m].decode()
        bits = payload[pos + 1 + m]
    except (IndexError, UnicodeDecodeError):
        return None
    if len(payload) != pos + 2 + m:
        return None
    method = commands.Basic.Publish.__new__(commands.Basic.Publish)
    method.ticket, method.exchange, method.routing_key = 0, exchange, key
    method.mandatory, method.immediate = bool(bits & 1), bool(bits & 2)
    return method


def _fast_ack(payload: bytes) -> Method | None:
    if len(payload) != 13:
        return None
    tag, bits = _TAG_FLAGS.unpack_from(payload, 4)
    method = commands.Basic.Ack.__new__(commands.Basic.Ack)
    method.delivery_tag, method.multiple = tag, bool(bits & 1)
    return method


_FAST = {40: _fast_publish, 80: _fast_ack}
_NO_PROPERTIES = commands.Basic.Properties()


def method_ids(method: Method) -> tuple[int, int]:
    return method.index >> 16, method.index & 0xFFFF


# -- writing ------------------------------------------------------------------------------------------


M = TypeVar("M", bound=Method)


_UNCHECKED: dict[type[Any], type[Any]] = {}


def unchecked(kind: type[M], *values: Any) -> M:
    """``kind(*values)`` without pamqp's validation (in the constructor and again when marshalled), which
    refuses names RabbitMQ accepts: any UTF-8 up to 255 bytes. A queue a client declared as ``"a b"`` must get
    its declare-ok, not crash the connection."""
    sub: Any = _UNCHECKED.get(kind)
    if sub is None:
        # No __slots__ of its own: pamqp marshals the fields named by ``self.__slots__``, the parent's.
        sub = _UNCHECKED[kind] = type(kind.__name__, (kind,), {"validate": lambda self: None})
    method = object.__new__(sub)
    for name, value in zip(kind.__slots__, values, strict=False):
        setattr(method, name, value)
    return method  # type: ignore[no-any-return]


def encode_method(channel: int, method: Method) -> bytes:
    if isinstance(method, commands.Basic.Deliver):
        return _encode_deliver(channel, method)
    if isinstance(method, commands.Basic.Ack):
        return _encode_ack(channel, method)
    text = getattr(method, "reply_text", None)
    if isinstance(text, str) and len(text) > 85 and len(text.encode()) > 255:
        # A close's reason is a short string: RabbitMQ cuts a longer one to 252 bytes and "..."
        # (rabbit_binary_generator), e.g. one quoting a long undecodable frame.
        method.reply_text = text.encode()[:252].decode("utf-8", "ignore") + "..."  # type: ignore[attr-defined]
    return pframe.marshal(method, channel)


_TAG_FLAGS = struct.Struct(">QB")


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        raise ValueError("short string over 255 bytes")
    return bytes([len(data)]) + data


def _encode_ack(channel: int, m: commands.Basic.Ack) -> bytes:
    """basic.ack by hand: a publisher confirm for every message a confirming publisher sends."""
    args = _METHOD_ID.pack(60, 80) + _TAG_FLAGS.pack(m.delivery_tag or 0, 1 if m.multiple else 0)
    return _HEADER.pack(FRAME_METHOD, channel, len(args)) + args + _END


def _encode_deliver(channel: int, m: commands.Basic.Deliver) -> bytes:
    """basic.deliver by hand: it is most of what a broker writes, and pamqp's generic marshal is slow."""
    args = (_METHOD_ID.pack(60, 60) + _shortstr(m.consumer_tag or "")
            + _TAG_FLAGS.pack(m.delivery_tag or 0, 1 if m.redelivered else 0)
            + _shortstr(m.exchange or "") + _shortstr(m.routing_key or ""))
    return _HEADER.pack(FRAME_METHOD, channel, len(args)) + args + _END


def encode_content(channel: int, method: Method, body: bytes, properties: dict[str, Any], frame_max: int,
                   wire: bytes | None = None) -> bytes:
    """A method with content: the method frame, the content header, and the body cut to fit ``frame_max``.
    ``wire``: the property flags and list exactly as a publisher sent them (RabbitMQ passes them on unchanged)."""
    props = wire if wire is not None else to_pamqp_properties(properties).marshal()
    header = _CONTENT_HEADER.pack(60, 0, len(body)) + props
    parts = [encode_method(channel, method), _HEADER.pack(FRAME_HEADER, channel, len(header)), header, _END]
    if body:
        chunk = (frame_max - EMPTY_FRAME_SIZE) if frame_max else len(body)
        if len(body) <= chunk:
            parts += (_HEADER.pack(FRAME_BODY, channel, len(body)), body, _END)
        else:
            for start in range(0, len(body), chunk):
                piece = body[start:start + chunk]
                parts += (_HEADER.pack(FRAME_BODY, channel, len(piece)), piece, _END)
    return b"".join(parts)


_PROPERTY_NAMES = ("content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
                   "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id")


def from_pamqp_properties(props: commands.Basic.Properties) -> dict[str, Any]:
    """A content header's properties as the model keeps them (``type`` for pamqp's ``message_type``, a
    ``timestamp`` in epoch seconds); absent properties are left out."""
    if props is _NO_PROPERTIES:
        return {}  # a content header with no property flags, as most publishers send: nothing to read
    out: dict[str, Any] = {}
    for name in _PROPERTY_NAMES:
        value = getattr(props, "message_type" if name == "type" else name, None)
        if value is None or (name == "cluster_id" and value == ""):  # pamqp's default for an absent cluster_id
            continue
        if name == "timestamp" and isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.timezone.utc)
            value = int(value.timestamp())
        out[name] = value
    return out


def to_pamqp_properties(properties: dict[str, Any]) -> commands.Basic.Properties:
    props = commands.Basic.Properties.__new__(commands.Basic.Properties)
    for name in _PROPERTY_NAMES:
        attr = "message_type" if name == "type" else name
        value = properties.get(name)
        if name == "timestamp" and isinstance(value, int):
            value = datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        setattr(props, attr, value)
    return props
