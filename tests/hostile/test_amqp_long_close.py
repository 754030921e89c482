"""A method frame the AMQP codec cannot decode, with arguments long enough that the FRAME_ERROR reason quoting
them passes 255 bytes (found by the hostile harness): the connection.close is still sent, with its reason cut
to fit a short string, and nothing is logged at ERROR."""

from __future__ import annotations

import logging
import socket
import struct

from pamqp import commands as c
from targets import AmqpTarget

from fakebroker import ThreadedBroker
from fakebroker.protocols.amqp.codec import FrameReader, MethodFrame, unchecked


def test_undecodable_method_with_long_arguments_gets_its_close(broker: ThreadedBroker, bystander, caplog):
    target = AmqpTarget()
    # queue.declare on channel 1 whose queue name is 150 bytes of invalid UTF-8.
    args = b"\x00\x00" + bytes([150]) + b"\x80" * 150 + b"\x00\x00\x00\x00\x00"
    payload = struct.pack(">HH", 50, 10) + args
    frame = struct.pack(">BHI", 1, 1, len(payload)) + payload + b"\xce"
    channel_open = target._methods(c.Channel.Open(), channel=1)
    with caplog.at_level(logging.WARNING, logger="fakebroker"), \
            socket.create_connection(target.address(broker), timeout=5) as sock:
        sock.sendall(target.opening("long-close") + channel_open + frame)
        reader, data = FrameReader(), b""
        reader.feed(b"AMQP\x00\x00\x09\x01")  # the reader is a server's: it expects the header first
        close = None
        while close is None:
            chunk = sock.recv(65536)
            assert chunk, f"closed without a connection.close; got {data!r}"
            data += chunk
            reader.feed(chunk)
            while (f := reader.next_frame()) is not None:
                if isinstance(f, MethodFrame) and isinstance(f.method, c.Connection.Close):
                    close = f.method
    assert close.reply_code == 501
    assert close.reply_text.startswith("FRAME_ERROR - cannot decode")
    assert len(close.reply_text.encode()) <= 255
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    bystander.check()


def test_queue_names_rabbitmq_accepts_get_their_declare_ok(broker: ThreadedBroker, bystander, caplog):
    # pamqp refuses to build a declare-ok for "a b" or "é"; RabbitMQ takes any UTF-8 name up to 255 bytes.
    target = AmqpTarget()
    names = ["a b", "é", "q\tname", "x" * 255]
    wire = target._methods(c.Channel.Open(), channel=1)
    for name in names:
        wire += target._methods(unchecked(c.Queue.Declare, 0, name, False, False, False, True, False, {}), channel=1)
    with caplog.at_level(logging.WARNING, logger="fakebroker"), \
            socket.create_connection(target.address(broker), timeout=5) as sock:
        sock.sendall(target.opening("names") + wire)
        reader = FrameReader()
        reader.feed(b"AMQP\x00\x00\x09\x01")
        declared: list[str] = []
        while len(declared) < len(names):
            chunk = sock.recv(65536)
            assert chunk, f"closed after {declared}"
            reader.feed(chunk)
            while (f := reader.next_frame()) is not None:
                if isinstance(f, MethodFrame) and isinstance(f.method, c.Queue.DeclareOk):
                    declared.append(f.method.queue)
    assert declared == names
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    bystander.check()
