"""The STOMP plugin's settings (RabbitMQ's ``stomp.*`` keys); each field is the broker option ``stomp_<field>``."""

from __future__ import annotations

from dataclasses import dataclass

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")


@dataclass(frozen=True)
class StompSettings:
    #: The exchange ``/topic/...`` destinations use (``stomp.default_topic_exchange``).
    default_topic_exchange: str = "amq.topic"
    #: What ``NACK`` without a ``requeue`` header does (``stomp.default_nack_requeue``).
    default_nack_requeue: bool = True
    #: A newline after every frame's NUL (``stomp.trailing_lf``).
    trailing_lf: bool = True
    #: Leave the ``server`` header out of CONNECTED (``stomp.hide_server_info``).
    hide_server_info: bool = False
    #: The version in CONNECTED's ``server`` header.
    server_version: str = "3.10.8"
    #: Frame limits. RabbitMQ 3.10 has none; 3.13+ closes at 4 MiB frames, 100 headers, 100 KiB per header line.
    max_frame_size: int | None = None
    max_headers: int | None = None
    max_header_length: int | None = None
    max_body_size: int | None = None
    #: Web STOMP: the WebSocket frame type the server sends (``web_stomp.ws_frame``: "text" or "binary").
    ws_frame: str = "text"

    def validate(self) -> None:
        if self.ws_frame not in ("text", "binary"):
            raise ValueError("stomp_ws_frame must be 'text' or 'binary'")
        for name in ("max_frame_size", "max_headers", "max_header_length", "max_body_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"stomp_{name} must be positive (or None for no limit)")
