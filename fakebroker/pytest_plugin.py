"""pytest plugin: broker fixtures, the ``fakebroker`` marker, suite-wide options and failure reports.

Fixtures (see docs/pytest.md):

- ``fakebroker``: a started, empty :class:`~fakebroker.ThreadedBroker` per test, on free ports and the virtual
  clock; stopped after the test, which fails if the broker's thread outlives it.
- ``fakebroker_factory``: ``fakebroker_factory(**options)`` starts another broker; all are stopped at teardown.
- ``async_fakebroker``: an :class:`~fakebroker.AsyncBroker` in an anyio test's own event loop (asyncio or trio).
- ``fakebroker_options``: the options those fixtures use, as a dict (override it to compute options).
- ``mqtt_client``: ``mqtt_client("device-1", subscribe="commands/#")`` -> a connected
  :class:`~fakebroker.clients.mqtt.MqttClient` on the test's broker, closed after the test (needs paho-mqtt).
- ``stomp_client``: ``stomp_client(subscribe="/topic/orders.*")`` -> a connected
  :class:`~fakebroker.clients.stomp.StompClient` on the test's broker, closed after the test (needs stomp.py).

Options, later wins: ini ``fakebroker_options`` lines < ``--fakebroker-option KEY=VALUE`` <
``@pytest.mark.fakebroker(**options)`` (module < class < function) < keyword arguments to the factory.

When a test that used a broker fails, its report gets a "fakebroker traffic" section.
"""

from __future__ import annotations

import ast
import traceback
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import pytest

from .config import Options
from .facade import AsyncBroker, BrokerAPI, ThreadedBroker, serve, start

_BROKERS = pytest.StashKey[list[BrokerAPI]]()
_DEFAULTS = pytest.StashKey[dict[str, Any]]()
_WORDS = {"true": True, "false": False, "none": None}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakebroker", "fakebroker (in-memory RabbitMQ test double)")
    group.addoption(
        "--fakebroker-option", action="append", default=[], metavar="KEY=VALUE", dest="fakebroker_options",
        help="default option for every fakebroker fixture (repeatable), e.g. --fakebroker-option "
             "subscription_ttl=5000; VALUE is a Python literal or a bare string",
    )
    parser.addini(
        "fakebroker_options", type="linelist", default=[],
        help="default options for every fakebroker fixture, one KEY = VALUE per line",
    )
    parser.addini(
        "fakebroker_report_messages", type="string", default="50",
        help="messages listed in the 'fakebroker traffic' section of a failed test's report (0: no section)",
    )


def parse_option(text: str) -> tuple[str, Any]:
    """``"key = value"`` -> ``("key", value)``; value is a Python literal, true/false/none, or a plain string."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier():
        raise pytest.UsageError(f"fakebroker option {text!r} is not KEY=VALUE")
    if raw.lower() in _WORDS:
        return key, _WORDS[raw.lower()]
    try:
        return key, ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return key, raw


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakebroker(**options): options for this test's fakebroker fixtures (see docs/pytest.md)")
    defaults: dict[str, Any] = {}
    for line in config.getini("fakebroker_options"):
        if line.strip() and not line.strip().startswith("#"):
            defaults.update([parse_option(line)])
    for text in config.getoption("fakebroker_options", default=None) or []:
        defaults.update([parse_option(text)])
    try:
        Options.from_kwargs(**defaults)
    except (TypeError, ValueError) as exc:
        raise pytest.UsageError(f"fakebroker options: {exc}") from None
    config.stash[_DEFAULTS] = defaults


def pytest_report_header(config: pytest.Config) -> str | None:
    defaults = config.stash.get(_DEFAULTS, {})
    return f"fakebroker options: {defaults}" if defaults else None


@pytest.fixture
def fakebroker_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The options of this test's brokers: suite defaults, then ``fakebroker`` markers, closest last.

    Examples:
        ```python
        # test_fixture_fakebroker_options.py
        import pytest


        @pytest.mark.fakebroker(prefetch=5)
        def test_the_marker_sets_an_option(fakebroker_options, fakebroker):
            assert fakebroker_options["prefetch"] == 5
            assert fakebroker.options.mqtt_prefetch == 5
        ```
    """
    defaults: dict[str, Any] = request.config.stash[_DEFAULTS]
    options = dict(defaults)
    for marker in reversed(list(request.node.iter_markers("fakebroker"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.fakebroker takes keyword options only, "
                                    f"e.g. fakebroker(subscription_ttl=5000); got {marker.args!r}")
        options.update(marker.kwargs)
    return options


def _register(item: pytest.Item, broker: BrokerAPI) -> None:
    item.stash.setdefault(_BROKERS, []).append(broker)


def _problems(broker: BrokerAPI) -> list[str]:
    out = [f"a broker.on() callback raised:\n{''.join(traceback.format_exception(exc)).rstrip()}"
           for exc in broker.callback_errors]
    if broker._node.runtime.connections:
        out.append(f"{len(broker._node.runtime.connections)} connection(s) still tracked after the broker stopped")
    return out


@pytest.fixture
def fakebroker_factory(request: pytest.FixtureRequest,
                       fakebroker_options: dict[str, Any]) -> Iterator[Callable[..., ThreadedBroker]]:
    """``fakebroker_factory(**options)`` starts a broker (the test's options, overridden by ``options``).

    Every broker it started is stopped after the test, last first.

    Examples:
        ```python
        # test_fixture_fakebroker_factory.py
        def test_two_brokers_share_nothing(fakebroker, fakebroker_factory):
            tenants = fakebroker_factory(vhosts=("/", "tenant-a"))
            tenants.declare_queue("jobs", vhost="tenant-a")
            assert "jobs" in tenants.queues_in("tenant-a") and "jobs" not in fakebroker.queues
        ```
    """
    started: list[ThreadedBroker] = []

    def make(**overrides: Any) -> ThreadedBroker:
        broker = start(**{**fakebroker_options, **overrides})
        started.append(broker)
        _register(request.node, broker)
        return broker

    yield make
    problems: list[str] = []
    for broker in reversed(started):
        try:
            broker.stop()
        except Exception as exc:
            problems.append(f"stopping {broker!r} failed: {exc!r}")
        if broker.thread is not None and broker.thread.is_alive():
            problems.append(f"the broker's event loop thread {broker.thread.name!r} is still running after stop()")
        problems.extend(_problems(broker))
    if problems:
        pytest.fail("fakebroker teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def fakebroker(fakebroker_factory: Callable[..., ThreadedBroker]) -> ThreadedBroker:
    """A started, empty broker on free ports and the virtual clock, stopped after the test.

    Configure it with ``@pytest.mark.fakebroker(**options)`` or the suite-wide options. When the test fails,
    its report shows the broker's traffic.

    Examples:
        ```python
        # test_fixture_fakebroker.py
        def test_a_reading_reaches_the_audit_queue(fakebroker):
            fakebroker.declare_queue("audit")
            fakebroker.bind("audit", "amq.topic", "sensors.#")
            assert fakebroker.publish("amq.topic", "sensors.temp", b"21.5").queues == ("audit",)
        ```
    """
    return fakebroker_factory()


@pytest.fixture
async def async_fakebroker(request: pytest.FixtureRequest, fakebroker_options: dict[str, Any],
                           anyio_backend: Any) -> AsyncIterator[AsyncBroker]:
    """A broker running in the test's own anyio event loop (asyncio or trio), for ``@pytest.mark.anyio`` tests.

    Examples:
        ```python
        # test_fixture_async_fakebroker.py
        import pytest


        @pytest.mark.anyio
        async def test_a_message_expires_when_time_moves(async_fakebroker):
            async_fakebroker.declare_queue("jobs", arguments={"x-message-ttl": 30_000})
            async_fakebroker.publish("", "jobs", b"job 1")
            await async_fakebroker.advance(30)
            assert async_fakebroker.queues["jobs"].messages == 0
        ```
    """
    async with serve(**fakebroker_options) as broker:
        _register(request.node, broker)
        yield broker
    problems = _problems(broker)
    if problems:
        pytest.fail("fakebroker teardown:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def mqtt_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``mqtt_client(client_id="", *, broker=None, websocket=False, connect=True, subscribe=None, qos=0,
    **options)`` -> a paho-mqtt :class:`~fakebroker.clients.mqtt.MqttClient`, connected (and subscribed) to
    ``broker`` (default: this test's ``fakebroker``), over WebSocket with ``websocket=True``. ``options`` are
    the client's (``clean_session``, ``keepalive``, ``will``, ``username``, ``password``, ``protocol``,
    ``reconnect``). Every client is closed after the test.

    Examples:
        ```python
        # test_fixture_mqtt_client.py
        def test_a_command_reaches_the_device(fakebroker, mqtt_client):
            device = mqtt_client("device-1", subscribe="commands/#", qos=1)
            fakebroker.publish("amq.topic", "commands.reboot", b"now")
            assert device.get().payload == b"now"
        ```
    """
    try:
        from .clients.mqtt import MqttClient
    except ImportError as exc:  # paho-mqtt is an optional dependency
        raise pytest.UsageError(f"the mqtt_client fixture needs paho-mqtt: pip install 'fakebroker[clients]' "
                                f"({exc})") from None
    made: list[MqttClient] = []

    def make(client_id: str = "", *, broker: Any = None, websocket: bool = False, connect: bool = True,
             subscribe: str | list[tuple[str, int]] | None = None, qos: int = 0, **options: Any) -> MqttClient:
        target = broker if broker is not None else request.getfixturevalue("fakebroker")
        client = MqttClient(target.web_mqtt_url if websocket else target.mqtt, client_id, **options)
        made.append(client)
        if connect:
            present, code = client.connect()
            if code != 0:
                raise AssertionError(f"{client_id!r}: CONNACK refused the connection (return code {code})")
            if subscribe is not None:
                client.subscribe(subscribe, qos)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.fixture
def stomp_client(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``stomp_client(*, broker=None, version="1.2", websocket=False, connect=True, subscribe=None, ack="auto",
    **options)`` -> a stomp.py :class:`~fakebroker.clients.stomp.StompClient`, connected (and subscribed) to
    ``broker`` (default: this test's ``fakebroker``), over Web STOMP with ``websocket=True``. ``options`` are the
    client's (``vhost``, ``login``, ``passcode``, ``heartbeats``). Every client is closed after the test."""
    try:
        from .clients.stomp import StompClient
    except ImportError as exc:  # stomp.py is an optional dependency
        raise pytest.UsageError(f"the stomp_client fixture needs stomp.py: pip install 'fakebroker[clients]' "
                                f"({exc})") from None
    made: list[StompClient] = []

    def make(*, broker: Any = None, version: str = "1.2", websocket: bool = False, connect: bool = True,
             subscribe: str | None = None, ack: str = "auto", **options: Any) -> StompClient:
        target = broker if broker is not None else request.getfixturevalue("fakebroker")
        client = StompClient(target.web_stomp_url if websocket else target.stomp, version=version, **options)
        made.append(client)
        if connect:
            client.connect()
            if subscribe is not None:
                client.subscribe(subscribe, ack=ack)
        return client

    yield make
    for client in reversed(made):
        client.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[
        None, pytest.TestReport, pytest.TestReport]:
    report = yield
    brokers = item.stash.get(_BROKERS, None)
    if call.when == "teardown" and brokers is not None:
        # The last report of this test: let its brokers (model, log, sockets) go, or every test's would stay
        # alive for the whole session and slow each garbage collection down.
        del item.stash[_BROKERS]
    if report.failed and brokers:
        try:
            limit = int(item.config.getini("fakebroker_report_messages"))
        except ValueError:
            limit = 50
        if limit > 0:
            for number, broker in enumerate(brokers, 1):
                title = "fakebroker traffic" + (f" (broker {number})" if len(brokers) > 1 else "")
                try:
                    text = broker.traffic_report(limit)
                except Exception as exc:  # a report must never hide the test's own failure
                    text = f"(could not describe the broker: {exc!r})"
                report.sections.append((title, text))
    return report
