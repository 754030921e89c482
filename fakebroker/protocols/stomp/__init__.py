"""STOMP 1.0/1.1/1.2 over TCP and WebSocket, as RabbitMQ's rabbitmq_stomp and rabbitmq_web_stomp plugins serve it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..base import ConnectionInfo, Criterion, ListenerSpec, ProtocolSpec, Session, SessionHost
from .settings import StompSettings

if TYPE_CHECKING:
    from ...model import LoggedMessage

#: Web STOMP's subprotocols, best first: RabbitMQ picks the highest version the client offers.
SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")


def _stomp(info: ConnectionInfo, host: SessionHost) -> Session:
    from .session import StompSession

    return StompSession(info, host)


def _raw_web_stomp(info: ConnectionInfo, host: SessionHost) -> Session:
    from ..websocket import WebSocketSession

    settings = host.options.protocol_settings("stomp", StompSettings)
    # No subprotocol (or an unknown one) is accepted without a protocol header, as web_stomp does. When the
    # STOMP side ends the connection, Web STOMP closes with 1000 "STOMP died".
    return WebSocketSession(info, lambda inner: _stomp(inner, host), path="/ws", subprotocols=SUBPROTOCOLS,
                            require_subprotocol=False, frame_type="binary" if settings.ws_frame == "binary" else "text",
                            close_reason_on_inner_close="STOMP died", compress=True)


def _web_stomp(info: ConnectionInfo, host: SessionHost) -> Session:
    from .sockjs import WebStompFront

    # /ws is raw Web STOMP; /stomp/... is SockJS (info, websocket, xhr and xhr_streaming with xhr_send).
    return WebStompFront(info, host, lambda front_info: _raw_web_stomp(front_info, host))


def _destination_matches(m: LoggedMessage, wanted: Any) -> bool:
    from ...model.topic import topic_matches
    from .destinations import parse_endpoint

    endpoint = parse_endpoint(str(wanted))
    if endpoint.kind == "topic":
        return m.exchange == "amq.topic" and topic_matches(endpoint.name, m.routing_key)
    if endpoint.kind == "exchange":
        if m.exchange != endpoint.name:
            return False
        return endpoint.pattern is None or m.routing_key == endpoint.pattern or topic_matches(endpoint.pattern,
                                                                                             m.routing_key)
    return m.exchange == "" and m.routing_key == endpoint.name


def _destination_of(m: LoggedMessage) -> str:
    from .destinations import format_destination

    return format_destination(m.exchange, m.routing_key)


PROTOCOL = ProtocolSpec(
    name="stomp",
    listeners=(
        ListenerSpec("stomp", "stomp", _stomp, 61613, "stomp", "STOMP 1.0/1.1/1.2"),
        ListenerSpec("web_stomp", "stomp", _web_stomp, 15674, "web_stomp_url", "STOMP over WebSocket (Web STOMP)",
                     url="ws://{host}:{port}/ws", websocket_path="/ws", subprotocols=SUBPROTOCOLS,
                     more_urls={"sockjs_url": "http://{host}:{port}/stomp"}),
    ),
    settings=StompSettings,
    criteria={
        "destination": Criterion(
            "a STOMP destination (/topic/<pattern>, /exchange/<name>[/<pattern>], /queue/<name>, /amq/queue/<name>) "
            "matched against where the message was published",
            _destination_matches, _destination_of),
    },
)

__all__ = ["PROTOCOL", "StompSettings"]
