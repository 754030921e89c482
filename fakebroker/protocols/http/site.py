"""The management listener: RabbitMQ's management API under ``/api``, fakebroker's control plane under
``/api/fakebroker``, and the live page at ``/``."""

from __future__ import annotations

from ..base import SessionHost
from .management import ManagementApi
from .server import HttpSession, Pending, Request, Response


class ManagementSite:
    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.api = ManagementApi(host)

    def handle(self, request: Request, session: HttpSession) -> Response | Pending:
        return self.api.handle(request, session)
