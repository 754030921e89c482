"""The public API: fakebroker.start() (threaded) and fakebroker.serve() (inside an anyio loop)."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import fakebroker


@pytest.fixture
def broker() -> Iterator[fakebroker.ThreadedBroker]:
    with fakebroker.start() as b:
        yield b


def test_every_exchange_type(broker: fakebroker.ThreadedBroker) -> None:
    for name in ("d", "f", "t", "h", "plain"):
        assert broker.declare_queue(name) == name
    broker.declare_exchange("ex.direct", "direct")
    broker.declare_exchange("ex.fanout", "fanout")
    broker.declare_exchange("ex.topic", "topic")
    broker.declare_exchange("ex.headers", "headers")
    broker.bind("d", "ex.direct", "key")
    broker.bind("f", "ex.fanout")
    broker.bind("t", "ex.topic", "a.*.c")
    broker.bind("h", "ex.headers", arguments={"x-match": "any", "kind": "x", "other": 1})

    assert broker.publish("ex.direct", "key", b"direct").queues == ("d",)
    assert broker.publish("ex.direct", "other", b"nowhere").queues == ()
    assert broker.publish("ex.fanout", "ignored", "fanout").queues == ("f",)
    assert broker.publish("ex.topic", "a.b.c", b"topic").queues == ("t",)
    assert broker.publish("ex.topic", "a.b", b"no").queues == ()
    assert broker.publish("ex.headers", "", b"headers", {"headers": {"kind": "x"}}).queues == ("h",)
    assert broker.publish("", "plain", b"default", {"content_type": "text/plain"}).queues == ("plain",)

    for queue, body, exchange, key in (("d", b"direct", "ex.direct", "key"), ("f", b"fanout", "ex.fanout", "ignored"),
                                       ("t", b"topic", "ex.topic", "a.b.c"), ("h", b"headers", "ex.headers", ""),
                                       ("plain", b"default", "", "plain")):
        msg = broker.get(queue)
        assert msg is not None
        assert (msg.body, msg.exchange, msg.routing_key) == (body, exchange, key)
        assert broker.get(queue) is None
    assert {"ex.direct", "ex.fanout", "ex.topic", "ex.headers", "amq.topic"} <= set(broker.exchanges)
    assert ("ex.topic", "t", "a.*.c") in [(b.source, b.destination, b.routing_key) for b in broker.bindings]


def test_properties_and_headers_reach_the_consumer(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    broker.publish("", "q", b"x", {"content_type": "application/json", "headers": {"h": 1}, "delivery_mode": 2})
    msg = broker.get("q")
    assert msg is not None
    assert msg.properties == {"content_type": "application/json", "headers": {"h": 1}, "delivery_mode": 2}
    assert msg.headers == {"h": 1}


def test_get_ack_nack_and_peek(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    for body in (b"1", b"2"):
        broker.publish("", "q", body)
    first = broker.get("q", auto_ack=False)
    assert first is not None and first.body == b"1"
    assert [m.body for m in broker.peek("q")] == [b"2"]
    assert broker.queues["q"].unacked == 1
    broker.nack(first, requeue=True)
    assert [m.body for m in broker.peek("q")] == [b"1", b"2"]
    again = broker.get("q", auto_ack=False)
    assert again is not None and again.redelivered
    broker.ack(again)
    assert broker.queues["q"].messages == 1 and broker.queues["q"].unacked == 0
    assert broker.purge("q") == 1
    assert broker.delete_queue("q") == 0
    assert "q" not in broker.queues


def test_max_length_drop_head(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q", arguments={"x-max-length": 2})
    for i in range(5):
        broker.publish("", "q", b"%d" % i)
    info = broker.queues["q"]
    assert (info.messages, info.arguments, info.durable, info.exclusive, info.auto_delete) == (
        2, {"x-max-length": 2}, False, False, False)
    assert [m.body for m in broker.peek("q")] == [b"3", b"4"]


def test_message_ttl_expires_only_when_the_clock_is_advanced(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q", arguments={"x-message-ttl": 1})
    broker.publish("", "q", b"ttl")
    broker.publish("", "q", b"per-message", {"expiration": "1"})
    time.sleep(0.05)  # 50 times the TTL in real time: nothing may happen, the broker runs on virtual time
    assert broker.queues["q"].messages == 2
    assert broker.clock.now() == 0.0
    broker.clock.advance(0.0009)
    assert broker.queues["q"].messages == 2
    broker.clock.advance(0.0001)
    assert broker.queues["q"].messages == 0
    assert broker.get("q") is None
    assert broker.clock.now() == pytest.approx(0.001)


def test_errors_carry_rabbitmqs_text(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("q")
    with pytest.raises(fakebroker.PreconditionFailed) as info:
        broker.declare_queue("q", durable=True)
    assert str(info.value) == ("PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': "
                               "received 'true' but current is 'false'")
    assert info.value.code == 406
    with pytest.raises(fakebroker.PreconditionFailed, match="inequivalent arg 'type' for exchange 'amq.topic'"):
        broker.declare_exchange("amq.topic", "direct", durable=True)
    with pytest.raises(fakebroker.NotFound) as missing:
        broker.get("missing")
    assert str(missing.value) == "NOT_FOUND - no queue 'missing' in vhost '/'" and missing.value.code == 404
    with pytest.raises(fakebroker.NotFound, match="^NOT_FOUND - no exchange 'nope' in vhost '/'$"):
        broker.publish("nope", "k", b"")
    with pytest.raises(fakebroker.AccessRefused):
        broker.declare_queue("amq.mine")
    with pytest.raises(fakebroker.PreconditionFailed, match="invalid expiration 'soon': no_integer"):
        broker.publish("", "q", b"", {"expiration": "soon"})
    # The broker is still fine after refusing.
    assert broker.publish("", "q", b"ok").queues == ("q",)


def test_message_log_records_routing(broker: fakebroker.ThreadedBroker) -> None:
    broker.declare_queue("a")
    broker.declare_queue("b")
    broker.bind("a", "amq.topic", "sensors.#")
    broker.bind("b", "amq.topic", "sensors.*.temp")
    broker.clock.advance(2)
    broker.publish("amq.topic", "sensors.k1.temp", b"21.5")
    broker.publish("amq.topic", "lights.on", b"1")
    broker.get("b")
    log = broker.messages
    assert len(log) == 2
    first, second = log
    assert (first.exchange, first.routing_key, first.body, first.queues, first.time, first.protocol) == (
        "amq.topic", "sensors.k1.temp", b"21.5", ("a", "b"), 2.0, "api")
    assert first.deliveries == [("b", "python-api")]
    assert second.queues == () and not second.routed
    assert log.filter(routed=False).bodies == [b"1"]
    assert log.filter(topic="sensors/+/temp").bodies == [b"21.5"]


_LEAK_CHECK = """
import asyncio, gc, os, socket, threading
import fakebroker

def fds():
    return set(os.listdir("/proc/self/fd"))

def loops():
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and not o.is_closed())

with fakebroker.start():
    pass  # warm up lazy imports and the like
gc.collect()
threads, before, open_loops = set(threading.enumerate()), fds(), loops()
addresses = []
for _ in range(20):
    with fakebroker.start() as b:
        addresses.extend(b.addresses.values())
        b.declare_queue("q")
        b.publish("", "q", b"x")
        assert b.thread is not None and b.thread.is_alive()
    assert b.stopped and not b.thread.is_alive()
gc.collect()
assert set(threading.enumerate()) == threads, (threads, threading.enumerate())
assert fds() == before, (before, fds())
assert loops() == open_loops
for host, port in addresses[-2:]:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except ConnectionRefusedError:
        pass
    else:
        raise AssertionError(f"{host}:{port} still accepts")
print("clean")
"""


def test_start_stop_leaves_nothing_behind() -> None:
    # In a process of its own: sockets and threads that other tests' client libraries close late would be
    # counted here otherwise.
    out = subprocess.run([sys.executable, "-c", _LEAK_CHECK], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "clean\n", out.stderr


def test_a_stopped_broker_refuses_calls_but_keeps_its_log() -> None:
    b = fakebroker.start()
    b.declare_queue("q")
    b.publish("", "q", b"kept")
    b.stop()
    b.stop()  # twice is fine
    assert b.messages.bodies == [b"kept"]
    with pytest.raises(RuntimeError, match="stopped"):
        b.declare_queue("other")


# -- inside the caller's event loop ------------------------------------------------------------------------
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.mark.anyio
async def test_serve_inside_the_callers_loop(anyio_backend: str) -> None:
    async with fakebroker.serve() as broker:
        assert broker.declare_queue("q", arguments={"x-message-ttl": 1000}) == "q"
        broker.bind("q", "amq.topic", "a.#")
        assert broker.publish("amq.topic", "a.b", b"hello").queues == ("q",)
        assert broker.queues["q"].messages == 1
        await broker.advance(1)
        assert broker.queues["q"].messages == 0
        broker.publish("amq.topic", "a", b"again")
        msg = broker.get("q")
        assert msg is not None and msg.body == b"again"
        with pytest.raises(fakebroker.NotFound):
            broker.get("missing")
        host, port = broker.mqtt
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=1).close()


def test_the_journal_keeps_summaries_not_closed_connections() -> None:
    import weakref

    refs: list[weakref.ref[Any]] = []
    with fakebroker.start() as b:
        b.on("connect", lambda conn: refs.append(weakref.ref(conn)))
        for i in range(3):
            with socket.create_connection(tuple(b.mqtt)) as s:
                s.sendall(bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 0, 0, 5]) + f"gone{i}".encode())
                assert s.recv(4) == b"\x20\x02\x00\x00"
                s.sendall(b"\xe0\x00")
                b.wait_for_disconnect(f"gone{i}")
        # The last connection's task may still be closing its socket when wait_for_disconnect returns.
        deadline = time.monotonic() + 10
        while any(r() is not None for r in refs) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        assert len(refs) == 3 and all(r() is None for r in refs), "a closed connection is still referenced"
        report = b.traffic_report()
    for i in range(3):
        assert f"opened conn#{i + 1} mqtt client_id='gone{i}'" in report
        assert f"closed conn#{i + 1} mqtt client_id='gone{i}'" in report
