"""``async_fakebroker``: the broker in an anyio test's own event loop, on asyncio and on trio."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from kit.mqtt import connect, s

from fakebroker import AsyncBroker, VirtualClock
from fakebroker.protocols.mqtt.codec import Connect, Publish, Subscribe, Will, encode
from fakebroker.server.runtime import WRITE_EARLY

pytestmark = pytest.mark.anyio
AsyncClient = Callable[..., Any]  # the async_mqtt fixture (conftest.AsyncMqtt)


try:
    import uvloop  # noqa: F401  # the protocol path of the runtime on uvloop's transports as well
    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False


@pytest.fixture(params=[
    "asyncio", "trio",
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop",
                 marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")),
])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def test_broker_runs_in_the_test_loop(async_fakebroker: AsyncBroker, async_mqtt: AsyncClient,
                                            anyio_backend: str) -> None:
    assert isinstance(async_fakebroker.clock, VirtualClock) and async_fakebroker.queues == {}
    sub = await async_mqtt(async_fakebroker, "sub")
    await sub.subscribe("a/#")
    pub = await async_mqtt(async_fakebroker, "pub")
    await pub.publish("a/b", b"hello", qos=1)
    entry = await async_fakebroker.wait_for_message(topic="a/+", delivered_to="sub")
    assert entry.client_id == "pub"
    packet = await sub.expect()
    assert (packet.topic, packet.payload, packet.qos) == ("a/b", b"hello", 1)
    async_fakebroker.assert_delivered("sub", count=1)


async def test_wait_is_woken_by_the_route_event(async_fakebroker: AsyncBroker) -> None:
    results: list[Any] = []

    async def waiter() -> None:
        results.append(await async_fakebroker.wait_for_messages(2, routing_key="k"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()  # the waiter has scanned the (empty) log and is parked
        async_fakebroker.publish("amq.topic", "k", b"1")
        async_fakebroker.publish("amq.topic", "other", b"x")
        async_fakebroker.publish("amq.topic", "k", b"2")
    assert results[0].bodies == [b"1", b"2"]


async def test_wait_timeout_is_an_assertion_with_near_misses(async_fakebroker: AsyncBroker) -> None:
    async_fakebroker.publish("amq.topic", "a.b", b"x")
    with pytest.raises(AssertionError, match=r"(?s)topic='a/c'.*- topic: 'a/c' does not match 'a/b'"):
        await async_fakebroker.wait_for_message(topic="a/c", timeout=0.01)


async def test_advance_expires_keepalive_and_publishes_the_will(async_fakebroker: AsyncBroker,
                                                                async_mqtt: AsyncClient) -> None:
    watcher = await async_mqtt(async_fakebroker, "watcher", keepalive=0)
    await watcher.subscribe("status/#")
    await async_mqtt(async_fakebroker, "device", keepalive=10, will=Will("status/device", b"lost", 1))
    await async_fakebroker.advance(14.9)
    assert "device" in async_fakebroker.clients.ids()
    await async_fakebroker.advance(0.1)
    packet = await watcher.expect()
    assert (packet.topic, packet.payload) == ("status/device", b"lost")


async def test_disconnect_stall_and_resume(async_fakebroker: AsyncBroker, async_mqtt: AsyncClient) -> None:
    watcher = await async_mqtt(async_fakebroker, "watcher", keepalive=0)
    await watcher.subscribe("#")
    await async_mqtt(async_fakebroker, "device", will=Will("status/device", b"gone", 1))
    async_fakebroker.stall("watcher")
    async_fakebroker.disconnect("device")
    await async_fakebroker.wait_for_message(protocol="mqtt-will", delivered_to="watcher")
    with anyio.move_on_after(0.1) as scope:
        await watcher.expect()
    assert scope.cancelled_caught  # held back while stalled
    async_fakebroker.resume("watcher")
    assert (await watcher.expect()).payload == b"gone"


async def test_refuse_connections_and_restart(async_fakebroker: AsyncBroker, async_mqtt: AsyncClient) -> None:
    worker = await async_mqtt(async_fakebroker, "worker", clean_session=False)
    await worker.subscribe("jobs/#")
    async with async_fakebroker.refuse_connections():
        with pytest.raises(OSError):
            await anyio.connect_tcp(*async_fakebroker.mqtt)
        await async_fakebroker.restart()
        assert async_fakebroker.clients == []
        async_fakebroker.publish("amq.topic", "jobs.1", b"kept", {"delivery_mode": 2})
        async_fakebroker.publish("amq.topic", "jobs.2", b"transient")
        await async_fakebroker.restart()
    again = await async_mqtt(async_fakebroker, "worker", clean_session=False)
    assert (await again.expect()).payload == b"kept"


async def test_message_faults(async_fakebroker: AsyncBroker, async_mqtt: AsyncClient) -> None:
    sub = await async_mqtt(async_fakebroker, "sub")
    await sub.subscribe("t/#")
    async_fakebroker.drop_next(1, topic="t/a")
    async_fakebroker.delay_next(1, 2.0, topic="t/b")
    for topic in ("t/a", "t/b", "t/c"):
        async_fakebroker.publish("amq.topic", topic.replace("/", "."), topic.encode())
    assert (await sub.expect()).topic == "t/c"
    await async_fakebroker.advance(2.0)
    assert (await sub.expect()).topic == "t/b"
    assert async_fakebroker.messages.filter(fault="dropped").bodies == [b"t/a"]


@pytest.mark.fakebroker(prefetch=2, subscription_ttl=1000)
async def test_marker_configures_the_async_broker(async_fakebroker: AsyncBroker) -> None:
    assert async_fakebroker.options.prefetch == 2 and async_fakebroker.options.subscription_ttl == 1000


def test_an_application_suite_on_both_backends(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest
        from fakebroker.protocols.mqtt.codec import Will

        pytestmark = pytest.mark.anyio

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.fakebroker(exchange="amq.topic", prefetch=1)
        async def test_telemetry_reaches_the_backend(async_fakebroker, async_mqtt, anyio_backend):
            backend = await async_mqtt(async_fakebroker, "backend", keepalive=0)
            await backend.subscribe("telemetry/#")
            device = await async_mqtt(async_fakebroker, "device", keepalive=5, will=Will("status/device", b"lost"))
            await device.publish("telemetry/temp", b"21", qos=1)
            await async_fakebroker.wait_for_message(topic="telemetry/+", delivered_to="backend")
            assert (await backend.expect()).payload == b"21"
            await async_fakebroker.advance(7.5)
            async_fakebroker.assert_published(topic="status/device", protocol="mqtt-will")

        async def test_isolated(async_fakebroker, anyio_backend):
            assert len(async_fakebroker.messages) == 0 and async_fakebroker.clients == []
    """)
    result = app.runpytest("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_telemetry_reaches_the_backend?asyncio? PASSED*",
                                 "*test_telemetry_reaches_the_backend?trio? PASSED*"])


@pytest.mark.fakebroker(max_connections=2, web_mqtt_port=None)
async def test_a_listener_at_max_connections_leaves_new_clients_waiting(async_fakebroker: AsyncBroker) -> None:
    # Five clients at once: those past the limit wait, connected but unanswered (in the TCP backlog; on uvloop
    # the ones its server accepted in the same batch wait unread), and get in one by one as others leave.
    clients = [await anyio.connect_tcp(*async_fakebroker.mqtt) for _ in range(5)]
    for i, client in enumerate(clients):
        await client.send(connect(payload=s(f"c{i}")))

    async def served() -> set[str]:
        with anyio.fail_after(5):
            while len(async_fakebroker.clients.ids()) < 2:
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)  # long enough for a third to show up if the limit did not hold
        ids = set(async_fakebroker.clients.ids())
        assert len(ids) == 2, list(async_fakebroker.clients)
        return ids

    gone: set[str] = set()
    while len(gone) < 4:
        ids = await served()
        leaving = sorted(ids, key=str)[0]
        client = clients[int(leaving[1:])]
        assert await client.receive(4) == b"\x20\x02\x00\x00"
        await client.aclose()
        gone.add(leaving)
        with anyio.fail_after(5):
            while leaving in async_fakebroker.clients.ids():
                await anyio.sleep(0.01)
    (last,) = set(f"c{i}" for i in range(5)) - gone
    with anyio.fail_after(5):
        assert await clients[int(last[1:])].receive(4) == b"\x20\x02\x00\x00"
    await clients[int(last[1:])].aclose()


@pytest.mark.parametrize("anyio_backend", [
    "asyncio",
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop",
                 marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")),
])
async def test_the_output_of_a_large_read_is_written_while_the_read_is_handled(async_fakebroker: AsyncBroker) -> None:
    # A client that publishes 100 messages to its own subscription in one write gets the first deliveries before
    # the broker has handled the last PUBLISH (once WRITE_EARLY bytes are waiting): it can start on them at once.
    # On trio a writer task writes the output after the read (the broker itself is the same).
    client = await anyio.connect_tcp(*async_fakebroker.mqtt)
    # A duplicate of the client's socket to peek with (asyncio hands out a wrapper that cannot receive).
    sock = socket.fromfd(client.extra(SocketAttribute.raw_socket).fileno(), socket.AF_INET, socket.SOCK_STREAM)
    await client.send(encode(Connect(client_id="self")) + encode(Subscribe(1, [("t", 0)])))
    assert await receive_exactly(client, 4 + 5) == b"\x20\x02\x00\x00" + b"\x90\x03\x00\x01\x00"

    def waiting() -> int:  # bytes the broker wrote that the client has not read yet
        try:
            return len(sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return 0

    seen: list[int] = []
    remove = async_fakebroker.on("deliver", lambda entry, queue, client_id: seen.append(waiting()))
    delivery = encode(Publish("t", b"x" * 64))
    with sock:
        await client.send(delivery * 100)
        assert await receive_exactly(client, 100 * len(delivery)) == delivery * 100
    remove()
    assert len(seen) == 100
    assert seen[0] == 0 and seen[-1] >= WRITE_EARLY, seen
    await client.aclose()


async def receive_exactly(stream: anyio.abc.ByteStream, n: int) -> bytes:
    data = b""
    with anyio.fail_after(5):
        while len(data) < n:
            data += await stream.receive(n - len(data))
    return data


@pytest.mark.parametrize("anyio_backend", [
    "asyncio",
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop",
                 marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")),
])
async def test_what_a_client_sent_before_it_was_accepted_is_read_as_it_is_set_up(
        async_fakebroker: AsyncBroker) -> None:
    # The client connects and sends CONNECT before the broker's loop runs: the broker reads it as it sets the
    # connection up, so the client is identified (and answered) before the loop's next turn, not after it.
    loop = asyncio.get_running_loop()
    events: list[str] = []

    def connected(conn: Any) -> None:
        events.append("connect")
        loop.call_soon(events.append, "next turn")

    removers = [async_fakebroker.on("connect", connected),
                async_fakebroker.on("client", lambda session: events.append("client"))]
    sock = socket.create_connection(async_fakebroker.mqtt)  # the kernel completes it: the loop has not run
    sock.sendall(encode(Connect(client_id="early")))
    with anyio.fail_after(5):
        while "client" not in events or "next turn" not in events:
            await anyio.sleep(0.001)
    assert events == ["connect", "client", "next turn"]
    sock.setblocking(False)
    assert sock.recv(4) == b"\x20\x02\x00\x00"  # the CONNACK, written while the connection was set up
    for remove in removers:
        remove()
    sock.close()
