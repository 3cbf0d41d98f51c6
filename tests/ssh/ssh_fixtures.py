"""The ssh_fleet fixture: three sshd "hosts" with release folders, and the config that names them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported before any in-process pytester run: one copy of paramiko and its bindings for the session
# (a second import of cryptography's bindings loses its ciphers).
import paramiko  # noqa: F401
import pytest
import tomli_w
from ssh_support import SshHost, have_sshd, keygen, start_sshd

import rollback_harness.rollback.targets.remote  # noqa: F401

sys.path.insert(0, str(Path(__file__).parent.parent / "fleet"))
from fleet_support import make_release_folder, version_server

RESTART = ["sh", "restart.sh"]  # run in each host's home: restart.sh there says what happens


@dataclass
class SshFleet:
    """Three "hosts" (web1..web3): an sshd each, each with its own home holding app/releases."""

    tmp: Path
    hosts: dict[str, SshHost]
    host_urls: dict[str, str]
    service_url: str
    key: Path
    known_hosts: Path

    @property
    def config_path(self) -> Path:
        return self.tmp / "rollback.toml"

    def app(self, name: str) -> Path:
        return self.hosts[name].home / "app"

    def target(self, **extra: Any) -> dict[str, Any]:
        ssh_hosts = {
            name: {"address": "127.0.0.1", "port": host.port, "version_url": self.host_urls[name] + "/version"}
            for name, host in self.hosts.items()
        }
        return {
            "kind": "symlink",
            "releases_dir": "app/releases",
            "current_link": "app/current",
            "restart": RESTART,
            "ready_timeout": "10s",
            "ready_consecutive": 1,
            "hosts": list(self.hosts),
            "batch": 1,
            "ssh": {
                "known_hosts": str(self.known_hosts),
                "key": str(self.key),
                "connect_timeout": "5s",
                "hosts": ssh_hosts,
            },
            **extra,
        }

    def write(self, targets: dict[str, Any] | None = None, **extra: Any) -> Path:
        data = {
            "service": {
                "name": "shop",
                "base_url": self.service_url,
                "timeout": "2s",
                "settle": "0s",
                "version": {"consecutive": 3, "interval": "0s"},
            },
            "targets": targets or {"web": self.target(**extra)},
        }
        self.config_path.write_text(tomli_w.dumps(data))
        return self.config_path

    def args(self, reports: Path, *extra: str) -> list[str]:
        return ["-p", "no:cacheprovider", f"--rollback-config={self.config_path}", f"--report-dir={reports}", *extra]


@pytest.fixture
def ssh_fleet(tmp_path: Path) -> Iterator[SshFleet]:
    if not have_sshd():
        pytest.skip("needs /usr/sbin/sshd (Debian's openssh-server) and root: scripts/test-services.sh installs it")
    with ExitStack() as stack:
        key = keygen(tmp_path / "id_ed25519", "harness-test")
        authorized = tmp_path / "authorized_keys"
        authorized.write_text(key.with_suffix(".pub").read_text())
        hosts = {}
        for name in ("web1", "web2", "web3"):
            host = start_sshd(name, tmp_path / name, authorized)
            stack.callback(host.stop)
            hosts[name] = host
            make_release_folder(host.home / "app")
            (host.home / "restart.sh").write_text("echo restart >> restarts.log\n")
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text("".join(host.known_hosts_line for host in hosts.values()))
        urls = {name: stack.enter_context(version_server(host.home / "app")) for name, host in hosts.items()}
        service = stack.enter_context(version_server(*(host.home / "app" for host in hosts.values())))
        fleet = SshFleet(tmp_path, hosts, urls, service, key, known_hosts)
        fleet.write()
        yield fleet
