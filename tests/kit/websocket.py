"""Raw WebSocket client bytes (RFC 6455) for tests that drive a server without a client library."""

from __future__ import annotations

import struct

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key: the accept header is then fixed and known
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def ws_upgrade(path: str = "/ws", *subprotocols: str, host: str = "localhost", extra: str = "") -> bytes:
    """An HTTP/1.1 upgrade request with a fixed key."""
    offer = f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}\r\n" if subprotocols else ""
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{offer}{extra}\r\n").encode()


def ws_frame(payload: bytes, opcode: int = 2, *, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One masked client frame (binary by default; 1 text, 8 close, 9 ping, 0 continuation)."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked
