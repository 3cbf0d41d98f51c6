"""The census of a symlink target on three hosts over SSH (real OpenSSH servers): one replica per host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ssh_fixtures import SshFleet

from rollback_harness.rollback.census import Census, judge_census
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.remote import RemoteSymlinkTarget

pytestmark = pytest.mark.integration


def census_of(fleet: SshFleet) -> Census:
    """The census a fresh driver reads (its SSH connections closed after)."""
    config = load_config(fleet.config_path)
    context = TargetContext(
        name="shop", base_dir=config.base_dir, progress=lambda text: None, service_version=lambda timeout=None: None
    )
    target = create_target(config.target(None), context)
    assert isinstance(target, RemoteSymlinkTarget)
    try:
        return target.census()
    finally:
        for connection in target.connections.values():
            connection.close()


def point(app: Path, version: str) -> None:
    """``ln -sfn releases/VERSION current`` on a host, as a deploy there would."""
    temporary = app / ".current.test"
    os.symlink(f"releases/{version}", temporary)
    os.replace(temporary, app / "current")


def test_a_host_left_on_the_old_release_fails_the_census_naming_it(ssh_fleet: SshFleet) -> None:
    for name in ("web1", "web2"):
        point(ssh_fleet.app(name), "v1.2.9")
    census = census_of(ssh_fleet)
    result = judge_census(census, "v1.2.9")

    assert census.unit == "host"
    assert [(r.name, r.version, r.serving, r.state) for r in census.replicas] == [
        ("host web1", "v1.2.9", True, "serving"),
        ("host web2", "v1.2.9", True, "serving"),
        ("host web3", "v1.3.0", True, "serving"),
    ]
    assert census.replicas[2].detail.startswith(f"root@127.0.0.1:{ssh_fleet.hosts['web3'].port}; ")
    assert result.status == "failed"
    assert result.summary.startswith("1 host of 3 serving still on another version: host web3 (v1.3.0)")

    point(ssh_fleet.app("web3"), "v1.2.9")
    passed = judge_census(census_of(ssh_fleet), "v1.2.9")
    assert passed.status == "passed", passed.summary
    assert passed.summary == "every serving host runs v1.2.9: 3 of 3"


def test_a_host_that_cannot_be_read_is_left_behind_and_fails(ssh_fleet: SshFleet) -> None:
    for name in ssh_fleet.hosts:
        point(ssh_fleet.app(name), "v1.2.9")
    ssh_fleet.hosts["web2"].stop()  # its sshd is gone: the host cannot be reached
    census = census_of(ssh_fleet)
    result = judge_census(census, "v1.2.9")

    web2 = census.replicas[1]
    assert (web2.name, web2.version, web2.serving, web2.state) == ("host web2", None, False, "unreadable")
    assert "cannot connect" in web2.detail
    assert census.facts["unread"] == ["web2"]
    assert result.status == "failed"
    assert result.summary.startswith("every serving host runs v1.2.9, but host web2 could not be read: cannot connect")


def test_a_host_whose_link_is_not_a_release_is_a_problem_naming_it(ssh_fleet: SshFleet) -> None:
    (ssh_fleet.app("web1") / "current").unlink()
    result = judge_census(census_of(ssh_fleet), "v1.3.0")

    assert result.status == "failed"
    assert "host web1 could not be read: app/current is missing: cannot tell the live release" in result.summary


def test_a_rollback_that_leaves_one_host_behind_fails_verify_replicas_naming_it(
    pytester: pytest.Pytester, ssh_fleet: SshFleet
) -> None:
    # web3's restart puts its link back (as its own deploy tool would); without a version_url there,
    # the rollout does not wait on it, so only the census can tell that web3 was left behind.
    web3_link = ssh_fleet.app("web3") / "current"
    (ssh_fleet.hosts["web3"].home / "restart.sh").write_text(f"ln -sfn releases/v1.3.0 {web3_link}\n")
    target = ssh_fleet.target()
    del target["ssh"]["hosts"]["web3"]["version_url"]
    ssh_fleet.write({"web": target})
    reports = pytester.path / "reports"

    result = pytester.runpytest(*ssh_fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-yes", "-v"))

    assert result.ret == 13, result.stdout.str()  # rolled back, verify failed
    assert os.readlink(web3_link) == "releases/v1.3.0"
    result.stdout.fnmatch_lines(
        [
            "rollback.toml::verify-replicas FAILED*",
            "replicas",
            "  before: passed: every serving host runs v1.3.0: 3 of 3",
            "  after:  failed: 1 host of 3 serving still on another version: host web3 (v1.3.0)*",
            "host web3: done: switch-link done, restart done",
        ]
    )


def test_a_host_answering_another_release_than_its_link_is_a_problem(ssh_fleet: SshFleet) -> None:
    # web1's service answers v1.2.9 while its link points at v1.3.0: what a host not restarted after a switch does.
    (ssh_fleet.app("web1") / "releases" / "v1.3.0" / "VERSION").write_text("v1.2.9\n")

    result = judge_census(census_of(ssh_fleet), "v1.3.0")

    assert result.status == "failed"
    assert result.summary.startswith("every serving host runs v1.3.0, but host web1 answers v1.2.9 at http://")
    assert "but its link points at v1.3.0: not restarted since the switch" in result.summary
