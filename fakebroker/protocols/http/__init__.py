"""HTTP: statelessd publishing (listener ``http``) and RabbitMQ's management API, the control plane and the live
page (listener ``management``), on one sans-I/O HTTP/1.1 server built on h11."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..base import ListenerSpec, ProtocolSpec

if TYPE_CHECKING:
    from ..base import ConnectionInfo, Session, SessionHost


@dataclass
class HttpSettings:
    """Options ``http_max_body`` and ``http_max_header``: the largest request body (413 past it; RabbitMQ's
    management listener default) and the largest request line plus headers (431 or 400 past it)."""

    max_body: int = 20_000_000
    max_header: int = 16 * 1024

    def validate(self) -> None:
        if self.max_body < 0 or self.max_header < 64:
            raise ValueError("http_max_body must be >= 0 and http_max_header >= 64")


def _limits(host: SessionHost) -> dict[str, int]:
    settings = host.options.protocol_settings("http", HttpSettings)
    return {"max_body": settings.max_body, "max_header": settings.max_header}


def statelessd_session(info: ConnectionInfo, host: SessionHost) -> Session:
    from .server import HttpSession
    from .statelessd import Statelessd

    return HttpSession(info, host, Statelessd(host), server="TornadoServer/2.4.1 (fakebroker)", **_limits(host))


def management_session(info: ConnectionInfo, host: SessionHost) -> Session:
    from .server import HttpSession
    from .site import ManagementSite

    return HttpSession(info, host, ManagementSite(host), server="Cowboy (fakebroker)", **_limits(host))


PROTOCOL = ProtocolSpec(
    name="http",
    listeners=(
        ListenerSpec(name="http", protocol="http", session=statelessd_session, default_port=8900,
                     attribute="http_url", description="statelessd publishing over HTTP",
                     url="http://{host}:{port}"),
        ListenerSpec(name="management", protocol="http", session=management_session, default_port=15672,
                     attribute="management_url",
                     description="RabbitMQ management API, fakebroker control plane and live page",
                     url="http://{host}:{port}", operator=True),
    ),
    settings=HttpSettings,
)

__all__ = ["PROTOCOL", "HttpSettings"]
