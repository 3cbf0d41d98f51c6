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
import os
import posixpath
import shlex
import stat
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests

from ..census import Census, Replica
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import same_version, sort_versions, version_problem
from .base import Finding, TargetContext
from .ssh import Connection, HostAddress, describe_error, host_addresses
from .symlink import (
    STEP_RESTART,
    STEP_SWITCH,
    STEP_WAIT,
    SymlinkSettings,
    SymlinkTarget,
)

T = TypeVar("T")
MISSING = "(missing)"
POLL_INTERVAL = 0.05


class RemoteSymlinkTarget(SymlinkTarget):
    settings: SymlinkSettings

    def __init__(self, settings: SymlinkSettings, context: TargetContext) -> None:
        super().__init__(settings, context)
        assert settings.ssh is not None  # the settings model requires it with hosts
        self.hosts: list[HostAddress] = host_addresses(settings.hosts, settings.ssh, context.base_dir)
        known_hosts = context.base_dir / settings.ssh.known_hosts
        self.connections = {
            host.name: Connection(host, known_hosts, settings.ssh.connect_timeout) for host in self.hosts
        }

    # -- remote paths (POSIX, as configured; not joined with the local config folder) ------------

    @property
    def remote_releases(self) -> str:
        return posixpath.normpath(self.settings.releases_dir.as_posix())

    @property
    def remote_link(self) -> str:
        return posixpath.normpath(self.settings.current_link.as_posix())

    def _remote_release(self, version: str) -> str:
        return posixpath.join(self.remote_releases, version)

    def _link_text(self, version: str) -> str:
        return posixpath.relpath(self._remote_release(version), posixpath.dirname(self.remote_link))

    @property
    def batch_size(self) -> int:
        return self.settings.batch or len(self.hosts)

    def batches(self) -> list[list[HostAddress]]:
        size = self.batch_size
        return [self.hosts[i : i + size] for i in range(0, len(self.hosts), size)]

    # -- reading ----------------------------------------------------------------------------------

    def _on_each(self, work: Callable[[HostAddress, Connection], T]) -> dict[str, T]:
        """``work`` on every host at once; a RollbackFailed naming every host it failed on."""
        results, errors = self._try_each(work)
        if errors:
            raise RollbackFailed("; ".join(f"{name}: {error}" for name, error in errors.items()))
        return results

    def _try_each(self, work: Callable[[HostAddress, Connection], T]) -> tuple[dict[str, T], dict[str, str]]:
        """``work`` on every host at once: what it returned per host, and why it failed on the others."""
        results: dict[str, T] = {}
        errors: dict[str, str] = {}

        def one(host: HostAddress) -> None:
            try:
                results[host.name] = work(host, self.connections[host.name])
            except Exception as exc:
                errors[host.name] = describe_error(exc)

        threads = [threading.Thread(target=one, args=(host,), daemon=True) for host in self.hosts]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        order = [host.name for host in self.hosts]
        return {n: results[n] for n in order if n in results}, {n: errors[n] for n in order if n in errors}

    def _readlink(self, connection: Connection) -> str:
        sftp = connection.sftp()
        try:
            mode = sftp.lstat(self.remote_link).st_mode or 0
        except OSError:
            return MISSING
        if not stat.S_ISLNK(mode):
            return "(not a symlink)"
        return sftp.readlink(self.remote_link) or MISSING

    def _version_of(self, host: HostAddress, text: str) -> str:
        if text.startswith("("):
            raise RollbackFailed(f"{host.name}: {self.remote_link} is {text.strip('()')}: cannot tell the live release")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(self.remote_link), text))
        if posixpath.dirname(resolved) != self.remote_releases:
            raise RollbackFailed(
                f"{host.name}: {self.remote_link} points to {text}, not a folder of {self.remote_releases}"
            )
        return posixpath.basename(resolved)

    def host_versions(self) -> dict[str, str]:
        links = self._on_each(lambda host, connection: self._readlink(connection))
        return {host.name: self._version_of(host, links[host.name]) for host in self.hosts}

    def census(self) -> Census:
        """One replica per host: the release its link points at; serving when its version_url answers.

        A host that cannot be read is listed as not serving, and is a problem too: a host left
        behind fails the census even when every host that answers runs the target.
        """

        def read(host: HostAddress, connection: Connection) -> tuple[str, str | None]:
            version = self._version_of(host, self._readlink(connection))
            return version, self._host_answer(host)

        found, errors = self._try_each(read)
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

        per_host = self._on_each(releases)
        everywhere = set.intersection(*per_host.values()) if per_host else set()
        return sort_versions(list(everywhere))  # a version is deployable only where every host has it

    def deployable(self, version: str) -> list[Finding]:
        release = self._remote_release(version)
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

        bad = {name: words for name, words in self._on_each(problems).items() if words}
        if bad:
            return [Finding("target-deployable", False, f"{name}: {'; '.join(words)}") for name, words in bad.items()]
        return [Finding("target-deployable", True, f"release folder {release} is in place on {self._names()}")]

    def command_findings(self) -> list[Finding]:
        if not self.settings.restart:
            return []
        program = self.settings.restart[0]
        # `command -v "$1"` with the program as an argument: the name is never part of the script.
        check = ["sh", "-c", 'command -v "$1"', "sh", program]
        found = self._on_each(lambda host, connection: connection.run(check, timeout=self.settings.restart_timeout))
        missing = [name for name, (status, _) in found.items() if status != 0]
        if missing:
            return [Finding("target-deployable", False, f"restart command {program} not found on {', '.join(missing)}")]
        return [Finding("target-deployable", True, f"restart command {program} found on {self._names()}")]

    def observe(self) -> str:
        """Every host's link text, as JSON: a deploy that moves any host's ``current`` changes it."""
        return json.dumps(self._on_each(lambda host, connection: self._readlink(connection)), sort_keys=True)

    def _names(self) -> str:
        return ", ".join(host.name for host in self.hosts)

    # -- the plan and the way back ------------------------------------------------------------------

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        for number, batch in enumerate(self.batches(), 1):
            names = ", ".join(host.name for host in batch)
            doing = []
            if STEP_SWITCH in steps:
                doing.append(f"point {self.remote_link} at {self._link_text(version)} (atomic rename)")
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
            remote = [shlex.join(["ln", "-sfn", self._link_text(version), self.remote_link])]
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
        try:
            batches = self.batches()
            for number, batch in enumerate(batches, 1):
                self.context.progress(f"batch {number} of {len(batches)}: {', '.join(host.name for host in batch)}")
                self._run_batch(batch, version, journal, expected, steps, later=batches[number:])
        except BaseException as exc:
            status = "failed" if isinstance(exc, Exception) else "interrupted"
            for step in coarse:
                journal.record(step, status, duration_s=round(time.monotonic() - started, 3), error=str(exc))
            raise
        for step in coarse:
            journal.record(step, "done", duration_s=round(time.monotonic() - started, 3))

    def _run_batch(
        self,
        batch: list[HostAddress],
        version: str,
        journal: Journal,
        expected: dict[str, str],
        steps: Sequence[str],
        later: list[list[HostAddress]],
    ) -> None:
        errors: dict[str, BaseException] = {}

        def one(host: HostAddress) -> None:
            try:
                self._roll_host(host, version, journal, expected.get(host.name), steps)
            except BaseException as exc:
                errors[host.name] = exc

        threads = [threading.Thread(target=one, args=(host,), daemon=True) for host in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
        if not errors:
            return
        untouched = [host.name for rest in later for host in rest]
        words = "; ".join(f"{name}: {describe_error(exc)}" for name, exc in errors.items())
        if untouched:
            words += f"; not started, left as they were: {', '.join(untouched)}"
        if all(isinstance(exc, Conflict) for exc in errors.values()):
            raise Conflict(words)
        raise RollbackFailed(words)

    def _roll_host(
        self, host: HostAddress, version: str, journal: Journal, expected: str | None, steps: Sequence[str]
    ) -> None:
        connection = self.connections[host.name]
        link_text = self._link_text(version)
        now = self._readlink(connection)
        if expected is not None and now != expected:
            raise Conflict(
                f"{self.remote_link} changed after this run read it: it was {expected}, it is now {now} "
                "(another deploy or run moved it); this host was not written"
            )
        if now == link_text and host.version_url and self._answers(host, version):
            journal.record(f"{STEP_SWITCH}@{host.name}", "skipped", reason=f"already on {version} and answering it")
            return
        if STEP_SWITCH in steps:
            with journal.step(
                f"{STEP_SWITCH}@{host.name}", host=host.name, link=self.remote_link, to=link_text
            ) as step:
                step.detail["from"] = None if now.startswith("(") else now
                removed = self._remove_remote_leftovers(connection)
                if removed:
                    step.detail["removed"] = removed
                if now == link_text:
                    step.detail["note"] = "already pointing there"
                else:
                    self._switch_remote_link(connection, link_text)
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
                step.detail["waited_s"] = self._wait_host(host, version)

    def _remove_remote_leftovers(self, connection: Connection) -> list[str]:
        """Temporary links of runs killed mid-switch. Safe: this run holds the target's lock."""
        sftp = connection.sftp()
        folder, name = posixpath.split(self.remote_link)
        prefix = f".{name}.rollback-"
        removed = []
        for entry in sorted(sftp.listdir_attr(folder), key=lambda e: e.filename):
            rest = entry.filename[len(prefix) :] if entry.filename.startswith(prefix) else ""
            if rest.isdigit() and stat.S_ISLNK(entry.st_mode or 0):
                sftp.remove(posixpath.join(folder, entry.filename))
                removed.append(entry.filename)
        return removed

    def _switch_remote_link(self, connection: Connection, link_text: str) -> None:
        """``ln -sfn`` done atomically: a temporary link renamed over ``current`` (posix-rename)."""
        sftp = connection.sftp()
        folder, name = posixpath.split(self.remote_link)
        temporary = posixpath.join(folder, f".{name}.rollback-{os.getpid()}")
        try:
            sftp.remove(temporary)
        except FileNotFoundError:
            pass
        sftp.symlink(link_text, temporary)
        sftp.posix_rename(temporary, self.remote_link)
        after = sftp.readlink(self.remote_link)
        if after != link_text:
            raise RollbackFailed(f"{self.remote_link} reads {after} after the switch, not {link_text}")

    def _answers(self, host: HostAddress, version: str, timeout: float = 5.0) -> bool:
        return same_version(self._host_answer(host, timeout), version)

    def _host_answer(self, host: HostAddress, timeout: float = 5.0) -> str | None:
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

    def _wait_host(self, host: HostAddress, version: str) -> float:
        """Until ``host`` answers ``version`` ready_consecutive times in a row; bounded by ready_timeout."""
        timeout = self.settings.ready_timeout
        started = time.monotonic()
        deadline = started + timeout
        in_a_row = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RollbackFailed(
                    f"{host.name} did not answer {version} at {host.version_url} within {format_duration(timeout)}"
                )
            in_a_row = in_a_row + 1 if self._answers(host, version, timeout=min(5.0, left)) else 0
            if in_a_row >= self.settings.ready_consecutive:
                return round(time.monotonic() - started, 3)
            if not in_a_row:
                time.sleep(min(POLL_INTERVAL, max(0.0, left)))

    def lock_path(self) -> None:  # type: ignore[override]
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
