"""A fleet run: --rollback-target all rolls back several targets of one config in one run."""

from __future__ import annotations

import pytest
from fleet_support import Fleet, evidence, journal, linked, restarts

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration


def test_three_targets_roll_back_in_one_run_with_one_report(pytester: pytest.Pytester, fleet: Fleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-yes", "-v")
    )

    assert result.ret == 0, result.stdout.str()
    assert {name: linked(root) for name, root in fleet.roots.items()} == dict.fromkeys("abc", "v1.2.9")
    assert [restarts(root) for root in fleet.roots.values()] == [1, 1, 1]
    result.stdout.fnmatch_lines(
        [
            "*rollback.toml::a::preflight-target-lock PASSED*",
            "*rollback.toml::c::verify-version PASSED*",
            "*shop: fleet of 3 targets rolled back to v1.2.9*verified*",
            "target a: rolled back from v1.3.0 to v1.2.9; verified",
            "target b: rolled back from v1.3.0 to v1.2.9; verified",
            "target c: rolled back from v1.3.0 to v1.2.9; verified",
            "exit code 0: success",
        ]
    )
    data = evidence(reports)
    assert [t["name"] for t in data["targets"]] == ["a", "b", "c"]
    assert {t["status"] for t in data["targets"]} == {"rolled-back"}
    assert {t["verify"] for t in data["targets"]} == {"passed"}
    assert data["targets"][1]["checks_base_url"] == fleet.urls["b"]
    assert data["outcome"]["status"] == "rolled-back"
    comparisons = {c["check"]: c for c in data["comparisons"]}
    assert comparisons["b: version"]["before"]["measured"]["version"] == "v1.3.0"
    assert comparisons["b: version"]["after"]["measured"]["version"] == "v1.2.9"

    folder = next(reports.iterdir())
    # One confirmation and one plan for the whole fleet; each target's own journal.
    fleet_entries = journal(folder)
    assert [e["step"] for e in fleet_entries].count("confirmation") == 1
    assert [e["step"] for e in fleet_entries].count("plan") == 1
    for name in "abc":
        states = {e["step"]: e["status"] for e in journal(folder / "targets" / name)}
        assert states["switch-link"] == "done" and states["outcome"] == "rolled-back", states
    html = (folder / "report.html").read_text()
    for name in "abc":
        assert f'id="rollback-target-{name}"' in html
    assert verify_manifest(folder) == []
    assert (
        "targets/b/journal.jsonl" in (folder / "MANIFEST.sha256").read_text()
        if (folder / "MANIFEST.sha256").exists()
        else True
    )


def test_a_failure_stops_the_targets_not_started_and_says_where_each_stands(
    pytester: pytest.Pytester, fleet: Fleet
) -> None:
    fleet.write(b={"restart": ["false"]})
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(
            reports, "--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-parallel", "1", "--rollback-yes"
        )
    )

    assert result.ret == 21, result.stdout.str()
    assert (linked(fleet.roots["a"]), linked(fleet.roots["c"])) == ("v1.2.9", "v1.3.0")
    result.stdout.fnmatch_lines(
        [
            "*shop: fleet of 3 targets PARTIALLY rolled back (a rolled-back; b rollback-failed; c not-started)*",
            "target a: rolled back from v1.3.0 to v1.2.9; verified",
            "target b: rollback failed: restart command exited 1*"
            "Steps: done: switch-link; failed: restart; not started: wait-ready*",
            "target c: not started (stopped because b failed): nothing was changed on it*",
            "exit code 21: fleet partially rolled back*",
        ]
    )
    data = evidence(reports)
    states = {t["name"]: t for t in data["targets"]}
    assert states["b"]["outcome"]["steps"] == {"switch-link": "done", "restart": "failed", "wait-ready": "not started"}
    assert states["b"]["outcome"]["way_back"]
    assert states["c"]["status"] == "not-started"
    assert data["exit"]["code"] == 21


def test_every_targets_preflight_passes_before_any_change(pytester: pytest.Pytester, fleet: Fleet) -> None:
    (fleet.roots["c"] / "releases" / "v1.2.9" / "VERSION").unlink()
    (fleet.roots["c"] / "releases" / "v1.2.9").rmdir()
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "a,c", "--rollback-yes")
    )

    assert result.ret == 10, result.stdout.str()
    assert {name: linked(root) for name, root in fleet.roots.items()} == dict.fromkeys("abc", "v1.3.0")
    assert restarts(fleet.roots["a"]) == 0
    result.stdout.fnmatch_lines(
        ["*preflight refused the fleet: c: target-exists: v1.2.9*", "target a: not rolled back*"]
    )
    data = evidence(reports)
    assert [t["name"] for t in data["targets"]] == ["a", "c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rollback-target", "a", "--rollback-parallel", "2"], "*--rollback-parallel applies to a fleet*"),
        (["--rollback-target", "a,zz"], "*no such target 'zz'*known: a, b, c (or 'all')*"),
        (["--rollback-target", "all", "--rollback-parallel", "0"], "*--rollback-parallel 0: expected a number from 1*"),
        (["--rollback-target", "a,a"], "*a named more than once*"),
        (["--rollback-target", "all", "--rollback-watch", "1m"], "*--rollback-watch watches one target*"),
        (["--rollback-target", "all", "--rollback-to", "last-verified"], "*last-verified reads one target's history*"),
    ],
    ids=["parallel-without-fleet", "unknown-target", "parallel-zero", "twice", "watch", "last-verified"],
)
def test_fleet_usage_errors(pytester: pytest.Pytester, fleet: Fleet, args: list[str], message: str) -> None:
    result = pytester.runpytest(*fleet.args(pytester.path / "reports", "--rollback-to", "v1.2.9", *args))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_gate_checks_one_target(pytester: pytest.Pytester, fleet: Fleet) -> None:
    result = pytester.runpytest(
        *fleet.args(pytester.path / "reports", "--rollback-gate", "verify", "--rollback-target", "all")
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*a gate checks one target: pass --rollback-target NAME*"])


def test_a_targets_checks_table_is_validated(pytester: pytest.Pytester, fleet: Fleet) -> None:
    fleet.write(b={"checks": {"base_url": "ftp://x", "colour": "red"}})
    result = pytester.runpytest(
        *fleet.args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-target", "all")
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "targets.b.checks.colour: unknown key" in text, text
    assert "targets.b.checks.base_url = 'ftp://x': expected an http:// or https:// URL" in text, text


def test_one_confirmation_for_the_whole_fleet_refused_without_a_tty(pytester: pytest.Pytester, fleet: Fleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "all"))

    assert result.ret == 11, result.stdout.str()
    assert {name: linked(root) for name, root in fleet.roots.items()} == dict.fromkeys("abc", "v1.3.0")
    result.stdout.fnmatch_lines(["*fleet of 3 targets: not-confirmed*nothing was changed*"])
    folder = next(reports.iterdir())
    assert [e["step"] for e in journal(folder)].count("confirmation") == 1


def test_a_dry_run_plans_every_target_and_changes_nothing(pytester: pytest.Pytester, fleet: Fleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "b,a", "--rollback-dry-run")
    )

    assert result.ret == 0, result.stdout.str()
    assert {name: linked(root) for name, root in fleet.roots.items()} == dict.fromkeys("abc", "v1.3.0")
    result.stdout.fnmatch_lines(["*fleet plan for shop: 2 targets, 4 at a time", "*b: v1.3.0 -> v1.2.9", "*1. point*"])
    assert [t["name"] for t in evidence(reports)["targets"]] == ["b", "a"]


def test_a_fleet_under_xdist(pytester: pytest.Pytester, fleet: Fleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-yes", "-n", "2")
    )

    assert result.ret == 0, result.stdout.str()
    assert {name: linked(root) for name, root in fleet.roots.items()} == dict.fromkeys("abc", "v1.2.9")
    assert {t["verify"] for t in evidence(reports)["targets"]} == {"passed"}


def test_a_user_verify_gate_fails_unless_every_target_rolled_back(pytester: pytest.Pytester, fleet: Fleet) -> None:
    fleet.write(c={"restart": ["false"]})
    pytester.makepyfile(
        test_gates="""
        import pytest

        @pytest.mark.gate("verify")
        def test_whole_service(rollback_outcome):
            assert rollback_outcome.status == "rolled-back"
        """
    )
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "all", "--rollback-yes", "test_gates.py")
    )

    assert result.ret == 21, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_whole_service*",
            "the fleet did not roll back completely: fleet of 3 targets PARTIALLY*",
        ]
    )


def test_a_fleet_target_name_must_be_a_plain_name(pytester: pytest.Pytester, fleet: Fleet) -> None:
    text = fleet.config_path.read_text().replace("[targets.b]", '[targets."b::<i>x</i>"]')
    text = text.replace("[targets.b.checks]", '[targets."b::<i>x</i>".checks]')
    fleet.config_path.write_text(text)
    result = pytester.runpytest(
        *fleet.args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-target", "all")
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*a fleet's target names are letters, digits*rename the table*"])


def test_listing_a_fleets_items_leaves_no_run_folder(pytester: pytest.Pytester, fleet: Fleet) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(
        *fleet.args(reports, "--rollback-to", "v1.2.9", "--rollback-target", "a,c", "--co", "-q")
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*rollback.toml::a::preflight-target-version", "*rollback.toml::c::verify-health"])
    assert "rollback.toml::b::" not in result.stdout.str()
    assert not any(reports.iterdir())
