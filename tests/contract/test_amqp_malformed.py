"""AMQP 0-9-1 contract: method frames whose arguments do not fill the payload exactly (bytes after them, or cut
short). RabbitMQ 3.10 decodes a method's arguments against the whole payload, so both fail alike: on a channel,
``connection.close`` 501 ``FRAME_ERROR - cannot decode <<the arguments>>`` with the method's ids; on channel 0,
541 ``INTERNAL_ERROR``; where a content header is due, the frame type is wrong first (505). Either way the
broker then waits for the close-ok, as for any connection error, and a bystander connection carries on."""

from __future__ import annotations

from typing import Any

import pytest
from amqpkit import RawAmqp, channel, payload_of, resized
from contractlib import Backend
from kit.wait import wait_until
from pamqp import commands as c
from pamqp import frame

LONG_NAME = "q" * 100


def _cannot_decode(args: bytes) -> str:
    text = "FRAME_ERROR - cannot decode <<" + ",".join(map(str, args)) + ">>"
    # A close's reason is a short string: RabbitMQ cuts a longer one to 252 bytes and "...".
    return text if len(text) <= 255 else text[:252] + "..."


def _plus(m: Any, extra: bytes, number: int = 1) -> bytes:
    marshalled = frame.marshal(m, number)
    return resized(marshalled, payload_of(marshalled) + extra)


def _cut(m: Any, n: int) -> bytes:
    marshalled = frame.marshal(m, 1)
    return resized(marshalled, payload_of(marshalled)[:-n])


CASES: dict[str, tuple[bytes, tuple[int, str, int, int]]] = {
    "queue.declare and a byte": (
        _plus(c.Queue.Declare(queue="trail"), b"\x00"),
        (501, "FRAME_ERROR - cannot decode <<0,0,5,116,114,97,105,108,0,0,0,0,0,0>>", 50, 10)),
    "queue.declare cut short": (
        _cut(c.Queue.Declare(queue="trail"), 2),
        (501, "FRAME_ERROR - cannot decode <<0,0,5,116,114,97,105,108,0,0,0>>", 50, 10)),
    "basic.publish and two bytes": (
        _plus(c.Basic.Publish(exchange="", routing_key="q"), b"\x01\x02"),
        (501, "FRAME_ERROR - cannot decode <<0,0,0,1,113,0,1,2>>", 60, 40)),
    "basic.ack and a byte": (
        _plus(c.Basic.Ack(1), b"\x09"),
        (501, "FRAME_ERROR - cannot decode <<0,0,0,0,0,0,0,1,0,9>>", 60, 80)),
    "tx.select and a byte": (
        _plus(c.Tx.Select(), b"\x00"),
        (501, "FRAME_ERROR - cannot decode <<0>>", 90, 10)),
    "channel.open of a new channel and a byte": (
        _plus(c.Channel.Open(), b"\x00", number=2),
        (501, "FRAME_ERROR - cannot decode <<1,48,0>>", 20, 10)),
    "a long reason is cut": (
        _plus(c.Queue.Declare(queue=LONG_NAME), b"\x00"),
        (501, _cannot_decode(payload_of(frame.marshal(c.Queue.Declare(queue=LONG_NAME), 1))[4:] + b"\x00"),
         50, 10)),
    "connection.close on channel 0 and a byte": (
        _plus(c.Connection.Close(200, "bye", 0, 0), b"\x00", number=0),
        (541, "INTERNAL_ERROR", 0, 0)),
    "where a content header is due": (
        frame.marshal(c.Basic.Publish(exchange="", routing_key="q"), 1)
        + _plus(c.Queue.Declare(queue="trail"), b"\x00"),
        (505, "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead",
         60, 40)),
}


@pytest.mark.parametrize("case", CASES.keys())
def test_a_method_frame_longer_or_shorter_than_its_arguments(backend: Backend, case: str) -> None:
    data, expected = CASES[case]
    bystander = channel(backend)
    bystander.queue_declare("bystander")
    raw = RawAmqp(backend)
    raw.send(1, c.Channel.Open())
    raw.expect(c.Channel.OpenOk)
    raw.send_raw(data)
    close = raw.expect(c.Connection.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == expected
    assert raw.frames_within(backend.quiet) == []  # the socket stays open: the broker waits for close-ok
    raw.send(0, c.Connection.CloseOk())
    assert raw.frame() == (-1, None)
    bystander.basic_publish("", "bystander", b"still here")
    # basic.get until the message is in (RabbitMQ routes a publish a moment after it reads it).
    assert wait_until(lambda: bystander.basic_get("bystander", auto_ack=True)[2]) == b"still here"
