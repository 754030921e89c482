"""A private RabbitMQ node for the scenarios that must not run on the shared one: a memory alarm blocks every
publisher of its node, so the alarm scenarios raise it on a node of their own.

The node is Debian's ``rabbitmq-server`` (the one ``scripts/rabbitmq.sh`` installs), started through the same
wrappers as the shared node, so it runs as the ``rabbitmq`` user with that user's Erlang cookie, and
``rabbitmqctl -n <node>`` reaches it. Everything else is its own: the node name, the AMQP and distribution
ports (free ones below the ephemeral range), and a temporary directory holding its configuration (AMQP on
127.0.0.1, no plugins), its database, logs and pid file. It is ready once its AMQP port answers with its
name. Booting takes about 4 s.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from pamqp import frame

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
CTL_TIMEOUT = 30.0


def problem() -> str | None:
    """None when a private node can be started here; otherwise what is missing."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        return "rabbitmq-server is not installed (scripts/rabbitmq.sh install)"
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return "there is no rabbitmq user (scripts/rabbitmq.sh install makes one)"
    if os.geteuid() not in (0, pwd.getpwnam("rabbitmq").pw_uid):
        return "a private RabbitMQ node needs root or the rabbitmq user (Debian's wrappers refuse anyone else)"
    return None


def _free_port() -> int:
    """A free port below the kernel's ephemeral range: the node binds it seconds after this returns, and in
    between the fakebrokers of other tests, which take ephemeral ports, must not get it."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, max(low, 10001))
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port


def _cluster_name(port: int) -> str | None:
    """The ``cluster_name`` the AMQP server on ``port`` announces in connection.start, None if none."""
    with contextlib.suppress(OSError, ValueError, struct.error), \
            socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(b"AMQP\x00\x00\x09\x01")
        data = b""
        while True:
            with contextlib.suppress(Exception):  # noqa: BLE001 - an incomplete frame: read on
                _, _, start = frame.unmarshal(data)
                name = (start.server_properties or {}).get("cluster_name")
                return name if isinstance(name, str) else None
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
    return None


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


class PrivateNode:
    """One RabbitMQ node of our own: :meth:`start`, :meth:`ctl`, :meth:`stop`."""

    def __init__(self) -> None:
        self.name = f"fbalarm{os.getpid()}@localhost"
        self.port = _free_port()
        self.dist_port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fakebroker-node-"))
        self._started = False

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {**os.environ,
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": HOST,
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
                "RABBITMQ_LOG_BASE": str(d / "log"),
                "RABBITMQ_PID_FILE": str(d / "node.pid"),
                "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(d / "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf")}

    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # close_fds: whatever the test process holds (a flock on the shared node's lock file, say) must not
        # live on in the node, which detaches and outlives this call.
        return subprocess.run(argv, env=self._env(), cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, close_fds=True, check=False)

    def start(self) -> None:
        d = self.dir
        (d / "rabbitmq.conf").write_text(f"listeners.tcp.default = {HOST}:{self.port}\n"
                                         "loopback_users.guest = true\n")
        (d / "advanced.config").write_text("[].\n")
        (d / "enabled_plugins").write_text("[].\n")  # AMQP only
        (d / "rabbitmq-env.conf").write_text("")
        if os.geteuid() == 0:
            user = pwd.getpwnam("rabbitmq")
            for path in (d, *d.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._started = True
        started = self._run("rabbitmq-server", "-detached", timeout=CTL_TIMEOUT)
        deadline = time.monotonic() + START_TIMEOUT
        # The port must be open and answered by this node: a port taken meanwhile would have the node fail to
        # start while something else answers there.
        while not (_port_open(self.port) and self._answers(self.port)):
            if started.returncode != 0 or time.monotonic() > deadline:
                raise RuntimeError(f"the private RabbitMQ node {self.name} did not open port {self.port} "
                                   f"(rabbitmq-server: {started.returncode} {started.stderr.strip()}); "
                                   f"log:\n{self.log_tail()}")
            time.sleep(0.1)

    def _answers(self, port: int) -> bool:
        """Whether the AMQP server on ``port`` is this node: its default ``cluster_name`` is the node's name
        with the machine's host name."""
        name = _cluster_name(port)
        return name is not None and name.split("@")[0] == self.name.split("@")[0]

    def ctl(self, *args: str) -> str:
        """``rabbitmqctl -n <node> <args>``; its output, or RuntimeError."""
        done = self._run("rabbitmqctl", "-q", "-n", self.name, *args, timeout=CTL_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {done.returncode} {done.stdout} {done.stderr}")
        return done.stdout.strip()

    def memory_watermark(self) -> list[str]:
        """The arguments of ``set_vm_memory_high_watermark`` that restore the current watermark."""
        value = self.ctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
        absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", value)
        return ["absolute", absolute.group(1)] if absolute else [value]

    def log_tail(self, lines: int = 30) -> str:
        logs = sorted((self.dir / "log").glob("*.log"))
        if not logs:
            return "(no log)"
        return "\n".join(logs[0].read_text(errors="replace").splitlines()[-lines:])

    def _kill(self) -> None:
        """The node's own process, if ``rabbitmqctl stop`` could not halt it (checked by its command line)."""
        with contextlib.suppress(ValueError, OSError):
            pid = int((self.dir / "node.pid").read_text().strip())
            if self.name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, 9)

    def stop(self) -> None:
        try:
            if self._started:
                try:
                    self.ctl("stop")
                except (RuntimeError, subprocess.TimeoutExpired):
                    self._kill()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def alarm_on(resource: str) -> str:
    """An expression for ``rabbitmqctl eval``: true once ``rabbit_alarm`` lists the resource's alarm."""
    return (f"lists:any(fun({{{{resource_limit, {resource}, _}}, _}}) -> true; (_) -> false end, "
            "rabbit_alarm:get_alarms()).")


class PrivateRabbitBackend:
    """The AMQP side of :class:`PrivateNode`, for scenarios written against the contract suite's backends:
    what ``amqpkit.connect`` and ``RawAmqp`` use (``vhost``, ``amqp_address``), and the node's memory alarm."""

    name = "rabbitmq"
    is_fake = False
    quiet = 0.3

    def __init__(self, node: PrivateNode) -> None:
        self.node = node
        self.vhost = "/"
        self.prefix = f"ct{os.urandom(4).hex()}"  # queue names of this test: the node outlives it
        self._owned: list[object] = []
        self._restore: list[list[str]] = []  # rabbitmqctl commands that undo the alarms raised

    @property
    def amqp_address(self) -> tuple[str, int]:
        return (HOST, self.node.port)

    def cid(self, label: str) -> str:
        return f"{self.prefix}-{label}"

    def alarm(self, resource: str = "memory") -> None:
        """A resource alarm, in force on every connection once this returns (the alarm handler notifies the
        connections before it lists the alarm): ``rabbitmqctl set_vm_memory_high_watermark 0`` for memory,
        ``set_disk_free_limit`` far above the free space for disk."""
        if resource == "memory":
            self._restore.append(["set_vm_memory_high_watermark", *self.node.memory_watermark()])
            self.node.ctl("set_vm_memory_high_watermark", "0")
        else:
            self._restore.append(["set_disk_free_limit",
                                  self.node.ctl("eval", "rabbit_disk_monitor:get_disk_free_limit().")])
            self.node.ctl("set_disk_free_limit", "1000000GB")
        deadline = time.monotonic() + CTL_TIMEOUT
        while self.node.ctl("eval", alarm_on(resource)) != "true":
            assert time.monotonic() < deadline, f"the {resource} alarm did not go off"
            time.sleep(0.05)

    def clear_alarm(self) -> None:
        """The watermark or disk limit as it was before :meth:`alarm`: the alarm clears."""
        while self._restore:
            self.node.ctl(*self._restore.pop())

    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    def connection_states(self) -> list[str]:
        """``rabbitmqctl list_connections state``, sorted: running, blocking or blocked."""
        return sorted(self.node.ctl("list_connections", "--no-table-headers", "state").split())

    def close(self) -> None:
        self.clear_alarm()  # first: a blocked connection would not read its connection.close
        for client in reversed(self._owned):
            with contextlib.suppress(Exception):
                client.close()  # type: ignore[attr-defined]
        # The node outlives the test: the next one must not find these connections in connection_states(). A
        # socket closed without connection.close goes from the node's list a moment later.
        deadline = time.monotonic() + CTL_TIMEOUT
        while self.node.ctl("list_connections", "--no-table-headers", "pid"):
            assert time.monotonic() < deadline, "the node still lists the test's connections"
            time.sleep(0.05)
