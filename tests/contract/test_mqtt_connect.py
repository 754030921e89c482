"""CONNECT: authentication, vhosts, client ids, protocol levels, takeover, keepalive."""

from __future__ import annotations

import re

import pytest
from contractlib import Backend

from fakebroker.protocols.mqtt.codec import Connack, Connect, Pingreq, Pingresp, Publish, Subscribe

BAD_USER_OR_PASSWORD = 4
IDENTIFIER_REJECTED = 2


def test_anonymous_login_is_guest_on_the_default_vhost(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("anon")
    assert c.connect(cid, username=None, password=None) == Connack(False, 0)
    assert backend.mqtt_vhost(cid) == "/"
    c.expect_open()


def test_vhost_user_form_logs_into_that_vhost(backend: Backend) -> None:
    c = backend.raw()
    cid = backend.cid("vh")
    assert c.connect(cid) == Connack(False, 0)
    assert backend.mqtt_vhost(cid) == backend.vhost


def test_default_vhost_named_explicitly(backend: Backend) -> None:
    c = backend.raw()
    assert c.connect(backend.cid("slash"), username="/:guest", password=b"guest") == Connack(False, 0)


@pytest.mark.parametrize(
    ("username", "password"),
    [("guest", b"nope"), ("bob", b"bob"), ("guest", None), ("nosuchvhost:guest", b"guest"), ("guest", b"\xff"),
     ("", b"guest"), ("guest", b"")],
    ids=["bad-password", "unknown-user", "no-password", "unknown-vhost", "password-not-utf8", "empty-user",
         "empty-password"],
)
def test_refused_login_gets_connack_4_then_close(backend: Backend, username: str, password: bytes | None) -> None:
    c = backend.raw()
    assert c.connect(backend.cid("refused"), username=username, password=password) == Connack(False, 4)
    assert c.expect_closed() == []


def test_empty_client_id_with_persistent_session_is_rejected(backend: Backend) -> None:
    c = backend.raw()
    assert c.connect("", clean_session=False) == Connack(False, IDENTIFIER_REJECTED)
    assert c.expect_closed() == []


def test_empty_client_id_with_clean_session_gets_a_generated_one(backend: Backend) -> None:
    c = backend.raw()
    assert c.connect("", clean_session=True) == Connack(False, 0)
    assert c.subscribe(("gen/x", 1)) == [1]
    names = list(backend.queues())
    assert len(names) == 1
    assert re.fullmatch(r"mqtt-subscription-[A-Za-z0-9_-]{22}qos1", names[0]), names


def test_long_client_ids_are_accepted(backend: Backend) -> None:
    for length in (30, 100):
        c = backend.raw()
        cid = backend.cid("x" * length)
        assert c.connect(cid) == Connack(False, 0)
        assert c.subscribe(("long", 0)) == [0]
        assert backend.queue_name(cid, 0) in backend.queues()


def test_mqtt_3_1_is_accepted(backend: Backend) -> None:
    c = backend.raw()
    assert c.connect(backend.cid("v31"), protocol_level=3) == Connack(False, 0)
    assert c.subscribe(("v31/t", 1)) == [1]
    c.publish("v31/t", b"old protocol", 1)
    assert c.recv_publish() == Publish("v31/t", b"old protocol", 1, False, False, 1)


def test_mqtt_3_1_accepts_client_ids_longer_than_23(backend: Backend) -> None:
    c = backend.raw()
    assert c.connect(backend.cid("a-client-id-longer-than-the-3.1-limit"), protocol_level=3) == Connack(False, 0)


@pytest.mark.difference("mqtt-an-unsupported-protocol-level-gets-connack-1")
@pytest.mark.parametrize("level", [5, 6])
def test_unsupported_protocol_level_is_refused(backend: Backend, level: int) -> None:
    c = backend.raw()
    c.send(Connect(client_id=backend.cid("v5"), protocol_level=level, username=backend.username,
                   password=backend.password))
    # fakebroker: what MQTT 3.1.1 prescribes; RabbitMQ 3.10: closed with no CONNACK at all.
    assert c.expect_closed() == ([Connack(False, 1)] if backend.is_fake else [])


def test_packet_before_connect_closes(backend: Backend) -> None:
    c = backend.raw()
    c.send(Subscribe(1, [("early", 0)]))
    assert c.expect_closed() == []


def test_pingreq_gets_pingresp(backend: Backend) -> None:
    c = backend.raw()
    c.connect(backend.cid("ping"))
    for _ in range(3):
        c.send(Pingreq())
        assert c.recv() == Pingresp()


def test_takeover_closes_the_old_connection_silently(backend: Backend) -> None:
    cid = backend.cid("dup")
    old = backend.raw()
    assert old.connect(cid) == Connack(False, 0)
    new = backend.raw()
    assert new.connect(cid) == Connack(False, 0)
    assert old.expect_closed() == []
    new.expect_open()


def test_takeover_keeps_the_persistent_session(backend: Backend) -> None:
    cid = backend.cid("dup-persistent")
    old = backend.raw()
    old.connect(cid, clean_session=False)
    assert old.subscribe(("kept/t", 1)) == [1]
    new = backend.raw()
    assert new.connect(cid, clean_session=False) == Connack(True, 0)
    old.expect_closed()
    pub = backend.raw()
    pub.connect(backend.cid("pub"))
    pub.publish("kept/t", b"to the new connection", 1)
    assert new.recv_publish() == Publish("kept/t", b"to the new connection", 1, False, False, 1)


def test_keepalive_zero_means_no_timeout(backend: Backend) -> None:
    c = backend.raw()
    c.connect(backend.cid("ka0"), keepalive=0)
    backend.advance(3.5)
    c.expect_open()


def test_silent_client_is_closed_after_keepalive(backend: Backend) -> None:
    # RabbitMQ 3.10 closes after 3 x keepalive, fakebroker after 1.5 x (the keepalive difference); 3.5 s is
    # past both for keepalive 1.
    c = backend.raw()
    c.connect(backend.cid("ka1"), keepalive=1)
    backend.advance(3.5)
    assert c.expect_closed() == []


def test_takeover_across_vhosts(backend: Backend) -> None:
    # RabbitMQ 3.10's client-id tracker is keyed by the id alone (3.12+: per vhost).
    cid = backend.cid("twin")
    here = backend.raw()
    assert here.connect(cid) == Connack(False, 0)
    there = backend.raw()
    assert there.connect(cid, username=None, password=None) == Connack(False, 0)  # vhost "/"
    assert here.expect_closed() == []
    there.expect_open()


def test_any_packet_resets_the_keepalive_timer(backend: Backend) -> None:
    c = backend.raw()
    c.connect(keepalive=1)
    for _ in range(5):  # 4 s in all: past 3 x keepalive, but never silent for 1 s
        c.send(Pingreq())
        assert c.recv() == Pingresp()
        backend.advance(0.8)
    c.expect_open()
