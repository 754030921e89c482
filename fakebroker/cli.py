"""``fakebroker serve``: run a broker on the wall clock with RabbitMQ's default ports until Ctrl-C/SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .protocols import listener_specs
from .protocols.base import ListenerSpec

# Everything else is imported inside the functions that need it: `fakebroker serve` is often started by a test
# suite that waits for its port, and `fakebroker --help` should answer at once.

#: The limit on open files `fakebroker serve` raises its own to (RabbitMQ's service unit: LimitNOFILE=65536).
DESCRIPTOR_LIMIT = 65536


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
                                   "SIGTERM. Port 0 picks a free port. Its limit on open files is raised to "
                                   f"{DESCRIPTOR_LIMIT:,} (or the hard limit), as RabbitMQ's service sets it.")
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
    s.add_argument("--loop", choices=("auto", "asyncio", "uvloop", "trio"), default="auto",
                   help="event loop: auto (uvloop when installed, else asyncio), asyncio, uvloop or trio")
    s.add_argument("--retain-log", type=int, default=1000, metavar="N",
                   help="messages the broker remembers for --verbose and reports (default 1000; a long-running "
                        "broker that kept every message would grow without bound)")
    s.add_argument("--clock", choices=("wall", "virtual"), default="wall",
                   help="wall (default): timers run in real time; virtual: time moves only when a test advances it "
                        "(POST /api/fakebroker/clock/advance on the management listener)")
    s.add_argument("-v", "--verbose", action="store_true",
                   help="print connections, subscriptions and messages as they happen")
    return parser


async def _serve(args: argparse.Namespace, sockets: dict[str, Any]) -> None:
    import signal

    import anyio

    from .config import Options
    from .facade.core import _run_node  # the node alone: the handle's methods are not needed here

    users = dict(args.user) if args.user else {"guest": "guest"}
    ports = {spec.option: port for spec, port in _ports(args)}
    options = Options.from_kwargs(
        host=args.host,
        clock=args.clock,
        users=users,
        vhosts=("/", *args.vhost),
        allow_anonymous=not args.no_anonymous,
        mqtt_subscription_ttl=args.subscription_ttl,
        mqtt_prefetch=args.prefetch,
        retain_log=args.retain_log,
        **ports,
    )
    async with _run_node(options, sockets) as (node, _journal):
        # What exists now (modules, the model, the listeners) lives as long as the process: out of the cyclic
        # collector's way, so that a collection costs what the connections and messages of the moment hold.
        import gc

        gc.freeze()
        # The process is the broker's own: collect the young generation every 20,000 allocations rather than
        # 700. Each connection and message makes objects that live a while (sessions, transports, log
        # entries), which the default thresholds traverse over and over; measured, about a tenth of the CPU
        # of a connection. A pause stays around a millisecond.
        gc.set_threshold(20_000, 20, 100)
        specs = {spec.name: spec for spec in listener_specs()}
        lines = []
        width = max((len(name) for name in node.addresses), default=0) + 2
        for name, address in node.addresses.items():
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
              f"{'; anonymous MQTT allowed' if not args.no_anonymous else ''}; event loop: {_loop_name(args)}; "
              "stop with Ctrl-C or SIGTERM", flush=True)
        if args.verbose:
            _log_traffic(node.model)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_give_back_memory, node)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    print(f"fakebroker: {signal.Signals(signum).name}, stopping", flush=True)
                    tg.cancel_scope.cancel()
                    return


async def _give_back_memory(node: Any, wave: int = 1000) -> None:
    """Once at least ``wave`` connections and half of the most open at a time have closed, empty the free lists.

    CPython keeps some freed objects (floats, tuples, dicts, lists) in free lists for reuse; after thousands of
    connections closed, those few thousand blocks lie all over the heap, and each keeps its whole arena (1 MiB)
    from going back to the system. A full collection empties them; with ``gc.freeze()`` it takes about a
    millisecond. C allocations (uvloop's handles, socket buffers) are given back by glibc's ``malloc_trim``
    where there is one.
    """
    import gc

    import anyio

    peak = 0
    due = anyio.Event()

    def opened(_conn: Any) -> None:
        nonlocal peak
        peak = max(peak, len(node.runtime.connections))

    def closed(_conn: Any) -> None:
        connections = node.runtime.connections
        if peak - len(connections) >= wave and 2 * len(connections) <= peak:
            due.set()

    node.model.on("connect", opened)
    node.model.on("disconnect", closed)
    while True:
        await due.wait()
        await anyio.sleep(0.5)  # the rest of the wave closes first
        gc.collect()
        _malloc_trim()
        peak, due = len(node.runtime.connections), anyio.Event()


def _malloc_trim() -> None:
    """Hand the C heap's free pages back to the system (glibc only; elsewhere nothing)."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # no such function, or (Windows) no process-wide library
        return
    trim(0)


def _log_traffic(model: Any) -> None:
    """--verbose: one line per connection, change of subscriptions, and routed message."""
    import time

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def on(event: str, callback: Any) -> None:
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception as exc:  # printing must never break the broker
                print(f"fakebroker: --verbose could not print a {event} event: {exc!r}", file=sys.stderr)

        model.on(event, guarded)

    def who(conn: Any) -> str:
        return f"conn#{conn.id} {conn.protocol} {conn.peer[0]}:{conn.peer[1]}"

    def on_client(session: Any) -> None:
        subs = session.describe().get("subscriptions")
        say(f"client {session.client_id!r} ({session.protocol}, user {session.user!r})"
            + (f" subscriptions {subs}" if subs else ""))

    def on_route(entry: Any) -> None:
        say(entry.describe())

    def on_disconnect(conn: Any) -> None:
        reason = conn.session.close_reason
        say(f"closed {who(conn)} client_id={conn.client_id!r}" + (f" ({reason})" if reason else ""))

    on("connect", lambda conn: say(f"connected {who(conn)}"))
    on("disconnect", on_disconnect)
    on("client", on_client)
    on("route", on_route)


def _has_uvloop() -> bool:
    from importlib.util import find_spec

    return find_spec("uvloop") is not None


def _loop_name(args: argparse.Namespace) -> str:
    if args.loop == "auto":
        return "uvloop" if _has_uvloop() else "asyncio"
    return str(args.loop)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import anyio

    loop = _loop_name(args)
    if loop == "uvloop" and not _has_uvloop():
        print("fakebroker: --loop uvloop needs uvloop: pip install 'fakebroker[fast]'", file=sys.stderr)
        return 2
    backend = "trio" if loop == "trio" else "asyncio"
    _raise_descriptor_limit()
    try:
        sockets = _bind_early(args)
        anyio.run(_serve, args, sockets, backend=backend,
                  backend_options={"use_uvloop": True} if loop == "uvloop" else {})
    except Exception as exc:
        os_error = _find_os_error(exc)
        if os_error is None:
            raise
        # Typically a port already taken (by a real RabbitMQ or mosquitto): say which, without a traceback.
        print(f"fakebroker: cannot listen: {os_error}", file=sys.stderr)
        return 1
    return 0


def _raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to :data:`DESCRIPTOR_LIMIT` (or the hard limit, if lower): a shell's
    default of 1,024 would stop a load test at about a thousand clients, where RabbitMQ takes 65,536."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = DESCRIPTOR_LIMIT if hard == resource.RLIM_INFINITY else min(hard, DESCRIPTOR_LIMIT)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # macOS caps it lower (OPEN_MAX)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _ports(args: argparse.Namespace) -> list[tuple[ListenerSpec, int | None]]:
    """Each listener and its port: None when turned off, the given one, 0 with --free-ports, else RabbitMQ's."""
    out: list[tuple[ListenerSpec, int | None]] = []
    for spec in listener_specs():
        given: int | None = getattr(args, spec.option)
        if getattr(args, f"no_{spec.name}"):
            out.append((spec, None))
        else:
            out.append((spec, given if given is not None else 0 if args.free_ports else spec.default_port))
    return out


def _bind_early(args: argparse.Namespace) -> dict[str, Any]:
    """Bind and listen on every port before the broker's modules are imported: from then on the kernel accepts
    connections into the backlog, and the broker serves them once it runs. A test suite that waits for the
    port can go on that much sooner. Only for an IP address (a host name may stand for several): otherwise the
    runtime binds, as the Python API does."""
    from .server.sockets import bind

    sockets: dict[str, Any] = {}
    try:
        for spec, port in _ports(args):
            if port is None:
                continue
            sock = bind(spec.name, args.host, port)
            if sock is None:
                break
            sockets[spec.name] = sock
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


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
