"""The control plane under ``/api/fakebroker/``: what the Python fixture can do, over HTTP, for test suites in
any language that run ``fakebroker serve`` beside them.

It sits above the protocols: it drives the node through the same async face (:class:`AsyncBroker`) that
``fakebroker.serve()`` gives Python, on the node's own event loop. Requests that take time (a long-poll wait,
advancing the clock, a restart) answer when the work is done; the connection reads no other request meanwhile.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import anyio

from ...clock import VirtualClock
from ..base import SessionHost
from .management import NOT_FOUND, ApiError, Call, ManagementApi, bad_request
from .router import Router, parse_form
from .server import HttpSession, Pending, Request, Response

if TYPE_CHECKING:
    from ...facade.aio import AsyncBroker
    from ...model import LoggedMessage

Handler = Callable[["Call"], "Response | Pending"]
#: Criteria given as query parameters that are not strings.
BOOLEAN_CRITERIA = ("routed",)


def message_json(m: LoggedMessage) -> dict[str, Any]:
    """One message-log entry as JSON (the payload as text when it is UTF-8, else base64)."""
    from .management import _jsonable

    try:
        payload, encoding = m.body.decode("utf-8"), "string"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(m.body).decode(), "base64"
    return {
        "seq": m.seq, "time": m.time, "protocol": m.protocol, "client_id": m.client_id, "vhost": m.vhost,
        "exchange": m.exchange, "routing_key": m.routing_key, "topic": m.topic, "payload": payload,
        "payload_encoding": encoding, "properties": _jsonable(m.properties), "queues": list(m.queues),
        "routed": m.routed, "deliveries": [{"queue": q, "client_id": c} for q, c in m.deliveries],
        "fault": m.fault, "pending": m.pending,
    }


class ControlPlane:
    """The ``/api/fakebroker`` tree; it shares the management API's authentication."""

    def __init__(self, host: SessionHost, api: ManagementApi) -> None:
        self.host = host
        self.api = api
        self.router: Router[Handler] = Router()
        r = self.router.add
        r("GET", "/api/fakebroker/messages", self.messages)
        r("POST", "/api/fakebroker/messages/wait", self.wait)
        r("GET", "/api/fakebroker/clients", self.clients)
        r("POST", "/api/fakebroker/clients/wait", self.wait_client)
        r("POST", "/api/fakebroker/clients/wait-disconnect", self.wait_disconnect)
        r("GET", "/api/fakebroker/report", self.report)
        r("POST", "/api/fakebroker/clients/{client_id}/disconnect", self.disconnect)
        r("POST", "/api/fakebroker/clients/{client_id}/stall", self.stall)
        r("POST", "/api/fakebroker/clients/{client_id}/resume", self.resume)
        r("GET", "/api/fakebroker/clock", self.clock)
        r("POST", "/api/fakebroker/clock/advance", self.advance)
        r("POST", "/api/fakebroker/refuse-connections", self.refuse)
        r("DELETE", "/api/fakebroker/refuse-connections", self.accept)
        r("POST", "/api/fakebroker/restart", self.restart)
        r("POST", "/api/fakebroker/faults/drop", self.drop)
        r("POST", "/api/fakebroker/faults/delay", self.delay)
        r("POST", "/api/fakebroker/reset", self.reset)
        r("GET", "/api/fakebroker/snapshot", self.snapshot)

    # -- plumbing ------------------------------------------------------------------------------------------
    @property
    def broker(self) -> AsyncBroker:
        """The node's operator handle (the node keeps it)."""
        try:
            return cast("AsyncBroker", self.host.operator())
        except RuntimeError as exc:
            raise ApiError(501, "not_implemented", str(exc)) from None

    def handle(self, request: Request, session: HttpSession, authenticate: Callable[[Request], str | Response],
               ) -> Response | Pending:
        found = self.router.resolve(request.method, request.path)
        if found is None:
            return _error(NOT_FOUND)
        if isinstance(found, list):
            return Response(405, headers=[("Allow", ", ".join(found))])
        user = authenticate(request)
        if isinstance(user, Response):
            return user
        handler, params = found
        try:
            return handler(Call(self.api, request, params, user, session))
        except ApiError as exc:
            return _error(exc)
        except KeyError as exc:  # a field the request needs
            return _error(bad_request(f"missing field {exc.args[0]!r}"))
        except (TypeError, ValueError) as exc:  # a criterion or value the broker refuses
            return _error(bad_request(str(exc)))
        except LookupError as exc:  # no such client
            return _not_found(exc)

    def _later(self, work: Callable[[], Awaitable[Response]]) -> Pending:
        """Run ``work`` on the node's loop; the response is what it returns (or the error it raises)."""
        scope = anyio.CancelScope()
        pending = Pending(on_cancel=scope.cancel)

        async def run() -> None:
            from ...observe.matching import MessageTimeout

            with scope:
                try:
                    response = await work()
                except ApiError as exc:
                    response = _error(exc)
                except LookupError as exc:  # no such client
                    response = _not_found(exc)
                except MessageTimeout as exc:  # a long poll that ran out of time
                    response = Response.json(408, {"error": "timeout", "reason": str(exc)})
                except Exception as exc:  # reported to the client that asked, never to the broker
                    response = _error(ApiError(500, "internal_error", repr(exc)))
                pending.resolve(response)

        self.host.spawn(run)
        return pending

    @staticmethod
    def _criteria(call: Call, source: dict[str, Any]) -> dict[str, Any]:
        from ...observe.matching import CRITERIA

        criteria: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for key, value in source.items():
            if key.startswith("header."):
                headers[key[len("header."):]] = value
            elif key in CRITERIA:
                if key in BOOLEAN_CRITERIA and isinstance(value, str):
                    if value not in ("true", "false"):
                        raise bad_request(f"{key} must be true or false")
                    value = value == "true"
                criteria[key] = value
        if headers:
            criteria["headers"] = {**criteria.get("headers", {}), **headers}
        return criteria

    def _strict_criteria(self, call: Call, body: dict[str, Any]) -> dict[str, Any]:
        """The criteria of a JSON body in which every other key is an error."""
        criteria = self._criteria(call, body)
        unknown = sorted(set(body) - set(criteria) - {k for k in body if k.startswith("header.")})
        if unknown:
            raise bad_request(f"unknown criteria: {', '.join(unknown)}")
        return criteria

    # -- the message log -----------------------------------------------------------------------------------
    def messages(self, call: Call) -> Response:
        from ...observe.matching import matches

        query = dict(parse_form(call.request.query))
        criteria = self._criteria(call, query)
        since = _int(query.get("since", "0"), "since")
        limit = _int(query["limit"], "limit") if "limit" in query else None
        found = [m for m in self.host.model.log if m.seq > since and matches(m, criteria)]
        if limit is not None:
            found = found[-limit:] if limit else []
        return Response.json(200, [message_json(m) for m in found])

    def wait(self, call: Call) -> Pending:
        body = call.body()
        count = _int(body.pop("count", 1), "count")
        if count < 1:
            raise bad_request("count must be at least 1")
        timeout = _timeout(body.pop("timeout", 5.0))
        criteria = self._strict_criteria(call, body)

        async def work() -> Response:
            found = await self.broker.wait_for_messages(count, timeout, **criteria)
            return Response.json(200, [message_json(m) for m in found])

        return self._later(work)

    # -- clients and faults --------------------------------------------------------------------------------
    def clients(self, call: Call) -> Response:
        from .management import _jsonable

        out = []
        for c in self.broker.clients:
            entry = {"id": c.id, "protocol": c.protocol, "client_id": c.client_id, "user": c.user,
                     "vhost": c.vhost, "peer": list(c.peer), "listener": c.listener, "connected_at": c.connected_at,
                     "stalled": c.stalled, "subscriptions": c.subscriptions, "details": _jsonable(c.details)}
            out.append(entry)
        return Response.json(200, out)

    def wait_client(self, call: Call) -> Pending:
        """Long poll until ``client_id`` is connected (and subscribed to ``subscribed``, when given)."""
        body = call.body()
        client_id, subscribed, timeout = self._client_wait_args(body)

        async def work() -> Response:
            found = await self.broker.wait_for_client(client_id, subscribed=subscribed, timeout=timeout)
            return Response.json(200, {"id": found.id, "client_id": found.client_id, "protocol": found.protocol,
                                       "subscriptions": found.subscriptions})

        return self._later(work)

    def wait_disconnect(self, call: Call) -> Pending:
        """Long poll until no connection with ``client_id`` is left."""
        client_id, _, timeout = self._client_wait_args(call.body())

        async def work() -> Response:
            await self.broker.wait_for_disconnect(client_id, timeout=timeout)
            return Response(204)

        return self._later(work)

    @staticmethod
    def _client_wait_args(body: dict[str, Any]) -> tuple[str, str | None, float]:
        client_id = body.get("client_id")
        subscribed = body.get("subscribed")
        if not isinstance(client_id, str) or not (subscribed is None or isinstance(subscribed, str)):
            raise bad_request("client_id (and subscribed, when given) must be strings")
        return client_id, subscribed, _timeout(body.get("timeout", 5.0))

    def report(self, call: Call) -> Response:
        """The fixture's traffic report as text: connections, faults, queues, the last ``messages`` messages."""
        return Response.text(200, self.broker.traffic_report(_int(call.query.get("messages", "50"), "messages")))

    def _target(self, call: Call) -> str | int:
        raw = call.params["client_id"]
        return int(raw[1:]) if raw.startswith("#") and raw[1:].isdigit() else raw

    def disconnect(self, call: Call) -> Pending:
        target = self._target(call)

        async def work() -> Response:
            await self.broker._disconnect(target, " over HTTP")
            return Response(204)

        return self._later(work)

    def stall(self, call: Call) -> Response:
        self.broker.stall(self._target(call))
        return Response(204)

    def resume(self, call: Call) -> Response:
        self.broker.resume(self._target(call))
        return Response(204)

    def refuse(self, call: Call) -> Pending:
        async def work() -> Response:
            try:
                await self.broker._refuse(True)
            except RuntimeError as exc:
                raise ApiError(409, "conflict", str(exc)) from None
            return Response(204)

        return self._later(work)

    def accept(self, call: Call) -> Pending:
        async def work() -> Response:
            if self.broker.refusing:
                await self.broker._refuse(False)
            return Response(204)

        return self._later(work)

    def restart(self, call: Call) -> Pending:
        async def work() -> Response:
            await self.broker.restart()
            return Response(204)

        return self._later(work)

    def drop(self, call: Call) -> Response:
        body = call.body()
        count = _int(body.pop("count", 1), "count")
        fault = self.broker.drop_next(count, **self._strict_criteria(call, body))
        return Response.json(201, {"fault": repr(fault)})

    def delay(self, call: Call) -> Response:
        body = call.body()
        count = _int(body.pop("count", 1), "count")
        seconds = float(body.pop("seconds"))
        fault = self.broker.delay_next(count, seconds, **self._strict_criteria(call, body))
        return Response.json(201, {"fault": repr(fault)})

    # -- time ----------------------------------------------------------------------------------------------
    def clock(self, call: Call) -> Response:
        clock = self.host.clock
        return Response.json(200, {"now": clock.now(), "virtual": isinstance(clock, VirtualClock),
                                   "pending_timers": clock.pending()})

    def advance(self, call: Call) -> Response | Pending:
        body = call.body()
        seconds = float(body.get("seconds", 0))
        if seconds < 0:
            raise bad_request("seconds cannot be negative")
        if not isinstance(self.host.clock, VirtualClock):
            raise ApiError(409, "conflict", "this broker runs on the wall clock; start it with --clock virtual")

        async def work() -> Response:
            await self.broker.advance(seconds)
            return Response.json(200, {"now": self.host.clock.now()})

        return self._later(work)

    # -- the live page's view ------------------------------------------------------------------------------
    def snapshot(self, call: Call) -> Response:
        """Everything the live page shows, in one read: the last ``messages`` (default 50) log entries."""
        limit = _int(call.query.get("messages", "50"), "messages")
        model = self.host.model
        clock = self.host.clock
        queues, exchanges, bindings = [], [], []
        for vh in call.vhosts():
            for q in vh.queues.values():
                queues.append({"vhost": vh.name, "name": q.name, "messages_ready": q.message_count,
                               "messages_unacknowledged": q.unacked, "consumers": q.consumer_count,
                               "durable": q.durable, "auto_delete": q.auto_delete, "exclusive": q.exclusive})
            for e in vh.exchanges.values():
                exchanges.append({"vhost": vh.name, "name": e.name, "type": e.type, "bindings": len(e.bindings)})
            bindings += [{"vhost": vh.name, "source": b.source, "destination": b.destination,
                          "routing_key": b.routing_key} for e in vh.exchanges.values() for b in e.bindings]
        connections = [{"protocol": c.protocol, "client_id": c.client_id, "user": c.user, "vhost": c.vhost,
                        "subscriptions": c.subscriptions, "stalled": c.stalled, "listener": c.listener}
                       for c in self.broker.clients if c.protocol != "http"]
        log = model.recent(limit)
        return Response.json(200, {
            "clock": {"now": clock.now(), "virtual": isinstance(clock, VirtualClock)},
            "connections": connections, "queues": queues, "exchanges": exchanges, "bindings": bindings,
            "messages": [message_json(m) for m in log],
            "total_messages": model.log[-1].seq if model.log else 0,
        })

    # -- reset ---------------------------------------------------------------------------------------------
    def reset(self, call: Call) -> Pending:
        async def work() -> Response:
            await self.broker._reset(" over HTTP")
            return Response(204)

        return self._later(work)


def _int(value: Any, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, not {value!r}") from None


def _timeout(value: Any) -> float:
    """A long poll's ``timeout``: seconds, from 0 to an hour."""
    try:
        if isinstance(value, bool):
            raise ValueError
        seconds = float(value)
    except (TypeError, ValueError):
        raise bad_request(f"timeout must be a number of seconds, not {value!r}") from None
    if not 0 <= seconds <= 3600:
        raise bad_request("timeout must be between 0 and 3600 seconds")
    return seconds


def _error(exc: ApiError) -> Response:
    return Response.json(exc.status, {"error": exc.error, "reason": exc.reason})


def _not_found(exc: LookupError) -> Response:
    """No such client (or whatever the lookup named)."""
    return _error(ApiError(404, "not_found", str(exc.args[0]) if exc.args else "not found"))


__all__ = ["ControlPlane", "message_json"]
