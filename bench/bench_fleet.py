"""Fleets: 20 targets against 1 target, and 4 SSH hosts in one batch against 1 host.

    .venv/bin/python bench/bench_fleet.py [--targets N] [--hosts N]

Both need the fleet work of issue 12 (part A): ``--rollback-target all`` with
``--rollback-parallel N``, and the release-folder driver's ``hosts`` over SSH. Until the installed
harness has them, each prints one line saying it was skipped and why; a config the fleet code
refuses (its keys may differ from the ones written here) is a skip naming the error, never a crash.

- targets: N demo deployments (each its own app under supervisord, v1.3.0 live), one config with a
  target per deployment; ``pytest --rollback-to v1.2.9 --rollback-target all --rollback-parallel N``
  against the same run with one target. Goal: at most 1.5x.
- hosts: N sshd on loopback ports (own host keys, a temp key pair, one release folder tree each),
  one release-folder target with ``hosts`` and ``batch = N``, against the same with one host.
  Goal: at most 1.5x (the same as for targets; the issue names none).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import goal_line, machine, skipped  # noqa: E402

from demo import deployment  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# The per-target and per-host keys this bench writes: the fleet work's names, as best known when
# this was written. A config error from the harness names the key to change here.
TARGET_SERVICE_KEY = "base_url"  # [targets.NAME] base_url: the service each target's checks probe
SSH_KEYS = {"user": "user", "identity_file": "identity_file", "known_hosts": "known_hosts", "batch": "batch"}


def harness_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], capture_output=True, text=True
    ).stdout


def run_harness(config: Path, workdir: Path, *extra: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--rollback-report-dir={workdir / 'reports'}",
        "--rollback-to",
        "v1.2.9",
        "--rollback-yes",
        *extra,
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    return time.perf_counter() - started, result


def first_error(result: subprocess.CompletedProcess[str]) -> str:
    for line in (result.stderr + result.stdout).splitlines():
        if line.startswith("ERROR") or "error" in line.lower():
            return line.strip()[:160]
    return f"exit code {result.returncode}"


# -- targets ----------------------------------------------------------------------------------------


def fleet_config(layouts: list[deployment.DemoLayout], path: Path) -> None:
    data: dict[str, Any] = tomllib.loads(layouts[0].config_path.read_text())
    data.pop("database", None)  # each deployment has its own; the fleet's checks are the service's
    targets = {}
    for n, layout in enumerate(layouts):
        target = dict(tomllib.loads(layout.config_path.read_text())["targets"]["app"])
        target["releases_dir"] = str(layout.releases_dir)
        target["current_link"] = str(layout.current_link)
        target[TARGET_SERVICE_KEY] = layout.base_url
        targets[f"t{n:02d}"] = target
    data["targets"] = targets
    path.write_text(tomli_w.dumps(data))


def bench_targets(count: int, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"fleet: {count} targets / 1 target"
    if "--rollback-parallel" not in harness_help():
        print(skipped(name, "this harness has no --rollback-parallel / --rollback-target all yet (issue 12 part A)"))
        return
    layouts = [deployment.lay_out(workdir / f"deploy-{n}", live="v1.3.0") for n in range(count)]
    for layout in layouts:
        deployment.start(layout)
    try:
        many, one = workdir / "many.toml", workdir / "one.toml"
        fleet_config(layouts, many)
        fleet_config(layouts[:1], one)
        (workdir / "run").mkdir()
        one_time, result = run_harness(one, workdir / "run", "--rollback-target", "t00")
        if result.returncode != 0:
            print(skipped(name, f"the one-target run failed: {first_error(result)}"))
            return
        many_time, result = run_harness(
            many, workdir / "run", "--rollback-target", "all", "--rollback-parallel", str(count)
        )
        if result.returncode != 0:
            print(skipped(name, f"the fleet run failed: {first_error(result)}"))
            return
        print(f"fleet: {count} targets {many_time:.2f} s, 1 target {one_time:.2f} s")
        print(goal_line(name, many_time / one_time, "<=", 1.5))
    finally:
        for layout in layouts:
            deployment.stop(layout)


# -- SSH hosts --------------------------------------------------------------------------------------


@contextmanager
def sshd_hosts(count: int, workdir: Path) -> Iterator[tuple[list[int], Path, Path]]:
    """``count`` sshd on loopback ports; yields (ports, private key, known_hosts)."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    known = workdir / "known_hosts"
    processes, ports, lines = [], [], []
    try:
        for n in range(count):
            host = workdir / f"host-{n}"
            host.mkdir()
            host_key = host / "ssh_host_ed25519_key"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
            port = deployment.free_port()
            (host / "sshd_config").write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {host / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {key}.pub\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n"
                "PermitRootLogin prohibit-password\n"
            )
            processes.append(
                subprocess.Popen([sshd, "-D", "-e", "-f", str(host / "sshd_config")], stderr=subprocess.DEVNULL)
            )
            ports.append(port)
            public = (host / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"[127.0.0.1]:{port} {public[0]} {public[1]}")
        known.write_text("\n".join(lines) + "\n")
        for port in ports:
            deadline = time.monotonic() + 10
            while deployment.port_is_free(port):
                assert time.monotonic() < deadline, f"sshd on {port} did not start"
                time.sleep(0.05)
        yield ports, key, known
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def bench_hosts(count: int, workdir: Path) -> None:
    name = f"fleet: {count} SSH hosts in one batch / 1 host"
    from rollback_harness.rollback.targets.symlink import SymlinkTarget

    if "hosts" not in SymlinkTarget.settings_model.model_fields:
        print(skipped(name, "the release-folder driver has no 'hosts' yet (issue 12 part A)"))
        return
    if shutil.which("ssh-keygen") is None or not Path(shutil.which("sshd") or "/usr/sbin/sshd").exists():
        print(skipped(name, "needs OpenSSH (Debian's openssh-server)"))
        return
    layout = deployment.lay_out(workdir / "deploy", live="v1.3.0")
    deployment.start(layout)
    try:
        with sshd_hosts(count, workdir) as (ports, key, known):
            data: dict[str, Any] = tomllib.loads(layout.config_path.read_text())
            target = data["targets"]["app"]
            user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
            target.update(
                {SSH_KEYS["user"]: user, SSH_KEYS["identity_file"]: str(key), SSH_KEYS["known_hosts"]: str(known)}
            )
            times = {}
            for label, hosts in (("one", ports[:1]), ("many", ports)):
                target["hosts"] = [f"127.0.0.1:{port}" for port in hosts]
                target[SSH_KEYS["batch"]] = len(hosts)
                path = workdir / f"{label}.toml"
                path.write_text(tomli_w.dumps(data))
                (workdir / label).mkdir()
                deployment.switch_release(layout, "v1.3.0")
                elapsed, result = run_harness(path, workdir / label)
                if result.returncode != 0:
                    print(skipped(name, f"the {label}-host run failed: {first_error(result)}"))
                    return
                times[label] = elapsed
        print(f"fleet: {count} hosts {times['many']:.2f} s, 1 host {times['one']:.2f} s")
        print(goal_line(name, times["many"] / times["one"], "<=", 1.5))
    finally:
        deployment.stop(layout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        bench_targets(args.targets, Path(temp) / "targets")
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        bench_hosts(args.hosts, Path(temp))
    print(machine())


if __name__ == "__main__":
    main()
