"""The STOMP and Web STOMP sessions keep the runtime's contract (fakebroker.testing.check_session_contract)."""

from __future__ import annotations

import re

import pytest
from kit.websocket import ws_frame, ws_upgrade

from fakebroker.protocols.stomp import PROTOCOL as STOMP
from fakebroker.protocols.stomp.codec import encode
from fakebroker.testing import check_session_contract


def frame(command: str, **headers: str) -> bytes:
    body = headers.pop("body", "").encode()
    return encode(command, [(k.replace("_", "-"), v) for k, v in headers.items()], body, trailing_lf=False)


SESSION = [
    frame("CONNECT", accept_version="1.2", host="/", heart_beat="1000,1000"),
    frame("SUBSCRIBE", destination="/topic/a.*", id="s1", ack="client-individual", receipt="r1"),
    frame("SEND", destination="/topic/a.b", receipt="r2", body="hello"),
    frame("SEND", destination="/queue/q", reply_to="/temp-queue/t", body="ask"),
    frame("BEGIN", transaction="t"),
    frame("SEND", destination="/topic/a.c", transaction="t", receipt="r3", body="tx"),
    frame("COMMIT", transaction="t", receipt="r4"),
    b"\n\n",
    frame("UNSUBSCRIBE", id="s1"),
]
SCRIPTS = {
    "session": SESSION,
    "disconnect": [*SESSION, frame("DISCONNECT", receipt="bye")],
    "validation error": [SESSION[0], frame("SEND", destination="/foo/bar"), frame("SEND", destination="/topic/x")],
    "amqp error": [SESSION[0], frame("SUBSCRIBE", destination="/amq/queue/missing", id="m")],
    "malformed": [SESSION[0], b"SEND\nno colon\n\n\x00"],
    "before connect": [frame("SEND", destination="/topic/x"), SESSION[0]],
}


def normalize(out: bytes) -> bytes:
    out = re.sub(rb"session-[A-Za-z0-9_-]{22}", b"session-X", out)
    return re.sub(rb"amq\.gen-[A-Za-z0-9_-]{22}", b"amq.gen-X", out)


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
@pytest.mark.parametrize("listener", [spec.name for spec in STOMP.listeners])
def test_stomp_sessions_keep_the_contract(listener: str, script: list[bytes]) -> None:
    factory = next(spec.session for spec in STOMP.listeners if spec.name == listener)
    if listener == "web_stomp":
        script = [ws_upgrade("/ws", "v12.stomp"), *(ws_frame(chunk, opcode=1) for chunk in script)]
    check_session_contract(factory, script, normalize=normalize)


def _post(path: str, body: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: broker\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


SOCKJS = {
    "xhr": [_post("/stomp/000/abc/xhr"),
            _post("/stomp/000/abc/xhr_send", b'["CONNECT\\naccept-version:1.2\\nhost:/\\n\\n\\u0000"]'),
            _post("/stomp/000/abc/xhr"),
            _post("/stomp/000/abc/xhr_send", b'["DISCONNECT\\nreceipt:bye\\n\\n\\u0000"]'),
            _post("/stomp/000/abc/xhr"), _post("/stomp/000/abc/xhr")],
    "info": [b"GET /stomp/info HTTP/1.1\r\nHost: broker\r\n\r\n", b"GET /stomp HTTP/1.1\r\nHost: broker\r\n\r\n"],
    "websocket": [ws_upgrade("/stomp/000/abc/websocket"),
                  ws_frame(b'["CONNECT\\naccept-version:1.2\\nhost:/\\n\\n\\u0000"]', opcode=1),
                  ws_frame(b'["SUBSCRIBE\\ndestination:/topic/a\\nid:1\\nreceipt:r\\n\\n\\u0000"]', opcode=1),
                  ws_frame(b'["DISCONNECT\\nreceipt:bye\\n\\n\\u0000"]', opcode=1)],
}


@pytest.mark.parametrize("script", SOCKJS.values(), ids=SOCKJS.keys())
def test_sockjs_sessions_keep_the_contract(script: list[bytes]) -> None:
    factory = next(spec.session for spec in STOMP.listeners if spec.name == "web_stomp")
    def without_entropy(out: bytes) -> bytes:
        out = re.sub(rb'"entropy": \d+', b"", normalize(out))
        return re.sub(rb"Content-Length: \d+", b"Content-Length: N", out)

    check_session_contract(factory, script, normalize=without_entropy)
