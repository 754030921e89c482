"""The MQTT choices on which brokers differ, kept in one place that the session consults.

``rabbitmq-3.x`` is RabbitMQ 3.10's MQTT plugin as observed (see docs/mqtt.md). A later spec-complete
profile (full QoS 2, mosquitto-like retained and ``$`` rules) is a new instance here plus the code paths its
flags select, not a rewrite of the session.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MqttProfile:
    name: str
    #: Highest QoS granted and used for publishing; QoS 2 is downgraded to this (PUBACK, not PUBREC).
    max_qos: int = 1
    #: The broker closes a client silent for keepalive x this factor (spec and RabbitMQ 3.12+: 1.5).
    keepalive_factor: float = 1.5
    #: Retained messages are served only to subscriptions whose filter equals the topic.
    retained_exact_only: bool = True
    #: ``#`` and ``+`` at the first level match ``$``-topics (AMQP topic exchanges have no ``$`` rule).
    dollar_topics_match_wildcards: bool = True
    #: The old connection's will is published when another takes its client id over.
    will_on_takeover: bool = False
    #: Over WebSocket the will is also published on a DISCONNECT, a takeover and a deleted subscription queue
    #: (RabbitMQ 3.10's web_mqtt; over TCP those ends publish none). A force-close by an operator publishes none.
    websocket_will_on_disconnect: bool = True
    #: A QoS 1 PUBLISH that a queue refuses (``x-overflow: reject-publish``) gets no PUBACK; over TCP the
    #: connection is closed with no will, over WebSocket it stays open (RabbitMQ 3.10 on a confirm nack).
    refused_publish_unacked: bool = True
    #: The retained messages of one SUBSCRIBE go out in reverse filter order, last filter first (RabbitMQ
    #: 3.10); separate SUBSCRIBEs get theirs in packet order either way.
    retained_in_reverse_filter_order: bool = True
    #: A client id is unique across the node, not per vhost: RabbitMQ 3.10's client-id tracker is keyed by the
    #: id alone, so a CONNECT in one vhost closes a connection with the same id in another (3.12+: per vhost).
    takeover_across_vhosts: bool = True
    #: One subscription queue per QoS level: overlapping filters of two levels deliver twice.
    queue_per_qos: bool = True
    #: Accept ``+``/``#`` in a PUBLISH topic and route them as literal words (RabbitMQ 3.10); off: the spec closes.
    wildcards_in_publish_topic: bool = False
    #: A CONNECT with an unsupported protocol level gets CONNACK 1 then the close ([MQTT-3.1.2-2]); RabbitMQ 3.10
    #: closes without a CONNACK (docs/differences.md).
    connack_on_bad_protocol_level: bool = True
    #: Headers RabbitMQ 3.10 adds to MQTT-originated AMQP messages.
    publish_headers: bool = True
    #: UNSUBSCRIBE removes only the bindings this connection made (RabbitMQ 3.10 keeps the filters in the
    #: connection's state, so a resumed persistent session cannot unsubscribe what it subscribed before).
    unsubscribe_own_bindings_only: bool = True
    #: A message delivered at QoS 0 is dropped when it is a duplicate (``x-mqtt-dup`` true, or redelivered),
    #: as RabbitMQ 3.10's ``amqp_callback`` does.
    drop_duplicates_at_qos0: bool = True


PROFILES: dict[str, MqttProfile] = {
    "rabbitmq-3.x": MqttProfile("rabbitmq-3.x"),
}


def get_profile(name: str) -> MqttProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown MQTT profile {name!r}; known: {', '.join(PROFILES)}") from None


def to_amqp(topic: str) -> str:
    """MQTT topic or filter → AMQP routing or binding key (``rabbit_mqtt_util:mqtt_to_amqp``)."""
    return topic.replace("/", ".").replace("+", "*")


def to_mqtt(key: str) -> str:
    """AMQP routing key → MQTT topic (``rabbit_mqtt_util:amqp_to_mqtt``)."""
    return key.replace("*", "+").replace(".", "/")
