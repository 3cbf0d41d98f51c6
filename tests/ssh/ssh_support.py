"""Real OpenSSH servers on loopback ports, one per "host", each with its own host key and folder.

Each sshd runs as this user (root: as the brief and Debian's sshd need for privilege separation)
with ``-D -e -f CONFIG``: its own HostKey, AuthorizedKeysFile, PidFile, ``UsePAM no`` and
``StrictModes no``, listening on 127.0.0.1 only. The client key pair and known_hosts file are made
per test; the harness verifies each server's host key against that file.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
START_TIMEOUT = 10.0


def have_sshd() -> bool:
    return os.path.exists(SSHD) and os.geteuid() == 0


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SshHost:
    name: str
    folder: Path
    port: int
    host_key: Path
    process: subprocess.Popen[bytes]

    @property
    def home(self) -> Path:
        return self.folder / "home"

    @property
    def known_hosts_line(self) -> str:
        kind, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sshd(name: str, folder: Path, authorized_keys: Path) -> SshHost:
    """An sshd for host ``name``, its files in ``folder``; returns once it answers with its banner.

    Every "host" logs in as this user, so each gets its own home: a ForceCommand script starts
    commands (and the SFTP server) in ``folder/home``, as a login on another machine would.
    """
    folder.mkdir(parents=True, exist_ok=True)
    home = folder / "home"
    home.mkdir(exist_ok=True)
    session = folder / "session.sh"
    session.write_text(
        "#!/bin/sh\n"
        f"cd {shlex.quote(str(home))} || exit 1\n"
        f"HOME={shlex.quote(str(home))}; export HOME\n"
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f"  {SFTP_SERVER}*) exec {SFTP_SERVER} -d {shlex.quote(str(home))} ;;\n"
        "esac\n"
        'exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
    )
    session.chmod(0o755)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder
    host_key = keygen(folder / "ssh_host_ed25519_key", f"host-{name}")
    port = free_port()
    config = folder / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized_keys}",
                "UsePAM no",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                f"Subsystem sftp {SFTP_SERVER}",
                f"ForceCommand {session}",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    log = (folder / "sshd.log").open("wb")
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    host = SshHost(name, folder, port, host_key, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sshd for {name} exited {process.returncode}: {(folder / 'sshd.log').read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-2.0"):
                    return host
        except OSError:
            pass
        if time.monotonic() > deadline:
            host.stop()
            raise RuntimeError(f"sshd for {name} did not answer on port {port} within {START_TIMEOUT}s")
        time.sleep(0.05)


def user() -> str:
    return getpass.getuser()
