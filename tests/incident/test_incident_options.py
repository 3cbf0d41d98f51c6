"""Bad incident options are usage errors (exit code 4) that say what is accepted; nothing runs."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.rollback.actions import ACTIONS
from rollback_harness.rollback.actions.base import Action
from rollback_harness.rollback.config import HarnessConfig, TargetSpec
from rollback_harness.rollback.targets.base import Finding

MIGRATIONS_VARIABLE = "STAND_IN_MIGRATIONS"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--incident-id=../etc"], "*--incident-id '../etc': not a valid incident id; accepted: 1 to 64 letters*"),
        (["--incident-id=INC 1"], "*--incident-id 'INC 1': not a valid incident id*"),
        (["--incident-id=-rf"], "*--incident-id '-rf': not a valid incident id*"),
        (["--incident-id=" + "A" * 65], "*not a valid incident id*"),
        (["--severity=high"], "*--severity needs --data-impact {none,minor,major} too*"),
        (["--data-impact=none"], "*--data-impact needs --severity {critical,high,medium,low} too*"),
        (["--time-to-fix=2h"], "*--time-to-fix needs --severity and --data-impact*"),
        (["--severity=high", "--data-impact=none", "--time-to-fix=soon"], "*--time-to-fix 'soon': expected a number*"),
        (["--severity=high", "--data-impact=none", "--time-to-fix=-5m"], "*--time-to-fix '-5m': expected*"),
        (
            ["--severity=high", "--data-impact=none", "--force"],
            "*--force overrides the decision: say why with --reason*",
        ),
        (["--force", "--reason=x"], "*--force overrides a forward-fix decision; without --severity*"),
        (["--reason=  "], "*--reason is empty*"),
    ],
    ids=[
        "id-path",
        "id-space",
        "id-dash",
        "id-too-long",
        "severity-alone",
        "impact-alone",
        "time-alone",
        "time-unreadable",
        "time-negative",
        "force-without-reason",
        "force-without-decision",
        "reason-empty",
    ],
)
def test_bad_incident_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--rollback-to=v1.2.9", *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / "reports").exists()  # no run folder was made


def test_incident_options_need_a_harness_run(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("-p", "no:cacheprovider", "--incident-id=INC-1")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--incident-id needs --rollback-to VERSION or --rollback-gate verify*"])


def test_a_bad_choice_names_the_accepted_ones(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--rollback-to=v1.2.9", "--severity=sev1", "--data-impact=none")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--severity: invalid choice: 'sev1' (choose from*critical*high*medium*low*"])


class StandInDatabase(Action):
    """Stands in for the database action: reports migrations_present from $STAND_IN_MIGRATIONS."""

    name: ClassVar[str] = "database"
    order: ClassVar[int] = 40

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        return MIGRATIONS_VARIABLE in os.environ

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return ("database-migrations",)

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        found: Any = {"yes": True, "no": False}.get(os.environ[MIGRATIONS_VARIABLE], "garbage")
        self.migrations_present = found
        return [Finding("database-migrations", True, f"migrations: {found}")]

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        return [], []


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setitem(ACTIONS, "database", (f"{__name__}:StandInDatabase", "database"))
    return monkeypatch


@pytest.mark.integration
@pytest.mark.parametrize(
    ("migrations", "code", "verdict", "said"),
    [
        ("yes", 0, "consider", "migrations present between the versions: prefer forward fix"),
        ("no", 0, "rollback", "no migrations between the versions"),
        ("garbage", 0, "rollback", "migrations between the versions: unknown (not checked)"),
    ],
)
def test_migrations_found_at_preflight_feed_the_decision(
    pytester: pytest.Pytester,
    demo: Deployment,
    stand_in: pytest.MonkeyPatch,
    migrations: str,
    code: int,
    verdict: str,
    said: str,
) -> None:
    stand_in.setenv(MIGRATIONS_VARIABLE, migrations)
    args = ["--rollback-to=v1.2.9", "--rollback-yes", "--severity=critical", "--data-impact=none", "--time-to-fix=1h"]
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))

    assert result.ret == code, result.stdout.str()
    decision = read_evidence(pytester.path / "reports")["decision"]
    assert decision["verdict"] == verdict
    assert said in decision["rule"]
    assert decision["inputs"]["migrations_present"] == {"yes": True, "no": False}.get(migrations)


@pytest.mark.integration
def test_migrations_turn_consider_into_a_refused_forward_fix_even_when_the_item_is_deselected(
    pytester: pytest.Pytester, demo: Deployment, stand_in: pytest.MonkeyPatch
) -> None:
    stand_in.setenv(MIGRATIONS_VARIABLE, "yes")
    args = ["--rollback-to=v1.2.9", "--rollback-yes", "--severity=medium", "--data-impact=none", "-k", "not decision"]
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))

    assert result.ret == 10, result.stdout.str()
    assert demo.live_version() == "v1.3.0" and demo.restarts() == 0
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["decision"]["verdict"] == "forward-fix"
    assert evidence["outcome"]["status"] == "preflight-refused"
    assert "decision: medium, data impact none, time to fix unknown" in evidence["outcome"]["message"]
