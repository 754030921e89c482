"""One AMQP 0-9-1 connection, as RabbitMQ 3.10's ``rabbit_reader`` and ``rabbit_channel`` serve it.

The connection handshake (start, secure, tune, open) follows ``rabbit_reader``: errors before the connection is
open close the socket without a word (RabbitMQ waits 3 s first), except a refused login when the client announced
``authentication_failure_close`` and an unknown vhost, which get ``connection.close``. Once open, each channel is a
small state machine over :class:`fakebroker.model.Channel`; a :class:`~fakebroker.errors.ChannelError` from the
model closes the channel, a :class:`~fakebroker.errors.ConnectionLevelError` the connection, each with RabbitMQ's
reply code and text.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as c
from pamqp import decode as pdecode
from pamqp.base import Frame as Method

from ...clock import TimerHandle
from ...errors import (
    AmqpError,
    ChannelStateError,
    CommandInvalid,
    ConnectionLevelError,
    NotAllowed,
    NotFound,
    NotImplementedByBroker,
    PreconditionFailed,
    UnexpectedFrame,
)
from ...model import Channel, Delivery, LoggedMessage, Message, VHost
from ...model.arguments import amqp_type
from ...model.message import parse_expiration
from ..base import ConnectionInfo, Session, SessionHost
from . import AmqpSettings
from .codec import (
    FRAME_HEARTBEAT,
    FRAME_MIN_SIZE,
    HEARTBEAT_FRAME,
    PROTOCOL_HEADER,
    BodyFrame,
    Frame,
    FrameError,
    FrameReader,
    HeaderFrame,
    HeaderMismatch,
    HeartbeatFrame,
    MethodFrame,
    UndecodableMethod,
    UnknownMethod,
    encode_content,
    encode_method,
    from_pamqp_properties,
    method_ids,
    unchecked,
)

#: connection.start's server properties, as RabbitMQ 3.10.8 sends them.
SERVER_PROPERTIES: dict[str, Any] = {
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
    "cluster_name": "rabbit@localhost",
    "copyright": "Copyright (c) 2007-2022 VMware, Inc. or its affiliates.",
    "information": "Licensed under the MPL 2.0. Website: https://rabbitmq.com",
    "platform": "Erlang/OTP 25.2.3",
    "product": "RabbitMQ",
    "version": "3.10.8",
}
MECHANISMS = ("AMQPLAIN", "PLAIN")
REPLY_TO = "amq.rabbitmq.reply-to"


def server_generated(prefix: str) -> str:
    """``rabbit_guid:binary/2``: the prefix, a dash and 22 base64url characters (``amq.ctag-…``)."""
    return f"{prefix}-" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class _Silent(Exception):
    """A handshake error: RabbitMQ closes the socket without a connection.close."""


@dataclass
class _Publish:
    """A basic.publish waiting for its content (header, then body frames)."""

    method: c.Basic.Publish
    properties: dict[str, Any] | None = None
    wire: bytes | None = None  # the properties as the publisher encoded them
    remaining: int = 0
    parts: list[bytes] = field(default_factory=list)


@dataclass
class _AmqpChannel:
    number: int
    model: Channel
    state: str = "open"  # open, closing (we sent channel.close and wait for close-ok)
    content: _Publish | None = None
    prefetch: int = 0  # basic.qos with global=false: the window of consumers created from now on
    confirm: bool = False
    publish_seq: int = 0
    tx: bool = False
    tx_publishes: list[tuple[_Publish, bytes]] = field(default_factory=list)
    tx_settles: list[tuple[list[Any], str]] = field(default_factory=list)
    last_queue: str = ""  # the most recently declared queue, for AMQP's empty-name shortcuts
    # Deliveries that happened while basic.consume ran, sent after its consume-ok.
    deferred: list[bytes] | None = None
    reply_consumer: str | None = None  # the consumer tag on amq.rabbitmq.reply-to


class AmqpSession(Session):
    protocol = "amqp"

    def __init__(self, info: ConnectionInfo, host: SessionHost) -> None:
        super().__init__(info)
        self.host = host
        self.model = host.model
        self.clock = host.clock
        self.settings = host.options.protocol_settings("amqp", AmqpSettings)
        self.reader = FrameReader()
        #: header → start-ok → tune-ok → open → running → closing (connection.close sent, waiting for close-ok)
        self.phase = "header"
        self.vhost: VHost | None = None
        self.client_properties: dict[str, Any] = {}
        self.mechanism = ""
        self.channel_max = self.settings.channel_max
        self.frame_max = self.settings.frame_max
        self.heartbeat = 0
        self.channels: dict[int, _AmqpChannel] = {}
        #: The resource alarm this connection is under (``block``), None without one.
        self.blocked_reason: str | None = None
        self._reply_key = ""
        self._received = False
        self._sent = False
        self._missed = 0
        self._hb_send: TimerHandle | None = None
        self._hb_recv: TimerHandle | None = None
        self._final_consumers: dict[str, str] = {}
        self._held = False  # blocked by a resource alarm after a publish: frames wait in the reader

    # -- capabilities the client announced ----------------------------------------------------------
    def _client_capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities")
        return isinstance(caps, dict) and caps.get(name) is True

    # -- bytes in ---------------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        self._received = True
        self.reader.feed(data)
        self._process()

    def _process(self) -> None:
        while self._read_frames():
            pass

    def _read_frames(self) -> bool:
        """Handle the frames read so far; True to go on reading after an error that leaves the connection up."""
        try:
            # A blocked connection that published is not read any further until the alarm clears.
            while self.state == "open" and not self._held:
                frame = self.reader.next_frame()
                if self.phase == "header" and self.reader.header_seen:
                    self.start()
                if frame is None:
                    return False
                self._frame(frame)
        except UndecodableMethod as exc:
            if self.phase not in ("running", "closing"):
                self.request_close(exc.text)  # in the handshake, as any other error there: a silent close
                return False
            self._undecodable(exc)
            return True  # the client's close-ok may be in the buffer already
        except HeaderMismatch:
            # rabbit_reader: refuse with the header of the protocol it does speak, then close.
            self._write(PROTOCOL_HEADER)
            self.request_close("AMQP protocol header mismatch")
        except _Silent as exc:
            self.request_close(str(exc))
        except UnknownMethod:
            # RabbitMQ 3.10's reader crashes on an undefined method: the socket closes, nothing is sent.
            self.request_close("unknown AMQP method")
        except FrameError as exc:
            # A framing error is fatal at once: connection.close, then the socket, without waiting for close-ok.
            if self.phase in ("running", "closing"):
                self._write(encode_method(0, c.Connection.Close(exc.code, exc.text, exc.class_id, exc.method_id)))
            self.request_close(exc.text)
        except _HardError as exc:
            self._connection_error(exc.error, *method_ids(exc.method))
        except ConnectionLevelError as exc:
            self._connection_error(exc, 0, 0)
        return False

    def _undecodable(self, exc: UndecodableMethod) -> None:
        """A method frame whose arguments do not fill its payload exactly, as ``rabbit_reader`` answers one."""
        if self.phase == "closing":
            return  # the reader drops what arrives on channels while it closes, undecoded
        if exc.channel == 0:
            # Channel 0's methods are decoded by the reader itself, which reports any failure as an internal
            # error with no explanation.
            self._connection_error(_InternalError(""), 0, 0)
            return
        ch = self.channels.get(exc.channel)
        if ch is not None and ch.state == "open" and ch.content is not None:
            # Expecting a content header or body: the frame type is wrong before its arguments matter.
            error = self._content_interrupted(ch.content)
            self._connection_error(error.error, *method_ids(error.method))
            return
        self._connection_error(_FrameError(exc.text), exc.class_id, exc.method_id)

    def _write(self, data: bytes) -> None:
        self._sent = True
        self.send(data)

    def _method(self, channel: int, method: Method) -> None:
        self._write(encode_method(channel, method))

    def _frame(self, frame: Frame) -> None:
        if self.phase == "closing":
            # rabbit_reader in state closing: only connection.close and close-ok count.
            if isinstance(frame, MethodFrame) and frame.channel == 0:
                if isinstance(frame.method, c.Connection.CloseOk):
                    self.request_close(self.close_reason)
                elif isinstance(frame.method, c.Connection.Close):
                    self._method(0, c.Connection.CloseOk())
            return
        if self.phase != "running":
            self._handshake(frame)
            return
        if isinstance(frame, HeartbeatFrame):
            if frame.channel != 0:
                raise UnexpectedFrame(f"type {FRAME_HEARTBEAT}, all octets = <<>>")
            return
        if frame.channel == 0:
            if not isinstance(frame, MethodFrame):
                raise UnexpectedFrame(f"type {_frame_type(frame)}, all octets = <<>>")
            self._connection_method(frame.method)
            return
        self._channel_frame(frame)

    # -- handshake ----------------------------------------------------------------------------------------
    def _handshake(self, frame: Frame) -> None:
        if self.phase == "header":
            return  # unreachable: the reader only yields frames after the header
        if isinstance(frame, HeartbeatFrame) and frame.channel == 0:
            return
        if not isinstance(frame, MethodFrame) or frame.channel != 0:
            raise _Silent(f"unexpected frame in connection state {self.phase}")
        m = frame.method
        if self.phase == "start-ok" and isinstance(m, c.Connection.StartOk):
            self._start_ok(m)
        elif self.phase == "tune-ok" and isinstance(m, c.Connection.TuneOk):
            self._tune_ok(m)
        elif self.phase == "open" and isinstance(m, c.Connection.Open):
            self._open(m)
        else:
            raise _Silent(f"unexpected method {m.name} in connection state {self.phase}")

    def start(self) -> None:
        """Send connection.start (once the protocol header has arrived)."""
        self.phase = "start-ok"
        self._method(0, c.Connection.Start(0, 9, SERVER_PROPERTIES, " ".join(MECHANISMS), "en_US"))

    def _start_ok(self, m: c.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        name = self.client_properties.get("connection_name")
        self.client_id = name if isinstance(name, str) else None
        self.mechanism = m.mechanism
        if m.mechanism not in MECHANISMS:
            raise _Silent(f"unknown authentication mechanism '{m.mechanism}'")
        response = m.response.encode() if isinstance(m.response, str) else bytes(m.response or b"")
        user, password = _plain(response) if m.mechanism == "PLAIN" else _amqplain(response)
        if user is None or password is None or not self.model.authenticate(user, password):
            if self._client_capability("authentication_failure_close"):
                self._method(0, c.Connection.Close(
                    403, f"ACCESS_REFUSED - Login was refused using authentication mechanism {m.mechanism}. "
                    "For details see the broker logfile.", 0, 0))
            raise _Silent(f"login refused for user '{user}'")
        self.user = user
        self.phase = "tune-ok"
        self._method(0, c.Connection.Tune(self.settings.channel_max, self.settings.frame_max,
                                          self.settings.heartbeat))

    def _tune_ok(self, m: c.Connection.TuneOk) -> None:
        # rabbit_reader:validate_negotiated_integer_value/3: not below the minimum, not above what was offered
        # (0 means "no limit", which is above any limit offered).
        for label, offered, asked, minimum in (("frame_max", self.settings.frame_max, m.frame_max, FRAME_MIN_SIZE),
                                               ("channel_max", self.settings.channel_max, m.channel_max, 0)):
            if asked != 0 and asked < minimum:
                raise _Silent(f"{label}={asked} < {minimum} min")
            if offered != 0 and (asked == 0 or asked > offered):
                raise _Silent(f"{label}={asked} > {offered} max")
        self.frame_max = m.frame_max
        self.channel_max = m.channel_max
        self.reader.frame_max = m.frame_max
        self.heartbeat = m.heartbeat
        self.phase = "open"
        if self.heartbeat:
            self._hb_send = self.clock.call_later(self.heartbeat / 2, self._heartbeat_send)
            self._hb_recv = self.clock.call_later(self.heartbeat, self._heartbeat_check)

    def _open(self, m: c.Connection.Open) -> None:
        name = m.virtual_host
        if name not in self.model.vhosts:
            self._connection_error(NotAllowed(f"vhost {name} not found"), 10, 40)
            return
        if self.user is None or not self.model.can_access(self.user, name):
            self._connection_error(NotAllowed(f"access to vhost '{name}' refused for user '{self.user}'"), 10, 40)
            return
        self.vhost = self.model.vhosts[name]
        self.phase = "running"
        alarm = self.host.state(ResourceAlarm).reason
        if alarm is not None:
            self.block(alarm)  # the node's alarm (broker.block() with no client) covers new connections too
        self._established = True  # the runtime's handshake_timeout no longer applies
        self._method(0, c.Connection.OpenOk())

    # -- heartbeats (on the broker's clock) --------------------------------------------------------------
    def _heartbeat_send(self) -> None:
        # rabbit_heartbeat's sender: a heartbeat frame when nothing else went out in the last half interval.
        if self.closed:
            return
        if not self._sent:
            self.send(HEARTBEAT_FRAME)
        self._sent = False
        self._hb_send = self.clock.call_later(self.heartbeat / 2, self._heartbeat_send)

    def _heartbeat_check(self) -> None:
        # rabbit_heartbeat's receiver: two intervals in a row with nothing received and the socket is closed,
        # with no connection.close ("missed heartbeats from client, timeout: 60s").
        if self.closed:
            return
        # A blocked connection is not read, so it cannot be heard: rabbit_reader pauses this monitor meanwhile.
        self._missed = 0 if self._received or self._held else self._missed + 1
        self._received = False
        if self._missed >= 2:
            self.close_reason = f"missed heartbeats from client, timeout: {self.heartbeat}s"
            self.abort_transport()
            return
        self._hb_recv = self.clock.call_later(self.heartbeat, self._heartbeat_check)

    # -- connection-level methods once open -----------------------------------------------------------
    def _connection_method(self, m: Method) -> None:
        if isinstance(m, c.Connection.Close):
            self._method(0, c.Connection.CloseOk())
            self.request_close("closed by the client")
        elif isinstance(m, c.Connection.CloseOk):
            self.request_close(self.close_reason)
        elif isinstance(m, c.Connection.UpdateSecret):
            # RabbitMQ's extension for refreshing an expiring token; users here have passwords, nothing expires.
            self._method(0, c.Connection.UpdateSecretOk())
        else:
            raise _HardError(ChannelStateError("unexpected method in connection state running"), m)

    def _connection_error(self, exc: AmqpError, class_id: int, method_id: int) -> None:
        """connection.close with RabbitMQ's code and text; the socket closes once the client's close-ok arrives."""
        if self.phase == "closing" or self.close_requested:
            return
        self.close_reason = exc.text
        self._method(0, c.Connection.Close(exc.code, exc.text, class_id, method_id))
        self.phase = "closing"
        self._close_channels()

    # -- channels -----------------------------------------------------------------------------------------
    def _channel_frame(self, frame: Frame) -> None:
        number = frame.channel
        ch = self.channels.get(number)
        if ch is None:
            # rabbit_reader creates the channel process for any frame on a new number, counting it.
            if self.channel_max and len(self.channels) >= self.channel_max:
                raise NotAllowed(f"number of channels opened ({len(self.channels)}) has reached the "
                                 f"negotiated channel_max ({self.channel_max})")
            if not isinstance(frame, MethodFrame):
                raise UnexpectedFrame("expected method frame, got non method frame instead")
            if not isinstance(frame.method, c.Channel.Open):
                class_id, method_id = method_ids(frame.method)
                self._connection_error(ChannelStateError("expected 'channel.open'"), class_id, method_id)
                return
            assert self.vhost is not None
            model = Channel(self.vhost, self, self.client_id)
            model.flow = lambda: not self.output_full  # a client that stops reading holds its deliveries
            ch = self.channels[number] = _AmqpChannel(number, model)
            model.on_cancel = lambda tag, ch=ch: self._server_cancel(ch, tag)
            self._method(number, c.Channel.OpenOk())
            return
        if ch.state == "closing":
            # rabbit_channel after it sent channel.close: everything but close and close-ok is dropped.
            if isinstance(frame, MethodFrame):
                if isinstance(frame.method, c.Channel.CloseOk):
                    del self.channels[number]
                elif isinstance(frame.method, c.Channel.Close):
                    self._method(number, c.Channel.CloseOk())
            return
        if ch.content is not None:
            self._content_frame(ch, frame)
            return
        if not isinstance(frame, MethodFrame):
            raise UnexpectedFrame("expected method frame, got non method frame instead")
        m = frame.method
        try:
            self._channel_method(ch, m)
        except _HardError as exc:
            class_id, method_id = method_ids(exc.method)
            self._connection_error(exc.error, class_id, method_id)
        except ConnectionLevelError as exc:
            class_id, method_id = method_ids(m)
            self._connection_error(exc, class_id, method_id)
        except AmqpError as exc:
            class_id, method_id = method_ids(m)
            self._channel_error(ch, exc, class_id, method_id)

    def _channel_error(self, ch: _AmqpChannel, exc: AmqpError, class_id: int, method_id: int) -> None:
        self._method(ch.number, c.Channel.Close(exc.code, exc.text, class_id, method_id))
        ch.state = "closing"
        ch.content = None
        self._release(ch)

    def _release(self, ch: _AmqpChannel) -> None:
        """What closing a channel does in the model: consumers go, unacknowledged messages are requeued."""
        if ch.reply_consumer is not None:
            self.host.state(ReplyRegistry).consumers.pop(self._reply_address(ch), None)
            ch.reply_consumer = None
        for taken, _ in ch.tx_settles:
            ch.model.restore(taken)
        ch.tx_settles.clear()
        ch.tx_publishes.clear()
        ch.model.close()

    def _close_channels(self) -> None:
        for ch in list(self.channels.values()):
            if not ch.model.closed:
                self._release(ch)

    def _content_frame(self, ch: _AmqpChannel, frame: Frame) -> None:
        # rabbit_command_assembler: a content method is followed by exactly one header, then its body frames.
        pending = ch.content
        assert pending is not None
        if pending.properties is None:
            if not isinstance(frame, HeaderFrame):
                raise self._content_interrupted(pending)
            if frame.class_id != 60:
                raise _HardError(UnexpectedFrame(
                    f"expected content header for class 60, got one for class {frame.class_id} instead"),
                    pending.method)
            pending.properties = from_pamqp_properties(frame.properties)
            pending.wire = frame.raw
            pending.remaining = frame.body_size
            if frame.body_size > self.settings.max_message_size:
                ch.content = None
                self._channel_error(ch, PreconditionFailed(
                    f"message size {frame.body_size} is larger than configured max size "
                    f"{self.settings.max_message_size}"), 60, 40)
                return
        elif isinstance(frame, BodyFrame):
            pending.parts.append(frame.data)
            # RabbitMQ waits for exactly the announced size; more than that and it never completes.
            pending.remaining -= len(frame.data)
        else:
            raise self._content_interrupted(pending)
        if pending.remaining == 0:
            ch.content = None
            body = b"".join(pending.parts)
            try:
                self._published(ch, pending, body)
            except ConnectionLevelError as exc:
                self._connection_error(exc, 60, 40)
            except AmqpError as exc:
                self._channel_error(ch, exc, 60, 40)

    @staticmethod
    def _content_interrupted(pending: _Publish) -> _HardError:
        """rabbit_command_assembler's error for a frame of the wrong type where a content header or body is due."""
        if pending.properties is None:
            return _HardError(UnexpectedFrame(
                "expected content header for class 60, got non content header frame instead"), pending.method)
        return _HardError(UnexpectedFrame("expected content body, got non content body frame instead"),
                          pending.method)

    def _channel_method(self, ch: _AmqpChannel, m: Method) -> None:
        handler = _HANDLERS.get(type(m))
        if handler is None:
            if isinstance(m, c.Channel.Open):
                raise _HardError(ChannelStateError("second 'channel.open' seen"), m)
            if m.name.startswith("Connection."):
                raise _HardError(_command_invalid("unimplemented method"), m)
            raise _HardError(_command_invalid(f"{_amqp_name(m)} not supported by the broker"), m)
        handler(self, ch, m)

    # channel.*
    def _channel_close(self, ch: _AmqpChannel, m: c.Channel.Close) -> None:
        self._release(ch)
        del self.channels[ch.number]
        self._method(ch.number, c.Channel.CloseOk())

    def _channel_close_ok(self, ch: _AmqpChannel, m: c.Channel.CloseOk) -> None:
        del self.channels[ch.number]

    def _channel_flow(self, ch: _AmqpChannel, m: c.Channel.Flow) -> None:
        if not m.active:
            raise NotImplementedByBroker("active=false")
        self._method(ch.number, c.Channel.FlowOk(True))

    # exchange.*
    def _exchange_declare(self, ch: _AmqpChannel, m: c.Exchange.Declare) -> None:
        assert self.vhost is not None
        self.vhost.declare_exchange(m.exchange, m.exchange_type, durable=m.durable, auto_delete=m.auto_delete,
                                    internal=m.internal, arguments=dict(m.arguments or {}), passive=m.passive)
        if not m.nowait:
            self._method(ch.number, c.Exchange.DeclareOk())

    def _exchange_delete(self, ch: _AmqpChannel, m: c.Exchange.Delete) -> None:
        assert self.vhost is not None
        self.vhost.delete_exchange(m.exchange, if_unused=m.if_unused)
        if not m.nowait:
            self._method(ch.number, c.Exchange.DeleteOk())

    def _exchange_bind(self, ch: _AmqpChannel, m: c.Exchange.Bind) -> None:
        assert self.vhost is not None
        self.vhost.bind_exchange(m.destination, m.source, m.routing_key, dict(m.arguments or {}))
        if not m.nowait:
            self._method(ch.number, c.Exchange.BindOk())

    def _exchange_unbind(self, ch: _AmqpChannel, m: c.Exchange.Unbind) -> None:
        assert self.vhost is not None
        self.vhost.unbind_exchange(m.destination, m.source, m.routing_key, dict(m.arguments or {}))
        if not m.nowait:
            self._method(ch.number, c.Exchange.UnbindOk())

    # queue.*
    def _queue_name(self, ch: _AmqpChannel, name: str) -> str:
        # rabbit_channel:expand_queue_name_shortcut/2: an empty name means the channel's last declared queue.
        if name:
            return name
        if not ch.last_queue:
            raise NotFound("no previously declared queue")
        return ch.last_queue

    def _queue_declare(self, ch: _AmqpChannel, m: c.Queue.Declare) -> None:
        assert self.vhost is not None
        name = self._queue_name(ch, m.queue) if m.passive else m.queue
        queue = self.vhost.declare_queue(name, durable=m.durable, exclusive=m.exclusive, auto_delete=m.auto_delete,
                                         arguments=dict(m.arguments or {}), passive=m.passive, owner=self)
        ch.last_queue = queue.name
        if not m.nowait:
            self._method(ch.number, unchecked(c.Queue.DeclareOk, queue.name, queue.message_count,
                                              queue.consumer_count))

    def _queue_bind(self, ch: _AmqpChannel, m: c.Queue.Bind) -> None:
        assert self.vhost is not None
        # expand_routing_key_shortcut/3: no queue name and no key bind with the last declared queue's name.
        key = m.routing_key if (m.queue or m.routing_key) else ch.last_queue
        queue = self._queue_name(ch, m.queue)
        self.vhost.bind(queue, m.exchange, key, dict(m.arguments or {}), owner=self)
        if not m.nowait:
            self._method(ch.number, c.Queue.BindOk())

    def _queue_unbind(self, ch: _AmqpChannel, m: c.Queue.Unbind) -> None:
        assert self.vhost is not None
        key = m.routing_key if (m.queue or m.routing_key) else ch.last_queue
        self.vhost.unbind(self._queue_name(ch, m.queue), m.exchange, key, dict(m.arguments or {}), owner=self)
        self._method(ch.number, c.Queue.UnbindOk())

    def _queue_purge(self, ch: _AmqpChannel, m: c.Queue.Purge) -> None:
        assert self.vhost is not None
        count = self.vhost.purge_queue(self._queue_name(ch, m.queue), owner=self)
        if not m.nowait:
            self._method(ch.number, c.Queue.PurgeOk(count))

    def _queue_delete(self, ch: _AmqpChannel, m: c.Queue.Delete) -> None:
        assert self.vhost is not None
        name = self._queue_name(ch, m.queue)
        # RabbitMQ 3.10 answers delete-ok (count 0) for a missing queue; another connection's exclusive queue
        # is RESOURCE_LOCKED.
        count = self.vhost.delete_queue(name, if_unused=m.if_unused, if_empty=m.if_empty, owner=self)
        if not m.nowait:
            self._method(ch.number, c.Queue.DeleteOk(count))

    # basic.*
    def _basic_qos(self, ch: _AmqpChannel, m: c.Basic.Qos) -> None:
        if m.prefetch_size:
            raise NotImplementedByBroker(f"prefetch_size!=0 ({m.prefetch_size})")
        if m.global_:
            ch.model.global_prefetch = m.prefetch_count
            ch.model.wake_consumers()
        else:
            ch.prefetch = m.prefetch_count
        self._method(ch.number, c.Basic.QosOk())

    def _basic_consume(self, ch: _AmqpChannel, m: c.Basic.Consume) -> None:
        assert self.vhost is not None
        tag = m.consumer_tag or server_generated("amq.ctag")
        if m.queue == REPLY_TO:
            self._consume_reply_to(ch, m, tag)
            return
        queue = self._queue_name(ch, m.queue)
        priority = self._consumer_priority(queue, dict(m.arguments or {}))
        ch.deferred = []
        try:
            ch.model.consume(queue, lambda d, ch=ch: self._deliver(ch, d), no_ack=m.no_ack,  # type: ignore[misc]
                             prefetch=ch.prefetch, tag=tag, exclusive=m.exclusive, priority=priority)
            deferred = ch.deferred
        finally:
            ch.deferred = None
        if not m.nowait:
            self._method(ch.number, c.Basic.ConsumeOk(tag))
        for data in deferred:
            self._write(data)

    def _consumer_priority(self, queue: str, arguments: dict[str, Any]) -> int:
        """basic.consume's ``x-priority``, checked as ``rabbit_amqqueue``'s consumer argument validators do."""
        assert self.vhost is not None
        value = arguments.get("x-priority", 0)
        kind = amqp_type(value)
        if kind not in ("signedint", "long"):
            self.vhost.queue_for(queue, self)  # a missing queue is reported first
            raise PreconditionFailed(f"invalid arg 'x-priority' for queue '{queue}' in vhost '{self.vhost.name}': "
                                     f'"expected integer, got {kind}"')
        return int(value)

    def _consume_reply_to(self, ch: _AmqpChannel, m: c.Basic.Consume, tag: str) -> None:
        # Direct reply-to: a pseudo-queue, consumed with no-ack only, once per channel.
        if not m.no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge")
        if ch.reply_consumer is not None:
            raise PreconditionFailed("reply consumer already set")
        if tag in ch.model.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{tag}'")
        ch.reply_consumer = tag
        if not self._reply_key:
            self._reply_key = base64.urlsafe_b64encode(os.urandom(12)).decode()
        registry = self.host.state(ReplyRegistry)
        registry.consumers[self._reply_address(ch)] = (self, ch)
        if not m.nowait:
            self._method(ch.number, c.Basic.ConsumeOk(tag))

    def _reply_address(self, ch: _AmqpChannel) -> str:
        return f"{REPLY_TO}.{self._reply_key}.{ch.number}"

    def _basic_cancel(self, ch: _AmqpChannel, m: c.Basic.Cancel) -> None:
        if m.consumer_tag == ch.reply_consumer:
            ch.reply_consumer = None
            self.host.state(ReplyRegistry).consumers.pop(self._reply_address(ch), None)
        else:
            ch.model.cancel(m.consumer_tag or "")
        if not m.nowait:
            self._method(ch.number, c.Basic.CancelOk(m.consumer_tag))

    def _server_cancel(self, ch: _AmqpChannel, tag: str) -> None:
        # The queue went away under the consumer: RabbitMQ tells clients that announced consumer_cancel_notify.
        if ch.state == "open" and not self.close_requested and self._client_capability("consumer_cancel_notify"):
            self._method(ch.number, c.Basic.Cancel(tag, nowait=True))

    def _basic_publish(self, ch: _AmqpChannel, m: c.Basic.Publish) -> None:
        if m.immediate:
            raise NotImplementedByBroker("immediate=true")
        ch.content = _Publish(m)
        if self.blocked_reason is not None:
            # rabbit_reader: under a resource alarm, the first publish moves the connection from "blocking" to
            # "blocked": only now is the client told, and nothing more is read from it (the rest of this
            # publish included).
            self._held = True
            if self._client_capability("connection.blocked"):
                self._method(0, c.Connection.Blocked(self.blocked_reason))

    def _published(self, ch: _AmqpChannel, pending: _Publish, body: bytes) -> None:
        assert self.vhost is not None and pending.properties is not None
        m = pending.method
        vh = self.vhost
        vh.check_publishable(m.exchange)
        properties, wire = pending.properties, pending.wire
        user_id = properties.get("user_id")
        if user_id is not None and user_id != self.user:
            raise PreconditionFailed(f"user_id property set to '{user_id}' but authenticated user was '{self.user}'")
        if properties.get("expiration") is not None:
            parse_expiration(str(properties["expiration"]))
        if properties.get("reply_to") == REPLY_TO:
            if ch.reply_consumer is None:
                raise PreconditionFailed("fast reply consumer does not exist")
            properties, wire = {**properties, "reply_to": self._reply_address(ch)}, None
        if ch.tx:
            ch.tx_publishes.append((_Publish(m, properties, wire), body))
            return
        self._route(ch, m, properties, body, wire)

    def _route(self, ch: _AmqpChannel, m: c.Basic.Publish, properties: dict[str, Any], body: bytes,
               wire: bytes | None) -> None:
        assert self.vhost is not None
        message = Message(m.exchange, m.routing_key, body, properties, wire=wire)
        if m.exchange == "" and m.routing_key.startswith(REPLY_TO + "."):
            self._reply(ch, m, message)
            return
        targets = self.vhost.route(message)
        logged = self.model.publish_message(message, protocol="amqp", vhost=self.vhost, client_id=self.client_id,
                                            queues=targets)
        if not targets and m.mandatory and logged.fault is None:
            self._write(encode_content(ch.number, unchecked(c.Basic.Return, 312, "NO_ROUTE", m.exchange, m.routing_key),
                                       body, properties, self.frame_max, wire))
        if ch.confirm:
            ch.publish_seq += 1
            # A queue refusing it (x-overflow reject-publish) nacks the publish; everything else is acked.
            refused = logged.fault is None and not logged.pending and len(logged.queues) < len(targets)
            self._method(ch.number, c.Basic.Nack(ch.publish_seq) if refused else c.Basic.Ack(ch.publish_seq))

    def _reply(self, ch: _AmqpChannel, m: c.Basic.Publish, message: Message) -> None:
        """A publish to ``amq.rabbitmq.reply-to.<key>`` on the default exchange: logged like any publish (so
        message faults apply to it), and delivered straight to the requester's reply consumer."""
        assert self.vhost is not None
        logged = self.model.publish_message(message, protocol="amqp", vhost=self.vhost, client_id=self.client_id,
                                            queues=[])
        if logged.fault is None:
            delivered = self._deliver_reply(message, logged)
        else:
            # A dropped reply is lost inside the broker, as any dropped publish; a delayed one is delivered once
            # the model routes it (to no queue: its address is not one).
            delivered = True
            if logged.fault == "delayed":
                def routed(entry: LoggedMessage) -> None:
                    if entry is logged:
                        remove()
                        self._deliver_reply(message, logged)

                remove = self.model.on("route", routed)
        if not delivered and m.mandatory:
            self._write(encode_content(ch.number, unchecked(c.Basic.Return, 312, "NO_ROUTE", "", m.routing_key),
                                       message.body, message.properties, self.frame_max, message.wire))
        if ch.confirm:
            ch.publish_seq += 1
            self._method(ch.number, c.Basic.Ack(ch.publish_seq))

    def _deliver_reply(self, message: Message, logged: LoggedMessage) -> bool:
        """basic.deliver of a direct reply to the consumer of its address, recorded on its log entry as a
        no-ack delivery through ``amq.rabbitmq.reply-to``; False when nobody consumes that address."""
        found = self.host.state(ReplyRegistry).consumers.get(message.routing_key)
        if found is None:
            return False
        session, target = found
        if target.reply_consumer is None or session.close_requested:
            return False
        tag = target.model.next_delivery_tag()  # the reply uses the channel's delivery tag sequence
        logged.queues = (REPLY_TO,)
        self.model.record_delivery(message, REPLY_TO, session.client_id, no_ack=True)
        session._write(encode_content(
            target.number, c.Basic.Deliver(target.reply_consumer, tag, False, "", message.routing_key),
            message.body, message.properties, session.frame_max, message.wire))
        return True

    def _deliver(self, ch: _AmqpChannel, d: Delivery) -> None:
        data = encode_content(ch.number, c.Basic.Deliver(d.consumer_tag or "", d.delivery_tag, d.redelivered,
                                                         d.exchange, d.routing_key),
                              d.body, d.properties, self.frame_max, d.message.wire)
        if ch.deferred is not None:
            ch.deferred.append(data)
        else:
            self._write(data)

    def _basic_get(self, ch: _AmqpChannel, m: c.Basic.Get) -> None:
        d = ch.model.get(self._queue_name(ch, m.queue), no_ack=m.no_ack)
        if d is None:
            self._method(ch.number, c.Basic.GetEmpty())
            return
        self._write(encode_content(ch.number, unchecked(c.Basic.GetOk, d.delivery_tag, d.redelivered, d.exchange,
                                                            d.routing_key, d.message_count),
                                   d.body, d.properties, self.frame_max, d.message.wire))

    def _settle(self, ch: _AmqpChannel, tag: int, multiple: bool, outcome: str) -> None:
        taken = ch.model.take(tag, multiple)
        if ch.tx:
            ch.tx_settles.append((taken, outcome))
        else:
            ch.model.settle_taken(taken, outcome)

    def _basic_ack(self, ch: _AmqpChannel, m: c.Basic.Ack) -> None:
        self._settle(ch, m.delivery_tag, m.multiple, "ack")

    def _basic_nack(self, ch: _AmqpChannel, m: c.Basic.Nack) -> None:
        self._settle(ch, m.delivery_tag, m.multiple, "requeue" if m.requeue else "reject")

    def _basic_reject(self, ch: _AmqpChannel, m: c.Basic.Reject) -> None:
        self._settle(ch, m.delivery_tag or 0, False, "requeue" if m.requeue else "reject")

    def _basic_recover(self, ch: _AmqpChannel, m: c.Basic.Recover) -> None:
        if not m.requeue:
            raise NotImplementedByBroker("requeue=false")
        ch.model.recover()
        self._method(ch.number, c.Basic.RecoverOk())

    def _basic_recover_async(self, ch: _AmqpChannel, m: c.Basic.RecoverAsync) -> None:
        if not m.requeue:
            raise NotImplementedByBroker("requeue=false")
        ch.model.recover()

    # confirm.* and tx.*
    def _confirm_select(self, ch: _AmqpChannel, m: c.Confirm.Select) -> None:
        if ch.tx:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        ch.confirm = True
        if not m.nowait:
            self._method(ch.number, c.Confirm.SelectOk())

    def _tx_select(self, ch: _AmqpChannel, m: c.Tx.Select) -> None:
        if ch.confirm:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        ch.tx = True
        self._method(ch.number, c.Tx.SelectOk())

    def _tx_commit(self, ch: _AmqpChannel, m: c.Tx.Commit) -> None:
        if not ch.tx:
            raise PreconditionFailed("channel is not transactional")
        publishes, settles = ch.tx_publishes, ch.tx_settles
        ch.tx_publishes, ch.tx_settles = [], []
        for taken, outcome in settles:
            ch.model.settle_taken(taken, outcome)
        for pending, body in publishes:
            assert pending.properties is not None
            self._route(ch, pending.method, pending.properties, body, pending.wire)
        self._method(ch.number, c.Tx.CommitOk())

    def _tx_rollback(self, ch: _AmqpChannel, m: c.Tx.Rollback) -> None:
        if not ch.tx:
            raise PreconditionFailed("channel is not transactional")
        for taken, _ in ch.tx_settles:
            ch.model.restore(taken)
        ch.tx_publishes, ch.tx_settles = [], []
        self._method(ch.number, c.Tx.RollbackOk())

    # -- the broker's side ------------------------------------------------------------------------------
    def block(self, reason: str = "low on memory") -> None:
        """A resource alarm, as RabbitMQ 3.10 applies it: nothing is sent yet; the connection's next
        basic.publish blocks it (connection.blocked with ``reason`` to a client that announced the capability)
        and nothing more is read from it until :meth:`unblock`."""
        if self.blocked_reason is None:
            self.blocked_reason = reason

    def unblock(self) -> None:
        """The alarm clears: connection.unblocked to a client that was told it was blocked; reading resumes."""
        self.blocked_reason = None
        if self._held:
            self._held = False
            # Told it was blocked (held, with the capability, which start-ok fixed): connection.unblocked is owed.
            if self._client_capability("connection.blocked") and not self.close_requested:
                self._method(0, c.Connection.Unblocked())
            self._process()

    def close_connection(self, reason: str = "Closed via management plugin") -> None:
        """connection.close 320 CONNECTION_FORCED, as ``rabbitmqctl close_connection`` sends it."""
        if self.phase == "running":
            self._connection_error(_Forced(reason), 0, 0)

    # -- end of the connection ------------------------------------------------------------------------
    def _on_connection_lost(self) -> None:
        # What it consumed, as it was, for the reports of a closed connection.
        self._final_consumers = self._consumers()
        for timer in (self._hb_send, self._hb_recv):
            if timer is not None:
                timer.cancel()
        self._close_channels()
        registry = self.host.state(ReplyRegistry)
        for ch in self.channels.values():
            registry.consumers.pop(self._reply_address(ch), None)
        self.channels.clear()
        if self.vhost is not None:
            self.vhost.connection_closed(self)

    def _consumers(self) -> dict[str, str]:
        consumers: dict[str, str] = {}
        for ch in self.channels.values():
            for tag, consumer in ch.model.consumers.items():
                consumers[tag] = consumer.queue.name
            if ch.reply_consumer is not None:
                consumers[ch.reply_consumer] = REPLY_TO
        return consumers

    def output_drained(self) -> None:
        for ch in list(self.channels.values()):
            if not ch.model.closed:
                ch.model.wake_consumers()

    def describe(self) -> dict[str, Any]:
        return {
            "vhost": self.vhost.name if self.vhost else None,
            # Consumer tag -> queue; once closed, what it consumed when the connection went.
            "subscriptions": self._final_consumers if self.closed else self._consumers(),
            "channels": len(self.channels),
            "heartbeat": self.heartbeat,
            "frame_max": self.frame_max,
            "channel_max": self.channel_max,
            "auth_mechanism": self.mechanism,
            "client_properties": self.client_properties,
            "blocked": self._held,
        }

    @property
    def connection_state(self) -> str:
        """``rabbit_reader``'s state as the management API shows it: running, blocking (under an alarm, not
        published since) or blocked (published under the alarm: no longer read)."""
        if self._held:
            return "blocked"
        return "running" if self.blocked_reason is None else "blocking"


class ResourceAlarm:
    """The node's resource alarm, set by ``broker.block()`` with no client: it blocks every AMQP connection,
    those opened while it lasts included."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def reset(self) -> None:
        """``broker.reset()``: a node that has just started has no alarm."""
        self.reason = None


class ReplyRegistry:
    """Direct reply-to consumers of the node: ``amq.rabbitmq.reply-to.<key>`` → the session and channel."""

    def __init__(self) -> None:
        self.consumers: dict[str, tuple[AmqpSession, _AmqpChannel]] = {}


class _HardError(Exception):
    """A connection-level error caused by ``method`` (its ids go into connection.close)."""

    def __init__(self, error: AmqpError, method: Method) -> None:
        super().__init__(error.text)
        self.error = error
        self.method = method


class _Forced(ConnectionLevelError):
    code = 320
    name = "CONNECTION_FORCED"


class _FrameError(ConnectionLevelError):
    """501 with the codec's complete text (``FRAME_ERROR - cannot decode <<...>>``)."""

    code = 501
    name = "FRAME_ERROR"

    @property
    def text(self) -> str:
        return self.explanation


class _InternalError(ConnectionLevelError):
    """541 as ``rabbit_reader`` sends it for a channel-0 method it cannot decode: no explanation."""

    code = 541
    name = "INTERNAL_ERROR"

    @property
    def text(self) -> str:
        return self.name


def _command_invalid(text: str) -> ConnectionLevelError:
    return CommandInvalid(text)


def _amqp_name(m: Method) -> str:
    return m.name.lower().replace("selectok", "select_ok")


def _frame_type(frame: Frame) -> int:
    return {HeaderFrame: 2, BodyFrame: 3, MethodFrame: 1, HeartbeatFrame: 8}[type(frame)]


def _plain(response: bytes) -> tuple[str | None, bytes | None]:
    # rabbit_auth_mechanism_plain: "authzid NUL user NUL password", the authzid ignored.
    parts = response.split(b"\x00")
    if len(parts) != 3:
        return None, None
    try:
        return parts[1].decode(), parts[2]
    except UnicodeDecodeError:
        return None, None


def _amqplain(response: bytes) -> tuple[str | None, bytes | None]:
    # AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
    try:
        _, table = pdecode.field_table(len(response).to_bytes(4, "big") + response)
    except (ValueError, TypeError, IndexError):
        return None, None
    login, password = table.get("LOGIN"), table.get("PASSWORD")
    if isinstance(login, bytes):
        login = login.decode("utf-8", "replace")
    if isinstance(password, str):
        password = password.encode()
    if not isinstance(login, str) or not isinstance(password, bytes):
        return None, None
    return login, password


_HANDLERS: dict[type, Any] = {
    c.Channel.Close: AmqpSession._channel_close,
    c.Channel.CloseOk: AmqpSession._channel_close_ok,
    c.Channel.Flow: AmqpSession._channel_flow,
    c.Exchange.Declare: AmqpSession._exchange_declare,
    c.Exchange.Delete: AmqpSession._exchange_delete,
    c.Exchange.Bind: AmqpSession._exchange_bind,
    c.Exchange.Unbind: AmqpSession._exchange_unbind,
    c.Queue.Declare: AmqpSession._queue_declare,
    c.Queue.Bind: AmqpSession._queue_bind,
    c.Queue.Unbind: AmqpSession._queue_unbind,
    c.Queue.Purge: AmqpSession._queue_purge,
    c.Queue.Delete: AmqpSession._queue_delete,
    c.Basic.Qos: AmqpSession._basic_qos,
    c.Basic.Consume: AmqpSession._basic_consume,
    c.Basic.Cancel: AmqpSession._basic_cancel,
    c.Basic.Publish: AmqpSession._basic_publish,
    c.Basic.Get: AmqpSession._basic_get,
    c.Basic.Ack: AmqpSession._basic_ack,
    c.Basic.Nack: AmqpSession._basic_nack,
    c.Basic.Reject: AmqpSession._basic_reject,
    c.Basic.Recover: AmqpSession._basic_recover,
    c.Basic.RecoverAsync: AmqpSession._basic_recover_async,
    c.Confirm.Select: AmqpSession._confirm_select,
    c.Tx.Select: AmqpSession._tx_select,
    c.Tx.Commit: AmqpSession._tx_commit,
    c.Tx.Rollback: AmqpSession._tx_rollback,
}

__all__ = ["SERVER_PROPERTIES", "AmqpSession", "ReplyRegistry", "ResourceAlarm"]
