"""Every session keeps the runtime's contract (fakebroker.testing.check_session_contract), and MQTT's session
works without a node or a socket."""

from __future__ import annotations

import pytest
from kit.websocket import ws_frame, ws_upgrade

from fakebroker.protocols.base import ConnectionInfo, Session, SessionHost
from fakebroker.protocols.mqtt import PROTOCOL as MQTT
from fakebroker.protocols.mqtt.codec import (
    Connack,
    Connect,
    Disconnect,
    MqttDecoder,
    Pingreq,
    Pingresp,
    Puback,
    Publish,
    Suback,
    Subscribe,
    Will,
    encode,
)
from fakebroker.protocols.mqtt.session import MqttSession
from fakebroker.protocols.mqtt.state import MqttState
from fakebroker.testing import INFO, FakeHost, SessionDriver, check_session_contract

MQTT_SCRIPT = [
    encode(Connect(client_id="c1", keepalive=30)),
    encode(Subscribe(1, [("a/#", 1), ("b", 0)])),
    encode(Publish("a/x", b"one", qos=1, packet_id=7)),
    encode(Publish("b", b"two")),
    encode(Pingreq()),
    encode(Puback(1)),
]

SCRIPTS = {
    "session": MQTT_SCRIPT,
    "clean disconnect": [*MQTT_SCRIPT, encode(Disconnect())],
    "protocol error": [encode(Connect(client_id="c1")), b"\xf0\x00"],
    "refused": [encode(Connect(client_id="", clean_session=False))],
}


def mqtt(info: ConnectionInfo, host: SessionHost) -> Session:
    return MqttSession(info, host)


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_mqtt_session_keeps_the_contract(script: list[bytes]) -> None:
    check_session_contract(mqtt, script)


def _websocket_script(inner: list[bytes], subprotocol: str = "mqtt") -> list[bytes]:
    return [ws_upgrade("/ws", subprotocol), *(ws_frame(chunk) for chunk in inner)]


@pytest.mark.parametrize("script", SCRIPTS.values(), ids=SCRIPTS.keys())
def test_web_mqtt_session_keeps_the_contract(script: list[bytes]) -> None:
    factory = next(spec.session for spec in MQTT.listeners if spec.name == "web_mqtt")
    # The client's handshake carries a random key: the accept header differs per run, not per split.
    check_session_contract(factory, _websocket_script(script))


def test_web_mqtt_close_frame_keeps_the_contract() -> None:
    script = [*_websocket_script(MQTT_SCRIPT), ws_frame(b"\x03\xe8", opcode=8)]
    factory = next(spec.session for spec in MQTT.listeners if spec.name == "web_mqtt")
    check_session_contract(factory, script)


def test_check_session_contract_catches_a_session_that_forgets_wakeup() -> None:
    class Lazy(Session):
        protocol = "lazy"

        def _on_data(self, data: bytes) -> None:
            self._out += data  # queued without wakeup(): the runtime would never flush it

        def _on_connection_lost(self) -> None:
            pass

    with pytest.raises(AssertionError, match="without calling wakeup"):
        check_session_contract(lambda info, host: Lazy(info), [b"abc"])


def test_check_session_contract_catches_output_that_depends_on_the_split() -> None:
    class PerChunk(Session):
        protocol = "per-chunk"

        def _on_data(self, data: bytes) -> None:
            self.send(b"ok\n")  # one answer per read, not per message

        def _on_connection_lost(self) -> None:
            pass

    with pytest.raises(AssertionError, match="output differs"):
        check_session_contract(lambda info, host: PerChunk(info), [b"abcdef"])


def test_check_session_contract_catches_a_double_connection_lost() -> None:
    class Twice(Session):
        protocol = "twice"

        def _on_data(self, data: bytes) -> None:
            pass

        def _on_connection_lost(self) -> None:
            pass

        def connection_lost(self) -> None:
            self._on_connection_lost()
            self._state = "closed"

    with pytest.raises(AssertionError, match="ran 2 times|ran 3 times"):
        check_session_contract(lambda info, host: Twice(info), [b"x"])


# -- the MQTT session with no node and no socket ---------------------------------------------------------------
def decode(data: bytes) -> list[object]:
    decoder = MqttDecoder()
    decoder.feed(data)
    return list(decoder)


def connected(host: FakeHost, client_id: str, **connect: object) -> SessionDriver:
    driver = SessionDriver(MqttSession(INFO, host))
    assert decode(driver.feed(encode(Connect(client_id=client_id, **connect)))) == [Connack(False, 0)]  # type: ignore[arg-type]
    return driver


def test_publish_reaches_a_subscriber_through_the_model() -> None:
    host = FakeHost()
    sub = connected(host, "sub")
    assert decode(sub.feed(encode(Subscribe(1, [("t/+", 1)])))) == [Suback(1, [1])]
    pub = connected(host, "pub")
    assert decode(pub.feed(encode(Publish("t/1", b"x", qos=1, packet_id=3)))) == [Puback(3)]
    assert decode(sub.drain()) == [Publish("t/1", b"x", qos=1, packet_id=1)]
    assert [(m.client_id, m.routing_key) for m in host.model.log] == [("pub", "t.1")]


def test_takeover_and_retained_live_in_the_hosts_mqtt_state() -> None:
    host = FakeHost()
    first = connected(host, "dev")
    first.feed(encode(Publish("status/dev", b"on", retain=True)))
    second = connected(host, "dev")
    assert first.aborted and first.session.close_reason == "taken over by a new connection with the same client id"
    state = host.state(MqttState)
    assert state.sessions[("/", "dev")] is second.session
    assert {t: m.body for t, (m, _) in state.retained_in("/").items()} == {"status/dev": b"on"}


def test_keepalive_expiry_and_will_on_the_virtual_clock() -> None:
    host = FakeHost()
    watcher = connected(host, "w")
    watcher.feed(encode(Subscribe(1, [("wills/#", 0)])))
    dev = connected(host, "dev", keepalive=10, will=Will("wills/dev", b"gone"))
    host.clock.advance(14.9)
    assert not dev.aborted
    assert decode(dev.feed(encode(Pingreq()))) == [Pingresp()]
    host.clock.advance(14.9)
    assert not dev.aborted  # the PINGREQ at t=14.9 moved the deadline to t=29.9
    host.clock.advance(0.2)
    assert dev.aborted and dev.session.close_reason == "keepalive timeout"
    assert decode(watcher.drain()) == [Publish("wills/dev", b"gone")]


def test_no_will_while_the_host_is_stopping() -> None:
    host = FakeHost()
    watcher = connected(host, "w")
    watcher.feed(encode(Subscribe(1, [("wills/#", 0)])))
    dev = connected(host, "dev", will=Will("wills/dev", b"gone"))
    host.stopping = True
    dev.session.connection_lost()
    assert watcher.drain() == b""


def test_options_are_read_from_the_mqtt_settings() -> None:
    host = FakeHost(mqtt_exchange="amq.direct", vhost="iot", prefetch=3)
    assert (host.options.mqtt_exchange, host.options.prefetch, host.options.mqtt_vhost) == ("amq.direct", 3, None)
    pub = connected(host, "pub")
    pub.feed(encode(Publish("a/b", b"x")))
    (entry,) = host.model.log
    assert (entry.vhost, entry.exchange, entry.routing_key) == ("iot", "amq.direct", "a.b")
