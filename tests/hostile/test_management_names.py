"""A queue whose name is not valid UTF-8 (a STOMP client can declare one; found by the hostile harness) must not
break the management API's listings: they answer 200 with the odd bytes as JSON escapes."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
import urllib.request

from targets import StompTarget

from fakebroker import ThreadedBroker


def test_listings_survive_a_queue_name_that_is_not_utf8(broker: ThreadedBroker, bystander, caplog):
    target = StompTarget()
    with caplog.at_level(logging.WARNING, logger="fakebroker"), \
            socket.create_connection(target.address(broker), timeout=5) as sock:
        # A queue destination with bytes that are not UTF-8 in its name.
        sock.sendall(target.opening("odd") + b"SUBSCRIBE\nid:1\ndestination:/queue/odd\xff\xfename\n\n\x00")
        deadline = time.monotonic() + 5
        while not any(name.startswith("odd") for name in broker.queues):
            assert time.monotonic() < deadline, broker.queues
            time.sleep(0.01)
        auth = base64.b64encode(b"guest:guest").decode()
        for path in ("/api/queues", "/api/bindings"):
            request = urllib.request.Request(broker.management_url + path, headers={"Authorization": f"Basic {auth}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200
                listed = json.loads(response.read())
            assert any("odd" in (item.get("name") or item.get("destination") or "") for item in listed)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    bystander.check()
