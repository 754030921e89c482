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
    host: str = "127.0.0.1"
    clock: str | Clock = "virtual"

    # Authentication (RabbitMQ: default_user/default_pass, mqtt.allow_anonymous).
    users: dict[str, Any] = field(default_factory=lambda: {"guest": "guest"})
    vhosts: tuple[str, ...] = ("/",)
    allow_anonymous: bool = True
    default_user: str = "guest"
    default_pass: str = "guest"
    #: The vhost of the Python API's calls and of protocols that do not name one (RabbitMQ's default_vhost).
    vhost: str = "/"
    retain_log: int | None = None  # keep at most this many entries in the message log (None = all)
    #: Seconds of broker-clock time a connection has to complete its protocol's opening (MQTT CONNECT, STOMP
    #: CONNECT, an HTTP request head, AMQP's handshake) before it is closed; None: no limit. RabbitMQ: 10 s.
    handshake_timeout: float | None = 10.0
    #: Connections one listener holds at most; past it the listener stops accepting (new clients wait in the
    #: TCP backlog) until one closes, as RabbitMQ's listeners do at ``ranch``'s max_connections. None: no limit.
    max_connections: int | None = 10_000

    #: Listener name -> port (0: a free port; None: not opened).
    ports: dict[str, int | None] = field(default_factory=_default_ports)
    #: Protocol name -> its settings dataclass.
    settings: dict[str, Any] = field(default_factory=_default_settings)

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
        if self.handshake_timeout is not None and not self.handshake_timeout > 0:
            raise ValueError("handshake_timeout is in seconds and must be positive (or None)")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be at least 1 (or None)")
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
