"""The addresses a proxy config listens on, and whether another process holds one already.

``nginx -t`` and ``haproxy -c`` do not bind: a config they accept can still be one the running
proxy cannot apply, because a port it newly listens on is taken. Preflight asks here first.
"""

from __future__ import annotations

import errno
import re
import socket

_NGINX_LISTEN = re.compile(r"(?:^|[\s;{])listen\s+([^\s;]+)")  # also "server { listen 80; ... }"
_HAPROXY_BIND = re.compile(r"(?m)^\s*bind\s+(\S+)")


def listen_addresses(proxy: str, text: str) -> set[tuple[str, int]]:
    """``(host, port)`` of every TCP ``listen`` (nginx) or ``bind`` (HAProxy) line; "" is every address."""
    pattern = _NGINX_LISTEN if proxy == "nginx" else _HAPROXY_BIND
    found: set[tuple[str, int]] = set()
    for match in pattern.finditer("\n".join(line.split("#", 1)[0] for line in text.splitlines())):
        for address in match.group(1).split(","):
            host, colon, port = address.rpartition(":")
            if not port.isdigit() or "@" in host or host.startswith(("unix", "/")):
                continue
            host = host.strip("[]")
            found.add(("" if host in ("", "*", "0.0.0.0") or not colon else host, int(port)))
    return found


def held_by_another(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be bound (in use), or None. Other errors (a privileged port, an
    unknown host) are not judged here: the proxy may have rights this process lacks."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx and HAProxy bind
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host or '*'}:{port} is already in use by another process"
    return None


def new_addresses_held(proxy: str, live: str | None, new: str) -> list[str]:
    """The addresses ``new`` listens on that ``live`` (what the proxy holds now) does not, and that
    another process holds: the proxy could not apply ``new``."""
    fresh = listen_addresses(proxy, new) - listen_addresses(proxy, live or "")
    return [why for host, port in sorted(fresh) if (why := held_by_another(host, port)) is not None]
