"""``fakebroker serve``: run a broker on the wall clock with RabbitMQ's default ports until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

import anyio

from . import __version__
from .facade import serve
from .protocols import listener_specs
from .protocols.base import ListenerSpec


def _user(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {value!r}")
    return name, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fakebroker",
        description="An in-memory RabbitMQ test double. 'fakebroker serve' runs one for test suites in any "
                    "language, on RabbitMQ's ports and the wall clock.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the broker until interrupted",
                       description="Run a broker on the wall clock with RabbitMQ's default ports until Ctrl-C or "
                                   "SIGTERM. Port 0 picks a free port.")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    for spec in listener_specs():
        where = f" at {spec.websocket_path}" if spec.websocket_path else ""
        s.add_argument(spec.cli_flag, type=int, default=None, dest=spec.option, metavar="PORT",
                       help=f"{spec.description}{where} (default {spec.default_port})")
        s.add_argument(f"--no-{spec.name.replace('_', '-')}", action="store_true", dest=f"no_{spec.name}",
                       help=f"do not open the {spec.description} listener")
    s.add_argument("--free-ports", action="store_true",
                   help="open every listener not given a port on a free one (printed in the banner), as a sidecar "
                        "beside a test suite does when RabbitMQ's ports may be taken")
    s.add_argument("--user", action="append", default=[], type=_user, metavar="NAME:PASSWORD",
                   help="a user (repeatable); default guest:guest")
    s.add_argument("--vhost", action="append", default=[], help="an extra virtual host (repeatable)")
    s.add_argument("--no-anonymous", action="store_true", help="refuse MQTT clients without credentials")
    s.add_argument("--subscription-ttl", type=int, default=86_400_000,
                   help="persistent MQTT session expiry in ms (default 86400000)")
    s.add_argument("--prefetch", type=int, default=10, help="unacknowledged QoS 1 deliveries per MQTT client")
    s.add_argument("--clock", choices=("wall", "virtual"), default="wall",
                   help="wall (default): timers run in real time; virtual: time moves only when a test advances it "
                        "(POST /api/fakebroker/clock/advance on the management listener)")
    s.add_argument("-v", "--verbose", action="store_true",
                   help="print connections, subscriptions and messages as they happen")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    users = dict(args.user) if args.user else {"guest": "guest"}

    def port(spec: ListenerSpec) -> int | None:
        if getattr(args, f"no_{spec.name}"):
            return None
        given: int | None = getattr(args, spec.option)
        return given if given is not None else 0 if args.free_ports else spec.default_port

    ports = {spec.option: port(spec) for spec in listener_specs()}
    async with serve(
        host=args.host,
        clock=args.clock,
        users=users,
        vhosts=("/", *args.vhost),
        allow_anonymous=not args.no_anonymous,
        mqtt_subscription_ttl=args.subscription_ttl,
        mqtt_prefetch=args.prefetch,
        **ports,
    ) as broker:
        specs = {spec.name: spec for spec in listener_specs()}
        lines = []
        width = max((len(name) for name in broker.addresses), default=0) + 2
        for name, address in broker.addresses.items():
            spec = specs[name]
            text = spec.url.format(host=address.host, port=address.port) if spec.url else \
                f"{spec.protocol}://{address.host}:{address.port}"
            lines.append(f"{name.replace('_', '-'):<{width}}{text}")
            for attribute, template in spec.more_urls.items():  # e.g. Web STOMP's SockJS endpoint
                label = attribute.removesuffix("_url").replace("_", "-")
                lines.append(f"{label:<{width}}{template.format(host=address.host, port=address.port)}")
        login = ", ".join(f"{u}/{p}" for u, p in users.items())
        print("fakebroker is serving:\n  " + "\n  ".join(lines), flush=True)
        clock = "wall (timers run in real time)" if args.clock == "wall" else \
            "virtual (time moves on POST /api/fakebroker/clock/advance)"
        print(f"clock: {clock}; users: {login}"
              f"{'; anonymous MQTT allowed' if not args.no_anonymous else ''}; stop with Ctrl-C or SIGTERM",
              flush=True)
        if args.verbose:
            _log_traffic(broker)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(f"fakebroker: {signal.Signals(signum).name}, stopping", flush=True)
                return


def _log_traffic(broker: Any) -> None:
    """--verbose: one line per connection, change of subscriptions, and routed message."""

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def who(conn: Any) -> str:
        return f"conn#{conn.id} {conn.protocol} {conn.peer[0]}:{conn.peer[1]}"

    def on_client(session: Any) -> None:
        subs = session.describe().get("subscriptions")
        say(f"client {session.client_id!r} ({session.protocol}, user {session.user!r})"
            + (f" subscriptions {subs}" if subs else ""))

    def on_route(entry: Any) -> None:
        say(entry.describe())

    broker.on("connect", lambda conn: say(f"connected {who(conn)}"))
    def on_disconnect(conn: Any) -> None:
        reason = conn.session.close_reason
        say(f"closed {who(conn)} client_id={conn.client_id!r}" + (f" ({reason})" if reason else ""))

    broker.on("disconnect", on_disconnect)
    broker.on("client", on_client)
    broker.on("route", on_route)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        anyio.run(_serve, args)
    except Exception as exc:
        os_error = _find_os_error(exc)
        if os_error is None:
            raise
        # Typically a port already taken (by a real RabbitMQ or mosquitto): say which, without a traceback.
        print(f"fakebroker: cannot listen: {os_error}", file=sys.stderr)
        return 1
    return 0


def _find_os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_os_error(inner)
        if found is not None:
            return found
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
