"""Hypothesis drives the AMQP session with random sequences of frames (nearly all well-formed) after the
handshake: whatever the order, channel or arguments, the session answers (or closes) without raising, and two
sessions on one broker leave the model consistent."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit.amqp import Client, content, method
from pamqp import commands as c

from fakebroker.testing import FakeHost

NAMES = st.sampled_from(["", "q", "r", "amq.gen-x", "amq.topic", "x", "amq.rabbitmq.reply-to"])
KEYS = st.sampled_from(["", "q", "r", "a.b", "#", "amq.rabbitmq.reply-to"])
TAGS = st.sampled_from(["", "t1", "t2"])
DELIVERY = st.integers(0, 6)
ARGS = st.sampled_from([{}, {"x-max-length": 1}, {"x-message-ttl": 0}, {"x-expires": 1000},
                        {"x-overflow": "reject-publish", "x-max-length": 1}, {"alternate-exchange": "r"},
                        {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "r"}, {"x-max-length": -1}])
FLAG = st.booleans()


def _methods() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(c.Channel.Open), st.builds(c.Channel.Close, st.just(200), st.just(""), st.just(0), st.just(0)),
        st.builds(c.Channel.CloseOk), st.builds(c.Channel.Flow, FLAG),
        st.builds(lambda n, t, p, d, a, i, args: c.Exchange.Declare(exchange=n, exchange_type=t, passive=p,
                                                                     durable=d, auto_delete=a, internal=i,
                                                                     arguments=args),
                  st.sampled_from(["x", "r", "amq.topic", "", "amq.x"]),
                  st.sampled_from(["direct", "fanout", "topic", "headers", "bogus"]), FLAG, FLAG, FLAG, FLAG, ARGS),
        st.builds(lambda n, u: c.Exchange.Delete(exchange=n, if_unused=u), st.sampled_from(["x", "r", ""]), FLAG),
        st.builds(lambda d, s, k: c.Exchange.Bind(destination=d, source=s, routing_key=k),
                  st.sampled_from(["x", "r"]), st.sampled_from(["x", "r", "amq.topic"]), KEYS),
        st.builds(lambda d, s, k: c.Exchange.Unbind(destination=d, source=s, routing_key=k),
                  st.sampled_from(["x", "r"]), st.sampled_from(["x", "r", "amq.topic"]), KEYS),
        st.builds(lambda q, p, d, e, a, args: c.Queue.Declare(queue=q, passive=p, durable=d, exclusive=e,
                                                              auto_delete=a, arguments=args),
                  NAMES, FLAG, FLAG, FLAG, FLAG, ARGS),
        st.builds(lambda q, e, k: c.Queue.Bind(queue=q, exchange=e, routing_key=k), NAMES,
                  st.sampled_from(["x", "amq.topic", "", "nope"]), KEYS),
        st.builds(lambda q, e, k: c.Queue.Unbind(queue=q, exchange=e, routing_key=k), NAMES,
                  st.sampled_from(["x", "amq.topic", ""]), KEYS),
        st.builds(lambda q: c.Queue.Purge(queue=q), NAMES),
        st.builds(lambda q, u, e: c.Queue.Delete(queue=q, if_unused=u, if_empty=e), NAMES, FLAG, FLAG),
        st.builds(lambda n, g: c.Basic.Qos(prefetch_count=n, global_=g), st.integers(0, 3), FLAG),
        st.builds(lambda q, t, a, e: c.Basic.Consume(queue=q, consumer_tag=t, no_ack=a, exclusive=e),
                  NAMES, TAGS, FLAG, FLAG),
        st.builds(lambda t: c.Basic.Cancel(consumer_tag=t), TAGS),
        st.builds(lambda q, a: c.Basic.Get(queue=q, no_ack=a), NAMES, FLAG),
        st.builds(lambda t, m: c.Basic.Ack(t, m), DELIVERY, FLAG),
        st.builds(lambda t, m, r: c.Basic.Nack(t, m, r), DELIVERY, FLAG, FLAG),
        st.builds(lambda t, r: c.Basic.Reject(t, r), DELIVERY, FLAG),
        st.builds(lambda r: c.Basic.Recover(requeue=r), FLAG),
        st.builds(c.Confirm.Select), st.builds(c.Tx.Select), st.builds(c.Tx.Commit), st.builds(c.Tx.Rollback),
    )


def _publish() -> st.SearchStrategy[bytes]:
    return st.builds(
        lambda ch, e, k, m, reply, body: content(ch, c.Basic.Publish(exchange=e, routing_key=k, mandatory=m), body,
                                                 **({"reply_to": reply} if reply else {})),
        st.integers(1, 2), st.sampled_from(["", "amq.topic", "x", "r", "nope"]), KEYS, FLAG,
        st.sampled_from([None, "amq.rabbitmq.reply-to"]), st.binary(max_size=8))


#: Mostly well-formed frames; now and then a content frame out of place, a heartbeat, or a few arbitrary bytes.
STEP = st.one_of(st.builds(method, st.integers(0, 2), _methods()), _publish(),
                 st.sampled_from([b"\x08\x00\x00\x00\x00\x00\x00\xce", b"\x08\x00\x01\x00\x00\x00\x00\xce",
                                  b"\x03\x00\x01\x00\x00\x00\x01x\xce"]),
                 st.binary(max_size=12))


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 1), STEP), max_size=40), st.integers(0, 3))
def test_random_frame_sequences_never_crash_a_session(steps: list[tuple[int, bytes]], advance: int) -> None:
    host = FakeHost()
    clients = [Client(host).open(), Client(host).open()]
    for who, frame in steps:
        client = clients[who]
        if client.session.close_requested:
            continue
        client.driver.feed(frame)  # raises if the session raised
        host.clock.advance(advance)
    for client in clients:
        client.session.receive_data(b"")
    vhost = host.model.vhost("/")
    # Whatever happened, the connections' exclusive queues went with them and no consumer is left behind.
    assert not any(q.exclusive for q in vhost.queues.values())
    assert all(not q.consumers for q in vhost.queues.values())
