"""Sans-I/O codec for MQTT 3.1 (``MQIsdp``, level 3) and 3.1.1 (``MQTT``, level 4).

:func:`encode` turns a packet dataclass into bytes; :class:`MqttDecoder` turns a byte stream, split anywhere,
back into packets. The decoder is strict (it follows the 3.1.1 spec's "malformed packet" rules) and raises
:class:`MqttProtocolError` on anything malformed; the session decides what to do with it (RabbitMQ closes the
socket, sometimes after a CONNACK). Semantic checks that need connection state (CONNECT first and only once,
client id rules, empty topic filters, authentication) belong to the session, not here.

The encoder checks only what it must to produce a parseable frame, so tests can build packets a strict
decoder would reject (wildcards in a PUBLISH topic, a password without a user name, QoS 3 ...).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from struct import Struct
from typing import ClassVar

from ..base import ProtocolError

__all__ = [
    "MAX_REMAINING_LENGTH",
    "SUBACK_FAILURE",
    "Connack",
    "ConnackCode",
    "Connect",
    "Disconnect",
    "MqttDecoder",
    "MqttProtocolError",
    "Packet",
    "PacketType",
    "Pingreq",
    "Pingresp",
    "Puback",
    "Pubcomp",
    "Publish",
    "Pubrec",
    "Pubrel",
    "Suback",
    "Subscribe",
    "Unsuback",
    "Unsubscribe",
    "Will",
    "encode",
    "validate_topic_filter",
    "validate_topic_name",
]

#: Largest value the 4-byte Remaining Length field can hold (256 MiB - 1).
MAX_REMAINING_LENGTH = 268_435_455
#: SUBACK return code for a refused subscription.
SUBACK_FAILURE = 0x80

_U16 = Struct("!H")


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class ConnackCode(IntEnum):
    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class MqttProtocolError(ProtocolError):
    """A malformed packet (or a protocol violation the codec can see without connection state).

    ``connack_code`` is set only where the spec prescribes a CONNACK before closing: a CONNECT whose protocol
    name is valid but whose level is not (``ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION``, [MQTT-3.1.2-2]).
    RabbitMQ 3.10 sends no CONNACK even then (it closes on level 5/6 with ``protocol_header_corrupt``), so
    the session chooses whether to honour it. For everything else the connection is simply closed.
    """

    def __init__(self, reason: str, connack_code: int | None = None) -> None:
        super().__init__(reason, reply=connack_code)
        self.connack_code = connack_code


# -- packets -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Connect:
    """CONNECT. ``protocol_name``/``protocol_level`` are ``"MQTT"``/4 (3.1.1) or ``"MQIsdp"``/3 (3.1)."""

    packet_type: ClassVar[int] = PacketType.CONNECT
    protocol_name: str = "MQTT"
    protocol_level: int = 4
    clean_session: bool = True
    keepalive: int = 60
    client_id: str = ""
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    packet_type: ClassVar[int] = PacketType.CONNACK
    session_present: bool = False
    return_code: int = ConnackCode.ACCEPTED


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs twice as much, once per message
class Publish:
    """PUBLISH. ``packet_id`` is None exactly when ``qos`` is 0 (the encoder ignores it for QoS 0)."""

    packet_type: ClassVar[int] = PacketType.PUBLISH
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None


@dataclass(slots=True)  # not frozen, as Publish: one per QoS 1 message each way
class Puback:
    packet_type: ClassVar[int] = PacketType.PUBACK
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrec:
    packet_type: ClassVar[int] = PacketType.PUBREC
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubrel:
    packet_type: ClassVar[int] = PacketType.PUBREL
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pubcomp:
    packet_type: ClassVar[int] = PacketType.PUBCOMP
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    """SUBSCRIBE: ``topics`` is a list of ``(filter, requested_qos)``."""

    packet_type: ClassVar[int] = PacketType.SUBSCRIBE
    packet_id: int
    topics: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class Suback:
    """SUBACK: one return code per requested filter: the granted QoS (0-2) or ``SUBACK_FAILURE``."""

    packet_type: ClassVar[int] = PacketType.SUBACK
    packet_id: int
    return_codes: list[int]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_type: ClassVar[int] = PacketType.UNSUBSCRIBE
    packet_id: int
    topics: list[str]


@dataclass(frozen=True, slots=True)
class Unsuback:
    packet_type: ClassVar[int] = PacketType.UNSUBACK
    packet_id: int


@dataclass(frozen=True, slots=True)
class Pingreq:
    packet_type: ClassVar[int] = PacketType.PINGREQ


@dataclass(frozen=True, slots=True)
class Pingresp:
    packet_type: ClassVar[int] = PacketType.PINGRESP


@dataclass(frozen=True, slots=True)
class Disconnect:
    packet_type: ClassVar[int] = PacketType.DISCONNECT


Packet = (
    Connect
    | Connack
    | Publish
    | Puback
    | Pubrec
    | Pubrel
    | Pubcomp
    | Subscribe
    | Suback
    | Unsubscribe
    | Unsuback
    | Pingreq
    | Pingresp
    | Disconnect
)

# -- topic helpers -------------------------------------------------------------------------------------------


def validate_topic_filter(topic_filter: str) -> bool:
    """True if ``topic_filter`` is valid: non-empty, ``+`` and ``#`` fill a whole level, ``#`` only last."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    if "+" not in topic_filter and "#" not in topic_filter:
        return True
    levels = topic_filter.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


def validate_topic_name(topic: str) -> bool:
    """True if ``topic`` is a valid PUBLISH topic name by the spec: non-empty, no wildcards, no U+0000."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


# -- encoding ------------------------------------------------------------------------------------------------


def _fixed_header(first: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((first, length))
    if length > MAX_REMAINING_LENGTH:
        raise ValueError(f"packet too large: remaining length {length}")
    out = bytearray((first,))
    while length:
        digit = length & 0x7F
        length >>= 7
        out.append(digit | 0x80 if length else digit)
    return bytes(out)


def _str(value: str) -> bytes:
    data = value.encode()
    if len(data) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return _U16.pack(len(data)) + data


def _blob(value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError("binary field longer than 65535 bytes")
    return _U16.pack(len(value)) + value


def _encode_connect(p: Connect) -> bytes:
    flags = 0x02 if p.clean_session else 0
    parts = [
        _str(p.protocol_name),
        bytes((p.protocol_level,)),
        b"",
        _U16.pack(p.keepalive),
        _str(p.client_id),
    ]
    if p.will is not None:
        if not 0 <= p.will.qos <= 3:
            raise ValueError("will qos must fit in 2 bits")
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        parts += (_str(p.will.topic), _blob(p.will.payload))
    if p.username is not None:
        flags |= 0x80
        parts.append(_str(p.username))
    if p.password is not None:
        flags |= 0x40
        parts.append(_blob(p.password))
    parts[2] = bytes((flags,))
    body = b"".join(parts)
    return _fixed_header(0x10, len(body)) + body


def _encode_connack(p: Connack) -> bytes:
    return bytes((0x20, 2, 1 if p.session_present else 0, p.return_code))


def _encode_publish(p: Publish) -> bytes:
    return encode_publish(p.topic, p.payload, p.qos, p.retain, p.dup, p.packet_id)


_encoded_topics: dict[str, bytes] = {}


def encode_publish(topic: str, payload: bytes, qos: int = 0, retain: bool = False, dup: bool = False,
                   packet_id: int | None = None) -> bytes:
    """A PUBLISH packet, without a :class:`Publish` in between: the broker writes one per delivery."""
    if not 0 <= qos <= 3:
        raise ValueError("qos must fit in 2 bits")
    var = _encoded_topics.get(topic)
    if var is None:
        data = topic.encode()
        if len(data) > 0xFFFF:
            raise ValueError("topic longer than 65535 bytes")
        if len(_encoded_topics) >= 4096:
            _encoded_topics.clear()  # a cache of the topics in use, not of every topic ever seen
        var = _encoded_topics[topic] = _U16.pack(len(data)) + data
    if qos:
        if packet_id is None:
            raise ValueError("a PUBLISH with qos > 0 needs a packet_id")
        var += _U16.pack(packet_id)
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    length = len(var) + len(payload)
    if length < 0x80:  # _fixed_header, inlined for the common small message
        return bytes((first, length)) + var + payload
    return _fixed_header(first, length) + var + payload


def _encode_subscribe(p: Subscribe) -> bytes:
    body = _U16.pack(p.packet_id) + b"".join(_str(f) + bytes((q,)) for f, q in p.topics)
    return _fixed_header(0x82, len(body)) + body


def _encode_suback(p: Suback) -> bytes:
    body = _U16.pack(p.packet_id) + bytes(p.return_codes)
    return _fixed_header(0x90, len(body)) + body


def _encode_unsubscribe(p: Unsubscribe) -> bytes:
    body = _U16.pack(p.packet_id) + b"".join(_str(f) for f in p.topics)
    return _fixed_header(0xA2, len(body)) + body


def encode_puback(packet_id: int) -> bytes:
    """A PUBACK packet, without a :class:`Puback` in between."""
    return b"\x40\x02" + _U16.pack(packet_id)


def encode(packet: Packet) -> bytes:
    """Serialise any packet. Raises ValueError only when the fields cannot be framed at all."""
    # isinstance chain ordered by how often the broker sends each packet.
    if isinstance(packet, Publish):
        return _encode_publish(packet)
    if isinstance(packet, (Puback, Pubrec, Pubcomp, Unsuback)):
        return bytes((packet.packet_type << 4, 2)) + _U16.pack(packet.packet_id)
    if isinstance(packet, Pubrel):
        return b"\x62\x02" + _U16.pack(packet.packet_id)
    if isinstance(packet, (Pingreq, Pingresp, Disconnect)):
        return bytes((packet.packet_type << 4, 0))
    if isinstance(packet, Connack):
        return _encode_connack(packet)
    if isinstance(packet, Suback):
        return _encode_suback(packet)
    if isinstance(packet, Connect):
        return _encode_connect(packet)
    if isinstance(packet, Subscribe):
        return _encode_subscribe(packet)
    if isinstance(packet, Unsubscribe):
        return _encode_unsubscribe(packet)
    raise TypeError(f"not an MQTT packet: {packet!r}")


# -- decoding ------------------------------------------------------------------------------------------------

#: What the decoder reads from: the bytes as read, or a bytearray while a packet is incomplete.
Buffer = bytes | bytearray

# Required fixed-header flag nibble per packet type; None = PUBLISH (checked separately), -1 = reserved type.
_REQUIRED_FLAGS: tuple[int | None, ...] = (-1, 0, 0, None, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, -1)
# Remaining Length of the fixed-layout packets (None = variable), checked from the header so a bogus length
# is rejected before its body is buffered.
_FIXED_LENGTH: tuple[int | None, ...] = (None, None, 2, None, 2, 2, 2, 2, None, None, None, 2, 0, 0, 0, None)
_PROTOCOL_LEVELS = {"MQTT": 4, "MQIsdp": 3}
_NAMES = {t.value: t.name for t in PacketType}


def _read_u16(buf: Buffer, pos: int, end: int, what: str) -> int:
    if pos + 2 > end:
        raise MqttProtocolError(f"{what} truncated")
    return (buf[pos] << 8) | buf[pos + 1]


def _read_pid(buf: Buffer, pos: int, end: int, what: str) -> int:
    pid = _read_u16(buf, pos, end, f"{what} packet id")
    if pid == 0:
        raise MqttProtocolError(f"{what} with packet id 0")
    return pid


def _read_bytes(buf: Buffer, pos: int, end: int, what: str) -> tuple[bytes, int]:
    n = _read_u16(buf, pos, end, what)
    stop = pos + 2 + n
    if stop > end:
        raise MqttProtocolError(f"{what} truncated")
    return bytes(buf[pos + 2 : stop]), stop


def _read_str(buf: Buffer, pos: int, end: int, what: str) -> tuple[str, int]:
    n = _read_u16(buf, pos, end, what)
    stop = pos + 2 + n
    if stop > end:
        raise MqttProtocolError(f"{what} truncated")
    try:
        value = buf[pos + 2 : stop].decode("utf-8")  # strict: also rejects overlongs and surrogates
    except UnicodeDecodeError:
        raise MqttProtocolError(f"{what} is not valid UTF-8") from None
    if "\x00" in value:
        raise MqttProtocolError(f"{what} contains U+0000")
    return value, stop


def _decode_connect(buf: Buffer, pos: int, end: int) -> Connect:
    name, pos = _read_str(buf, pos, end, "CONNECT protocol name")
    level_wanted = _PROTOCOL_LEVELS.get(name)
    if level_wanted is None:
        # [MQTT-3.1.2-1]: the server MAY close without a CONNACK.
        raise MqttProtocolError(f"CONNECT with unknown protocol name {name!r}")
    if pos + 4 > end:
        raise MqttProtocolError("CONNECT variable header truncated")
    level = buf[pos]
    if level != level_wanted:
        raise MqttProtocolError(
            f"CONNECT with unsupported protocol level {level} for {name!r}",
            ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
        )
    flags = buf[pos + 1]
    keepalive = (buf[pos + 2] << 8) | buf[pos + 3]
    pos += 4
    if flags & 0x01:
        raise MqttProtocolError("CONNECT reserved flag set")
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if flags & 0x04:
        if will_qos == 3:
            raise MqttProtocolError("CONNECT will qos 3")
    elif will_qos or will_retain:
        raise MqttProtocolError("CONNECT will qos/retain set without the will flag")
    if flags & 0x40 and not flags & 0x80:
        raise MqttProtocolError("CONNECT password flag without user name flag")
    client_id, pos = _read_str(buf, pos, end, "CONNECT client id")
    will = None
    if flags & 0x04:
        will_topic, pos = _read_str(buf, pos, end, "CONNECT will topic")
        will_payload, pos = _read_bytes(buf, pos, end, "CONNECT will message")
        will = Will(will_topic, will_payload, will_qos, will_retain)
    username = password = None
    if flags & 0x80:
        username, pos = _read_str(buf, pos, end, "CONNECT user name")
    if flags & 0x40:
        password, pos = _read_bytes(buf, pos, end, "CONNECT password")
    if pos != end:
        raise MqttProtocolError("CONNECT with trailing bytes after the payload")
    return Connect(name, level, bool(flags & 0x02), keepalive, client_id, will, username, password)


def _decode_subscribe(buf: Buffer, pos: int, end: int) -> Subscribe:
    pid = _read_pid(buf, pos, end, "SUBSCRIBE")
    pos += 2
    topics: list[tuple[str, int]] = []
    while pos < end:
        topic_filter, pos = _read_str(buf, pos, end, "SUBSCRIBE topic filter")
        if pos >= end:
            raise MqttProtocolError("SUBSCRIBE requested QoS missing")
        qos = buf[pos]
        if qos > 2:
            raise MqttProtocolError(f"SUBSCRIBE requested QoS byte {qos:#04x}")
        topics.append((topic_filter, qos))
        pos += 1
    if not topics:
        raise MqttProtocolError("SUBSCRIBE with no topic filters")
    return Subscribe(pid, topics)


def _decode_unsubscribe(buf: Buffer, pos: int, end: int) -> Unsubscribe:
    pid = _read_pid(buf, pos, end, "UNSUBSCRIBE")
    pos += 2
    topics: list[str] = []
    while pos < end:
        topic_filter, pos = _read_str(buf, pos, end, "UNSUBSCRIBE topic filter")
        topics.append(topic_filter)
    if not topics:
        raise MqttProtocolError("UNSUBSCRIBE with no topic filters")
    return Unsubscribe(pid, topics)


def _decode_suback(buf: Buffer, pos: int, end: int) -> Suback:
    pid = _read_pid(buf, pos, end, "SUBACK")
    codes = list(buf[pos + 2 : end])
    if not codes:
        raise MqttProtocolError("SUBACK with no return codes")
    for code in codes:
        if code > 2 and code != SUBACK_FAILURE:
            raise MqttProtocolError(f"SUBACK with reserved return code {code:#04x}")
    return Suback(pid, codes)


def _decode_connack(buf: Buffer, pos: int) -> Connack:
    ack_flags, code = buf[pos], buf[pos + 1]
    if ack_flags & 0xFE:
        raise MqttProtocolError("CONNACK reserved flags set")
    if code > ConnackCode.NOT_AUTHORIZED:
        raise MqttProtocolError(f"CONNACK with reserved return code {code}")
    return Connack(bool(ack_flags), code)


_PID_ONLY: dict[int, type[Puback | Pubrec | Pubrel | Pubcomp | Unsuback]] = {
    PacketType.PUBACK: Puback,
    PacketType.PUBREC: Pubrec,
    PacketType.PUBREL: Pubrel,
    PacketType.PUBCOMP: Pubcomp,
    PacketType.UNSUBACK: Unsuback,
}
_EMPTY: dict[int, Pingreq | Pingresp | Disconnect] = {
    PacketType.PINGREQ: Pingreq(),
    PacketType.PINGRESP: Pingresp(),
    PacketType.DISCONNECT: Disconnect(),
}


class MqttDecoder:
    """Incremental decoder: :meth:`feed` bytes as they arrive, then iterate to get the complete packets.

    Iteration is lazy and stops when no complete packet is buffered. It raises :class:`MqttProtocolError` at
    the first malformed packet, after yielding every well-formed packet before it (a real broker acts on
    those before it closes). The error is sticky: the decoder stays at the bad packet, so the connection
    must be closed.

    ``max_packet_size`` bounds the Remaining Length (the bytes after the fixed header), as RabbitMQ's
    ``max_packet_size`` does; the error fires as soon as the fixed header is in, before the body is buffered.
    Both options are plain attributes, so the session can change them (say, after CONNECT).
    """

    __slots__ = ("_buf", "_pos", "allow_wildcards_in_publish_topic", "max_packet_size")

    def __init__(
        self, max_packet_size: int = MAX_REMAINING_LENGTH, *, allow_wildcards_in_publish_topic: bool = False
    ) -> None:
        self.max_packet_size = max_packet_size
        #: RabbitMQ accepts ``+``/``#`` in PUBLISH topics (routed as literal words); the spec forbids them.
        self.allow_wildcards_in_publish_topic = allow_wildcards_in_publish_topic
        # The bytes as read while every packet in them is decoded (no copy), a bytearray only while a packet is
        # still incomplete (appended to in place, so a megabyte that arrives in pieces is not copied each time).
        self._buf: Buffer = b""
        self._pos = 0  # start of the first undecoded packet in _buf

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered but not yet decoded (a partial packet, or packets not yet iterated)."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
        elif isinstance(buf, bytearray):
            # Drop consumed bytes here, not per packet, so a chunk of many packets is not copied each time.
            if pos:
                del buf[:pos]
            buf += data
        else:
            self._buf = bytearray(memoryview(buf)[pos:]) + data  # a packet is incomplete: keep it growing in place
        self._pos = 0

    def discard(self) -> None:
        """Forget what is buffered: the connection is gone, and a partial packet can be megabytes."""
        self._buf = b""
        self._pos = 0

    def __iter__(self) -> Iterator[Packet]:
        while (packet := self.next_packet()) is not None:
            yield packet

    def next_packet(self) -> Packet | None:
        """Decode and return the next complete packet, or None if more bytes are needed."""
        buf = self._buf
        start = self._pos
        avail = len(buf) - start
        if avail < 1:
            if start:
                # Everything decoded: let go of the bytes now, not at the next read (an idle connection would
                # keep its last packets).
                self._buf = b""
                self._pos = 0
            return None
        first = buf[start]
        ptype = first >> 4
        flags = first & 0x0F
        # The first byte alone can be malformed: reject it before waiting for anything else.
        required = _REQUIRED_FLAGS[ptype]
        if required is None:
            qos = (flags >> 1) & 3
            if qos == 3:
                raise MqttProtocolError("PUBLISH with QoS 3")
            if qos == 0 and flags & 0x08:
                raise MqttProtocolError("PUBLISH with QoS 0 and DUP set")  # [MQTT-3.3.1-2]
        elif required < 0:
            raise MqttProtocolError(f"reserved packet type {ptype}")
        elif flags != required:
            raise MqttProtocolError(f"{_NAMES[ptype]} with fixed header flags {flags:#06b}")
        if avail < 2:
            return None
        length = buf[start + 1]
        body = start + 2
        if length & 0x80:
            # Multi-byte Remaining Length: at most 4 bytes, each carrying 7 bits, least significant first.
            length &= 0x7F
            shift = 7
            while True:
                if body >= start + avail:
                    return None
                digit = buf[body]
                body += 1
                length |= (digit & 0x7F) << shift
                if not digit & 0x80:
                    break
                if shift == 21:
                    raise MqttProtocolError("remaining length encoded in more than 4 bytes")
                shift += 7
        if length > self.max_packet_size:
            raise MqttProtocolError(
                f"remaining length {length} exceeds max_packet_size {self.max_packet_size}"
            )
        if ptype == 4 and length == 2 and body + 2 <= len(buf):
            # PUBACK, decoded here: with QoS 1 every message brings one back.
            pid = (buf[body] << 8) | buf[body + 1]
            if pid:
                self._pos = body + 2
                return Puback(pid)
        fixed = _FIXED_LENGTH[ptype]
        if fixed is not None and length != fixed:
            raise MqttProtocolError(f"{_NAMES[ptype]} with remaining length {length}, expected {fixed}")
        end = body + length
        if end > len(buf):
            return None
        if ptype == 3:
            packet: Packet = self._decode_publish(flags, buf, body, end)
        else:
            packet = self._decode_body(ptype, flags, buf, body, end)
        self._pos = end
        return packet

    def _decode_publish(self, flags: int, buf: Buffer, pos: int, end: int) -> Publish:
        # _read_str and _read_pid inlined: the packet every message arrives in.
        stop = pos + 2
        if stop > end:
            raise MqttProtocolError("PUBLISH topic truncated")
        stop += (buf[pos] << 8) | buf[pos + 1]
        if stop > end:
            raise MqttProtocolError("PUBLISH topic truncated")
        try:
            topic = buf[pos + 2 : stop].decode("utf-8")  # strict: also rejects overlongs and surrogates
        except UnicodeDecodeError:
            raise MqttProtocolError("PUBLISH topic is not valid UTF-8") from None
        if not topic:
            raise MqttProtocolError("PUBLISH with an empty topic")
        if "\x00" in topic:
            raise MqttProtocolError("PUBLISH topic contains U+0000")
        if not self.allow_wildcards_in_publish_topic and ("+" in topic or "#" in topic):
            raise MqttProtocolError(f"PUBLISH topic {topic!r} contains a wildcard")
        if flags & 6:
            if stop + 2 > end:
                raise MqttProtocolError("PUBLISH packet id truncated")
            pid: int | None = (buf[stop] << 8) | buf[stop + 1]
            if not pid:
                raise MqttProtocolError("PUBLISH with packet id 0")
            stop += 2
        else:
            pid = None
        payload = buf[stop:end]
        if type(payload) is not bytes:  # a slice of the bytearray kept for an incomplete packet
            payload = bytes(payload)
        return Publish(topic, payload, (flags >> 1) & 3, bool(flags & 1), bool(flags & 8), pid)

    def _decode_body(self, ptype: int, flags: int, buf: Buffer, pos: int, end: int) -> Packet:
        # Fixed-layout lengths were checked in next_packet.
        pid_cls = _PID_ONLY.get(ptype)
        if pid_cls is not None:
            return pid_cls(_read_pid(buf, pos, end, _NAMES[ptype]))
        empty = _EMPTY.get(ptype)
        if empty is not None:
            return empty
        if ptype == PacketType.CONNECT:
            return _decode_connect(buf, pos, end)
        if ptype == PacketType.SUBSCRIBE:
            return _decode_subscribe(buf, pos, end)
        if ptype == PacketType.UNSUBSCRIBE:
            return _decode_unsubscribe(buf, pos, end)
        if ptype == PacketType.SUBACK:
            return _decode_suback(buf, pos, end)
        return _decode_connack(buf, pos)
