"""RabbitMQ's management HTTP API (3.10), for what tests and tools read and do through it.

Paths, status codes, error bodies and JSON field names and types are RabbitMQ 3.10.8's, as observed. Reads are
answered from the model at once: the counts RabbitMQ's statistics database reports a second or so late are
current here. Writes go through the same model calls as AMQP's, so they fail with RabbitMQ's texts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import socket
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ...errors import AccessRefused, ChannelError, CommandInvalid, NotFound
from ...model import Channel, Queue, VHost
from ...model.arguments import Long
from ...model.exchange import Binding
from ..base import Session, SessionHost
from .router import DecodeError, Router, parse_form, split_path
from .server import HttpSession, Pending, Request, Response
from .statelessd import _basic_credentials

VERSION = "3.10.8"
ERLANG_VERSION = "25.2.3"
REALM = 'Basic realm="RabbitMQ Management"'
RATE = {"rate": 0.0}
#: What RabbitMQ reports of a queue's or connection's Erlang process; constant here.
GARBAGE_COLLECTION = {"fullsweep_after": 65535, "max_heap_size": 0, "min_bin_vheap_size": 46422, "min_heap_size": 233,
                      "minor_gcs": 0}
#: How RabbitMQ names each listener's protocol in /api/overview.
LISTENER_PROTOCOLS = {"amqp": "amqp", "mqtt": "mqtt", "stomp": "stomp", "web_mqtt": "http/web-mqtt",
                      "web_stomp": "http/web-stomp", "management": "http"}
EXCHANGE_TYPE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
}
GET_ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true", "reject_requeue_false")
_NODE = f"rabbit@{socket.gethostname().split('.')[0]}"

Json = Any
Handler = Callable[["Call"], "Response | Pending"]


class ApiError(Exception):
    """An error answered the management API's way: ``{"error": ..., "reason": ...}`` with ``status``."""

    def __init__(self, status: int, error: str, reason: Json) -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status, self.error, self.reason = status, error, reason


NOT_FOUND = ApiError(404, "Object Not Found", "Not Found")
ACCESS_REFUSED = ApiError(401, "not_authorised", "Access refused.")


def bad_request(reason: Json) -> ApiError:
    return ApiError(400, "bad_request", reason)


class ManagementState:
    """What the management API keeps per node beyond the model: vhost metadata and permission patterns."""

    def __init__(self) -> None:
        self.vhost_meta: dict[str, dict[str, Any]] = {}
        self.permissions: dict[tuple[str, str], dict[str, str]] = {}

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


class ManagementOwner:
    """Who declares and reads queues through the management API (never the owner of an exclusive queue)."""

    def __repr__(self) -> str:
        return "<management-api>"


class Call:
    """One authenticated API request: the request, its decoded path parameters and the user."""

    def __init__(self, api: ManagementApi, request: Request, params: dict[str, str], user: str,
                 session: HttpSession) -> None:
        self.api = api
        self.request = request
        self.params = params
        self.user = user
        self.session = session
        self.query = dict(parse_form(request.query))

    @property
    def host(self) -> SessionHost:
        return self.api.host

    def vhost(self, name: str | None = None) -> VHost:
        """The vhost of the path (404 when it does not exist, 401 when the user may not use it)."""
        name = self.params["vhost"] if name is None else name
        vh = self.host.model.vhosts.get(name)
        if vh is None:
            raise NOT_FOUND
        if not self.host.model.can_access(self.user, name):
            raise ACCESS_REFUSED
        self.session.vhost = name
        return vh

    def vhost_for_write(self) -> VHost:
        name = self.params["vhost"]
        if name not in self.host.model.vhosts:
            raise ApiError(404, "not_found", "vhost_not_found")
        return self.vhost(name)

    def vhosts(self) -> list[VHost]:
        """The path's vhost, or every vhost the user may use when the path names none."""
        if "vhost" in self.params:
            return [self.vhost()]
        model = self.host.model
        return [vh for name, vh in sorted(model.vhosts.items()) if model.can_access(self.user, name)]

    def body(self) -> dict[str, Any]:
        """The request's JSON object (an empty body is ``{}``)."""
        raw = self.request.body
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            raise bad_request("not_json") from None
        if not isinstance(value, dict):
            raise bad_request("not_json")
        return value


def _arguments(body: dict[str, Any]) -> dict[str, Any]:
    """The ``arguments`` table of a request, its JSON integers typed as AMQP longs as RabbitMQ types them."""
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise bad_request("arguments must be an object")
    return {k: _longs(v) for k, v in arguments.items()}


def _longs(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return Long(value)
    if isinstance(value, dict):
        return {k: _longs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_longs(v) for v in value]
    return value


def _bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key, default)
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise bad_request(["not_boolean", value])


def _key_missing(body: dict[str, Any], keys: Iterable[str]) -> None:
    missing = [k for k in keys if k not in body]
    if missing:
        raise bad_request("[" + ",".join(f"{{key_missing,{k}}}" for k in missing) + "]")


# -- formatting -------------------------------------------------------------------------------------------
def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")


def _jsonable(value: Any) -> Json:
    """An AMQP field value as RabbitMQ's management API renders it."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def quote_key(text: str) -> str:
    """%-encoding of binding property keys: only letters, digits, ``-``, ``_`` and ``.`` stay; space is ``+``."""
    # surrogateescape: the bytes of a name that is not UTF-8 (from STOMP) are percent-encoded as they were.
    return quote(text, safe="-_.", errors="surrogateescape").replace("~", "%7E").replace("%20", "+")


def properties_key(binding: Binding) -> str:
    """The key that names a binding in ``/api/bindings/.../{props}``: the quoted routing key, then ``~`` and a
    hash of the arguments when it has any (RabbitMQ's hash is Erlang's phash2; this one is opaque too)."""
    if not binding.arguments:
        return quote_key(binding.routing_key) if binding.routing_key else "~"
    digest = hashlib.sha1(repr(binding.arguments).encode()).digest()[:5]
    return f"{quote_key(binding.routing_key)}~{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def sorted_bindings(bindings: Iterable[Binding]) -> list[Binding]:
    """In RabbitMQ's order: by source, destination, routing key, then arguments."""
    return sorted(bindings, key=lambda b: (b.source, b.destination_type, b.destination, b.routing_key,
                                           repr(b.arguments)))


def binding_json(vhost: str, b: Binding) -> dict[str, Any]:
    return {"source": b.source, "vhost": vhost, "destination": b.destination, "destination_type": b.destination_type,
            "routing_key": b.routing_key, "arguments": _jsonable(b.args), "properties_key": properties_key(b)}


def exchange_json(vhost: str, e: Any) -> dict[str, Any]:
    return {"arguments": _jsonable(e.arguments), "auto_delete": e.auto_delete, "durable": e.durable,
            "internal": e.internal, "name": e.name, "type": e.type, "user_who_performed_action": "rmq-internal",
            "vhost": vhost}


def _columns(items: list[dict[str, Any]], columns: str | None) -> list[dict[str, Any]]:
    """RabbitMQ's ``columns`` filter: keep the named fields. For ``a.b`` RabbitMQ keeps all of ``a``."""
    if not columns:
        return items
    keys = {c.split(".", 1)[0] for c in columns.split(",") if c}
    return [{k: v for k, v in item.items() if k in keys} for item in items]


def one(call: Call, item: dict[str, Any]) -> Response:
    """A single object, with the ``columns`` filter applied."""
    return Response.json(200, _columns([item], call.query.get("columns"))[0])


class ManagementApi:
    """The ``/api`` tree of the management listener."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.owner = ManagementOwner()
        self.router: Router[Handler] = Router()
        r = self.router.add
        r("GET", "/api/overview", self.overview)
        r("GET", "/api/whoami", self.whoami)
        r("GET", "/api/vhosts", self.vhosts)
        r("GET", "/api/vhosts/{vhost}", self.vhost)
        r("PUT", "/api/vhosts/{vhost}", self.put_vhost)
        r("DELETE", "/api/vhosts/{vhost}", self.delete_vhost)
        r("GET", "/api/permissions/{vhost}/{user}", self.permission)
        r("PUT", "/api/permissions/{vhost}/{user}", self.put_permission)
        r("GET", "/api/users", self.users)
        r("GET", "/api/queues", self.queues)
        r("GET", "/api/queues/{vhost}", self.queues)
        r("GET", "/api/queues/{vhost}/{name}", self.queue)
        r("PUT", "/api/queues/{vhost}/{name}", self.put_queue)
        r("DELETE", "/api/queues/{vhost}/{name}", self.delete_queue)
        r("GET", "/api/queues/{vhost}/{name}/bindings", self.queue_bindings)
        r("POST", "/api/queues/{vhost}/{name}/get", self.get)
        r("DELETE", "/api/queues/{vhost}/{name}/contents", self.purge)
        r("GET", "/api/exchanges", self.exchanges)
        r("GET", "/api/exchanges/{vhost}", self.exchanges)
        r("GET", "/api/exchanges/{vhost}/{name}", self.exchange)
        r("PUT", "/api/exchanges/{vhost}/{name}", self.put_exchange)
        r("DELETE", "/api/exchanges/{vhost}/{name}", self.delete_exchange)
        r("GET", "/api/exchanges/{vhost}/{name}/bindings/source", self.exchange_bindings_source)
        r("GET", "/api/exchanges/{vhost}/{name}/bindings/destination", self.exchange_bindings_destination)
        r("POST", "/api/exchanges/{vhost}/{name}/publish", self.publish)
        r("GET", "/api/bindings", self.bindings)
        r("GET", "/api/bindings/{vhost}", self.bindings)
        r("GET", "/api/bindings/{vhost}/e/{exchange}/q/{queue}", self.bindings_between)
        r("POST", "/api/bindings/{vhost}/e/{exchange}/q/{queue}", self.post_binding)
        r("GET", "/api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}", self.binding)
        r("DELETE", "/api/bindings/{vhost}/e/{exchange}/q/{queue}/{props}", self.delete_binding)
        r("GET", "/api/bindings/{vhost}/e/{exchange}/e/{queue}", self.bindings_between)
        r("POST", "/api/bindings/{vhost}/e/{exchange}/e/{queue}", self.post_binding)
        r("GET", "/api/bindings/{vhost}/e/{exchange}/e/{queue}/{props}", self.binding)
        r("DELETE", "/api/bindings/{vhost}/e/{exchange}/e/{queue}/{props}", self.delete_binding)
        r("GET", "/api/connections", self.connections)
        r("GET", "/api/connections/{name}", self.connection)
        r("DELETE", "/api/connections/{name}", self.close_connection)
        r("GET", "/api/vhosts/{vhost}/connections", self.connections)
        r("GET", "/api/channels", self.channels)
        r("GET", "/api/consumers", self.consumers)
        r("GET", "/api/consumers/{vhost}", self.consumers)
        r("GET", "/api/aliveness-test/{vhost}", self.aliveness)
        r("GET", "/api/healthchecks/node", self.healthy)
        for check in ("alarms", "local-alarms", "virtual-hosts", "certificate-expiration/{within}/{unit}"):
            r("GET", f"/api/health/checks/{check}", self.healthy)
        r("GET", "/api/health/checks/node-is-quorum-critical", self.single_node)
        r("GET", "/api/health/checks/node-is-mirror-sync-critical", self.single_node)
        r("GET", "/api/health/checks/port-listener/{port}", self.port_listener)
        r("GET", "/api/health/checks/protocol-listener/{protocol}", self.protocol_listener)

    # -- dispatch ------------------------------------------------------------------------------------------
    def handle(self, request: Request, session: HttpSession) -> Response | Pending:
        try:
            found = self.router.resolve(request.method, request.path)
        except DecodeError:
            return _error(NOT_FOUND)
        if found is None:
            return _error(NOT_FOUND)
        if isinstance(found, list):
            allowed = ", ".join(sorted({*found, "OPTIONS"} | ({"HEAD"} if "GET" in found else set()),
                                       key=["HEAD", "GET", "PUT", "POST", "DELETE", "OPTIONS"].index))
            # OPTIONS needs no credentials and says what the path takes, as Cowboy answers it.
            return Response(200 if request.method == "OPTIONS" else 405, headers=[("Allow", allowed)])
        handler, params = found
        user = self.authenticate(request)
        if isinstance(user, Response):
            return user
        session.user = user
        try:
            return handler(Call(self, request, params, user, session))
        except ApiError as exc:
            return _error(exc)

    def authenticate(self, request: Request) -> str | Response:
        """The user of a request's Basic credentials, or the 401 RabbitMQ answers."""
        credentials = _basic_credentials(request.header("authorization"))
        if credentials is None:
            return Response(401, headers=[("WWW-Authenticate", REALM)])
        user, password = credentials
        if not self.host.model.authenticate(user, password):
            return _error(ApiError(401, "not_authorized", "Login failed"), [("WWW-Authenticate", REALM)])
        return user

    # -- node ----------------------------------------------------------------------------------------------
    def overview(self, call: Call) -> Response:
        model = self.host.model
        queues = [q for vh in call.vhosts() for q in vh.queues.values()]
        ready = sum(q.message_count for q in queues)
        unacked = sum(q.unacked for q in queues)
        conns = self.amqp_connections()
        addresses = getattr(getattr(self.host, "runtime", None), "addresses", {}) or {}
        listeners = [{"ip_address": a[0], "node": _NODE, "port": a[1], "protocol": LISTENER_PROTOCOLS[name],
                      "socket_opts": {}} for name, a in addresses.items() if name in LISTENER_PROTOCOLS]
        return one(call, {
            "management_version": VERSION, "rates_mode": "basic",
            "sample_retention_policies": {"global": [600, 3600, 28800, 86400], "basic": [600, 3600],
                                          "detailed": [600]},
            "exchange_types": [{"name": n, "description": d, "enabled": True}
                               for n, d in EXCHANGE_TYPE_DESCRIPTIONS.items()],
            "product_version": VERSION, "product_name": "RabbitMQ", "rabbitmq_version": VERSION,
            "cluster_name": _NODE, "erlang_version": ERLANG_VERSION,
            "erlang_full_version": f"Erlang/OTP 25 [erts-13.1.5] (fakebroker {ERLANG_VERSION})",
            "release_series_support_status": "supported", "disable_stats": False, "enable_queue_totals": False,
            "message_stats": {"publish": len(model.log), "publish_details": RATE},
            "churn_rates": {},
            "queue_totals": {"messages": ready + unacked, "messages_details": RATE, "messages_ready": ready,
                             "messages_ready_details": RATE, "messages_unacknowledged": unacked,
                             "messages_unacknowledged_details": RATE},
            "object_totals": {"channels": len(conns), "connections": len(conns),
                              "consumers": sum(q.consumer_count for q in queues),
                              "exchanges": sum(len(vh.exchanges) for vh in call.vhosts()), "queues": len(queues)},
            "statistics_db_event_queue": 0, "node": _NODE, "listeners": listeners,
            "contexts": [{"description": "RabbitMQ Management", "node": _NODE, "path": "/",
                          "port": str(call.session.info.local[1])}],
        })

    def whoami(self, call: Call) -> Response:
        return one(call, {"name": call.user, "tags": self._tags(call.user)})

    def _tags(self, user: str) -> list[str]:
        entry = self.host.model.users.get(user)
        tags = entry.get("tags") if isinstance(entry, dict) else None
        return list(tags) if tags is not None else ["administrator"]

    def users(self, call: Call) -> Response:
        return self._list(call, [{"name": name, "tags": self._tags(name), "limits": {},
                                  "hashing_algorithm": "rabbit_password_hashing_sha256",
                                  "password_hash": ""} for name in sorted(self.host.model.users)])

    def _vhost_json(self, vh: VHost) -> dict[str, Any]:
        ready = sum(q.message_count for q in vh.queues.values())
        unacked = sum(q.unacked for q in vh.queues.values())
        meta = self.host.state(ManagementState).vhost_meta.get(vh.name, {})
        description = meta.get("description", "Default virtual host" if vh.name == "/" else "")
        tags = list(meta.get("tags", []))
        return {"name": vh.name, "description": description, "tags": tags, "default_queue_type": "undefined",
                "metadata": {"description": description, "tags": tags}, "tracing": False,
                "cluster_state": {_NODE: "running"}, "messages": ready + unacked, "messages_details": RATE,
                "messages_ready": ready, "messages_ready_details": RATE, "messages_unacknowledged": unacked,
                "messages_unacknowledged_details": RATE, "recv_oct": 0, "recv_oct_details": RATE,
                "send_oct": 0, "send_oct_details": RATE}

    def vhosts(self, call: Call) -> Response:
        return self._list(call, [self._vhost_json(vh) for vh in call.vhosts()])

    def vhost(self, call: Call) -> Response:
        return one(call, self._vhost_json(call.vhost()))

    def put_vhost(self, call: Call) -> Response:
        name = call.params["vhost"]
        body = call.body()
        model = self.host.model
        existed = name in model.vhosts
        # A PUT replaces the metadata, as RabbitMQ's does: what the body leaves out is emptied.
        tags = body.get("tags") or []
        if isinstance(tags, str):
            tags = tags.split(",")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise bad_request("tags must be a list of strings or a comma-separated string")
        self.host.state(ManagementState).vhost_meta[name] = {
            "description": str(body.get("description", "")),
            "tags": [t for t in tags if t]}
        if not existed:
            model.add_vhost(name)
            # RabbitMQ gives the user who created a vhost full permissions on it.
            self._grant(call.user, name, {"configure": ".*", "write": ".*", "read": ".*"})
        return Response(204 if existed else 201)

    def delete_vhost(self, call: Call) -> Response:
        """Delete a vhost and everything in it; its connections are closed, as RabbitMQ closes them."""
        name = call.params["vhost"]
        model = self.host.model
        vh = model.vhosts.get(name)
        if vh is None:
            raise NOT_FOUND
        for conn, session in self.amqp_connections():
            if session.describe().get("vhost") == name:
                conn.abort()
        for queue in list(vh.queues):
            vh.delete_queue(queue)
        del model.vhosts[name]
        from ..mqtt.state import MqttState

        self.host.state(MqttState).retained.pop(name, None)  # RabbitMQ's retained store is per vhost, deleted with it
        state = self.host.state(ManagementState)
        state.vhost_meta.pop(name, None)
        for key in [k for k in state.permissions if k[0] == name]:
            del state.permissions[key]
        return Response(204)

    def _grant(self, user: str, vhost: str, permission: dict[str, str]) -> bool:
        """Record ``user``'s permission on ``vhost`` (and let a user limited to some vhosts use it); True when new."""
        users = self.host.model.users
        entry = users.get(user)
        if isinstance(entry, dict) and entry.get("vhosts") is not None and vhost not in entry["vhosts"]:
            users[user] = {**entry, "vhosts": [*entry["vhosts"], vhost]}  # a new entry: the options stay as given
        permissions = self.host.state(ManagementState).permissions
        new = (vhost, user) not in permissions
        permissions[(vhost, user)] = permission
        return new

    def permission(self, call: Call) -> Response:
        vhost, user = call.params["vhost"], call.params["user"]
        model = self.host.model
        found = self.host.state(ManagementState).permissions.get((vhost, user))
        if found is None and vhost in model.vhosts and user in model.users and model.can_access(user, vhost):
            found = {"configure": ".*", "write": ".*", "read": ".*"}  # a user of the broker's options
        if found is None:
            raise NOT_FOUND
        return one(call, {"user": user, "vhost": vhost, **found})

    def put_permission(self, call: Call) -> Response:
        vhost, user = call.params["vhost"], call.params["user"]
        body = call.body()
        model = self.host.model
        if vhost not in model.vhosts or user not in model.users:
            raise bad_request("vhost_or_user_not_found")
        permission = {k: str(body.get(k, "")) for k in ("configure", "write", "read")}
        known = (vhost, user) in self.host.state(ManagementState).permissions or model.can_access(user, vhost)
        self._grant(user, vhost, permission)
        return Response(204 if known else 201)

    def aliveness(self, call: Call) -> Response:
        # RabbitMQ declares a queue named aliveness-test, then publishes a message to it and gets it back; the
        # round trip is left out here so that the message log holds only what the test's clients sent.
        vh = call.vhost()
        self._model(lambda: vh.declare_queue("aliveness-test", owner=self.owner))
        return Response.json(200, {"status": "ok"})

    # -- health checks (what container health checks and wait-for scripts poll) ----------------------------
    def healthy(self, call: Call) -> Response:
        return Response.json(200, {"status": "ok"})

    def single_node(self, call: Call) -> Response:
        return Response.json(200, {"status": "ok", "reason": "single node cluster"})

    def port_listener(self, call: Call) -> Response:
        try:
            port = int(call.params["port"])
        except ValueError:
            raise bad_request(f"invalid port {call.params['port']!r}") from None
        ports = list(self.host.listening().values())
        if port in ports:
            return Response.json(200, {"status": "ok", "port": port})
        return Response.json(503, {"status": "failed", "reason": "No active listener", "missing": port,
                                   "ports": ports})

    def protocol_listener(self, call: Call) -> Response:
        wanted = call.params["protocol"]
        protocols = [LISTENER_PROTOCOLS[n] for n in self.host.listening() if n in LISTENER_PROTOCOLS]
        if wanted in protocols:
            return Response.json(200, {"status": "ok", "protocol": wanted})
        return Response.json(503, {"status": "failed", "reason": "No active listener", "missing": wanted,
                                   "protocols": protocols})

    # -- queues --------------------------------------------------------------------------------------------
    def queue_json(self, vh: VHost, q: Queue) -> dict[str, Any]:
        ready, unacked = q.message_count, q.unacked
        ready_bytes = q.ready_bytes
        persistent = sum(1 for qm in q.messages if qm.message.persistent)
        persistent_bytes = sum(qm.size for qm in q.messages if qm.message.persistent)
        consumers = q.consumer_count
        head = q.messages[0].message.properties.get("timestamp") if q.messages else None
        out: dict[str, Any] = {
            "arguments": _jsonable(q.arguments), "auto_delete": q.auto_delete,
            "consumer_capacity": 1.0 if consumers else 0, "consumer_utilisation": 1.0 if consumers else 0,
            "consumers": consumers, "durable": q.durable, "effective_policy_definition": {},
            "exclusive": q.exclusive, "exclusive_consumer_tag": None, "head_message_timestamp": head,
            "memory": 10_000 + ready_bytes, "message_bytes": ready_bytes, "message_bytes_paged_out": 0,
            "message_bytes_persistent": persistent_bytes, "message_bytes_ram": ready_bytes,
            "message_bytes_ready": ready_bytes, "message_bytes_unacknowledged": 0,
            "messages": ready + unacked, "messages_details": RATE, "messages_paged_out": 0,
            "messages_persistent": persistent, "messages_ram": ready + unacked, "messages_ready": ready,
            "messages_ready_details": RATE, "messages_ready_ram": ready, "messages_unacknowledged": unacked,
            "messages_unacknowledged_details": RATE, "messages_unacknowledged_ram": unacked, "name": q.name,
            "node": _NODE, "operator_policy": None, "policy": None, "recoverable_slaves": None,
            "reductions": 0, "reductions_details": RATE, "single_active_consumer_tag": None, "state": "running",
            "type": "classic", "vhost": vh.name, "garbage_collection": GARBAGE_COLLECTION,
            "backing_queue_status": {
                "avg_ack_egress_rate": 0.0, "avg_ack_ingress_rate": 0.0, "avg_egress_rate": 0.0,
                "avg_ingress_rate": 0.0, "delta": ["delta", "undefined", 0, 0, "undefined"], "len": ready,
                "mode": "default", "next_deliver_seq_id": 0, "next_seq_id": ready, "q1": 0, "q2": 0, "q3": 0,
                "q4": ready, "target_ram_count": "infinity", "version": 1},
        }
        out["idle_since"] = _iso(self.host.model.wallclock_seconds())
        return out

    def queues(self, call: Call) -> Response:
        return self._list(call, [self.queue_json(vh, q) for vh in call.vhosts() for q in vh.queues.values()])

    def _queue(self, call: Call) -> tuple[VHost, Queue]:
        vh = call.vhost()
        q = vh.queues.get(call.params["name"])
        if q is None:
            raise NOT_FOUND
        return vh, q

    def queue(self, call: Call) -> Response:
        vh, q = self._queue(call)
        out = self.queue_json(vh, q)
        out["consumer_details"] = [self._consumer_json(vh, q, c) for c in q.consumers]
        out["deliveries"] = []
        out["incoming"] = []
        return one(call, out)

    def put_queue(self, call: Call) -> Response:
        vh = call.vhost_for_write()
        body = call.body()
        name = call.params["name"]
        durable, auto_delete = _bool(body, "durable"), _bool(body, "auto_delete")
        arguments = _arguments(body)
        if name.startswith("amq."):
            raise ACCESS_REFUSED
        existed = name in vh.queues
        # RabbitMQ's management API ignores "exclusive": there is no connection to own the queue.
        self._model(lambda: vh.declare_queue(name, durable=durable, auto_delete=auto_delete, arguments=arguments,
                                             owner=self.owner))
        return Response(204 if existed else 201)

    def delete_queue(self, call: Call) -> Response:
        vh, q = self._queue(call)
        if_unused = call.query.get("if-unused") == "true"
        if_empty = call.query.get("if-empty") == "true"
        self._model(lambda: vh.delete_queue(q.name, if_unused, if_empty))
        return Response(204)

    def purge(self, call: Call) -> Response:
        vh, q = self._queue(call)
        self._model(lambda: vh.purge_queue(q.name))
        return Response(204)

    def queue_bindings(self, call: Call) -> Response:
        vh, q = self._queue(call)
        return self._list(call, [binding_json(vh.name, b) for b in sorted_bindings(vh.bindings())
                                 if b.destination == q.name and b.destination_type == "queue"], sort=False)

    def get(self, call: Call) -> Response:
        vh = call.vhost()
        body = call.body()
        _key_missing(body, ("count", "ackmode", "encoding"))
        count, ackmode, encoding = body["count"], body["ackmode"], body["encoding"]
        if isinstance(count, str):
            try:
                count = int(count)
            except ValueError:
                raise bad_request(["not_integer", count]) from None
        elif isinstance(count, bool) or not isinstance(count, int):
            raise bad_request(["not_integer", count])
        if encoding not in ("auto", "base64"):
            raise bad_request("Unsupported encoding. Please use auto or base64.")
        if ackmode not in GET_ACKMODES:
            raise bad_request(f"unknown ackmode {ackmode!r}; use one of {', '.join(GET_ACKMODES)}")
        truncate = body.get("truncate")
        name = call.params["name"]
        if name not in vh.queues:
            raise ApiError(404, "not_found", f"NOT_FOUND - no queue '{name}' in vhost '{vh.name}'")
        channel = Channel(vh, self.owner, None)
        out = []
        try:
            deliveries = []
            for _ in range(max(count, 0)):
                d = self._model(lambda: channel.get(name, no_ack=False))
                if d is None:
                    break
                deliveries.append(d)
                payload = d.body
                if isinstance(truncate, int) and not isinstance(truncate, bool) and truncate >= 0:
                    payload = payload[:truncate]
                item: dict[str, Any] = {"payload_bytes": len(d.body), "redelivered": d.redelivered,
                                        "exchange": d.exchange, "routing_key": d.routing_key,
                                        "message_count": d.message_count,
                                        "properties": _jsonable(d.properties) or []}
                try:
                    if encoding == "base64":
                        raise UnicodeDecodeError("utf-8", b"", 0, 1, "base64 asked for")
                    item["payload"], item["payload_encoding"] = payload.decode("utf-8"), "string"
                except UnicodeDecodeError:
                    item["payload"], item["payload_encoding"] = base64.b64encode(payload).decode(), "base64"
                out.append(item)
            for d in deliveries:
                if ackmode == "ack_requeue_false":
                    channel.ack(d.delivery_tag)
                else:
                    channel.nack(d.delivery_tag, requeue=ackmode != "reject_requeue_false")
        finally:
            channel.close()
        return Response.json(200, out)

    # -- exchanges -----------------------------------------------------------------------------------------
    def exchanges(self, call: Call) -> Response:
        return self._list(call, [exchange_json(vh.name, e) for vh in call.vhosts() for e in vh.exchanges.values()])

    @staticmethod
    def _exchange_name(call: Call) -> str:
        name = call.params["name"]
        return "" if name == "amq.default" else name

    def exchange(self, call: Call) -> Response:
        vh = call.vhost()
        e = vh.exchanges.get(self._exchange_name(call))
        if e is None:
            raise NOT_FOUND
        out = exchange_json(vh.name, e)
        out.update(incoming=[], outgoing=[])
        return one(call, out)

    def put_exchange(self, call: Call) -> Response:
        vh = call.vhost_for_write()
        body = call.body()
        name = self._exchange_name(call)
        kind = body.get("type", "direct")
        durable, auto_delete = _bool(body, "durable"), _bool(body, "auto_delete")
        internal = _bool(body, "internal")
        arguments = _arguments(body)
        if name == "" or (name.startswith("amq.") and name not in vh.exchanges):
            raise ACCESS_REFUSED
        existed = name in vh.exchanges
        try:
            vh.declare_exchange(name, str(kind), durable=durable, auto_delete=auto_delete, internal=internal,
                                arguments=arguments)
        except CommandInvalid:
            raise bad_request(f"unknown exchange type '{kind}'") from None
        except ChannelError as exc:
            raise self._channel_error(exc) from None
        return Response(204 if existed else 201)

    def delete_exchange(self, call: Call) -> Response:
        vh = call.vhost()
        name = self._exchange_name(call)
        if name == "" or name.startswith("amq."):
            raise ACCESS_REFUSED
        if name not in vh.exchanges:
            raise NOT_FOUND
        self._model(lambda: vh.delete_exchange(name, call.query.get("if-unused") == "true"))
        return Response(204)

    def exchange_bindings_source(self, call: Call) -> Response:
        vh = call.vhost()
        name = self._exchange_name(call)
        if name not in vh.exchanges:
            raise NOT_FOUND
        return self._list(call, [binding_json(vh.name, b) for b in sorted_bindings(vh.bindings())
                                 if b.source == name and name],
                          sort=False)

    def exchange_bindings_destination(self, call: Call) -> Response:
        vh = call.vhost()
        name = self._exchange_name(call)
        if name not in vh.exchanges:
            raise NOT_FOUND
        return self._list(call, [binding_json(vh.name, b) for b in sorted_bindings(vh.bindings())
                                 if b.destination == name and b.destination_type == "exchange"], sort=False)

    def publish(self, call: Call) -> Response:
        vh = call.vhost()
        body = call.body()
        _key_missing(body, ("routing_key", "properties", "payload", "payload_encoding"))
        encoding, payload = body["payload_encoding"], body["payload"]
        if encoding == "string":
            data = str(payload).encode()
        elif encoding == "base64":
            try:
                data = base64.b64decode(str(payload), validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(["not_base64", payload]) from None
        else:
            raise bad_request(["unsupported_encoding", encoding])
        props = self._properties(body["properties"])
        name = self._exchange_name(call)
        try:
            logged = self.host.model.publish(name, str(body["routing_key"]), data, props, vhost=vh.name,
                                             protocol="http", client_id=None)
        except ChannelError as exc:
            # As the channel error would read: "404 NOT_FOUND - no exchange 'x' in vhost '/'".
            raise bad_request(f"{exc.code} {exc}") from None
        return Response.json(200, {"routed": logged.routed or logged.fault is not None})

    @staticmethod
    def _properties(raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict):
            return {}
        props: dict[str, Any] = {}
        for key, value in raw.items():
            if key in ("delivery_mode", "priority", "timestamp"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise bad_request(["not_int", key])
                props[key] = value
            elif key == "headers":
                if not isinstance(value, dict):
                    raise bad_request(["not_table", key])
                props[key] = value
            elif key in ("content_type", "content_encoding", "correlation_id", "reply_to", "expiration",
                         "message_id", "type", "user_id", "app_id", "cluster_id"):
                props[key] = value if isinstance(value, str) else json.dumps(value)
            # RabbitMQ ignores any other key.
        return props

    # -- bindings ------------------------------------------------------------------------------------------
    def bindings(self, call: Call) -> Response:
        return self._list(call, [binding_json(vh.name, b) for vh in call.vhosts()
                                 for b in sorted_bindings(vh.bindings())],
                          sort=False)

    @staticmethod
    def _destination_type(call: Call) -> str:
        """``/e/{source}/q/{queue}`` binds a queue, ``/e/{source}/e/{exchange}`` an exchange: the path's sixth
        segment (``api/bindings/{vhost}/e/{source}/q|e/...``)."""
        return "exchange" if split_path(call.request.path)[5] == "e" else "queue"

    def _between(self, call: Call) -> tuple[VHost, list[Binding]]:
        vh = call.vhost()
        exchange = "" if call.params["exchange"] == "amq.default" else call.params["exchange"]
        destination, kind = call.params["queue"], self._destination_type(call)
        found = [b for b in sorted_bindings(vh.bindings())
                 if b.source == exchange and b.destination == destination and b.destination_type == kind]
        return vh, found

    def bindings_between(self, call: Call) -> Response:
        vh, found = self._between(call)
        return self._list(call, [binding_json(vh.name, b) for b in found], sort=False)

    def post_binding(self, call: Call) -> Response:
        vh = call.vhost()
        body = call.body()
        exchange = call.params["exchange"]
        queue = call.params["queue"]
        if exchange in ("", "amq.default"):
            raise ACCESS_REFUSED
        routing_key = str(body.get("routing_key", ""))
        arguments = _arguments(body)
        kind = self._destination_type(call)
        if exchange not in vh.exchanges:
            raise ApiError(404, "not_found", f"no exchange '{exchange}' in vhost '{vh.name}'")
        if kind == "queue" and queue not in vh.queues:
            raise ApiError(404, "not_found", f"no queue '{queue}' in vhost '{vh.name}'")
        if kind == "exchange" and queue not in vh.exchanges:
            raise ApiError(404, "not_found", f"no exchange '{queue}' in vhost '{vh.name}'")
        if kind == "queue":
            self._model(lambda: vh.bind(queue, exchange, routing_key, arguments, owner=self.owner))
        else:
            self._model(lambda: vh.bind_exchange(queue, exchange, routing_key, arguments))
        key = properties_key(Binding(exchange, queue, routing_key, _freeze(arguments), kind))
        # The key quoted once more, its "~" separator left as it is.
        return Response(201, headers=[("Location", f"{quote(queue, safe='', errors='surrogateescape')}/"
                                                  f"{quote(key, safe='-_.~', errors='surrogateescape')}")])

    def _binding(self, call: Call) -> tuple[VHost, Binding]:
        vh, found = self._between(call)
        for b in found:
            if properties_key(b) == call.params["props"]:
                return vh, b
        raise NOT_FOUND

    def binding(self, call: Call) -> Response:
        vh, b = self._binding(call)
        return one(call, binding_json(vh.name, b))

    def delete_binding(self, call: Call) -> Response:
        vh, b = self._binding(call)
        if b.destination_type == "exchange":
            self._model(lambda: vh.unbind_exchange(b.destination, b.source, b.routing_key, b.args))
        else:
            self._model(lambda: vh.unbind(b.destination, b.source, b.routing_key, b.args, owner=self.owner))
        return Response(204)

    # -- connections, channels, consumers ------------------------------------------------------------------
    def amqp_connections(self) -> list[tuple[Any, Session]]:
        """The live client connections RabbitMQ would list: every protocol but HTTP."""
        runtime = getattr(self.host, "runtime", None)
        if runtime is None:
            return []
        return [(conn, conn.session) for conn in list(runtime.connections.values())
                if conn.session.protocol != "http"]

    def connection_json(self, conn: Any, session: Session) -> dict[str, Any]:
        info = session.info
        details = session.describe()
        protocol = session.protocol
        websocket = details.get("transport") == "websocket"
        version = details.get("protocol_version")
        if protocol == "mqtt":
            label = f"{'Web MQTT' if websocket else 'MQTT'} {str(version or 'MQTT 3.1.1').split()[-1]}"
            client_properties: dict[str, Any] = {"product": "MQTT client"}
            if session.client_id is not None:
                client_properties["client_id"] = session.client_id
        elif protocol == "stomp":
            label = f"{'Web STOMP' if websocket else 'STOMP'} {details.get('version') or '1.2'}"
            client_properties = {"product": "STOMP client"}
        elif protocol == "amqp":
            label = "AMQP 0-9-1"
            client_properties = dict(details.get("client_properties") or {})
        else:
            label = str(version or protocol.upper())
            client_properties = dict(details.get("client_properties") or {})
        name = f"{info.peer[0]}:{info.peer[1]} -> {info.local[0]}:{info.local[1]}"
        out = {
            "channel_max": details.get("channel_max", 1 if protocol in ("mqtt", "stomp") else 2047),
            "channels": details.get("channels", 1), "client_properties": _jsonable(client_properties),
            "connected_at": int(self.host.model.wallclock_seconds() * 1000 - (self.host.clock.now()
                                                                             - conn.opened_at) * 1000),
            "frame_max": details.get("frame_max", 0), "host": info.local[0], "name": name, "node": _NODE,
            "peer_host": info.peer[0],
            "peer_port": info.peer[1], "port": info.local[1], "protocol": label, "recv_cnt": 0, "recv_oct": 0,
            "recv_oct_details": RATE, "send_cnt": 0, "send_oct": 0, "send_oct_details": RATE, "send_pend": 0,
            "ssl": False, "state": "blocked" if getattr(conn, "stalled", False)
            else getattr(session, "connection_state", "running"),
            "type": "network" if protocol == "amqp" else "direct", "user": session.user or "guest",
            "user_who_performed_action": session.user or "guest", "vhost": details.get("vhost") or "/",
        }
        out.update(garbage_collection=GARBAGE_COLLECTION, reductions=0, reductions_details=RATE)
        if protocol == "mqtt" and session.client_id is not None:
            out["variable_map"] = {"client_id": session.client_id}
        elif protocol == "stomp":
            out["timeout"] = 0
        elif protocol == "amqp":
            out.update(auth_mechanism=details.get("auth_mechanism") or "PLAIN", timeout=details.get("heartbeat", 60),
                       peer_cert_issuer=None,
                       peer_cert_subject=None, peer_cert_validity=None, ssl_cipher=None, ssl_hash=None,
                       ssl_key_exchange=None, ssl_protocol=None,
                       user_provided_name=client_properties.get("connection_name"))
        return out

    def connections(self, call: Call) -> Response:
        wanted = call.vhost().name if "vhost" in call.params else None
        items = [self.connection_json(c, s) for c, s in self.amqp_connections()]
        return self._list(call, [i for i in items if wanted is None or i["vhost"] == wanted])

    def _find_connection(self, call: Call) -> tuple[Any, Session]:
        for conn, session in self.amqp_connections():
            if self.connection_json(conn, session)["name"] == call.params["name"]:
                return conn, session
        raise NOT_FOUND

    def connection(self, call: Call) -> Response:
        return one(call, self.connection_json(*self._find_connection(call)))

    def close_connection(self, call: Call) -> Response:
        """Force-close, as RabbitMQ does: the protocol's own goodbye where it has one, and no MQTT will."""
        _, session = self._find_connection(call)
        reason = call.request.header("x-reason") or "Closed via management plugin"
        # A WebSocket connection carries the protocol session that knows its own way to be closed.
        target = getattr(session, "inner", None) or session
        force = getattr(target, "force_close", None) or getattr(target, "close_connection", None)
        if callable(force):
            force(reason)  # MQTT: no will; AMQP: connection.close 320 CONNECTION_FORCED with the reason
        else:
            target.request_close(reason)
        return Response(204)

    def channels(self, call: Call) -> Response:
        items = []
        for conn, session in self.amqp_connections():
            c = self.connection_json(conn, session)
            items.append({"connection_details": {"name": c["name"], "peer_host": c["peer_host"],
                                                 "peer_port": c["peer_port"]},
                          "name": f"{c['name']} (1)", "node": _NODE, "number": 1, "user": c["user"],
                          "vhost": c["vhost"], "state": "running", "confirm": False, "transactional": False,
                          "consumer_count": 0, "messages_unacknowledged": 0, "prefetch_count": 0,
                          "global_prefetch_count": 0, "acks_uncommitted": 0, "messages_uncommitted": 0,
                          "messages_unconfirmed": 0, "pending_raft_commands": 0, "reductions": 0,
                          "reductions_details": RATE, "garbage_collection": GARBAGE_COLLECTION,
                          "idle_since": _iso(self.host.model.wallclock_seconds()),
                          "user_who_performed_action": c["user"]})
        return self._list(call, items)

    def _consumer_json(self, vh: VHost, q: Queue, consumer: Any) -> dict[str, Any]:
        owner = getattr(consumer.channel, "owner", None)
        details: dict[str, Any] = {}
        for conn, session in self.amqp_connections():
            if session is owner or getattr(session, "inner", None) is owner:
                c = self.connection_json(conn, session)
                details = {"connection_name": c["name"], "name": f"{c['name']} (1)", "node": _NODE, "number": 1,
                           "peer_host": c["peer_host"], "peer_port": c["peer_port"], "user": c["user"]}
                break
        return {"ack_required": not consumer.no_ack, "active": True, "activity_status": "up", "arguments": {},
                "channel_details": details, "consumer_tag": consumer.tag, "exclusive": False,
                "prefetch_count": consumer.prefetch, "queue": {"name": q.name, "vhost": vh.name}}

    def consumers(self, call: Call) -> Response:
        return self._list(call, [self._consumer_json(vh, q, c) for vh in call.vhosts()
                                 for q in vh.queues.values() for c in q.consumers], sort=False)

    # -- helpers -------------------------------------------------------------------------------------------
    def _model(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ChannelError as exc:
            raise self._channel_error(exc) from None

    @staticmethod
    def _channel_error(exc: ChannelError) -> ApiError:
        if isinstance(exc, NotFound):
            return ApiError(404, "not_found", exc.explanation)
        if isinstance(exc, AccessRefused):
            return ACCESS_REFUSED
        return bad_request(exc.explanation)

    def _list(self, call: Call, items: list[dict[str, Any]], sort: bool = True) -> Response:
        """A listing with RabbitMQ's ``sort``/``sort_reverse``, ``columns`` and pagination (``page``,
        ``page_size``, ``name``, ``use_regex``)."""
        q = call.query
        key = q.get("sort")
        if key:
            items = sorted(items, key=lambda i: _sort_key(i, key))
        elif sort:
            items = sorted(items, key=lambda i: (str(i.get("vhost", "")), str(i.get("name", ""))))
        if q.get("sort_reverse") == "true":
            items.reverse()
        if "page" not in q:
            return Response.json(200, _columns(items, q.get("columns")))
        try:
            page, size = int(q["page"]), int(q.get("page_size", "100"))
        except ValueError:
            raise bad_request("Pagination parameters are invalid") from None
        if page < 1 or not 1 <= size <= 500:
            raise ApiError(400, "invalid_pagination_parameters",
                           f"Invalid pagination parameters: page number {page}, page size {size}")
        total = len(items)
        wanted = q.get("name")
        if wanted:
            if q.get("use_regex") == "true":
                try:
                    pattern = re.compile(wanted)
                except re.error:
                    raise bad_request("invalid regular expression") from None
                items = [i for i in items if pattern.search(str(i.get("name", "")))]
            else:
                items = [i for i in items if wanted.lower() in str(i.get("name", "")).lower()]
        pages = max(1, -(-len(items) // size))
        chosen = items[(page - 1) * size: page * size]
        if page > pages:
            raise ApiError(400, "invalid_pagination_parameters",
                           f"Invalid pagination parameters: page number {page}, page size {size}")
        return Response.json(200, {"filtered_count": len(items), "item_count": len(chosen),
                                   "items": _columns(chosen, q.get("columns")), "page": page,
                                   "page_count": pages, "page_size": size, "total_count": total})


def _freeze(arguments: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    from ...model.exchange import freeze_arguments

    return freeze_arguments(arguments)


def _sort_key(item: dict[str, Any], key: str) -> tuple[int, Any]:
    value: Any = item
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value) if value is not None else "")


def _error(exc: ApiError, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response.json(exc.status, {"error": exc.error, "reason": exc.reason}, headers)

