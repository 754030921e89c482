"""RabbitMQ's routing core as a pure, synchronous model driven by an injected clock."""

from .broker import Broker, LoggedMessage
from .channel import Channel
from .exchange import Binding, Exchange
from .message import Delivery, Message
from .queue import Consumer, Queue
from .vhost import VHost

__all__ = [
    "Binding", "Broker", "Channel", "Consumer", "Delivery", "Exchange", "LoggedMessage", "Message", "Queue",
    "VHost",
]
