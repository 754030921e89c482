"""One MQTT 3.1/3.1.1 connection, mapped onto the routing model the way RabbitMQ's MQTT plugin does it.

Publishing goes to the configured exchange (``amq.topic``) with ``/`` → ``.``; each client gets one queue per
subscription QoS level, ``mqtt-subscription-<client id>qos<0|1>``, bound with the translated filters. The
choices where brokers differ come from the :class:`~.profile.MqttProfile`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ...clock import TimerHandle
from ...errors import AmqpError
from ...model import Channel, Delivery, LoggedMessage, Message, VHost
from ...model.vhost import generated_name
from ..base import ConnectionInfo, Session, SessionHost
from . import MqttSettings
from .codec import (
    Connack,
    ConnackCode,
    Connect,
    Disconnect,
    MqttDecoder,
    MqttProtocolError,
    Packet,
    Pingreq,
    Pingresp,
    Puback,
    Pubcomp,
    Publish,
    Pubrec,
    Pubrel,
    Suback,
    Subscribe,
    Unsuback,
    Unsubscribe,
    Will,
    encode,
    encode_puback,
    encode_publish,
)
from .profile import get_profile, to_amqp, to_mqtt
from .state import MqttState


def _memo(convert: Callable[[str], str]) -> tuple[dict[str, str], Callable[[str], str]]:
    """``convert`` with its results kept for the topics in use: a device publishes to the same few topics over
    and over, and a fan-out delivers one routing key many times. Bounded: it starts over past 4,096 keys. The
    cache is returned too, for a look-up without a call on the hot paths (``cache.get(key) or convert(key)``)."""
    cache: dict[str, str] = {}

    def lookup(key: str) -> str:
        found = cache.get(key)
        if found is None:
            if len(cache) >= 4096:
                cache.clear()
            found = cache[key] = convert(key)
        return found

    return cache, lookup


_topics, _topic = _memo(to_mqtt)
_routing_keys, _routing_key = _memo(to_amqp)


QOS_HEADER = "x-mqtt-publish-qos"
DUP_HEADER = "x-mqtt-dup"


def queue_name(client_id: str, qos: int) -> str:
    return f"mqtt-subscription-{client_id}qos{qos}"


class MqttSession(Session):
    protocol = "mqtt"
    # Slots for all of its own state: an idle connection then carries no instance dictionary (other
    # attributes still work, in one made on first use).
    __slots__ = ("_bound", "_consumer_tags", "_inflight", "_keepalive_timer", "_last_activity", "_next_pid",
                 "_over_websocket", "_send_will", "_will_on_disconnect", "channel", "clean_session", "clock",
                 "connected", "decoder", "dropped", "host", "keepalive", "options", "profile", "protocol_level",
                 "registry", "session_present", "settings", "subscriptions", "taken_over", "vhost", "will")

    def __init__(self, info: ConnectionInfo, host: SessionHost) -> None:
        super().__init__(info)
        self.host = host
        self.options = host.options
        self.settings = host.options.protocol_settings("mqtt", MqttSettings)
        self.registry = host.state(MqttState)
        self.profile = get_profile(self.settings.profile)
        self.clock = host.clock
        # Until a CONNECT is accepted only the unauthenticated limit applies (RabbitMQ 3.13+ does the same).
        self.decoder = MqttDecoder(
            self.settings.max_packet_size_unauthenticated,
            allow_wildcards_in_publish_topic=self.profile.wildcards_in_publish_topic,
        )
        #: QoS 0 deliveries dropped because the client was not reading (its output past ``output_buffer_limit``).
        self.dropped = 0
        self.protocol_level = 0
        self.clean_session = True
        self.keepalive = 0
        self.will: Will | None = None
        self.vhost: VHost | None = None
        self.channel: Channel | None = None
        self.subscriptions: dict[str, int] = {}
        # Filter -> QoS levels whose queue this connection bound it to (what UNSUBSCRIBE unbinds in 3.10).
        self._bound: dict[str, set[int]] = {}
        self.session_present = False
        self._consumer_tags: dict[int, str] = {}
        self._inflight: dict[int, int | None] = {}  # packet id -> delivery tag (None: retained, untracked)
        self._next_pid = 0
        self._last_activity = self.clock.now()
        self._keepalive_timer: TimerHandle | None = None
        self._send_will = True
        self._over_websocket = info.transport == "websocket"
        # Ends that publish no will over TCP (DISCONNECT, takeover, a deleted queue) still do over web_mqtt.
        self._will_on_disconnect = self._over_websocket and self.profile.websocket_will_on_disconnect
        self.taken_over = False

    # -- bytes in ---------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        self._last_activity = self.clock.now()
        decoder = self.decoder
        decoder.feed(data)
        try:
            while (packet := decoder.next_packet()) is not None:
                self._handle(packet)
                if self._state != "open":  # closed, or a close requested: nothing more is read
                    return
        except MqttProtocolError as exc:
            self._protocol_error(exc)
        except AmqpError as exc:
            # An AMQP error on the plugin's channel (a queue or exchange that cannot be used) closes the MQTT
            # connection in RabbitMQ; nobody else is affected.
            self.close_reason = str(exc)
            self.request_close()

    def _protocol_error(self, exc: MqttProtocolError) -> None:
        if (
            not self.established
            and exc.connack_code is not None
            and self.profile.connack_on_bad_protocol_level
        ):
            self._write(Connack(False, exc.connack_code))
        self.close_reason = exc.reason
        self.request_close()

    def _write(self, packet: Packet) -> None:
        self.send(encode(packet))

    def _handle(self, packet: Packet) -> None:
        if not self._established:
            if isinstance(packet, Connect):
                self._connect(packet)
            else:
                self._protocol_error(MqttProtocolError(f"expected CONNECT, got {type(packet).__name__.upper()}"))
            return
        if isinstance(packet, Publish):
            self._publish(packet)
        elif isinstance(packet, Puback):
            self._puback(packet.packet_id)
        elif isinstance(packet, Subscribe):
            self._subscribe(packet)
        elif isinstance(packet, Unsubscribe):
            self._unsubscribe(packet)
        elif isinstance(packet, Pingreq):
            self._write(Pingresp())
        elif isinstance(packet, Disconnect):
            self._send_will = self._will_on_disconnect
            self.request_close()
        elif isinstance(packet, Connect):
            self._protocol_error(MqttProtocolError("second CONNECT on one connection"))
        elif isinstance(packet, (Pubrec, Pubrel, Pubcomp)):
            # RabbitMQ 3.x never starts QoS 2 flows; an unsolicited PUBREL is ignored, no PUBCOMP.
            pass
        else:
            self._protocol_error(MqttProtocolError(f"{type(packet).__name__.upper()} is not sent by clients"))

    # -- CONNECT ----------------------------------------------------------------------------------
    def _connect(self, p: Connect) -> None:
        self.protocol_level = p.protocol_level
        client_id = p.client_id
        if not client_id:
            if not p.clean_session:
                self._refuse(ConnackCode.IDENTIFIER_REJECTED)
                return
            client_id = generated_name("")
        code, user, vhost = self._authenticate(p)
        if code != ConnackCode.ACCEPTED:
            self._refuse(code)
            return
        assert vhost is not None
        self.client_id, self.user, self.vhost = client_id, user, vhost
        self.clean_session = p.clean_session
        self.keepalive = p.keepalive
        self.will = p.will
        self._take_over(vhost.name, client_id)
        q1 = queue_name(client_id, 1)
        if p.clean_session:
            for qos in (0, 1):
                vhost.delete_queue(queue_name(client_id, qos))
        else:
            self.session_present = q1 in vhost.queues
        self._established = True  # CONNACK 0 sent: the handshake timeout no longer applies
        self.decoder.max_packet_size = self.settings.max_packet_size
        self._write(Connack(self.session_present, ConnackCode.ACCEPTED))
        self.host.emit("client", self)
        if self.keepalive:
            self._arm_keepalive()
        if self.session_present:
            # Resume: the subscriptions are the queue's bindings; kept messages flow after the CONNACK.
            for binding in vhost.exchange(self.settings.exchange).bindings:
                if binding.destination == q1:
                    self.subscriptions[to_mqtt(binding.routing_key)] = 1
            self._consume(1, q1)

    def _authenticate(self, p: Connect) -> tuple[int, str | None, VHost | None]:
        model = self.host.model
        username, password = p.username, p.password
        if username is None and password is None:
            if not self.options.allow_anonymous:
                return ConnackCode.BAD_USERNAME_OR_PASSWORD, None, None
            username, password = self.options.default_user, self.options.default_pass.encode()
        if username is None or password is None:
            return ConnackCode.BAD_USERNAME_OR_PASSWORD, None, None
        vhost_name = self.settings.vhost or self.options.vhost
        if ":" in username:
            # RabbitMQ splits "vhost:user" at the last colon.
            vhost_name, username = username.rsplit(":", 1)
        if not model.authenticate(username, password) or vhost_name not in model.vhosts:
            return ConnackCode.BAD_USERNAME_OR_PASSWORD, None, None
        if not model.can_access(username, vhost_name):
            return ConnackCode.NOT_AUTHORIZED, None, None
        return ConnackCode.ACCEPTED, username, model.vhosts[vhost_name]

    def _refuse(self, code: int) -> None:
        self._write(Connack(False, code))
        self._send_will = False
        self.request_close()

    def _take_over(self, vhost: str, client_id: str) -> None:
        key = (vhost, client_id)
        if self.profile.takeover_across_vhosts:
            olds = [s for (_, cid), s in self.registry.sessions.items() if cid == client_id]
        else:
            olds = [s for s in (self.registry.sessions.get(key),) if s is not None]
        for old in olds:
            if old is self:
                continue
            old.taken_over = True
            old.close_reason = "taken over by a new connection with the same client id"
            old._send_will = self.profile.will_on_takeover or old._will_on_disconnect
            # Close the old connection first so its unacknowledged messages are requeued for this one.
            old.abort_transport()
        self.registry.sessions[key] = self

    # -- keepalive --------------------------------------------------------------------------------
    def _keepalive_deadline(self) -> float:
        return self._last_activity + self.keepalive * self.profile.keepalive_factor

    def _arm_keepalive(self) -> None:
        self._keepalive_timer = self.clock.call_at(self._keepalive_deadline(), self._check_keepalive)

    def _check_keepalive(self) -> None:
        self._keepalive_timer = None
        if self.closed:
            return
        # Compare with the deadline itself, as _arm_keepalive computes it: (last + k) - last can be a hair under
        # k in floats, and re-arming at the same instant would spin VirtualClock.advance() forever.
        if self.clock.now() >= self._keepalive_deadline():
            self.close_reason = "keepalive timeout"
            self.abort_transport()
        else:
            self._arm_keepalive()

    # -- PUBLISH ----------------------------------------------------------------------------------
    def _publish(self, p: Publish) -> None:
        assert self.vhost is not None
        qos = p.qos
        if qos > self.profile.max_qos:
            qos = self.profile.max_qos
        try:
            logged = self._route(p.topic, p.payload, qos, p.dup, p.retain, "mqtt")
        except AmqpError as exc:
            self.close_reason = str(exc)
            self.request_close()
            return
        if qos < 1 or p.packet_id is None:
            return
        if logged.refused and self.profile.refused_publish_unacked:
            # RabbitMQ 3.10 PUBACKs when the publisher confirm comes back. A nack gets no PUBACK; it closes a
            # TCP connection and leaves a WebSocket one open.
            if not self._over_websocket:
                self.close_reason = f"a queue refused a QoS 1 message ({', '.join(logged.refused)}: reject-publish)"
                self._send_will = False
                self.request_close()
            return
        self.send(encode_puback(p.packet_id))

    def _route(self, topic: str, payload: bytes, qos: int, dup: bool, retain: bool,
               protocol: str) -> LoggedMessage:
        assert self.vhost is not None
        headers: dict[str, Any] = {}
        if self.profile.publish_headers:
            headers = {QOS_HEADER: qos, DUP_HEADER: dup}
        properties: dict[str, Any] = {"delivery_mode": 2 if qos else 1, "headers": headers}
        key = _routing_keys.get(topic) or _routing_key(topic)
        if retain:
            self._retain(to_mqtt(key), payload, qos)
        return self.host.model.publish_built(self.vhost, self.settings.exchange, key, payload, properties, protocol,
                                             self.client_id)

    def _retain(self, topic: str, payload: bytes, qos: int) -> None:
        assert self.vhost is not None
        if payload:
            self._retained()[topic] = (Message(self.settings.exchange, to_amqp(topic), payload), qos)
        else:
            self._retained().pop(topic, None)

    def _retained(self) -> dict[str, tuple[Message, int]]:
        assert self.vhost is not None
        return self.registry.retained_in(self.vhost.name)

    # -- SUBSCRIBE --------------------------------------------------------------------------------
    def _subscribe(self, p: Subscribe) -> None:
        assert self.vhost is not None and self.client_id is not None
        granted: list[int] = []
        try:
            for topic_filter, requested in p.topics:
                qos = min(requested, self.profile.max_qos)
                name = self._ensure_queue(qos)
                self.vhost.bind(name, self.settings.exchange, to_amqp(topic_filter), owner=self)
                self.subscriptions[topic_filter] = qos
                self._bound.setdefault(topic_filter, set()).add(qos)
                granted.append(qos)
        except AmqpError as exc:
            self.close_reason = str(exc)
            self.request_close()
            return
        self._write(Suback(p.packet_id, granted))
        self.host.emit("client", self)
        subscribed = list(zip((f for f, _ in p.topics), granted, strict=True))
        if self.profile.retained_in_reverse_filter_order:
            subscribed.reverse()
        for topic_filter, qos in subscribed:
            self._send_retained(topic_filter, qos)

    def _ensure_queue(self, qos: int) -> str:
        assert self.vhost is not None and self.client_id is not None
        name = queue_name(self.client_id, qos)
        if qos in self._consumer_tags and name in self.vhost.queues:
            return name
        if qos == 0:
            self.vhost.declare_queue(name, durable=False, auto_delete=True, owner=self)
        elif self.clean_session:
            self.vhost.declare_queue(name, durable=True, auto_delete=True, owner=self)
        else:
            args = {} if self.settings.subscription_ttl is None else {"x-expires": self.settings.subscription_ttl}
            self.vhost.declare_queue(name, durable=True, auto_delete=False, arguments=args, owner=self)
        self._consume(qos, name)
        return name

    def _consume(self, qos: int, name: str) -> None:
        if self.channel is None:
            # Made with the first subscription: a connection that only publishes (most devices) needs none.
            assert self.vhost is not None and self.client_id is not None
            self.channel = Channel(self.vhost, self, self.client_id)
            self.channel.on_cancel = self._on_consumer_cancelled
        if qos == 0:
            tag = self.channel.consume(name, self._deliver0, no_ack=True)
        else:
            tag = self.channel.consume(name, self._deliver1, prefetch=self.settings.prefetch)
        self._consumer_tags[qos] = tag

    def _on_consumer_cancelled(self, tag: str) -> None:
        # Only a queue deleted under a live consumer cancels it (an admin, or the Python API). RabbitMQ 3.10's
        # MQTT connection dies of the basic.cancel: the socket closes, with the will over WebSocket only.
        for qos, t in list(self._consumer_tags.items()):
            if t == tag:
                del self._consumer_tags[qos]
        if not self.closed:
            self.close_reason = "subscription queue deleted"
            self._send_will = self._will_on_disconnect
            self.abort_transport()

    def _send_retained(self, topic_filter: str, granted: int) -> None:
        assert self.vhost is not None
        # RabbitMQ 3.x looks the store up by the filter itself, so wildcard filters find nothing.
        found = self._retained().get(to_mqtt(to_amqp(topic_filter)))
        if found is None:
            return
        message, stored_qos = found
        qos = min(granted, stored_qos)
        pid = self._allocate_pid(None) if qos else None
        self.send(encode_publish(to_mqtt(message.routing_key), message.body, qos, True, False, pid))

    def _unsubscribe(self, p: Unsubscribe) -> None:
        assert self.vhost is not None and self.client_id is not None
        for topic_filter in p.topics:
            bound = self._bound.pop(topic_filter, set())
            levels = sorted(bound) if self.profile.unsubscribe_own_bindings_only else [0, 1]
            for qos in levels:
                name = queue_name(self.client_id, qos)
                if name in self.vhost.queues:
                    self.vhost.unbind(name, self.settings.exchange, to_amqp(topic_filter), owner=self)
            if not self.profile.unsubscribe_own_bindings_only or bound:
                self.subscriptions.pop(topic_filter, None)
        self._write(Unsuback(p.packet_id))
        self.host.emit("client", self)

    # -- deliveries -------------------------------------------------------------------------------
    def _deliver0(self, d: Delivery) -> None:
        if self.profile.drop_duplicates_at_qos0:
            headers = d.message.properties.get("headers")
            if isinstance(headers, dict) and headers.get(DUP_HEADER) is True:
                return  # at most once: RabbitMQ 3.10 does not pass a republished duplicate on at QoS 0
        self._write_qos0(d)

    def _deliver1(self, d: Delivery) -> None:
        headers = d.message.properties.get("headers")
        if not isinstance(headers, dict):
            headers = {}
        published_qos = headers.get(QOS_HEADER)
        # Non-MQTT publishes count as QoS 1. RabbitMQ crashes on a non-byte header; any int is used here.
        qos = 1 if type(published_qos) is not int or published_qos > 1 else published_qos
        dup = d.redelivered or headers.get(DUP_HEADER) is True
        if qos == 0:
            assert self.channel is not None
            self.channel.ack(d.delivery_tag)
            if not (dup and self.profile.drop_duplicates_at_qos0):
                self._write_qos0(d)
            return
        # The next packet id, unless still in flight (_allocate_pid looks further).
        pid = self._next_pid % 0xFFFE + 1
        if pid in self._inflight:
            pid = self._allocate_pid(d.delivery_tag)
        else:
            self._next_pid = pid
            self._inflight[pid] = d.delivery_tag
        message = d.message
        key = message.routing_key
        self.send(encode_publish(_topics.get(key) or _topic(key), message.body, 1, False, dup, pid))

    def _write_qos0(self, d: Delivery) -> None:
        # At most once: a client this far behind in reading loses QoS 0 messages instead of the broker holding
        # them without limit (RabbitMQ 3.12+ drops them past ``mqtt.mailbox_soft_limit`` in the same way).
        # QoS 1 deliveries need no such rule: they stop at the prefetch window and wait in the queue.
        limit = self.output_limit
        if limit is not None and self.output_backlog() >= limit:  # output_full, inlined: once per delivery
            self.dropped += 1
            return
        message = d.message
        key = message.routing_key
        self.send(encode_publish(_topics.get(key) or _topic(key), message.body))

    def _allocate_pid(self, delivery_tag: int | None) -> int:
        # Packet ids run 1..0xFFFE and wrap back to 1 (``ensure_valid_mqtt_message_id``), skipping ids still
        # in flight.
        for _ in range(0xFFFE):
            self._next_pid = self._next_pid % 0xFFFE + 1
            if self._next_pid not in self._inflight:
                break
        self._inflight[self._next_pid] = delivery_tag
        return self._next_pid

    def _puback(self, pid: int) -> None:
        if pid not in self._inflight:
            return  # RabbitMQ ignores acks for unknown packet ids
        tag = self._inflight.pop(pid)
        if tag is not None and self.channel is not None:
            self.channel.ack(tag)

    # -- end of the connection --------------------------------------------------------------------
    def _on_connection_lost(self) -> None:
        self.decoder.discard()
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        if not self.established:
            return
        # A node going down (stop, restart) publishes no will: RabbitMQ 3.10 stops its MQTT plugin first.
        if self._send_will and self.will is not None and not self.host.stopping:
            self._publish_will(self.will)
        assert self.vhost is not None and self.client_id is not None
        if self.channel is not None:
            # Let go of it: it points back here (owner, on_cancel), a cycle only the cyclic collector would free.
            channel, self.channel = self.channel, None
            channel.close()
            channel.on_cancel = None
        key = (self.vhost.name, self.client_id)
        if self.registry.sessions.get(key) is self:
            del self.registry.sessions[key]

    def _publish_will(self, will: Will) -> None:
        # RabbitMQ 3.10 publishes the will with the QoS it was given: a QoS 2 will carries
        # x-mqtt-publish-qos 2 (subscribers still get it at QoS 1 at most).
        # If the exchange is gone there is nothing to publish to, as in RabbitMQ.
        with contextlib.suppress(AmqpError):
            self._route(will.topic, will.payload, will.qos, False, will.retain, protocol="mqtt-will")

    def force_close(self, reason: str) -> None:
        """Closed by an operator (the management API's DELETE /api/connections): RabbitMQ 3.10 closes the socket
        and publishes no will."""
        self._send_will = False
        self.request_close(reason)

    def describe(self) -> dict[str, Any]:
        will = None
        if self.will is not None:
            will = {"topic": self.will.topic, "payload": self.will.payload, "qos": self.will.qos,
                    "retain": self.will.retain}
        return {
            "vhost": self.vhost.name if self.vhost else None,
            "protocol_level": self.protocol_level,
            "protocol_version": {3: "MQTT 3.1", 4: "MQTT 3.1.1"}.get(self.protocol_level, "?"),
            "keepalive": self.keepalive,
            "clean_session": self.clean_session,
            "will": will,
            "subscriptions": dict(self.subscriptions),
            "inflight": len(self._inflight),
            "dropped": self.dropped,
            "output_buffered": self.output_backlog(),
        }
