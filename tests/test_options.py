"""Broker options: core names, one port option per listener, namespaced protocol settings and their aliases."""

from __future__ import annotations

import pytest

import fakebroker
from fakebroker import Options
from fakebroker.protocols import listener_specs


def test_every_listener_has_a_port_option_and_is_on_by_default() -> None:
    options = Options.from_kwargs()
    assert set(options.ports) == {spec.name for spec in listener_specs()}
    assert all(port == 0 for port in options.ports.values())
    assert options.mqtt_port == 0 and options.web_mqtt_port == 0


def test_aliases_and_namespaced_names_are_one_setting() -> None:
    options = Options.from_kwargs(prefetch=3, subscription_ttl=5000, exchange="amq.direct")
    assert (options.mqtt_prefetch, options.prefetch) == (3, 3)
    assert options.mqtt_subscription_ttl == options.subscription_ttl == 5000
    assert options.mqtt_exchange == "amq.direct"
    assert Options.from_kwargs(mqtt_prefetch=4).prefetch == 4
    with pytest.raises(TypeError, match="'prefetch' and 'mqtt_prefetch' are the same option"):
        Options.from_kwargs(prefetch=1, mqtt_prefetch=2)


def test_replace_keeps_everything_else() -> None:
    options = Options.from_kwargs(prefetch=3, mqtt_port=None, vhost="iot")
    again = options.replace(subscription_ttl=1000)
    assert (again.prefetch, again.mqtt_port, again.vhost, again.subscription_ttl) == (3, None, "iot", 1000)
    assert "iot" in again.vhosts


def test_unknown_and_invalid_options_say_what_is_valid() -> None:
    with pytest.raises(TypeError, match=r"unknown fakebroker option\(s\): prefetsh; valid options: .*mqtt_prefetch"):
        Options.from_kwargs(prefetsh=1)
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        Options.from_kwargs(prefetch=-1)
    with pytest.raises(ValueError, match="mqtt_port must be a port number"):
        Options.from_kwargs(mqtt_port=70000)


def test_a_listener_can_be_left_off() -> None:
    with fakebroker.start(web_mqtt_port=None) as broker:
        assert set(broker.addresses) == {spec.name for spec in listener_specs()} - {"web_mqtt"}
        assert broker.listener_urls()["mqtt"].startswith("127.0.0.1:")
        with pytest.raises(AttributeError, match="the web_mqtt listener is not enabled"):
            broker.web_mqtt_url  # noqa: B018
