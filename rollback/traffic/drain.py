"""Gradual drain and restore of HAProxy servers through the runtime API (``set weight ... N%``).

Which servers: those named in the config, else every server of the backend that answers the
version rolled back from, plus any a killed run left below its configured weight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..config import DrainConfig
from ..journal import Journal
from ..versions import same_version
from .commands import ProxyError
from .haproxy import RuntimeAPI
from .probe import get


class Drain:
    def __init__(self, settings: DrainConfig, base_dir: Path, progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.api = RuntimeAPI(base_dir / settings.socket, settings.timeout)
        self.backend = settings.backend
        self.progress = progress

    def choose(self, from_version: str | None) -> tuple[list[str], str]:
        """(servers to drain, why them). Reads the proxy and the servers; changes nothing."""
        addresses = self.api.servers(self.backend)
        if self.settings.servers:
            unknown = [s for s in self.settings.servers if s not in addresses]
            if unknown:
                raise ProxyError(
                    f"traffic.drain.servers names {', '.join(unknown)}, not in backend {self.backend} "
                    f"(it has {', '.join(sorted(addresses))})"
                )
            return list(self.settings.servers), "named in traffic.drain.servers"
        answers = {}
        chosen = []
        for name, (host, port) in sorted(addresses.items()):
            answer = get(f"http://{host}:{port}{self.settings.version_path}", timeout=self.settings.timeout)
            answers[name] = answer.body.strip() if answer.status == 200 else answer.describe()
            current, initial = self.api.weight(self.backend, name)
            if same_version(answers[name], from_version) or current < initial:
                chosen.append(name)
        seen = ", ".join(f"{name} answers {text}" for name, text in answers.items())
        if not chosen:
            raise ProxyError(
                f"no server of backend {self.backend} answers {from_version} ({seen}); "
                "name the servers to drain in traffic.drain.servers"
            )
        return chosen, seen

    def _step(self, journal: Journal, what: str, servers: list[str], percent: int) -> bool:
        """Set every server to ``percent`` of its configured weight; False when all already were."""
        changed = []
        for server in servers:
            current, initial = self.api.weight(self.backend, server)
            target = initial * percent // 100
            if current == target:
                continue
            changed.append(server)
        if not changed:
            journal.record(
                f"traffic:{what}-{percent}%",
                "skipped",
                reason=f"{', '.join(servers)} already at {percent}% of their weight",
                counters=self.api.counters(self.backend, servers),
            )
            return False
        with journal.step(f"traffic:{what}-{percent}%", backend=self.backend, servers=changed) as step:
            for server in changed:
                self.api.set_weight_percent(self.backend, server, percent)
            step.detail["counters"] = self.api.counters(self.backend, servers)
        self.progress(f"traffic: {what} {', '.join(changed)} to {percent}% of their weight")
        return True

    def drain(self, journal: Journal, servers: list[str]) -> None:
        steps = self.settings.drain_steps
        for index, percent in enumerate(steps):
            # Downwards only: a server a killed run left lower is not raised again here.
            lower = [s for s in servers if self._above(s, percent)]
            if not lower:
                journal.record(
                    f"traffic:drain-{percent}%",
                    "skipped",
                    reason=f"{', '.join(servers)} already at or below {percent}%",
                    counters=self.api.counters(self.backend, servers),
                )
                continue
            self._step(journal, "drain", lower, percent)
            if index + 1 < len(steps):
                time.sleep(self.settings.pause)

    def below_full(self, server: str) -> bool:
        current, initial = self.api.weight(self.backend, server)
        return current < initial

    def _above(self, server: str, percent: int) -> bool:
        current, initial = self.api.weight(self.backend, server)
        return current > initial * percent // 100

    def restore(self, journal: Journal, servers: list[str]) -> None:
        steps = self.settings.restore_steps
        for index, percent in enumerate(steps):
            # Upwards only: never lower a server that already takes more.
            raise_these = [s for s in servers if not self._above(s, percent)]
            changed = self._step(journal, "restore", raise_these, percent) if raise_these else False
            if changed and index + 1 < len(steps):
                time.sleep(self.settings.pause)

    def restore_at_once(self, journal: Journal, servers: list[str]) -> None:
        self._step(journal, "undo-drain", servers, 100)

    def by_hand(self, servers: list[str]) -> str:
        socket = self.api.socket_path
        return "; ".join(f"echo 'set weight {self.backend}/{server} 100%' | socat stdio {socket}" for server in servers)
