"""The management listener: RabbitMQ's management API under ``/api``, fakebroker's control plane under
``/api/fakebroker``, and the live page at ``/``."""

from __future__ import annotations

from collections.abc import Callable

from ..base import SessionHost
from .management import ManagementApi
from .server import HttpSession, Pending, Request, Response


class ManagementSite:
    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.api = ManagementApi(host)
        self._control: object | None = None

    def handle(self, request: Request, session: HttpSession) -> Response | Pending:
        path = request.path
        if path in ("/", "/index.html"):
            if request.method not in ("GET", "HEAD"):
                return Response(405, headers=[("Allow", "HEAD, GET, OPTIONS")])
            from .page import PAGE

            return Response(200, PAGE.encode(), [("Content-Type", "text/html; charset=utf-8"),
                                                 ("Cache-Control", "no-cache")])
        if path.startswith("/api/fakebroker/"):
            from .control import ControlPlane

            if not isinstance(self._control, ControlPlane):
                self._control = ControlPlane(self.host, self.api)
            return self._control.handle(request, session, self._authenticated(session))
        return self.api.handle(request, session)

    def _authenticated(self, session: HttpSession) -> Callable[[Request], str | Response]:
        def authenticate(request: Request) -> str | Response:
            user = self.api.authenticate(request)
            if isinstance(user, str):
                session.user = user
            return user

        return authenticate
