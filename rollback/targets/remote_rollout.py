"""The rollout of a symlink target on other hosts: one batch at a time, every host of a batch at once.

On each host: the link switched atomically, the service restarted, and (with a ``version_url``)
a wait until the host answers the target. The first failure stops the rollout: the hosts of later
batches are left as they were. Each host's steps are journaled as ``STEP@HOST``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from .remote_hosts import HostPool, answers, in_parallel, wait_host
from .remote_link import RemoteLink
from .ssh import HostAddress, describe_error
from .symlink_settings import STEP_RESTART, STEP_SWITCH, STEP_WAIT, SymlinkSettings


class Rollout:
    """Puts one version live on the hosts of a batch; the driver walks the batches."""

    def __init__(self, settings: SymlinkSettings, pool: HostPool, link: RemoteLink) -> None:
        self.settings = settings
        self.pool = pool
        self.link = link

    def run_batch(
        self,
        batch: list[HostAddress],
        version: str,
        journal: Journal,
        expected: dict[str, str],
        steps: Sequence[str],
        later: list[list[HostAddress]],
    ) -> None:
        """Every host of ``batch`` at once; a failure names each failed host and the hosts not started."""
        errors: dict[str, BaseException] = {}

        def one(host: HostAddress) -> None:
            try:
                self.roll_host(host, version, journal, expected.get(host.name), steps)
            except BaseException as exc:
                errors[host.name] = exc

        in_parallel(batch, one)
        if not errors:
            return
        untouched = [host.name for rest in later for host in rest]
        words = "; ".join(f"{name}: {describe_error(exc)}" for name, exc in errors.items())
        if untouched:
            words += f"; not started, left as they were: {', '.join(untouched)}"
        if all(isinstance(exc, Conflict) for exc in errors.values()):
            raise Conflict(words)
        raise RollbackFailed(words)

    def roll_host(
        self, host: HostAddress, version: str, journal: Journal, expected: str | None, steps: Sequence[str]
    ) -> None:
        connection = self.pool.connections[host.name]
        link_text = self.link.link_text(version)
        now = self.link.read(connection)
        if expected is not None and now != expected:
            raise Conflict(
                f"{self.link.link} changed after this run read it: it was {expected}, it is now {now} "
                "(another deploy or run moved it); this host was not written"
            )
        if now == link_text and host.version_url and answers(host, version):
            journal.record(f"{STEP_SWITCH}@{host.name}", "skipped", reason=f"already on {version} and answering it")
            return
        if STEP_SWITCH in steps:
            with journal.step(f"{STEP_SWITCH}@{host.name}", host=host.name, link=self.link.link, to=link_text) as step:
                step.detail["from"] = None if now.startswith("(") else now
                removed = self.link.remove_leftovers(connection)
                if removed:
                    step.detail["removed"] = removed
                if now == link_text:
                    step.detail["note"] = "already pointing there"
                else:
                    self.link.switch(connection, link_text)
        if STEP_RESTART in steps and self.settings.restart:
            with journal.step(f"{STEP_RESTART}@{host.name}", host=host.name, command=self.settings.restart) as step:
                status, output = connection.run(self.settings.restart, timeout=self.settings.restart_timeout)
                step.detail["output"] = output
                if status != 0:
                    raise RollbackFailed(
                        f"restart command exited {status}: {shlex.join(self.settings.restart)}: {output}"
                    )
        if host.version_url:
            with journal.step(f"{STEP_WAIT}@{host.name}", host=host.name, url=host.version_url) as step:
                step.detail["waited_s"] = wait_host(
                    host, version, self.settings.ready_timeout, self.settings.ready_consecutive
                )
