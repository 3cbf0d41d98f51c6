"""The symlink driver on other hosts: the same release folders and atomic link switch, over SSH.

``hosts = ["web1", "web2"]`` on a symlink target: each host has ``releases/<version>/`` and a
``current`` link at the configured (remote, absolute) paths. A rollback goes through the hosts in
batches (``batch = 1``: one host at a time, the runbook's rolling way): on each host of a batch,
at once, the link is switched atomically (a temporary link made over SFTP and renamed over
``current`` with the posix-rename extension: never dangling, never missing), the service is
restarted, and, when the host has a ``version_url``, the batch waits until it answers the target
before the next batch starts. The first failure stops the rollout: the hosts not reached are left
as they were. Each host's steps are journaled as ``STEP@HOST``, so the evidence shows each host's
state.

The live version of the target is the last host's: a rollout reaches it last, so until the
rollback has been everywhere the target says it is not done.
"""

from __future__ import annotations

import json
import posixpath
import shlex
import stat
import time
from collections.abc import Sequence
from typing import Any

from ..census import Census, Replica
from ..durations import format_duration
from ..journal import Journal
from ..versions import same_version, sort_versions, version_problem
from .base import Finding, TargetContext
from .remote_hosts import HostPool, host_answer
from .remote_link import RemoteLink
from .remote_rollout import Rollout
from .ssh import Connection, HostAddress
from .symlink_base import SymlinkBase
from .symlink_settings import STEP_RESTART, STEP_SWITCH, STEP_WAIT, SymlinkSettings


class RemoteSymlinkTarget(SymlinkBase):
    """The symlink driver over SSH: reads every host, rolls them out batch by batch (``Rollout``)."""

    settings: SymlinkSettings

    def __init__(self, settings: SymlinkSettings, context: TargetContext) -> None:
        super().__init__(settings, context)
        self.pool = HostPool(settings, context.base_dir)
        self.hosts: list[HostAddress] = self.pool.hosts
        self.connections = self.pool.connections
        self.link = RemoteLink(settings)

    # -- remote paths (POSIX, as configured; not joined with the local config folder) ------------

    @property
    def remote_releases(self) -> str:
        return self.link.releases

    @property
    def remote_link(self) -> str:
        return self.link.link

    @property
    def batch_size(self) -> int:
        return self.settings.batch or len(self.hosts)

    def batches(self) -> list[list[HostAddress]]:
        return self.pool.batches(self.batch_size)

    # -- reading ----------------------------------------------------------------------------------

    def host_versions(self) -> dict[str, str]:
        links = self.pool.on_each(lambda host, connection: self.link.read(connection))
        return {host.name: self.link.version_of(host, links[host.name]) for host in self.hosts}

    def census(self) -> Census:
        """One replica per host: the release its link points at; serving when its version_url answers.

        A host that cannot be read is listed as not serving, and is a problem too: a host left
        behind fails the census even when every host that answers runs the target.
        """

        def read(host: HostAddress, connection: Connection) -> tuple[str, str | None]:
            version = self.link.version_of(host, self.link.read(connection))
            return version, host_answer(host)

        found, errors = self.pool.try_each(read)
        replicas, problems = [], []
        for host in self.hosts:
            where = f"{host.user}@{host.address}:{host.port}"
            if host.name in errors:
                reason = errors[host.name].removeprefix(f"{host.name}: ").removeprefix(f"{host}: ")
                replicas.append(Replica(f"host {host.name}", None, False, "unreadable", f"{where}: {reason}"))
                problems.append(f"host {host.name} could not be read: {reason}")
                continue
            version, answer = found[host.name]
            if host.version_url is None:
                replicas.append(Replica(f"host {host.name}", version, True, "linked", f"{where}; no version_url"))
                continue
            serving = answer is not None
            state = "serving" if serving else "not answering"
            detail = f"{where}; {host.version_url} answers {answer or 'nothing'}"
            replicas.append(Replica(f"host {host.name}", version, serving, state, detail))
            if serving and not same_version(answer, version):
                problems.append(
                    f"host {host.name} answers {answer} at {host.version_url} but its link points at {version}: "
                    "not restarted since the switch"
                )
        facts = {
            "current_link": self.remote_link,
            "hosts": len(self.hosts),
            "unread": sorted(errors),
            "without_version_url": [host.name for host in self.hosts if host.version_url is None],
        }
        return Census("host", tuple(replicas), tuple(problems), facts)

    def live_version(self) -> str:
        versions = self.host_versions()
        if len(set(versions.values())) > 1:
            self.context.progress(
                "the hosts disagree: " + ", ".join(f"{name} {version}" for name, version in versions.items())
            )
        return versions[self.hosts[-1].name]

    def history(self) -> list[str]:
        def releases(host: HostAddress, connection: Connection) -> set[str]:
            try:
                entries = connection.sftp().listdir_attr(self.remote_releases)
            except FileNotFoundError:
                return set()
            return {
                entry.filename
                for entry in entries
                if stat.S_ISDIR(entry.st_mode or 0)
                and not entry.filename.startswith(".")
                and version_problem(entry.filename) is None
            }

        per_host = self.pool.on_each(releases)
        everywhere = set.intersection(*per_host.values()) if per_host else set()
        return sort_versions(list(everywhere))  # a version is deployable only where every host has it

    def deployable(self, version: str) -> list[Finding]:
        release = self.link.release(version)
        parent = posixpath.dirname(self.remote_link)

        def problems(host: HostAddress, connection: Connection) -> list[str]:
            sftp = connection.sftp()
            try:
                if not stat.S_ISDIR(sftp.stat(release).st_mode or 0):
                    return [f"{release} is not a folder"]
            except FileNotFoundError:
                return [f"release folder {release} does not exist"]
            found = []
            for name in self.settings.required_files:
                try:
                    sftp.stat(posixpath.join(release, name))
                except FileNotFoundError:
                    found.append(f"{release} lacks {name}")
            status, _ = connection.run(["test", "-w", parent], timeout=self.settings.restart_timeout)
            if status != 0:
                found.append(f"cannot write in {parent}")
            return found

        bad = {name: words for name, words in self.pool.on_each(problems).items() if words}
        if bad:
            return [Finding("target-deployable", False, f"{name}: {'; '.join(words)}") for name, words in bad.items()]
        return [Finding("target-deployable", True, f"release folder {release} is in place on {self.pool.names()}")]

    def command_findings(self) -> list[Finding]:
        if not self.settings.restart:
            return []
        program = self.settings.restart[0]
        # `command -v "$1"` with the program as an argument: the name is never part of the script.
        check = ["sh", "-c", 'command -v "$1"', "sh", program]
        found = self.pool.on_each(lambda host, connection: connection.run(check, timeout=self.settings.restart_timeout))
        missing = [name for name, (status, _) in found.items() if status != 0]
        if missing:
            return [Finding("target-deployable", False, f"restart command {program} not found on {', '.join(missing)}")]
        return [Finding("target-deployable", True, f"restart command {program} found on {self.pool.names()}")]

    def observe(self) -> str:
        """Every host's link text, as JSON: a deploy that moves any host's ``current`` changes it."""
        return json.dumps(self.pool.on_each(lambda host, connection: self.link.read(connection)), sort_keys=True)

    # -- the plan and the way back ------------------------------------------------------------------

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        for number, batch in enumerate(self.batches(), 1):
            names = ", ".join(host.name for host in batch)
            doing = []
            if STEP_SWITCH in steps:
                doing.append(f"point {self.remote_link} at {self.link.link_text(version)} (atomic rename)")
            if STEP_RESTART in steps and self.settings.restart:
                doing.append(f"restart: {shlex.join(self.settings.restart)}")
            waited = [host.name for host in batch if host.version_url]
            if waited:
                doing.append(f"wait until {', '.join(waited)} answer {version}")
            lines.append(f"batch {number} ({names}): {'; '.join(doing) or 'nothing'}")
        if STEP_WAIT in steps:
            lines.append(
                f"wait until the service answers {version} (up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def way_back(self, version: str) -> str:
        commands = []
        for host in self.hosts:
            remote = [shlex.join(["ln", "-sfn", self.link.link_text(version), self.remote_link])]
            if self.settings.restart:
                remote.append(shlex.join(self.settings.restart))
            ssh = ["ssh", "-p", str(host.port), f"{host.user}@{host.address}", " && ".join(remote)]
            commands.append(shlex.join(ssh))
        return "; ".join(commands)

    # -- the rollout ----------------------------------------------------------------------------------

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        expected: dict[str, str] = json.loads(expected_state) if expected_state else {}
        coarse = [step for step in (STEP_SWITCH, STEP_RESTART) if step in steps]
        started = time.monotonic()
        for step in coarse:
            journal.record(step, "started", hosts=[host.name for host in self.hosts], batch=self.batch_size)
        rollout = Rollout(self.settings, self.pool, self.link)
        try:
            batches = self.batches()
            for number, batch in enumerate(batches, 1):
                self.context.progress(f"batch {number} of {len(batches)}: {', '.join(host.name for host in batch)}")
                rollout.run_batch(batch, version, journal, expected, steps, later=batches[number:])
        except BaseException as exc:
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            for step in coarse:
                journal.record(step, status, duration_s=round(time.monotonic() - started, 3), error=str(exc))
            raise
        for step in coarse:
            journal.record(step, "done", duration_s=round(time.monotonic() - started, 3))

    def lock_path(self) -> None:
        """Beside the config file: the link is on other hosts."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "releases_dir": self.remote_releases,
            "current_link": self.remote_link,
            "hosts": [host.name for host in self.hosts],
            "batch": self.batch_size,
            "addresses": {host.name: f"{host.user}@{host.address}:{host.port}" for host in self.hosts},
        }
