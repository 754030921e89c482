"""Listening sockets bound without an event loop: for an IP address there is nothing to resolve, so binding
needs neither a worker thread (anyio resolves every host in one) nor the runtime's imports."""

from __future__ import annotations

import ipaddress
import socket
import sys

#: The listen() backlog (the system caps it at its somaxconn).
LISTEN_BACKLOG = 65535


def listen_error(listener: str, host: str, port: int, exc: OSError) -> str:
    return f"{listener} listener on {host}:{port}: {exc.strerror}"


def bind(listener: str, host: str, port: int) -> socket.socket | None:
    """A non-blocking socket listening on ``host``:``port``, set up as anyio's listeners are; None when ``host``
    is a name (it may stand for several addresses: the runtime lets anyio resolve it). Raises OSError naming
    the listener when the port cannot be had."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(exc.errno, listen_error(listener, host, port, exc)) from exc
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
