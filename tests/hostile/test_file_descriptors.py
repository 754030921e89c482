"""Running out of file descriptors: the broker, in a subprocess with a low RLIMIT_NOFILE, logs the failed
accept, keeps serving the connections it has, and accepts again once descriptors are free."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from wire import Bystander, RawMqtt

resource = pytest.importorskip("resource")  # POSIX only

LIMIT = 64
SERVER = f"""
import logging, resource, sys
logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(message)s")
resource.setrlimit(resource.RLIMIT_NOFILE, ({LIMIT}, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
import fakebroker
broker = fakebroker.start(web_mqtt_port=None)
print(broker.mqtt.port, flush=True)
sys.stdin.read()  # until the test closes our stdin
print(len(broker.clients), flush=True)
broker.stop()
"""
# The same in a uvloop event loop: its own server accepts there until the process comes near its limit.
UVLOOP_SERVER = SERVER.split("import fakebroker")[0] + """
import anyio, fakebroker

async def main():
    async with fakebroker.serve(web_mqtt_port=None) as broker:
        print(broker.mqtt.port, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
        print(len(broker.clients), flush=True)

anyio.run(main, backend_options={"use_uvloop": True})
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_out_of_file_descriptors_is_logged_and_survived(loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is the fast extra (installed by the test extra, not on Windows)")
    server = SERVER if loop == "asyncio" else UVLOOP_SERVER
    proc = subprocess.Popen([sys.executable, "-c", server], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    idle: list[socket.socket] = []
    err = ""
    try:
        assert proc.stdout is not None and proc.stdin is not None
        address = ("127.0.0.1", int(proc.stdout.readline()))
        bystander = Bystander(address)
        bystander.check()
        # Twice the limit: the broker runs out part-way; the rest wait in the listen backlog.
        for _ in range(2 * LIMIT):
            idle.append(socket.create_connection(address, timeout=5))
        bystander.check()  # the connections it had keep working (all were dropped, unlogged, before)
        # A new client cannot get in while descriptors are short...
        late = RawMqtt(address, timeout=0.5)
        with pytest.raises(AssertionError, match="no packet"):
            late.connect()
        late.close()
        # ... and can once some are free again: the listener was not lost.
        for sock in idle:
            sock.close()
        idle.clear()
        deadline = time.monotonic() + 10
        while True:
            again = RawMqtt(address, timeout=2)
            try:
                again.connect()
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            finally:
                again.close()
        bystander.check()
        bystander.close()
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0  # stop() raised an ExceptionGroup with EMFILE before
    finally:
        for sock in idle:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            err = proc.stderr.read()
        # Closed now, not whenever the Popen is collected: tests that count the process's descriptors follow.
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    warnings = [line for line in err.splitlines() if "cannot accept" in line]
    assert warnings and "Too many open files" in warnings[0], err
    assert len(warnings) <= 3, err  # once per outage, not once per retry
    assert "accepts connections again" in err, err
    assert "ERROR" not in err and "Traceback" not in err, err

