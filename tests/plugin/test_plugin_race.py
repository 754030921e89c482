"""clock.advance(), restart() and disconnect() apply what clients already sent before anything else happens."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from fakebroker import ThreadedBroker


def _persistent_client(broker: ThreadedBroker, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    client.connect(*broker.mqtt)
    client.loop_start()
    client.subscribe("race/#", qos=1)
    return client


@pytest.mark.fakebroker(subscription_ttl=60_000)
def test_advance_after_a_disconnect_sees_the_disconnect_first(fakebroker: ThreadedBroker) -> None:
    """paho's disconnect() returns once DISCONNECT is written; the broker may not have read it yet. Without
    settling first, advance(60) fired the session queue's x-expires while the connection still looked open
    (the queue survived in about half the runs); with it, the queue expires every time."""
    client = _persistent_client(fakebroker, "racer")
    fakebroker.wait_for_client("racer", subscribed="race/#")
    client.disconnect()
    client.loop_stop()
    fakebroker.clock.advance(60)
    assert "mqtt-subscription-racerqos1" not in fakebroker.queues


@pytest.mark.fakebroker(subscription_ttl=60_000)
def test_restart_right_after_a_publish_keeps_the_publish(fakebroker: ThreadedBroker) -> None:
    fakebroker.declare_queue("kept", durable=True)
    fakebroker.bind("kept", "amq.topic", "race.#")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub")
    client.connect(*fakebroker.mqtt)
    client.loop_start()
    try:
        client.publish("race/x", b"before restart", qos=0)
        client.loop_stop()  # the bytes are written; whether the broker read them is what settle() decides
        fakebroker.restart()
    finally:
        client.disconnect()
    assert fakebroker.messages.filter(routing_key="race.x").bodies == [b"before restart"]


def test_wait_for_client_and_disconnect(fakebroker: ThreadedBroker) -> None:
    client = _persistent_client(fakebroker, "waiter")
    info = fakebroker.wait_for_client("waiter", subscribed="race/#")
    assert info.protocol == "mqtt" and info.subscriptions == {"race/#": 1}
    with pytest.raises(AssertionError, match=r"(?s)waiting for client 'waiter' to connect and subscribe to "
                                             r"'other/#'.*client_id='waiter' subscriptions=\{'race/#': 1\}"
                                             r"  <- this client"):
        fakebroker.wait_for_client("waiter", subscribed="other/#", timeout=0.2)
    with pytest.raises(AssertionError, match="waiting for client 'waiter' to disconnect"):
        fakebroker.wait_for_disconnect("waiter", timeout=0.2)
    client.disconnect()
    client.loop_stop()
    fakebroker.wait_for_disconnect("waiter")
    assert fakebroker.clients.get("waiter") is None
