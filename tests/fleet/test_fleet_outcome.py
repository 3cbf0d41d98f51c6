"""The fleet's outcome from its targets' outcomes: partial, or the worst target's status."""

from __future__ import annotations

import pytest

from rollback_harness.rollback.fleet import STATUS_PARTIAL, fleet_outcome, target_state
from rollback_harness.rollback.runbook import RollbackOutcome


def outcome(status: str) -> RollbackOutcome:
    return RollbackOutcome(status, f"{status} here", "v1.3.0", "v1.2.9")


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["rolled-back", "rolled-back"], "rolled-back"),
        (["rolled-back", "already-at-target"], "rolled-back"),
        (["already-at-target", "already-at-target"], "already-at-target"),
        (["rolled-back", "rollback-failed", "not-started"], STATUS_PARTIAL),
        (["rolled-back", "conflict"], STATUS_PARTIAL),
        (["rolled-back", "not-started"], STATUS_PARTIAL),
        (["already-at-target", "rollback-failed"], "rollback-failed"),
        (["rollback-failed", "not-started"], "rollback-failed"),
        (["conflict", "not-started"], "conflict"),
        (["preflight-refused", "preflight-refused"], "preflight-refused"),
        (["not-confirmed", "not-confirmed"], "not-confirmed"),
        (["dry-run", "dry-run"], "dry-run"),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, list) else value,
)
def test_the_fleets_status(statuses: list[str], expected: str) -> None:
    outcomes = {f"t{i}": outcome(status) for i, status in enumerate(statuses)}
    result = fleet_outcome(outcomes)
    assert result.status == expected
    assert result.steps == {f"t{i}": status for i, status in enumerate(statuses)}
    if expected == STATUS_PARTIAL:
        assert "PARTIALLY rolled back" in result.message
    if expected in ("preflight-refused", "not-confirmed"):
        assert result.message.endswith("nothing was changed")
    if expected in ("rollback-failed", "conflict"):
        assert "nothing was changed" not in result.message  # the failed target may have changed


def test_a_targets_state_says_whether_verify_passed() -> None:
    done = outcome("rolled-back")
    assert target_state(done, "passed") == "rolled-back here; verified"
    assert target_state(done, "failed") == "rolled-back here; verify FAILED"
    assert target_state(done, None) == "rolled-back here; NOT verified"
    assert target_state(outcome("rollback-failed"), None) == "rollback-failed here"
    assert target_state(None) == "not started: nothing was changed on it"
