"""Both HTTP listeners keep the runtime's session contract (fakebroker.testing.check_session_contract)."""

from __future__ import annotations

from httptestlib import request

from fakebroker.protocols.http import management_session, statelessd_session
from fakebroker.testing import check_session_contract

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_statelessd_session_keeps_the_contract() -> None:
    check_session_contract(statelessd_session, [
        request("POST", "/%2F/amq.topic/a.b", b"body=one", FORM),
        request("POST", "/%2F/amq.topic/a.b", b"body=two", FORM, auth=None),
        b"POST /%2F/amq.topic/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: "
        b"application/x-www-form-urlencoded\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n\r\n"
        b"4\r\nbody\r\n4\r\n=abc\r\n0\r\n\r\n",
        request("DELETE", "/%2F/amq.topic/a.b"),
    ])


def test_statelessd_session_keeps_the_contract_through_a_malformed_request() -> None:
    check_session_contract(statelessd_session, [request("POST", "/%2F/amq.topic/a", b"body=x", FORM),
                                                b"NOT HTTP AT ALL\r\n\r\n"])


def test_management_session_keeps_the_contract() -> None:
    check_session_contract(management_session, [
        request("PUT", "/api/queues/%2F/q", b'{"durable": true}', {"Content-Type": "application/json"}),
        request("GET", "/api/queues/%2F/q?columns=name,durable"),
        request("POST", "/api/exchanges/%2F/amq.default/publish",
                b'{"routing_key":"q","payload":"hi","payload_encoding":"string","properties":{}}'),
        request("POST", "/api/queues/%2F/q/get", b'{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}'),
        request("DELETE", "/api/queues/%2F/q", headers={"Connection": "close"}),
    ])
