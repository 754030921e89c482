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
