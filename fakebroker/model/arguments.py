"""AMQP 0-9-1 argument tables as RabbitMQ 3.10 checks them: field types, queue arguments and their
validation, and the equivalence check of a redeclare (with RabbitMQ's error texts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import PreconditionFailed

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_PRIORITY = 255

#: Arguments RabbitMQ 3.10 refuses on a classic queue ("... of queue type rabbit_classic_queue").
CLASSIC_INVALID_ARGUMENTS = (
    "x-delivery-limit", "x-max-in-memory-length", "x-max-in-memory-bytes", "x-max-age",
    "x-quorum-initial-group-size", "x-stream-max-segment-size-bytes", "x-initial-cluster-size",
    "x-queue-leader-locator", "x-dead-letter-strategy",
)
#: Arguments compared when a classic queue is redeclared, in RabbitMQ's order (any other may differ freely).
EQUIVALENCE_ARGUMENTS = (
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-length",
    "x-max-length-bytes", "x-max-priority", "x-overflow", "x-queue-mode", "x-single-active-consumer",
    "x-queue-master-locator",
)


class Long(int):
    """An integer that arrived as AMQP's ``long`` whatever its size: RabbitMQ's management API types every JSON
    integer so, and its error texts say so."""

    __slots__ = ()


def amqp_type(value: Any) -> str:
    """The AMQP field type a client would send ``value`` as, by RabbitMQ's name for it (for error texts)."""
    if value is None:
        return "void"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, Long):
        return "long"
    if isinstance(value, int):
        return "signedint" if -(2**31) <= value < 2**31 else "long"
    if isinstance(value, float):
        return "double"
    if isinstance(value, (str, bytes)):
        return "longstr"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _type_class(value: Any) -> str:
    """``rabbit_misc:type_class/1``: all integer types compare as one class."""
    kind = amqp_type(value)
    return "int" if kind in ("signedint", "long") else kind


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def args_inequivalence(current: dict[str, Any], received: dict[str, Any], keys: tuple[str, ...],
                       resource: str) -> str | None:
    """``rabbit_misc:assert_args_equivalence/4``: the error text for the first of ``keys`` that differs."""
    for key in keys:
        if key not in current and key not in received:
            continue
        if key in current and key in received:
            mine, theirs = current[key], received[key]
            if _type_class(mine) == _type_class(theirs) and mine == theirs:
                continue
            return (f"inequivalent arg '{key}' for {resource}: received '{format_value(theirs)}' "
                    f"but current is '{format_value(mine)}'")
        return (f"inequivalent arg '{key}' for {resource}: received {_describe(received, key)} "
                f"but current is {_describe(current, key)}")
    return None


def _describe(arguments: dict[str, Any], key: str) -> str:
    if key not in arguments:
        return "none"
    value = arguments[key]
    return f"the value '{format_value(value)}' of type '{amqp_type(value)}'"


def _check_int(value: Any) -> str | None:
    if amqp_type(value) not in ("signedint", "long"):
        return f'"expected integer, got {amqp_type(value)}"'
    return None


def _check_non_negative(value: Any) -> str | None:
    problem = _check_int(value)
    if problem is None and value < 0:
        problem = f"{{value_negative,{value}}}"
    return problem


def _check_expires(value: Any) -> str | None:
    problem = _check_non_negative(value)
    if problem is None and value == 0:
        problem = "{value_zero,0}"
    return problem


def _check_priority(value: Any) -> str | None:
    problem = _check_non_negative(value)
    if problem is None and value > MAX_PRIORITY:
        problem = f"{{max_value_exceeded,{value}}}"
    return problem


def _check_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _check_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{amqp_type(value)}}}"


def _check_overflow(value: Any) -> str | None:
    return _check_str(value) or (None if value in OVERFLOW_MODES else "invalid_overflow")


def _check_queue_mode(value: Any) -> str | None:
    return _check_str(value) or (None if value in ("default", "lazy") else f"\"unsupported queue mode '{value}'\"")


def _check_queue_type(value: Any) -> str | None:
    problem = _check_str(value)
    if problem is None and value not in ("classic", "quorum", "stream"):
        problem = f"\"unsupported queue type '{value}'\""
    return problem


#: ``rabbit_amqqueue:declare_args/0``: the declare-time checks, in RabbitMQ's order.
_ARGUMENT_CHECKS: tuple[tuple[str, Callable[[Any], str | None]], ...] = (
    ("x-expires", _check_expires),
    ("x-message-ttl", _check_non_negative),
    ("x-dead-letter-exchange", _check_str),
    ("x-dead-letter-routing-key", _check_str),
    ("x-max-length", _check_non_negative),
    ("x-max-length-bytes", _check_non_negative),
    ("x-max-priority", _check_priority),
    ("x-overflow", _check_overflow),
    ("x-queue-mode", _check_queue_mode),
    ("x-single-active-consumer", _check_bool),
    ("x-queue-type", _check_queue_type),
)


def check_queue_arguments(arguments: dict[str, Any], name: str, vhost: str) -> None:
    """RabbitMQ's declare-time validation of a new classic queue's arguments, with its error texts."""
    resource = f"queue '{name}' in vhost '{vhost}'"
    dlx = arguments.get("x-dead-letter-exchange")
    if dlx is not None and not isinstance(dlx, str):
        # rabbit_channel checks the DLX's type before anything else.
        raise PreconditionFailed(f"invalid type '{amqp_type(dlx)}' for arg 'x-dead-letter-exchange' in {resource}")
    for key in CLASSIC_INVALID_ARGUMENTS:
        if key in arguments:
            raise PreconditionFailed(f"invalid arg '{key}' for {resource} of queue type rabbit_classic_queue")
    for key, check in _ARGUMENT_CHECKS:
        if key not in arguments:
            continue
        problem = check(arguments[key])
        if problem is None and key == "x-dead-letter-routing-key" and "x-dead-letter-exchange" not in arguments:
            problem = "routing_key_but_no_dlx_defined"
        if problem is not None:
            raise PreconditionFailed(f"invalid arg '{key}' for {resource}: {problem}")
    if arguments.get("x-queue-type", "classic") != "classic":
        # Quorum and stream queues have other rules (durable only, no exclusivity, ...); fakebroker models
        # classic queues, so refuse loudly rather than pretend.
        raise PreconditionFailed(f"fakebroker models classic queues only; x-queue-type "
                                 f"'{arguments['x-queue-type']}' for queue '{name}' is not supported")


