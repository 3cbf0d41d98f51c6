"""Fleets: 20 targets against 1 target, and 4 SSH hosts in one batch against 1 host.

    .venv/bin/python bench/bench_fleet.py [--targets N] [--hosts N]

Both time a whole run in a fresh process, ``pytest --rollback-to v1.2.9 --rollback-yes`` (pytest's
start-up, preflight, baseline, rollback, verify, the report), each against the same run on one
target or one host. Every deployment is a demo deployment (demo/deployment.py: its own app under
supervisord, v1.3.0 live: 400 ms per answer and /api/orders failing; v1.2.9 good), so each target
and each host runs the demo's checks against a real restarted app. Before each timed run every
deployment is put back on v1.3.0 (untimed), and after it every deployment must answer v1.2.9: a run
that fails, or leaves a deployment behind, stops the script with exit 1 (never a quiet skip).
For context the targets bench also prints what the machine alone takes to restart the N apps at
once (``supervisorctl restart`` of each, until each answers) against one app: the floor no
harness can go under on a machine with fewer cores than apps.

- targets: N deployments, one config with a target per deployment (``[targets.tNN]`` with its
  paths and restart, and ``[targets.tNN.checks] base_url`` its own app);
  ``--rollback-target all --rollback-parallel N`` against ``--rollback-target t00`` of a one-target
  config. Goal: at most 1.5x.
- hosts: N OpenSSH servers on loopback ports, started the way tests/ssh does it (the helpers of
  tests/ssh/ssh_support.py: one sshd per "host", its own host key and home folder, a temporary key
  pair, a known_hosts file holding each server's key). Each host's home holds a deployment in
  ``app/`` and a ``restart.sh`` restarting that deployment's app. One release-folder target with
  ``hosts``, ``batch = N`` and ``[targets.app.ssh]`` (known_hosts, user, key; per host address,
  port and ``version_url``), against the same target with the first host only. Goal: at most 1.5x
  (the same as for targets; the issue names none). Needs sshd (Debian's openssh-server) and root,
  as the SSH tests do; without them it prints one line saying it was skipped.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ssh"))

from bench_common import PYTEST, goal_line, machine, skipped  # noqa: E402
from ssh_support import SshHost, have_sshd, keygen, start_sshd  # noqa: E402

from demo import deployment  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LIVE, TARGET = "v1.3.0", "v1.2.9"


def run_harness(config: Path, workdir: Path, *extra: str) -> float:
    """Wall time of one whole run; exits the script when the run fails."""
    command = [
        *PYTEST,
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--rollback-report-dir={workdir / 'reports'}",
        "--rollback-to",
        TARGET,
        "--rollback-yes",
        *extra,
    ]
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{shlex.join(command)}\nexited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
        )
    return elapsed


def answered(layout: deployment.DemoLayout) -> str | None:
    try:
        return deployment.live_version(layout)
    except OSError:  # restarting
        return None


def put_back(layouts: list[deployment.DemoLayout], version: str) -> None:
    """Every deployment on ``version`` and answering it (untimed)."""
    for layout in layouts:
        if deployment.linked_version(layout) != version or answered(layout) != version:
            deployment.switch_release(layout, version)
            subprocess.run(layout.restart_command, cwd=layout.root, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    for layout in layouts:
        while answered(layout) != version:
            if time.monotonic() > deadline:
                raise SystemExit(f"{layout.base_url} did not come back on {version}")
            time.sleep(0.05)


def expect_rolled_back(layouts: list[deployment.DemoLayout], what: str) -> None:
    behind = [
        str(layout.root)
        for layout in layouts
        if deployment.linked_version(layout) != TARGET or answered(layout) != TARGET
    ]
    if behind:
        raise SystemExit(f"{what} exited 0 but left {len(behind)} deployment(s) off {TARGET}: {', '.join(behind)}")


def demo_config(layout: deployment.DemoLayout) -> dict[str, Any]:
    """The demo's rollback.toml with absolute paths (the bench writes its configs elsewhere)."""
    data: dict[str, Any] = tomllib.loads(layout.config_path.read_text())
    data["database"]["url"] = layout.database_url
    return data


@contextmanager
def started(layouts: list[deployment.DemoLayout]) -> Iterator[None]:
    with ExitStack() as stack:
        for layout in layouts:
            deployment.start(layout)
            stack.callback(deployment.stop, layout)
        yield


def bare_restarts(layouts: list[deployment.DemoLayout]) -> float:
    """Seconds until ``layouts`` all answer again after restarting them at once, without the harness."""
    started_at = time.perf_counter()
    processes = [subprocess.Popen(layout.restart_command, stdout=subprocess.DEVNULL) for layout in layouts]
    for process in processes:
        process.wait()
    put_back(layouts, LIVE)
    return time.perf_counter() - started_at


# -- targets ----------------------------------------------------------------------------------------


def fleet_config(layouts: list[deployment.DemoLayout], path: Path) -> None:
    data = demo_config(layouts[0])
    data.pop("database")  # each deployment has its own; a target's checks are its own service's
    targets = {}
    for n, layout in enumerate(layouts):
        target = dict(tomllib.loads(layout.config_path.read_text())["targets"]["app"])
        target["releases_dir"] = str(layout.releases_dir)
        target["current_link"] = str(layout.current_link)
        target["checks"] = {"base_url": layout.base_url}  # [targets.tNN.checks]: its own app
        targets[f"t{n:02d}"] = target
    data["targets"] = targets
    path.write_text(tomli_w.dumps(data))


def bench_targets(count: int, workdir: Path) -> None:
    name = f"fleet: {count} targets / 1 target"
    layouts = [deployment.lay_out(workdir / f"deploy-{n}", live=LIVE) for n in range(count)]
    with started(layouts):
        many, one = workdir / "many.toml", workdir / "one.toml"
        fleet_config(layouts, many)
        fleet_config(layouts[:1], one)
        # What the machine itself takes (no harness): the apps of the fleet restarted at once, and one.
        bare_many, bare_one = bare_restarts(layouts), bare_restarts(layouts[:1])
        one_time = run_harness(one, workdir / "run-one", "--rollback-target", "t00")
        expect_rolled_back(layouts[:1], "the one-target run")
        put_back(layouts, LIVE)
        many_time = run_harness(
            many, workdir / "run-many", "--rollback-target", "all", "--rollback-parallel", str(count)
        )
        expect_rolled_back(layouts, "the fleet run")
    print(f"fleet: {count} targets {many_time:.2f} s, 1 target {one_time:.2f} s")
    print(f"fleet: bare restart of {count} demo apps at once {bare_many:.2f} s, of 1 app {bare_one:.2f} s (no harness)")
    print(goal_line(name, many_time / one_time, "<=", 1.5))
    # The floor (issue 19): one target's run plus what restarting the fleet's apps at once costs the
    # machine beyond restarting one, bare: what a harness with no overhead per target would take.
    floor = one_time + max(0.0, bare_many - bare_one)
    print(f"fleet: floor {floor:.2f} s (1 target {one_time:.2f} s + bare {count}-app restart beyond one)")
    print(goal_line(f"fleet: {count} targets / floor", many_time / floor, "<=", 1.15))


# -- SSH hosts --------------------------------------------------------------------------------------


def hosts_config(
    layouts: list[deployment.DemoLayout], hosts: list[SshHost], key: Path, known_hosts: Path, path: Path
) -> None:
    """One release-folder target on ``hosts`` (all in one batch); the service is the first host's app."""
    data = demo_config(layouts[0])
    target = data["targets"]["app"]
    for local_only in ("pid_file", "pid_command"):  # the census of hosts reads each host's version_url
        target.pop(local_only, None)
    target.update(
        {
            "releases_dir": "app/releases",  # on each host, from its home
            "current_link": "app/current",
            "restart": ["sh", "restart.sh"],  # each host's own: restarts that host's app
            "hosts": [host.name for host in hosts],
            "batch": len(hosts),
            "ssh": {
                "known_hosts": str(known_hosts),
                "user": subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip(),
                "key": str(key),
                "connect_timeout": "5s",
                "hosts": {
                    host.name: {"address": "127.0.0.1", "port": host.port, "version_url": layout.base_url + "/version"}
                    for host, layout in zip(hosts, layouts, strict=True)
                },
            },
        }
    )
    path.write_text(tomli_w.dumps(data))


def bench_hosts(count: int, workdir: Path) -> None:
    name = f"fleet: {count} SSH hosts in one batch / 1 host"
    if not have_sshd() or shutil.which("ssh-keygen") is None:
        print(skipped(name, "needs sshd and ssh-keygen (Debian's openssh-server) and root, as tests/ssh does"))
        return
    with ExitStack() as stack:
        key = keygen(workdir / "id_ed25519", "rollback-bench")
        authorized = workdir / "authorized_keys"
        authorized.write_text(key.with_suffix(".pub").read_text())
        hosts, layouts = [], []
        for n in range(count):
            host = start_sshd(f"web{n + 1}", workdir / f"web{n + 1}", authorized)
            stack.callback(host.stop)
            layout = deployment.lay_out(host.home / "app", live=LIVE)
            (host.home / "restart.sh").write_text(shlex.join(layout.restart_command) + "\n")
            hosts.append(host)
            layouts.append(layout)
        known_hosts = workdir / "known_hosts"
        known_hosts.write_text("".join(host.known_hosts_line for host in hosts))
        stack.enter_context(started(layouts))
        many, one = workdir / "many.toml", workdir / "one.toml"
        hosts_config(layouts, hosts, key, known_hosts, many)
        hosts_config(layouts[:1], hosts[:1], key, known_hosts, one)
        one_time = run_harness(one, workdir / "run-one")
        expect_rolled_back(layouts[:1], "the one-host run")
        put_back(layouts, LIVE)
        many_time = run_harness(many, workdir / "run-many")
        expect_rolled_back(layouts, f"the {count}-host run")
    print(f"fleet: {count} hosts {many_time:.2f} s, 1 host {one_time:.2f} s")
    print(goal_line(name, many_time / one_time, "<=", 1.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=20)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        bench_targets(args.targets, Path(temp))
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        bench_hosts(args.hosts, Path(temp))
    print(machine())


if __name__ == "__main__":
    main()
