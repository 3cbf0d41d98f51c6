"""The symlink driver on three hosts over SSH: real OpenSSH servers on loopback ports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from fleet_support import make_release_folder, symlink_target, version_server
from ssh_fixtures import SshFleet

pytestmark = pytest.mark.integration


def linked(app: Path) -> str:
    return Path(os.readlink(app / "current")).name


def restarts(home: Path) -> int:
    log = home / "restarts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def evidence(reports: Path) -> dict:
    (folder,) = [p for p in reports.iterdir() if p.is_dir()]
    return json.loads((folder / "evidence.json").read_text())


def journal(reports: Path) -> list[dict]:
    (folder,) = [p for p in reports.iterdir() if p.is_dir()]
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def test_three_hosts_roll_back_one_at_a_time(pytester: pytest.Pytester, ssh_fleet: SshFleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.2.9"] * 3
    assert [restarts(host.home) for host in ssh_fleet.hosts.values()] == [1, 1, 1]
    result.stdout.fnmatch_lines(
        [
            "*batch 1 (web1): point app/current at releases/v1.2.9 (atomic rename); restart: sh restart.sh; "
            "wait until web1 answer v1.2.9",
            "*shop: rolled back from v1.3.0 to v1.2.9; verified*",
            "host web1: done: switch-link done, restart done, wait-ready done",
            "host web3: done: switch-link done, restart done, wait-ready done",
            "exit code 0: success",
        ]
    )
    # One host at a time: web2's switch starts only after web1 answered the target.
    order = [(e["step"], e["status"]) for e in journal(reports) if "@" in e["step"]]
    assert order.index(("wait-ready@web1", "done")) < order.index(("switch-link@web2", "started"))
    assert order.index(("wait-ready@web2", "done")) < order.index(("switch-link@web3", "started"))
    data = evidence(reports)
    assert data["target"]["hosts"] == ["web1", "web2", "web3"]
    assert set(data["hosts"]) == {"web1", "web2", "web3"}
    assert data["hosts"]["web2"]["steps"] == {"switch-link": "done", "restart": "done", "wait-ready": "done"}


def test_a_failing_host_stops_the_rollout_and_each_host_says_where_it_stands(
    pytester: pytest.Pytester, ssh_fleet: SshFleet
) -> None:
    (ssh_fleet.hosts["web2"].home / "restart.sh").write_text("echo cannot restart >&2; exit 3\n")
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 12, result.stdout.str()
    assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.2.9", "v1.2.9", "v1.3.0"]
    assert restarts(ssh_fleet.hosts["web3"].home) == 0
    result.stdout.fnmatch_lines(
        [
            "*rollback failed: web2: restart command exited 3: sh restart.sh: cannot restart; "
            "not started, left as they were: web3*",
            "host web1: done*",
            "host web2: failed at restart",
            "host web3: not started: nothing was changed on it",
        ]
    )
    data = evidence(reports)
    assert data["hosts"]["web3"]["steps"] == {}
    assert "ssh -p" in data["outcome"]["way_back"]


def test_an_unknown_host_key_is_refused_before_any_change(pytester: pytest.Pytester, ssh_fleet: SshFleet) -> None:
    lines = ssh_fleet.known_hosts.read_text().splitlines(keepends=True)
    ssh_fleet.known_hosts.write_text(lines[0] + lines[2])  # web2's key is not known
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 10, result.stdout.str()
    assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.3.0"] * 3
    result.stdout.fnmatch_lines(
        [f"*web2 (*@127.0.0.1:*): cannot connect: its host key is not in {ssh_fleet.known_hosts}*"]
    )


def test_a_version_with_shell_characters_never_reaches_a_host(pytester: pytest.Pytester, ssh_fleet: SshFleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1;touch pwned", "--rollback-yes"))

    assert result.ret == 10, result.stdout.str()
    assert not any(host.home.joinpath("pwned").exists() for host in ssh_fleet.hosts.values())
    assert [restarts(host.home) for host in ssh_fleet.hosts.values()] == [0, 0, 0]


def test_hosts_without_an_ssh_table_is_a_config_error(pytester: pytest.Pytester, ssh_fleet: SshFleet) -> None:
    target = ssh_fleet.target()
    del target["ssh"]
    ssh_fleet.write({"web": target})
    result = pytester.runpytest(*ssh_fleet.args(pytester.path / "reports", "--rollback-to", "v1.2.9"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*targets.web.hosts = *: needs an ?ssh? table with at least known_hosts*"])


def test_a_three_target_fleet_with_a_three_host_target_rolls_back_in_one_run(
    pytester: pytest.Pytester, ssh_fleet: SshFleet, tmp_path: Path
) -> None:
    """Done when (issue 12): two local targets and the SSH target on three hosts, one run, one report."""
    with ExitStack() as stack:
        roots = {name: make_release_folder(tmp_path / name) for name in ("api", "worker")}
        urls = {name: stack.enter_context(version_server(root)) for name, root in roots.items()}
        targets = {name: symlink_target(root, urls[name]) for name, root in roots.items()}
        ssh_fleet.write({**targets, "web": ssh_fleet.target()})
        reports = pytester.path / "reports"
        result = pytester.runpytest(
            *ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-yes")
        )

        assert result.ret == 0, result.stdout.str()
        assert [linked(root) for root in roots.values()] == ["v1.2.9", "v1.2.9"]
        assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.2.9"] * 3
        result.stdout.fnmatch_lines(
            [
                "*shop: fleet of 3 targets rolled back to v1.2.9*verified*",
                "target api: rolled back from v1.3.0 to v1.2.9; verified",
                "target web: rolled back from v1.3.0 to v1.2.9; verified",
                "  host web1: done: switch-link done, restart done, wait-ready done",
                "  host web3: done: switch-link done, restart done, wait-ready done",
            ]
        )
        (folder,) = [p for p in reports.iterdir() if p.is_dir()]
        data = json.loads((folder / "evidence.json").read_text())
        web = next(t for t in data["targets"] if t["name"] == "web")
        assert web["hosts"]["web2"]["steps"] == {"switch-link": "done", "restart": "done", "wait-ready": "done"}
        html = (folder / "report.html").read_text()
        assert all(f'id="rollback-target-{name}"' in html for name in ("api", "worker", "web"))
        assert html.count('class="rollback-hosts"') == 1


def test_a_host_moved_by_another_deploy_mid_rollout_is_a_conflict_and_is_not_written(
    pytester: pytest.Pytester, ssh_fleet: SshFleet
) -> None:
    # web1's restart moves web2's link (as another deploy would) after preflight read it.
    web2_link = ssh_fleet.app("web2") / "current"
    (ssh_fleet.hosts["web1"].home / "restart.sh").write_text(f"ln -sfn ./releases/v1.3.0 {web2_link}\n")
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 14, result.stdout.str()
    assert os.readlink(web2_link) == "./releases/v1.3.0"  # not overwritten
    assert linked(ssh_fleet.app("web3")) == "v1.3.0"
    result.stdout.fnmatch_lines(
        ["*conflict: web2: app/current changed after this run read it*not started, left as they were: web3*"]
    )


def test_temporary_links_of_a_killed_switch_are_removed_on_each_host(
    pytester: pytest.Pytester, ssh_fleet: SshFleet
) -> None:
    leftover = ssh_fleet.app("web2") / ".current.rollback-4242"
    os.symlink("releases/v1.2.9", leftover)
    reports = pytester.path / "reports"
    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    assert not leftover.is_symlink()
    switch = next(e for e in journal(reports) if e["step"] == "switch-link@web2" and e["status"] == "done")
    assert switch["removed"] == [".current.rollback-4242"]


def test_a_rollout_killed_on_the_second_host_is_finished_by_the_next_run(ssh_fleet: SshFleet, tmp_path: Path) -> None:
    gate, hold, holding = tmp_path / "release-web2", tmp_path / "hold-web2", tmp_path / "holding-web2"
    hold.touch()
    # The script stays the same for both runs (a shell reads a running script as it goes).
    (ssh_fleet.hosts["web2"].home / "restart.sh").write_text(
        f"if [ -e {hold} ]; then\n"
        f"  touch {holding}\n"
        f"  while [ ! -e {gate} ]; do [ -e {gate}.cancel ] && exit 3; sleep 0.02; done\n"
        "fi\n"
        "echo restart >> restarts.log\n"
    )

    def command(reports: Path) -> list[str]:
        return [sys.executable, "-m", "pytest", *ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")]

    first = tmp_path / "reports1"
    process = subprocess.Popen(
        command(first), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not holding.exists():  # until web2's restart is running on web2
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "web2's restart never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        process.kill()
        process.communicate()
        Path(f"{gate}.cancel").touch()  # the held restart gives up: it never ran
    assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.2.9", "v1.2.9", "v1.3.0"]

    hold.unlink()
    second = tmp_path / "reports2"
    rerun = subprocess.run(command(second), cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert [linked(ssh_fleet.app(name)) for name in ssh_fleet.hosts] == ["v1.2.9"] * 3
    entries = journal(second)
    skipped = {e["step"] for e in entries if e["status"] == "skipped" and "@" in e["step"]}
    # Hosts whose link is on the target and whose version_url answers it are not done again.
    assert skipped == {"switch-link@web1", "switch-link@web2"}, skipped
    assert [restarts(host.home) for host in ssh_fleet.hosts.values()] == [1, 0, 1]
    (folder,) = [p for p in second.iterdir() if p.is_dir()]
    data = json.loads((folder / "evidence.json").read_text())
    assert data["outcome"]["resumed_from"] is not None
