"""The hosts of a symlink target with ``hosts = [...]``: one SSH connection each, work done on all
of them at once, and what each host answers at its own ``version_url``.

Kept apart from the driver so that reading the hosts and rolling them out share one way of
reaching them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import requests

from ..durations import format_duration
from ..errors import RollbackFailed
from ..versions import same_version
from .ssh import Connection, HostAddress, describe_error, host_addresses
from .symlink_settings import SymlinkSettings

T = TypeVar("T")
POLL_INTERVAL = 0.05


def in_parallel(hosts: list[HostAddress], one: Callable[[HostAddress], None]) -> None:
    """``one(host)`` for every host, each in its own thread; returns when all are done."""
    threads = [threading.Thread(target=one, args=(host,), daemon=True) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)


class HostPool:
    """The target's hosts, in the configured order, and an SSH connection to each (opened on first use)."""

    def __init__(self, settings: SymlinkSettings, base_dir: Path) -> None:
        assert settings.ssh is not None  # the settings model requires it with hosts
        self.hosts: list[HostAddress] = host_addresses(settings.hosts, settings.ssh, base_dir)
        known_hosts = base_dir / settings.ssh.known_hosts
        self.connections = {
            host.name: Connection(host, known_hosts, settings.ssh.connect_timeout) for host in self.hosts
        }

    def names(self) -> str:
        return ", ".join(host.name for host in self.hosts)

    def batches(self, size: int) -> list[list[HostAddress]]:
        return [self.hosts[i : i + size] for i in range(0, len(self.hosts), size)]

    def on_each(self, work: Callable[[HostAddress, Connection], T]) -> dict[str, T]:
        """``work`` on every host at once; a RollbackFailed naming every host it failed on."""
        results, errors = self.try_each(work)
        if errors:
            raise RollbackFailed("; ".join(f"{name}: {error}" for name, error in errors.items()))
        return results

    def try_each(self, work: Callable[[HostAddress, Connection], T]) -> tuple[dict[str, T], dict[str, str]]:
        """``work`` on every host at once: what it returned per host, and why it failed on the others."""
        results: dict[str, T] = {}
        errors: dict[str, str] = {}

        def one(host: HostAddress) -> None:
            try:
                results[host.name] = work(host, self.connections[host.name])
            except Exception as exc:
                errors[host.name] = describe_error(exc)

        in_parallel(self.hosts, one)
        order = [host.name for host in self.hosts]
        return {n: results[n] for n in order if n in results}, {n: errors[n] for n in order if n in errors}


def host_answer(host: HostAddress, timeout: float = 5.0) -> str | None:
    """The version ``host`` answers at its version_url (plain text, or JSON with "version"); None: no answer."""
    if host.version_url is None:
        return None
    try:
        response = requests.get(host.version_url, timeout=timeout)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    text = response.text.strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = text
    answer = data.get("version") if isinstance(data, dict) else data
    return answer if isinstance(answer, str) and answer else None


def answers(host: HostAddress, version: str, timeout: float = 5.0) -> bool:
    return same_version(host_answer(host, timeout), version)


def wait_host(host: HostAddress, version: str, timeout: float, consecutive: int) -> float:
    """Until ``host`` answers ``version`` ``consecutive`` times in a row; bounded by ``timeout``."""
    started = time.monotonic()
    deadline = started + timeout
    in_a_row = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RollbackFailed(
                f"{host.name} did not answer {version} at {host.version_url} within {format_duration(timeout)}"
            )
        in_a_row = in_a_row + 1 if answers(host, version, timeout=min(5.0, left)) else 0
        if in_a_row >= consecutive:
            return round(time.monotonic() - started, 3)
        if not in_a_row:
            time.sleep(min(POLL_INTERVAL, max(0.0, left)))
