"""The ``fakebroker`` fixture, its marker, suite-wide options, the factory, isolation and xdist, exercised by
running small application suites with pytester."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fakebroker import ThreadedBroker


def test_fixture_is_a_started_empty_broker_on_the_virtual_clock(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import fakebroker as fb

        def test_empty(fakebroker, mqtt_client):
            assert isinstance(fakebroker, fb.ThreadedBroker)
            assert fakebroker.queues == {} and len(fakebroker.messages) == 0 and fakebroker.clients == []
            assert fakebroker.clock.now() == 0.0
            fakebroker.clock.advance(3600)
            assert fakebroker.clock.now() == 3600.0
            assert fakebroker.mqtt.host == "127.0.0.1" and fakebroker.mqtt.port > 0
            sub = mqtt_client("sub", broker=fakebroker, reconnect=True)
            sub.subscribe("greetings/#", qos=1)
            mqtt_client("pub", broker=fakebroker, reconnect=True).publish("greetings/en", b"hello", qos=1)
            assert sub.get().astuple() == ("greetings/en", b"hello", 1)
    """)
    app.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_each_test_gets_its_own_broker_and_every_broker_is_stopped(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        seen = []

        def test_first(fakebroker):
            fakebroker.declare_queue("leftover", durable=True)
            fakebroker.publish("", "leftover", b"x")
            seen.append(fakebroker)

        def test_second(fakebroker):
            assert fakebroker.queues == {} and len(fakebroker.messages) == 0
            assert fakebroker.mqtt != seen[0].mqtt
            seen.append(fakebroker)

        def test_previous_brokers_are_gone():
            assert [b.stopped for b in seen] == [True, True]
            assert not any(b.thread.is_alive() for b in seen)
    """)
    app.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_marker_options_closest_marker_wins(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest

        pytestmark = pytest.mark.fakebroker(prefetch=3, allow_anonymous=False)

        @pytest.mark.fakebroker(prefetch=7)
        class TestClass:
            def test_class_marker(self, fakebroker):
                assert fakebroker.options.prefetch == 7
                assert fakebroker.options.allow_anonymous is False

            @pytest.mark.fakebroker(prefetch=1, clock="wall")
            def test_function_marker(self, fakebroker):
                assert fakebroker.options.prefetch == 1
                with pytest.raises(TypeError, match="wall clock"):
                    fakebroker.clock.advance(1)

        def test_module_marker_applies_to_the_broker(fakebroker, mqtt_client):
            assert fakebroker.options.prefetch == 3
            anonymous = mqtt_client("anon", broker=fakebroker, reconnect=True, connect=False)
            session_present, code = anonymous.connect()
            assert code == 4  # CONNACK 4: anonymous logins are refused

        def test_users_option(fakebroker_factory):
            broker = fakebroker_factory(users={"app": "secret"}, allow_anonymous=True)
            assert broker.options.users == {"app": "secret"}
    """)
    app.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=4)


def test_ini_and_command_line_defaults_and_their_precedence(app: pytest.Pytester) -> None:
    app.makeini("""
        [pytest]
        fakebroker_options =
            subscription_ttl = 5000
            prefetch = 4
            users = {"guest": "guest", "app": "secret"}
            exchange = amq.topic
    """)
    app.makepyfile(test_app="""
        import pytest

        def test_defaults(fakebroker, fakebroker_options):
            assert fakebroker_options == {"subscription_ttl": 5000, "prefetch": 2,
                                          "users": {"guest": "guest", "app": "secret"}, "exchange": "amq.topic",
                                          "allow_anonymous": False}
            assert fakebroker.options.subscription_ttl == 5000
            assert fakebroker.options.prefetch == 2  # the command line beats the ini file

        @pytest.mark.fakebroker(prefetch=9)
        def test_marker_beats_both(fakebroker):
            assert fakebroker.options.prefetch == 9
            assert fakebroker.options.allow_anonymous is False
    """)
    result = app.runpytest("-p", "no:cacheprovider", "--fakebroker-option", "prefetch=2",
                           "--fakebroker-option=allow_anonymous=false")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["fakebroker options: {*'prefetch': 2*}"])


def test_unknown_option_is_a_usage_error(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="def test_nothing(): pass")
    result = app.runpytest("-p", "no:cacheprovider", "--fakebroker-option", "subscripton_ttl=5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown fakebroker option(s): subscripton_ttl; valid options:*subscription_ttl*"])
    result = app.runpytest("-p", "no:cacheprovider", "--fakebroker-option", "prefetch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*fakebroker option 'prefetch' is not KEY=VALUE*"])


def test_bad_marker_fails_the_test_that_uses_it(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest

        @pytest.mark.fakebroker(prefetchh=3)
        def test_typo(fakebroker):
            pass

        @pytest.mark.fakebroker({"prefetch": 3})
        def test_positional(fakebroker):
            pass
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*unknown fakebroker option(s): prefetchh*",
                                 "*takes keyword options only*"])


def test_factory_starts_more_brokers_and_stops_them_all(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import pytest

        brokers = []

        @pytest.mark.fakebroker(prefetch=5)
        def test_two_more(fakebroker, fakebroker_factory, mqtt_client):
            other = fakebroker_factory(subscription_ttl=1000)
            third = fakebroker_factory()
            brokers.extend([fakebroker, other, third])
            assert len({fakebroker.mqtt, other.mqtt, third.mqtt}) == 3
            assert other.options.prefetch == 5 and other.options.subscription_ttl == 1000
            # the brokers are independent: a message on one is not on the other
            sub = mqtt_client("sub", broker=other, reconnect=True)
            sub.subscribe("t", qos=1)
            mqtt_client("pub", broker=fakebroker, reconnect=True).publish("t", b"one", qos=1)
            mqtt_client("pub", broker=other, reconnect=True).publish("t", b"other", qos=1)
            assert sub.get().astuple()[1] == b"other"
            assert fakebroker.messages.bodies == [b"one"]

        def test_all_stopped():
            assert len(brokers) == 3
            assert all(b.stopped and not b.thread.is_alive() for b in brokers)
    """)
    app.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_callback_errors_fail_the_test_at_teardown(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        def test_bad_hook(fakebroker):
            def hook(entry):
                raise RuntimeError("boom in a hook")
            fakebroker.on("route", hook)
            entry = fakebroker.publish("amq.topic", "a.b", b"still routed")
            assert entry.body == b"still routed"  # the broker itself carried on
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fakebroker teardown:*", "*a broker.on() callback raised:*",
                                 "*RuntimeError: boom in a hook*"])


def test_works_under_xdist(app: pytest.Pytester) -> None:
    # Free ports and a broker per test make parallel workers independent.
    app.makepyfile(test_app="""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(8))
        def test_roundtrip(fakebroker, mqtt_client, n):
            assert os.environ.get("PYTEST_XDIST_WORKER") in ("gw0", "gw1")
            sub = mqtt_client(f"sub{n}", broker=fakebroker, reconnect=True)
            sub.subscribe("jobs/#", qos=1)
            mqtt_client(f"pub{n}", broker=fakebroker, reconnect=True).publish(f"jobs/{n}", str(n).encode(), qos=1)
            assert sub.get().astuple() == (f"jobs/{n}", str(n).encode(), 1)
            fakebroker.assert_published(count=1, topic="jobs/#")
    """)
    # Without hypothesis' plugin the controller and both workers start faster (this suite does not use it).
    result = app.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-n", "2")
    result.assert_outcomes(passed=8)


def test_teardown_fails_a_test_whose_broker_thread_outlives_it(app: pytest.Pytester) -> None:
    app.makepyfile(test_app="""
        import threading

        def test_leaky(fakebroker):
            # Stand-in for a loop thread that did not finish: the fixture must notice it after stop().
            fakebroker.thread = threading.main_thread()
    """)
    result = app.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fakebroker teardown:*",
                                 "*the broker's event loop thread 'MainThread' is still running after stop()*"])


@pytest.mark.fakebroker(vhost="iot", exchange="amq.direct", users={"dev": "pw"}, allow_anonymous=False)
def test_marker_options_reach_the_mqtt_plugin(fakebroker: ThreadedBroker, mqtt_client: Callable[..., Any]) -> None:
    device = mqtt_client("dev-1", broker=fakebroker, reconnect=True, connect=False)
    device.paho.username_pw_set("dev", "pw")
    device.connect()
    device.publish("meters/1", b"42", qos=1)
    entry = fakebroker.assert_published(client_id="dev-1")[0]
    assert (entry.vhost, entry.exchange, entry.routing_key) == ("iot", "amq.direct", "meters.1")
    assert fakebroker.clients.get("dev-1").user == "dev"  # type: ignore[union-attr]
