"""SSH settings and connections for targets on other hosts (``hosts = [...]`` on a symlink target).

The client is paramiko (the ``[ssh]`` extra), imported only when a target names hosts. Host keys
are always verified against the ``known_hosts`` file the config names: an unknown or changed key
refuses the connection, and nothing is ever added to that file. Remote work goes through SFTP
(readlink, symlink, rename, stat) where it can; the one remote command line, the restart, is the
configured argument list joined with ``shlex.join``: no version or path is ever put in a shell string.
"""

from __future__ import annotations

import getpass
import re
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from ..config import Duration, Section
from ..errors import HarnessError, RollbackFailed

if TYPE_CHECKING:
    import paramiko

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
MAX_WAIT = 3600.0
OUTPUT_LIMIT = 64 * 1024


def _host_name(value: str) -> str:
    if not HOST_NAME.match(value):
        raise ValueError("expected a host name of letters, digits, '.', '_' and '-', e.g. web1")
    return value


def _bounded(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 1h, e.g. '10s'")
    return value


HostName = Annotated[str, AfterValidator(_host_name)]
Wait = Annotated[Duration, AfterValidator(_bounded)]


class SshHostSettings(Section):
    """``[targets.NAME.ssh.hosts.HOST]``: what differs for one host."""

    address: str | None = None  # default: the host's name
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    key: Path | None = None
    # The host's own version endpoint (plain text, or JSON with a "version" field): each batch
    # waits until its hosts answer the target here before the next batch starts.
    version_url: str | None = None

    @model_validator(mode="after")
    def _url(self) -> SshHostSettings:
        if self.version_url is not None and not self.version_url.startswith(("http://", "https://")):
            raise ValueError(f"version_url = {self.version_url!r}: expected an http:// or https:// URL")
        return self


class SshSettings(Section):
    """``[targets.NAME.ssh]``: how to reach the hosts; per-host overrides in ``hosts.HOST``."""

    known_hosts: Path
    user: str | None = None  # default: the user running the harness
    key: Path | None = None  # default: the agent and ~/.ssh keys
    port: int = Field(default=22, ge=1, le=65535)
    connect_timeout: Wait = 10.0
    hosts: dict[HostName, SshHostSettings] = {}


@dataclass(frozen=True)
class HostAddress:
    name: str
    address: str
    port: int
    user: str
    key: Path | None
    version_url: str | None

    def __str__(self) -> str:
        return f"{self.name} ({self.user}@{self.address}:{self.port})"


def host_addresses(names: list[str], ssh: SshSettings, base_dir: Path) -> list[HostAddress]:
    hosts = []
    for name in names:
        own = ssh.hosts.get(name, SshHostSettings())
        key = own.key or ssh.key
        hosts.append(
            HostAddress(
                name=name,
                address=own.address or name,
                port=own.port or ssh.port,
                user=own.user or ssh.user or getpass.getuser(),
                key=base_dir / key if key is not None else None,
                version_url=own.version_url,
            )
        )
    return hosts


class Connection:
    """One host's SSH connection, opened on first use and kept for the run."""

    def __init__(self, host: HostAddress, known_hosts: Path, timeout: float) -> None:
        self.host = host
        self.known_hosts = known_hosts
        self.timeout = timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    def sftp(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is None:
                self._sftp = self._connect().open_sftp()
                channel = self._sftp.get_channel()
                if channel is not None:
                    channel.settimeout(self.timeout)
            return self._sftp

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        if self._client is not None:
            return self._client
        if not self.known_hosts.is_file():
            raise RollbackFailed(f"{self.host}: known_hosts file {self.known_hosts} does not exist")
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))  # never the system's or the user's: the config's file
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                self.host.address,
                port=self.host.port,
                username=self.host.user,
                key_filename=str(self.host.key) if self.host.key else None,
                look_for_keys=self.host.key is None,
                allow_agent=self.host.key is None,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise RollbackFailed(
                f"{self.host}: the host key does NOT match {self.known_hosts} (got {exc.key.get_name()}): "
                "refused; check the host before changing that file"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            text = str(exc)
            if "not found in known_hosts" in text:
                text = f"its host key is not in {self.known_hosts}: refused (add it with ssh-keyscan after checking it)"
            raise RollbackFailed(f"{self.host}: cannot connect: {text}") from None
        except OSError as exc:
            client.close()
            raise RollbackFailed(f"{self.host}: cannot connect: {exc.strerror or exc}") from None
        self._client = client
        return client

    def run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run ``argv`` on the host (joined with shlex.join); exit status and output, bounded."""
        command = shlex.join(argv)
        with self._lock:
            client = self._connect()
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise RollbackFailed(f"{self.host}: the SSH connection is closed")
        channel = transport.open_session(timeout=self.timeout)
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            output = bytearray()
            deadline = time.monotonic() + timeout
            # Until the command exits, not until its output closes: a daemon it starts may keep that open.
            while not channel.exit_status_ready():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RollbackFailed(f"{self.host}: {command} did not finish within {timeout:g}s")
                if channel.recv_ready():
                    output += channel.recv(4096)
                else:
                    channel.status_event.wait(min(0.1, left))
            while channel.recv_ready():
                output += channel.recv(4096)
            text = bytes(output[-OUTPUT_LIMIT:]).decode(errors="replace").strip()
            return channel.recv_exit_status(), text
        finally:
            channel.close()

    def close(self) -> None:
        with self._lock:
            if self._sftp is not None:
                self._sftp.close()
            if self._client is not None:
                self._client.close()
            self._sftp = self._client = None


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (HarnessError, OSError)) else f"{type(exc).__name__}: {text}"


def connection_facts(host: HostAddress) -> dict[str, Any]:
    return {"host": host.name, "address": host.address, "port": host.port, "user": host.user}
