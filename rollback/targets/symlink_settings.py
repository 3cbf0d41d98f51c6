"""The symlink target's settings and step names, shared by the driver on this machine
(``symlink.py``) and the one on other hosts over SSH (``remote.py``).

A module of their own so that neither driver module imports the other for them.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from ..config import Duration, Section
from .ssh import HostName, SshSettings

MAX_WAIT = 24 * 3600.0  # no wait of a rollback is meant to last longer than a day
STEP_SWITCH, STEP_RESTART, STEP_WAIT = "switch-link", "restart", "wait-ready"


def _bounded_wait(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


def _argument_list(value: list[str] | None) -> list[str] | None:
    if value and not value[0].strip():
        raise ValueError(
            'expected an argument list whose first item names a program, e.g. ["supervisorctl", "restart", "app"]'
        )
    return value


BoundedDuration = Annotated[Duration, AfterValidator(_bounded_wait)]


class SymlinkSettings(Section):
    releases_dir: Path
    current_link: Path
    # An argument list, never a shell string: e.g. ["supervisorctl", "restart", "app"].
    restart: Annotated[list[str] | None, AfterValidator(_argument_list)] = Field(default=None, min_length=1)
    restart_timeout: BoundedDuration = 60.0
    ready_timeout: BoundedDuration = 120.0
    # The service must answer the target this many times in a row before it counts as ready.
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    # Files a release folder must hold to be deployable, relative to it (e.g. "app.py").
    required_files: list[str] = []
    # The process serving the live release, for the census (one of the two): a file holding its pid
    # (gunicorn --pid, puma, a systemd PIDFile), or an argument list printing it, e.g. ["supervisorctl", "pid", "app"].
    pid_file: Path | None = None
    pid_command: Annotated[list[str] | None, AfterValidator(_argument_list)] = Field(default=None, min_length=1)
    # Other hosts, reached over SSH (rollback/targets/remote.py): the same folders on each, switched
    # and restarted ``batch`` hosts at a time (default: all at once).
    ssh: SshSettings | None = None
    batch: int | None = Field(default=None, ge=1)
    hosts: list[HostName] = Field(default=[], validate_default=True)

    @field_validator("pid_command")
    @classmethod
    def _one_process_source(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if value is not None and info.data.get("pid_file") is not None:
            raise ValueError("pid_file names the serving process already: keep one of pid_file and pid_command")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str], info: ValidationInfo) -> list[str]:
        ssh, batch = info.data.get("ssh"), info.data.get("batch")
        if not hosts:
            if ssh is not None or batch is not None:
                raise ValueError('ssh and batch apply to hosts: list the hosts, e.g. hosts = ["web1", "web2"]')
            return hosts
        if info.data.get("pid_file") is not None or info.data.get("pid_command") is not None:
            raise ValueError(
                "pid_file and pid_command apply to a target on this machine; with hosts, the census reads each "
                "host's link and asks its ssh.hosts.HOST.version_url"
            )
        if ssh is None and "ssh" not in info.data:
            return hosts  # [ssh] itself is invalid: its own error says why
        if ssh is None:
            raise ValueError("needs an [ssh] table with at least known_hosts (the file host keys are checked in)")
        if len(set(hosts)) != len(hosts):
            raise ValueError("a host is named more than once")
        unknown = sorted(set(ssh.hosts) - set(hosts))
        if unknown:
            raise ValueError(f"ssh.hosts names {', '.join(unknown)}, not listed here: add it or drop its table")
        if find_spec("paramiko") is None:
            raise ValueError(
                "hosts are reached over SSH with paramiko, which is not installed; "
                "install it with: pip install 'pytest-rollback-harness[ssh]'"
            )
        return hosts
