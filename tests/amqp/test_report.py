"""AMQP connections in a failed test's "fakebroker traffic" report: who is connected, what they consume, what
they published."""

from __future__ import annotations

import pytest

FAILING = """
import pika

def test_backend(fakebroker):
    params = pika.URLParameters(fakebroker.amqp_url)
    params.client_properties = {"connection_name": "billing"}
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.queue_declare("invoices")
    ch.basic_consume("invoices", lambda *a: None, consumer_tag="billing-1")
    ch.basic_publish("", "invoices", b"invoice 42")
    ch.basic_publish("amq.topic", "nobody", b"lost")
    conn.process_data_events(time_limit=0.2)
    assert False, "the backend did not answer"
"""


def test_a_failed_tests_report_shows_its_amqp_clients(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_app=FAILING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*- fakebroker traffic -*",
        "  t=0.000 opened conn#1 amqp client_id='billing' user='guest' from 127.0.0.1:*",
        "connected now:",
        "  conn#1 amqp client_id='billing' * subscriptions={'billing-1': 'invoices'}",
        "*#1 t=0.000 amqp:billing -> exchange='' routing_key='invoices' body=b'invoice 42' -> invoices; "
        "delivered to billing*",
        "*#2 t=0.000 amqp:billing -> exchange='amq.topic' routing_key='nobody' body=b'lost' -> unroutable",
    ])
