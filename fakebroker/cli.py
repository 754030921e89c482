"""``fakebroker serve``: run a broker on the wall clock with RabbitMQ's default ports until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio

from . import __version__
from .facade import serve


def _user(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {value!r}")
    return name, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakebroker", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the broker until interrupted")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--mqtt-port", type=int, default=1883, help="MQTT over TCP (default 1883; 0 = free port)")
    s.add_argument("--web-mqtt-port", type=int, default=15675, help="MQTT over WebSocket at /ws (default 15675)")
    s.add_argument("--no-web-mqtt", action="store_true", help="do not open the MQTT-over-WebSocket listener")
    s.add_argument("--user", action="append", default=[], type=_user, metavar="NAME:PASSWORD",
                   help="a user (repeatable); default guest:guest")
    s.add_argument("--vhost", action="append", default=[], help="an extra virtual host (repeatable)")
    s.add_argument("--no-anonymous", action="store_true", help="refuse MQTT clients without credentials")
    s.add_argument("--subscription-ttl", type=int, default=86_400_000,
                   help="persistent MQTT session expiry in ms (default 86400000)")
    s.add_argument("--prefetch", type=int, default=10, help="unacknowledged QoS 1 deliveries per client")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    users = dict(args.user) if args.user else {"guest": "guest"}
    async with serve(
        host=args.host,
        mqtt_port=args.mqtt_port,
        web_mqtt_port=None if args.no_web_mqtt else args.web_mqtt_port,
        clock="wall",
        users=users,
        vhosts=("/", *args.vhost),
        allow_anonymous=not args.no_anonymous,
        subscription_ttl=args.subscription_ttl,
        prefetch=args.prefetch,
    ) as broker:
        lines = [f"mqtt      mqtt://{broker.mqtt.host}:{broker.mqtt.port}"]
        if "web_mqtt" in broker.addresses:
            lines.append(f"web-mqtt  {broker.web_mqtt_url}")
        print("fakebroker is serving:\n  " + "\n  ".join(lines), flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(f"fakebroker: {signal.Signals(signum).name}, stopping", flush=True)
                return


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
