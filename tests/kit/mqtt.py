"""Hand-built MQTT bytes, for malformed-input tests that the codec's encoder refuses to produce."""

from __future__ import annotations


def s(text: str | bytes) -> bytes:
    """An MQTT length-prefixed string."""
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def pkt(first: int, body: bytes) -> bytes:
    """A packet with a 1-byte remaining length (hand-built malformed cases are small)."""
    assert len(body) < 128
    return bytes((first, len(body))) + body


def connect(flags: int = 0x02, payload: bytes = b"", name: str = "MQTT", level: int = 4, keepalive: int = 60,
            first: int = 0x10) -> bytes:
    """A CONNECT from its parts: connect flags, the payload after the variable header, name and level."""
    return pkt(first, s(name) + bytes((level, flags)) + keepalive.to_bytes(2, "big") + payload)
