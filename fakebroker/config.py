"""Broker options. Names follow RabbitMQ's configuration keys wherever RabbitMQ has one.

Core options are fields of :class:`Options`. Each listener adds ``<listener>_port`` (a port, 0 for a free one,
None to leave it off) and each protocol's settings dataclass adds ``<protocol>_<setting>`` (``mqtt_prefetch``);
a protocol may also accept older or RabbitMQ-style names as aliases (``prefetch`` for ``mqtt_prefetch``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .clock import Clock
from .protocols import PROTOCOLS, listener_specs

T = TypeVar("T")


def _default_ports() -> dict[str, int | None]:
    return {spec.name: 0 for spec in listener_specs()}


def _default_settings() -> dict[str, Any]:
    return {p.name: p.settings() for p in PROTOCOLS if p.settings is not None}


@dataclass
class Options:
    """A broker's options, as :func:`~fakebroker.start`, :func:`~fakebroker.serve`, the ``fakebroker`` marker
    and ``fakebroker serve`` take them: the fields below, ``<listener>_port`` for each listener (``mqtt_port``,
    ``web_mqtt_port``; 0 for a free port, None to leave it closed) and ``<protocol>_<setting>`` for each
    protocol setting (``mqtt_prefetch``, ``mqtt_subscription_ttl``, ...), some also by a shorter alias
    (``prefetch``). :meth:`names` lists them all; an unknown name is a TypeError that lists them too.

    Examples:
        >>> options = fakebroker.Options.from_kwargs(web_mqtt_port=None, prefetch=5)
        >>> options.mqtt_prefetch, options.web_mqtt_port
        (5, None)
    """

    host: str = "127.0.0.1"
    """The address the listeners bind."""
    clock: str | Clock = "virtual"
    """``"virtual"`` (moves only when the test advances it), ``"wall"``, or a :class:`~fakebroker.VirtualClock` /
    :class:`~fakebroker.WallClock` instance."""

    # Authentication (RabbitMQ: default_user/default_pass, mqtt.allow_anonymous).
    users: dict[str, Any] = field(default_factory=lambda: {"guest": "guest"})
    """User -> password, or -> ``{"password": ..., "vhosts": [...]}``."""
    vhosts: tuple[str, ...] = ("/",)
    """The virtual hosts (``vhost`` and the protocols' vhosts are added when missing)."""
    allow_anonymous: bool = True
    """Clients that send no credentials log in as ``default_user`` (RabbitMQ's ``mqtt.allow_anonymous``)."""
    default_user: str = "guest"
    """The anonymous login's user."""
    default_pass: str = "guest"
    """The anonymous login's password."""
    vhost: str = "/"
    """The vhost of the Python API's calls and of protocols that do not name one (RabbitMQ's default_vhost)."""
    retain_log: int | None = None
    """Keep at most this many entries in the message log (None: all)."""
    handshake_timeout: float | None = 10.0
    """Seconds of broker-clock time a connection has to complete its protocol's opening (MQTT CONNECT, STOMP
    CONNECT, an HTTP request head, AMQP's handshake) before it is closed; None: no limit. RabbitMQ: 10 s."""
    max_connections: int | None = 10_000
    """Connections one listener holds at most; past it the listener stops accepting (new clients wait in the
    TCP backlog) until one closes, as RabbitMQ's listeners do at ``ranch``'s max_connections. None: no limit."""
    output_buffer_limit: int | None = 16 * 1024 * 1024
    """Bytes queued for a client that is not reading past which sessions drop what their protocol lets them
    drop (MQTT QoS 0 deliveries), counted in ``broker.clients`` and the failure report. None: no limit."""

    ports: dict[str, int | None] = field(default_factory=_default_ports)
    """Listener name -> port (0: a free port; None: not opened); given as ``<listener>_port`` options."""
    settings: dict[str, Any] = field(default_factory=_default_settings)
    """Protocol name -> its settings dataclass; given as ``<protocol>_<setting>`` options."""

    @classmethod
    def names(cls) -> list[str]:
        """Every option name :meth:`from_kwargs` accepts."""
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("ports", "settings")]
        names += [spec.option for spec in listener_specs()]
        for p in PROTOCOLS:
            if p.settings is not None:
                names += [f"{p.name}_{f.name}" for f in dataclasses.fields(p.settings)]
            names += list(p.aliases)
        return sorted(set(names))

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> Options:
        """Options from keyword arguments as :func:`~fakebroker.start` takes them, checked (TypeError for an
        unknown name, ValueError for a bad value)."""
        core = {f.name for f in dataclasses.fields(cls)} - {"ports", "settings"}
        ports = _default_ports()
        by_option = {spec.option: spec.name for spec in listener_specs()}
        settings: dict[str, dict[str, Any]] = {}
        plain: dict[str, Any] = {}
        unknown: list[str] = []
        for key, value in _resolve_aliases(kwargs).items():
            if key in core:
                plain[key] = value
            elif key in by_option:
                ports[by_option[key]] = value
            else:
                found = _setting(key)
                if found is None:
                    unknown.append(key)
                else:
                    settings.setdefault(found[0], {})[found[1]] = value
        if unknown:
            raise TypeError(f"unknown fakebroker option(s): {', '.join(sorted(unknown))}; "
                            f"valid options: {', '.join(cls.names())}")
        built = {p.name: p.settings(**settings.get(p.name, {})) for p in PROTOCOLS if p.settings is not None}
        options = cls(**plain, ports=ports, settings=built)
        options.validate()
        return options

    def validate(self) -> None:
        """Check the values (ValueError), and add the vhosts that options name to ``vhosts``."""
        if self.handshake_timeout is not None and not self.handshake_timeout > 0:
            raise ValueError("handshake_timeout is in seconds and must be positive (or None)")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be at least 1 (or None)")
        if self.output_buffer_limit is not None and self.output_buffer_limit < 1:
            raise ValueError("output_buffer_limit is in bytes and must be positive (or None)")
        for name, port in self.ports.items():
            if port is not None and not (isinstance(port, int) and 0 <= port <= 65535):
                raise ValueError(f"{name}_port must be a port number, 0 for a free port, or None; got {port!r}")
        for value in self.settings.values():
            check = getattr(value, "validate", None)
            if check is not None:
                check()
        wanted = [self.vhost] + [v for s in self.settings.values() if isinstance(v := getattr(s, "vhost", None), str)]
        for vhost in wanted:
            if vhost not in self.vhosts:
                self.vhosts = (*self.vhosts, vhost)

    def protocol_settings(self, protocol: str, kind: type[T]) -> T:
        """The settings of ``protocol``, typed: ``options.protocol_settings("mqtt", MqttSettings)``."""
        value = self.settings[protocol]
        assert isinstance(value, kind)
        return value

    def as_kwargs(self) -> dict[str, Any]:
        """These options as :meth:`from_kwargs` takes them (namespaced names, no aliases)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("ports", "settings")}
        out.update({f"{name}_port": port for name, port in self.ports.items()})
        for protocol, value in self.settings.items():
            out.update({f"{protocol}_{f.name}": getattr(value, f.name) for f in dataclasses.fields(value)})
        return out

    def replace(self, **kwargs: Any) -> Options:
        """A copy with ``kwargs`` changed, checked as :meth:`from_kwargs` checks them."""
        return Options.from_kwargs(**{**self.as_kwargs(), **_resolve_aliases(kwargs)})

    def __getattr__(self, name: str) -> Any:
        # ``options.mqtt_port``, ``options.mqtt_prefetch`` and aliases such as ``options.prefetch``.
        if name.startswith("_") or name in ("ports", "settings"):
            raise AttributeError(name)
        name = _alias_target(name)
        if name.endswith("_port") and name[: -len("_port")] in self.ports:
            return self.ports[name[: -len("_port")]]
        found = _setting(name)
        if found is not None and found[0] in self.settings:
            return getattr(self.settings[found[0]], found[1])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _alias_target(name: str) -> str:
    for p in PROTOCOLS:
        if name in p.aliases:
            return p.aliases[name]
    return name


def _resolve_aliases(kwargs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        target = _alias_target(key)
        if target != key and target in kwargs:
            raise TypeError(f"fakebroker options {key!r} and {target!r} are the same option; give one")
        out[target] = value
    return out


def _setting(option: str) -> tuple[str, str] | None:
    """``"mqtt_prefetch"`` -> ``("mqtt", "prefetch")`` when the mqtt protocol has that setting."""
    for p in PROTOCOLS:
        prefix = p.name + "_"
        if p.settings is not None and option.startswith(prefix):
            setting = option[len(prefix):]
            if setting in {f.name for f in dataclasses.fields(p.settings)}:
                return p.name, setting
    return None
