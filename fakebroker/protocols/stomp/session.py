"""One STOMP 1.0/1.1/1.2 connection, mapped onto the routing model the way RabbitMQ 3.10's STOMP plugin does it.

RabbitMQ runs each STOMP connection as an AMQP 0-9-1 client with one channel; this session does the same
against the model: destinations become queue declarations, bindings and publishes; subscriptions become
consumers with their own acknowledgement mode; AMQP errors end the connection with an ERROR frame naming
them. Validation problems get an ERROR frame and the connection stays open, as in RabbitMQ.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...clock import TimerHandle
from ...errors import ChannelError, PreconditionFailed
from ...model import Channel, Delivery, VHost
from ..base import ConnectionInfo, Session, SessionHost
from .codec import Frame, StompDecoder, StompFrameError, encode
from .destinations import (
    DEST_PREFIXES,
    DestinationError,
    Endpoint,
    format_destination,
    parse_endpoint,
    subscription_queue_name,
)
from .settings import SUPPORTED_VERSIONS, StompSettings

# Headers that map to AMQP basic properties; every other SEND header goes into the AMQP headers table.
PROPERTY_HEADERS = (
    ("content-type", "content_type"),
    ("content-encoding", "content_encoding"),
    ("persistent", "delivery_mode"),
    ("priority", "priority"),
    ("correlation-id", "correlation_id"),
    ("reply-to", "reply_to"),
    ("expiration", "expiration"),
    ("amqp-message-id", "message_id"),
    ("timestamp", "timestamp"),
    ("type", "type"),
    ("user-id", "user_id"),
    ("app-id", "app_id"),
)
_PROPERTY_OF = dict(PROPERTY_HEADERS)
# Queue arguments a SUBSCRIBE (or SEND) header may set, and whether RabbitMQ reads them as integers.
ARGUMENT_HEADERS = {
    "x-dead-letter-exchange": False,
    "x-dead-letter-routing-key": False,
    "x-expires": True,
    "x-max-length": True,
    "x-max-length-bytes": True,
    "x-max-priority": True,
    "x-message-ttl": True,
    "x-queue-type": False,
}
PARAM_HEADERS = {"auto-delete": "auto_delete", "durable": "durable", "exclusive": "exclusive",
                 "persistent": "durable"}
# AMQP header values RabbitMQ types as something a MESSAGE frame does not show (byte, bool), though the model
# holds them as Python ints.
_NON_STRING_HEADERS = frozenset(["x-mqtt-publish-qos"])
TEMP_QUEUE_ID_PREFIX = "/temp-queue/"


class ProcessingError(Exception):
    """Where RabbitMQ's processor crashes on a bad value and answers ``ERROR message:Processing error``."""


class _Stop(Exception):
    """End the connection now (after what has been written), with ``reason`` for the report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Subscription:
    tag: str  # the consumer tag: T_<id>, or Q_<destination> for a 1.0 SUBSCRIBE without id
    destination: str
    ack_mode: str  # "auto" or "client"
    multiple: bool  # "client" acks are cumulative
    description: str
    queue: str


def _erl_p(text: str) -> str:
    """A string as Erlang's ``~p`` prints it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _integer(text: str) -> int:
    value = text.strip(" ")
    digits = value[1:] if value[:1] in ("+", "-") else value
    if not digits or not digits.isascii() or not digits.isdigit():
        raise ProcessingError(f"not an integer: {text!r}")
    return int(value)


def _boolean(text: str | None) -> bool | None:
    if text in ("true", "True"):
        return True
    if text in ("false", "False"):
        return False
    return None


def _guid(prefix: str) -> str:
    return prefix + "-" + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


class StompSession(Session):
    protocol = "stomp"

    def __init__(self, info: ConnectionInfo, host: SessionHost) -> None:
        super().__init__(info)
        self.host = host
        self.clock = host.clock
        self.options = host.options
        self.settings = host.options.protocol_settings("stomp", StompSettings)
        s = self.settings
        self.decoder = StompDecoder(max_frame_size=s.max_frame_size, max_headers=s.max_headers,
                                    max_header_length=s.max_header_length, max_body_size=s.max_body_size)
        self.websocket = info.transport == "websocket"
        self.version: str | None = None
        self.session_id: str | None = None
        self.vhost: VHost | None = None
        self.channel: Channel | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.heart_beat = (0, 0)  # (server sends every, server expects every), ms, as in CONNECTED
        self._declared: set[str] = set()  # /queue/ queues this connection declared already
        self._endpoints: dict[str, Endpoint] = {}
        self._reply_queues: dict[str, str] = {}  # temp-queue id -> queue name
        self._transactions: dict[str, list[Callable[[], None]]] = {}
        self._prefetch = 0  # the channel's basic.qos, set by SUBSCRIBE's prefetch-count
        self._pending_receipts: list[str] = []
        self._batch: list[bytes] | None = None
        self._received = 0
        self._sent = 0
        self._send_timer: TimerHandle | None = None
        self._recv_timer: TimerHandle | None = None
        self._send_state: tuple[int, bool] = (0, True)  # (bytes sent at the last check, first check)
        self._recv_state = (0, 0)  # (bytes received at the last check, checks without a change)
        self.frames_in = 0
        self.frames_out = 0
        #: The WebSocket close (code, reason) when this session ends a Web STOMP connection other than with
        #: RabbitMQ's usual 1000 "STOMP died"; read by the WebSocket adapter.
        self.websocket_close: tuple[int, str] | None = None

    @property
    def connected(self) -> bool:
        return self.channel is not None

    # -- bytes in ---------------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        self._received += len(data)
        self.decoder.feed(data)
        # Over WebSocket, RabbitMQ's handler queues its writes behind the data it is handling: when handling
        # ends the connection, the frames it produced (a receipt, an ERROR) never reach the client.
        self._batch = [] if self.websocket else None
        try:
            for frame in self.decoder:
                self.frames_in += 1
                self._process(frame)
                if self.close_requested:
                    break
        except StompFrameError as exc:
            # RabbitMQ 3.10 logs the parse error and closes the socket without an ERROR frame; Web STOMP closes
            # with 1007 and the error term (1011 where the parser crashes, on a content-length it cannot use).
            self.close_reason = f"malformed frame: {exc.reason}"
            self.websocket_close = (1011, "") if exc.crash else (1007, exc.erlang())
            self.request_close()
        finally:
            batch, self._batch = self._batch, None
            if batch and not self.close_requested:
                for chunk in batch:
                    self._sent += len(chunk)
                    self.send(chunk)

    def transport_received(self, count: int) -> None:
        # RabbitMQ's heart-beat monitor reads the socket's byte count: WebSocket framing and pings count too.
        self._received += count

    def _write(self, command: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        data = encode(command, headers, body, trailing_lf=self.settings.trailing_lf)
        self.frames_out += 1
        if self._batch is not None:
            self._batch.append(data)
        else:
            self._sent += len(data)
            self.send(data)

    def _error(self, message: str, detail: str, extra: list[tuple[str, str]] | None = None) -> None:
        headers = [("message", message), ("content-type", "text/plain"), ("version", ",".join(SUPPORTED_VERSIONS))]
        self._write("ERROR", headers + (extra or []), detail.encode("utf-8", "surrogateescape"))

    def _stop(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        self._close_connection()
        self.request_close()

    # -- frames -----------------------------------------------------------------------------------
    def _process(self, frame: Frame) -> None:
        command = frame.command
        if command in ("CONNECT", "STOMP"):
            if self.connected:
                # RabbitMQ's processor has no clause for a second CONNECT: the connection dies, no ERROR.
                self._stop("CONNECT on a connection that is already logged in")
                return
            self._connect(frame)
            return
        if not self.connected:
            self._error("Illegal command", "You must log in using CONNECT first")
            return
        if self.version == "1.0":
            frame = Frame(frame.command, [(k, v.lstrip(" ")) for k, v in frame.headers], frame.body)
        try:
            if command in ("SUBSCRIBE", "UNSUBSCRIBE"):
                durable = frame.get("durable") == "true" or frame.get("persistent") == "true"
                if durable and "id" not in frame:
                    self._error("Missing Header", "Header 'id' is required for durable subscriptions")
                    return
            handler = self._handlers.get(command)
            if handler is None:
                self._error("Bad command", f"Could not interpret command {_erl_p(command)}\n")
                return
            if not handler(self, frame):
                return  # an ERROR frame was sent: no receipt
        except ProcessingError:
            self._error("Processing error", "Processing error")
            return
        except DestinationError as exc:
            self._error(exc.message, exc.detail)
            return
        except ChannelError as exc:
            self._amqp_death(exc)
            return
        except _Stop as stop:
            self._stop(stop.reason)
            return
        receipt = frame.get("receipt")
        if receipt is not None and command not in ("SEND", "COMMIT"):
            self._receipt(receipt)
        self._flush_receipts()
        if command == "DISCONNECT":
            self.close_reason = self.close_reason or "DISCONNECT"
            self.request_close()

    def _receipt(self, receipt_id: str) -> None:
        self._write("RECEIPT", [("receipt-id", receipt_id)])

    def _flush_receipts(self) -> None:
        # SEND receipts follow the publisher confirm, which RabbitMQ's channel sends after the frame's work.
        pending, self._pending_receipts = self._pending_receipts, []
        for receipt_id in pending:
            self._receipt(receipt_id)

    def _amqp_death(self, exc: ChannelError) -> None:
        """An AMQP channel or connection error: ERROR named after it, then the connection closes."""
        self._flush_receipts()
        self._error(exc.name.lower(), str(exc))
        self._stop(str(exc))

    # -- CONNECT ----------------------------------------------------------------------------------
    def _connect(self, frame: Frame) -> None:
        offered = (frame.get("accept-version") or "1.0").split(",")
        common = [v for v in offered if v in SUPPORTED_VERSIONS]
        if not common:
            self._error("Version mismatch", f"Supported versions are {','.join(SUPPORTED_VERSIONS)}\n")
            return
        version = max(common, key=lambda v: tuple(int(p) for p in v.split(".")))
        if version == "1.0":
            frame = Frame(frame.command, [(k, v.lstrip(" ")) for k, v in frame.headers], frame.body)
        options = self.options
        login = frame.get("login")
        if login is None:
            if not options.allow_anonymous:
                self._error("Bad CONNECT", "Missing login or passcode header(s)")
                return
            username, passcode = options.default_user, frame.get("passcode", options.default_pass) or ""
        else:
            username, passcode = login, frame.get("passcode", options.default_pass) or ""
        vhost_name = frame.get("host", "/") or ""
        model = self.host.model
        if not model.authenticate(username, passcode):
            self._error("Bad CONNECT", f"Access refused for user '{username}'\n")
            return
        if vhost_name not in model.vhosts or not model.can_access(username, vhost_name):
            self._error("Bad CONNECT", f"Virtual host '{vhost_name}' access denied")
            return
        try:
            send_ms, recv_ms = self._negotiate_heartbeat(frame.get("heart-beat", "0,0") or "")
        except ProcessingError:
            self._error("Processing error", "Processing error")
            return
        self.version = version
        self.user = username
        self.vhost = model.vhosts[vhost_name]
        self.session_id = _guid("session")
        self.client_id = frame.get("client-id") or self.session_id
        self.channel = Channel(self.vhost, self, self.client_id)
        self.channel.flow = lambda: not self.output_full  # a client that stops reading holds its deliveries
        self.channel.on_cancel = self._on_consumer_cancelled
        self.heart_beat = (send_ms, recv_ms)
        self._established = True
        headers = [("session", self.session_id), ("heart-beat", f"{send_ms},{recv_ms}"), ("version", version)]
        if not self.settings.hide_server_info:
            headers.insert(0, ("server", f"RabbitMQ/{self.settings.server_version}"))
        self._write("CONNECTED", headers)
        if self.info.transport != "http":  # SockJS: negotiated, never run (RabbitMQ's SockJS endpoint)
            self._start_heartbeats(send_ms // 1000, recv_ms // 1000)

    @staticmethod
    def _negotiate_heartbeat(value: str) -> tuple[int, int]:
        """RabbitMQ's ``ensure_heartbeats``: the client's ``cx,cy`` swapped, each made whole seconds (rounded
        down, but at least 1 s when not 0)."""
        parts = value.split(",")
        if len(parts) != 2:
            raise ProcessingError(f"bad heart-beat header {value!r}")
        cx, cy = (_integer_exact(p) for p in parts)

        def seconds(ms: int) -> int:
            return 0 if ms <= 0 else 1 if ms < 1000 else ms // 1000

        return seconds(cy) * 1000, seconds(cx) * 1000

    # -- heart-beats ------------------------------------------------------------------------------
    def _start_heartbeats(self, send_s: int, recv_s: int) -> None:
        if send_s:
            self._send_timer = self.clock.call_later(send_s / 2, self._send_tick, send_s / 2)
        if recv_s:
            self._recv_timer = self.clock.call_later(recv_s, self._recv_tick, float(recv_s))

    def _send_tick(self, interval: float) -> None:
        """Every half send interval: a newline unless something else was written since the last check."""
        if self.close_requested:
            return
        last, first = self._send_state
        if first or self._sent == last:
            # Over WebSocket RabbitMQ reads the byte count before the beat is written, so the beat itself
            # counts as traffic at the next check: beats go out every full interval, not every half.
            before = self._sent
            self._sent += 1
            self.send(b"\n")
            self._send_state = (before if self.websocket else self._sent, False)
        else:
            self._send_state = (self._sent, False)
        self._send_timer = self.clock.call_later(interval, self._send_tick, interval)

    def _recv_tick(self, interval: float) -> None:
        """Every receive interval; the connection dies when two checks in a row saw no bytes (so between two
        and three intervals after the client went quiet)."""
        if self.close_requested:
            return
        last, same = self._recv_state
        if self._received != last:
            self._recv_state = (self._received, 0)
        elif same < 1:
            self._recv_state = (last, same + 1)
        else:
            self._recv_timer = None
            self.close_reason = "missed heart-beats from the client"
            self._close_connection()
            self.request_close()
            return
        self._recv_timer = self.clock.call_later(interval, self._recv_tick, interval)

    def _cancel_heartbeats(self) -> None:
        for timer in (self._send_timer, self._recv_timer):
            if timer is not None:
                timer.cancel()
        self._send_timer = self._recv_timer = None

    # -- SEND -------------------------------------------------------------------------------------
    def _send_frame(self, frame: Frame) -> bool:
        if "message-id" in frame:
            self._error("Invalid header", "'message-id' is not allowed on 'SEND'.\n")
            return False
        endpoint = self._destination("SEND", frame)
        if endpoint is None:
            return False
        if endpoint.kind == "queue":
            self._ensure_queue(endpoint.name, frame)
        elif endpoint.kind == "temp_queue":
            raise DestinationError("Invalid destination",
                                   f"'{frame.get('destination')}' is not a valid destination for 'SEND'\n")
        frame = self._ensure_reply_to(frame)
        properties = self._message_properties(frame)
        exchange, routing_key = endpoint.routing(self.settings.default_topic_exchange)
        receipt = frame.get("receipt")
        transaction = frame.get("transaction")

        def publish() -> None:
            self._publish(exchange, routing_key, frame.body, properties)
            if receipt is not None:
                self._pending_receipts.append(receipt)

        if transaction is not None:
            return self._extend_transaction(transaction, publish)
        publish()
        return True

    def _publish(self, exchange: str, routing_key: str, body: bytes, properties: dict[str, Any]) -> None:
        assert self.vhost is not None
        user_id = properties.get("user_id")
        if user_id is not None and user_id != self.user:
            raise PreconditionFailed(f"user_id property set to '{user_id}' but authenticated user was '{self.user}'")
        self.host.model.publish(exchange, routing_key, body, properties, vhost=self.vhost.name, protocol="stomp",
                                client_id=self.client_id)

    def _message_properties(self, frame: Frame) -> dict[str, Any]:
        """``rabbit_stomp_util:message_properties``: the mapped headers become properties, the others go into
        the headers table (in reverse order, as RabbitMQ's parser accumulates them)."""
        props: dict[str, Any] = {}
        table: dict[str, Any] = {}
        for name, value in reversed(frame.headers):
            prop = _PROPERTY_OF.get(name)
            if prop is None:
                if name != "destination":
                    table[name] = value
            elif prop == "delivery_mode":
                if _boolean(value):
                    props[prop] = 2
            elif prop == "priority" or prop == "timestamp":
                props[prop] = _integer(value)
            else:
                props[prop] = value
        # In the order of PROPERTY_HEADERS, as the AMQP properties are laid out.
        out = {prop: props[prop] for _, prop in PROPERTY_HEADERS if prop in props} if props else {}
        out["headers"] = table
        return out

    def _ensure_reply_to(self, frame: Frame) -> Frame:
        reply_to = frame.get("reply-to")
        if reply_to is None:
            return frame
        try:
            endpoint = parse_endpoint(reply_to)
        except DestinationError as exc:
            # RabbitMQ matches {ok, _} here and crashes on anything else.
            raise ProcessingError(str(exc)) from exc
        if endpoint.kind != "temp_queue":
            return frame
        queue = self._reply_queues.get(endpoint.name)
        if queue is None:
            assert self.vhost is not None and self.channel is not None
            queue = self.vhost.declare_queue("", auto_delete=True, exclusive=True, owner=self).name
            tag = "T_" + TEMP_QUEUE_ID_PREFIX + endpoint.name
            self.subscriptions[tag] = Subscription(tag, queue, "auto", False, queue, queue)
            self.channel.consume(queue, self._deliver, no_ack=True, prefetch=self._prefetch, tag=tag)
            self._reply_queues[endpoint.name] = queue
        return Frame(frame.command, [(k, queue if k == "reply-to" else v) for k, v in frame.headers], frame.body)

    # -- destinations -----------------------------------------------------------------------------
    def _destination(self, command: str, frame: Frame) -> Endpoint | None:
        destination = frame.get("destination")
        if destination is None:
            self._error("Missing destination", f"{_erl_p(command)} must include a 'destination' header\n")
            return None
        endpoint = self._endpoints.get(destination)
        if endpoint is None:
            endpoint = parse_endpoint(destination)
            if len(self._endpoints) < 1024:  # a connection sends to a few destinations, over and over
                self._endpoints[destination] = endpoint
        if endpoint.kind == "queue" and endpoint.name == "":
            self._error("Invalid destination", "Destination cannot be blank")
            return None
        return endpoint

    @staticmethod
    def _queue_params(endpoint: Endpoint, frame: Frame) -> dict[str, bool]:
        """``build_params`` then ``queue_declare_method``: durable, exclusive and auto_delete of the queue a
        destination declares, from the endpoint's defaults and the frame's headers."""
        params: dict[str, bool | None] = {}
        for name, text in frame.headers:
            if name in PARAM_HEADERS:
                params.setdefault(PARAM_HEADERS[name], _boolean(text))
        if endpoint.kind == "queue":
            defaults: dict[str, bool] = {"durable": True}
        else:
            defaults = {"exclusive": False, "auto_delete": True}
        for key, default in defaults.items():
            params.setdefault(key, default)
        if "durable" in params and params["durable"] is None:
            raise ProcessingError("durable or persistent header that is not a boolean")
        durable = params.get("durable") is True
        flags = {"durable": durable, "exclusive": not durable, "auto_delete": not durable}
        for key in ("exclusive", "auto_delete"):
            if params.get(key) is not None:
                flags[key] = bool(params[key])
        return flags

    @staticmethod
    def _queue_arguments(frame: Frame) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for name, value in frame.headers:
            if name in ARGUMENT_HEADERS:
                arguments[name] = _integer(value) if ARGUMENT_HEADERS[name] else value.strip(" ")
        return arguments

    def _declare(self, name: str, endpoint: Endpoint, frame: Frame) -> str:
        assert self.vhost is not None
        flags = self._queue_params(endpoint, frame)
        arguments = self._queue_arguments(frame)
        return self.vhost.declare_queue(name, durable=flags["durable"], exclusive=flags["exclusive"],
                                        auto_delete=flags["auto_delete"], arguments=arguments, owner=self).name

    def _ensure_queue(self, name: str, frame: Frame) -> None:
        """``/queue/<name>``: declared once per connection (RabbitMQ remembers what it declared)."""
        if name in self._declared:
            return
        self._declare(name, Endpoint("queue", name), frame)
        self._declared.add(name)

    # -- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------------------------
    def _subscribe(self, frame: Frame) -> bool:
        assert self.channel is not None and self.vhost is not None
        endpoint = self._destination("SUBSCRIBE", frame)
        if endpoint is None:
            return False
        prefetch_header = frame.get("prefetch-count")
        prefetch = None if prefetch_header is None else _integer(prefetch_header)
        ack = frame.get("ack", "auto")
        if ack not in ("auto", "client", "client-individual"):
            raise ProcessingError(f"unknown ack mode {ack!r}")
        kind = endpoint.kind
        if kind in ("exchange", "topic"):
            name = frame.get("x-queue-name")
            if name is None:
                if _boolean(frame.get("durable")) or _boolean(frame.get("persistent")):
                    durable_id = frame.get("id")
                    if durable_id is None:
                        raise ProcessingError("a durable subscription without id")
                    name = subscription_queue_name(endpoint.key, durable_id)
                else:
                    name = subscription_queue_name(endpoint.key, base64.b64encode(os.urandom(16)).decode())
            queue = self._declare(name, endpoint, frame)
        elif kind == "queue":
            self._ensure_queue(endpoint.name, frame)
            queue = endpoint.name
        elif kind in ("amqqueue", "reply_queue"):
            queue = endpoint.name
        else:
            raise DestinationError("Invalid destination",
                                   f"'{frame.get('destination')}' is not a valid destination for 'SUBSCRIBE'\n")
        sub_id = frame.get("id")
        if sub_id is not None:
            if sub_id.startswith(TEMP_QUEUE_ID_PREFIX):
                raise ProcessingError("subscription id with the temp-queue prefix")
            tag, description = "T_" + sub_id, f"id='{sub_id}'"
        else:
            destination = frame.get("destination") or ""
            tag, description = "Q_" + destination, f"destination='{destination}'"
        if prefetch is not None:
            self._prefetch = prefetch
        if tag in self.subscriptions:
            detail = f"A subscription identified by '{tag}' already exists."
            self._error("Duplicated subscription identifier", detail)
            raise _Stop("duplicated subscription identifier")
        exchange, key = endpoint.routing(self.settings.default_topic_exchange)
        # Recorded before the consume: the queue may hand over its messages at once.
        self.subscriptions[tag] = Subscription(tag, frame.get("destination") or "", "auto" if ack == "auto" else
                                               "client", ack == "client", description, queue)
        try:
            self.channel.consume(queue, self._deliver, no_ack=ack == "auto", prefetch=self._prefetch, tag=tag)
        except ChannelError:
            del self.subscriptions[tag]
            raise
        if exchange != "":
            try:
                self.vhost.bind(queue, exchange, key, owner=self)
            except ChannelError:
                # RabbitMQ deletes the server-named queue it just declared for this subscription.
                del self.subscriptions[tag]
                self.channel.cancel(tag)
                if kind in ("exchange", "topic"):
                    self.vhost.delete_queue(queue)
                raise
        return True

    def _unsubscribe(self, frame: Frame) -> bool:
        assert self.channel is not None and self.vhost is not None
        sub_id = frame.get("id")
        if sub_id is not None:
            if sub_id.startswith(TEMP_QUEUE_ID_PREFIX):
                self._error("Invalid id", f"UNSUBSCRIBE 'id' may not start with {TEMP_QUEUE_ID_PREFIX}\n")
                return False
            tag, description = "T_" + sub_id, f"id='{sub_id}'"
        else:
            destination = frame.get("destination")
            if destination is None:
                self._error("Missing destination or id", "UNSUBSCRIBE must include a 'destination' or 'id' header")
                return False
            tag, description = "Q_" + destination, f"destination='{destination}'"
        subscription = self.subscriptions.get(tag)
        if subscription is None:
            self._error("No subscription found", "UNSUBSCRIBE must refer to an existing subscription.\n"
                        f"Subscription to {_erl_p(description)} not found.\n")
            return False
        self.channel.cancel(tag)
        del self.subscriptions[tag]
        endpoint = parse_endpoint(subscription.destination)
        durable = _boolean(frame.get("durable")) or _boolean(frame.get("persistent"))
        if endpoint.kind == "topic" and durable:
            name = frame.get("x-queue-name") or subscription_queue_name(endpoint.name, frame.get("id") or "")
            self.vhost.delete_queue(name, owner=self)
        return True

    # -- deliveries -------------------------------------------------------------------------------
    def _deliver(self, d: Delivery) -> None:
        tag = d.consumer_tag or ""
        subscription = self.subscriptions.get(tag)
        if subscription is None:
            # A consumer whose SUBSCRIBE failed after the consume (the bind): RabbitMQ reports it.
            self._error("Subscription not found", f"There is no current subscription with tag '{tag}'.")
            return
        message_id = f"{tag}@@{self.session_id}@@{d.delivery_tag}"
        headers: list[tuple[str, str]] = []
        if tag.startswith("T_"):
            headers.append(("subscription", tag[2:]))
        headers += [
            ("destination", format_destination(d.exchange, d.routing_key)),
            ("message-id", message_id),
            ("redelivered", "true" if d.redelivered else "false"),
        ]
        if subscription.ack_mode == "client" and self.version == "1.2":
            headers.append(("ack", message_id))
        headers += message_headers(d.properties)
        self._write("MESSAGE", headers, d.body)

    def _on_consumer_cancelled(self, tag: str) -> None:
        """The queue under a subscription was deleted: RabbitMQ tells the client and keeps the connection."""
        subscription = self.subscriptions.pop(tag, None)
        if subscription is None or self.closed:
            return
        sub_id = tag[2:] if tag.startswith(("T_", "Q_")) else f"Unknown[{tag}]"
        self._error("Server cancelled subscription",
                    "The server has canceled a subscription.\n"
                    f"No more messages will be delivered for {_erl_p(subscription.description)}.\n",
                    [("subscription", sub_id)])

    # -- ACK / NACK -------------------------------------------------------------------------------
    def _ack_frame(self, frame: Frame) -> bool:
        return self._ack_action("ACK", frame)

    def _nack_frame(self, frame: Frame) -> bool:
        return self._ack_action("NACK", frame)

    def _ack_action(self, command: str, frame: Frame) -> bool:
        assert self.channel is not None
        header = "id" if self.version == "1.2" else "message-id"
        value = frame.get(header)
        if value is None:
            self._error("Missing header", f"{_erl_p(command)} must include the {_erl_p(header)} header\n")
            return False
        parts = value.split("@@") if value else []
        if len(parts) != 3:
            self._error("Invalid header", f"{_erl_p(command)} must include a valid {_erl_p(header)} header\n")
            return False
        tag, _, delivery = parts
        delivery_tag = _integer_exact(delivery)
        subscription = self.subscriptions.get(tag)
        if subscription is None:
            self._error("Subscription not found", f"Message with id {_erl_p(value)} has no subscription")
            return False
        channel = self.channel
        multiple = subscription.multiple
        if command == "ACK":
            def settle() -> None:
                channel.ack(delivery_tag, multiple)
        else:
            requeue = _boolean(frame.get("requeue"))
            requeue = self.settings.default_nack_requeue if requeue is None else requeue

            def settle() -> None:
                channel.nack(delivery_tag, multiple, requeue)

        transaction = frame.get("transaction")
        if transaction is not None:
            return self._extend_transaction(transaction, settle)
        try:
            settle()
        except ChannelError as exc:
            # basic.ack is asynchronous in RabbitMQ: the frame's receipt goes out before the channel error.
            receipt = frame.get("receipt")
            if receipt is not None:
                self._receipt(receipt)
            raise exc
        return True

    # -- transactions -----------------------------------------------------------------------------
    def _transaction_id(self, command: str, frame: Frame) -> str | None:
        transaction = frame.get("transaction")
        if transaction is None:
            self._error("Missing transaction", f"{_erl_p(command)} must include a 'transaction' header\n")
        return transaction

    def _bad_transaction(self, transaction: str) -> None:
        self._error("Bad transaction", f"Invalid transaction identifier: {_erl_p(transaction)}\n")

    def _extend_transaction(self, transaction: str, action: Callable[[], None]) -> bool:
        actions = self._transactions.get(transaction)
        if actions is None:
            self._bad_transaction(transaction)
            return False
        actions.append(action)
        return True

    def _begin(self, frame: Frame) -> bool:
        transaction = self._transaction_id("BEGIN", frame)
        if transaction is None:
            return False
        self._transactions[transaction] = []
        return True

    def _commit(self, frame: Frame) -> bool:
        transaction = self._transaction_id("COMMIT", frame)
        if transaction is None:
            return False
        actions = self._transactions.get(transaction)
        if actions is None:
            self._bad_transaction(transaction)
            return False
        for action in actions:
            action()
        del self._transactions[transaction]
        # The COMMIT's receipt goes first; the SENDs' receipts wait for their confirms.
        receipts, self._pending_receipts = self._pending_receipts, []
        receipt = frame.get("receipt")
        if receipt is not None:
            self._receipt(receipt)
        self._pending_receipts = receipts
        return True

    def _abort(self, frame: Frame) -> bool:
        transaction = self._transaction_id("ABORT", frame)
        if transaction is None:
            return False
        if transaction not in self._transactions:
            self._bad_transaction(transaction)
            return False
        del self._transactions[transaction]
        return True

    def _disconnect(self, frame: Frame) -> bool:
        self._close_connection()
        return True

    _handlers: dict[str, Callable[[StompSession, Frame], bool]] = {
        "SEND": _send_frame,
        "SUBSCRIBE": _subscribe,
        "UNSUBSCRIBE": _unsubscribe,
        "ACK": _ack_frame,
        "NACK": _nack_frame,
        "BEGIN": _begin,
        "COMMIT": _commit,
        "ABORT": _abort,
        "DISCONNECT": _disconnect,
    }

    # -- end of the connection --------------------------------------------------------------------
    def _close_connection(self) -> None:
        """RabbitMQ's ``close_connection``: the AMQP connection goes, with its consumers (auto-delete
        subscription queues go with them), unacknowledged messages (requeued) and exclusive queues."""
        self._cancel_heartbeats()
        channel, self.channel = self.channel, None
        if channel is None:
            return
        channel.close()
        if self.vhost is not None:
            self.vhost.connection_closed(self)
        self._transactions.clear()

    def _on_connection_lost(self) -> None:
        self._close_connection()

    def output_drained(self) -> None:
        if self.channel is not None and not self.channel.closed:
            self.channel.wake_consumers()

    @staticmethod
    def _sub_key(s: Subscription) -> str:
        return s.tag[2:] if s.tag.startswith("T_") else s.tag

    def describe(self) -> dict[str, Any]:
        return {
            "vhost": self.vhost.name if self.vhost else None,
            "version": self.version,
            "protocol_version": f"STOMP {self.version}" if self.version else None,
            "session": self.session_id,
            "heart_beat": self.heart_beat,
            # id (or destination, for a STOMP 1.0 SUBSCRIBE without id) -> destination
            "subscriptions": {self._sub_key(s): s.destination for s in self.subscriptions.values()},
            "subscription_details": {
                self._sub_key(s): {"destination": s.destination, "queue": s.queue,
                                   "ack": s.ack_mode if s.ack_mode == "auto" else
                                   "client" if s.multiple else "client-individual"}
                for s in self.subscriptions.values()
            },
            "transactions": sorted(self._transactions),
        }


def _integer_exact(text: str) -> int:
    """``list_to_integer`` without the strip: any space is an error."""
    if text != text.strip(" "):
        raise ProcessingError(f"not an integer: {text!r}")
    return _integer(text)


_PROPERTIES_OUT = tuple(reversed(PROPERTY_HEADERS))


def _reply_to(value: str) -> str:
    """``headers_post_process``: a reply-to that is not a destination names a queue to reply to."""
    return value if value.startswith(DEST_PREFIXES) else "/reply-queue/" + value


def message_headers(properties: dict[str, Any]) -> list[tuple[str, str]]:
    """The MESSAGE headers for a message's AMQP properties, in RabbitMQ's order: the string and integer entries
    of the headers table, then the properties from app-id back to content-type."""
    out: list[tuple[str, str]] = []
    table = properties.get("headers")
    if table:
        for key, value in table.items():
            if isinstance(value, str):
                out.append((key, _reply_to(value) if key == "reply-to" else value))
            elif isinstance(value, bool) or key in _NON_STRING_HEADERS:
                continue
            elif isinstance(value, int):
                out.append((key, str(value)))
            elif isinstance(value, bytes):
                out.append((key, value.decode("utf-8", "surrogateescape")))
    if len(properties) > 1 or table is None:
        for header, prop in _PROPERTIES_OUT:
            value = properties.get(prop)
            if value is None:
                continue
            if prop == "delivery_mode":
                out.append((header, "true" if value == 2 else str(value)))
            elif prop == "reply_to":
                out.append((header, _reply_to(str(value))))
            else:
                out.append((header, str(value)))
    return out
