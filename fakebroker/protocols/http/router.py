"""Path and form decoding, and a small request router.

Paths are split on ``/`` while still %-encoded, then each segment is decoded on its own, so ``%2F`` inside a
segment is a slash of that segment (vhost ``/`` is ``%2F``), as in RabbitMQ's management API and statelessd.
``+`` stays a plus sign in a path; in a form it is a space.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote_to_bytes

H = TypeVar("H")


class DecodeError(ValueError):
    """Bytes that are not UTF-8 where text is required (answered with a 400)."""


def decode_segment(raw: str) -> str:
    """One path segment, %-decoded, as strict UTF-8."""
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 in path segment {raw!r}") from exc


def split_path(path: str) -> list[str]:
    """The raw segments of an absolute path: ``/a/b/`` gives ``["a", "b", ""]``."""
    return path[1:].split("/") if path.startswith("/") else path.split("/")


def parse_form(data: bytes | str) -> list[tuple[str, str]]:
    """``application/x-www-form-urlencoded`` pairs in order (``+`` is a space; a name alone has value "")."""
    raw = data.encode("latin-1") if isinstance(data, str) else data
    out = []
    for part in re.split(rb"[&;]", raw):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        try:
            out.append((unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8"),
                        unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 in form field {name[:40]!r}") from exc
    return out


@dataclass(frozen=True)
class Route(Generic[H]):
    method: str
    pattern: tuple[str, ...]  # literal segments, or "{name}" for a captured one
    handler: H

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params: dict[str, str] = {}
        for want, raw in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = raw
            elif want != raw:
                return None
        return params


class Router(Generic[H]):
    """Routes by method and path pattern (``/api/queues/{vhost}/{name}``); parameters arrive %-decoded."""

    def __init__(self) -> None:
        self.routes: list[Route[H]] = []

    def add(self, method: str, pattern: str, handler: H) -> None:
        self.routes.append(Route(method, tuple(split_path(pattern)), handler))

    def route(self, method: str, pattern: str) -> Callable[[H], H]:
        def register(handler: H) -> H:
            self.add(method, pattern, handler)
            return handler

        return register

    def resolve(self, method: str, path: str) -> tuple[H, dict[str, str]] | list[str] | None:
        """``(handler, params)``; the allowed methods when the path matches under other methods only; None
        when nothing matches. Raises DecodeError for a parameter that is not UTF-8."""
        segments = split_path(path)
        allowed: list[str] = []
        for route in self.routes:
            params = route.match(segments)
            if params is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route.handler, {k: decode_segment(v) for k, v in params.items()}
            if route.method not in allowed:
                allowed.append(route.method)
        return allowed or None
