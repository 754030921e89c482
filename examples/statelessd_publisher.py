"""Publish messages over HTTP through statelessd, as in "RabbitMQ in Depth", chapter 9.

statelessd turns ``POST /<vhost>/<exchange>/<routing-key>`` with Basic credentials and form fields into an
AMQP publish, answering 204 at once (fire and forget). The chapter publishes to ``amq.topic`` and checks the
result in the management UI at ``http://localhost:15672/#/queues/%2F/statelessd-messages``: a queue bound to
``amq.topic``. Against ``fakebroker serve`` (statelessd on 8900, management API on 15672):

    python examples/statelessd_publisher.py --url http://127.0.0.1:8900 --count 5
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import quote

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8900", help="statelessd's base URL")
    parser.add_argument("--vhost", default="/")
    parser.add_argument("--exchange", default="amq.topic")
    parser.add_argument("--routing-key", default="example.statelessd")
    parser.add_argument("--user", default="guest")
    parser.add_argument("--password", default="guest")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)

    url = f"{args.url}/{quote(args.vhost, safe='')}/{quote(args.exchange, safe='')}/{quote(args.routing_key, safe='')}"
    with requests.Session() as http:  # one keep-alive connection for every publish
        http.auth = (args.user, args.password)
        for n in range(args.count):
            reply = http.post(url, data={"body": f"message {n} via statelessd", "content_type": "text/plain",
                                         "delivery_mode": "2", "timestamp": str(int(time.time())),
                                         "app_id": "statelessd-example"})
            if reply.status_code != 204:
                print(f"publish {n} failed: {reply.status_code} {reply.text.strip()}", file=sys.stderr)
                return 1
    print(f"published {args.count} message(s) to {args.exchange!r} with routing key {args.routing_key!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
