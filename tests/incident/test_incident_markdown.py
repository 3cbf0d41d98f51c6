"""incident.md and status.md from evidence: what they say about the decision and about a dry run."""

from __future__ import annotations

from typing import Any

import pytest

from rollback_harness.rollback.incident import incident_markdown, status_markdown


def evidence(mode: str, verdict: str, status: str | None, *, enforced: bool = False) -> dict[str, Any]:
    """The evidence.json keys incident.md and status.md read, for a run of ``mode``."""
    inputs = {"severity": None, "data_impact": None, "time_to_fix_s": None, "time_to_fix": None}
    if verdict != "not-assessed":
        inputs.update(severity="critical", data_impact="none")
    return {
        "incident": {"id": "INC-3", "reason": None},
        "decision": {
            "verdict": verdict,
            "rule": "a rule",
            "inputs": {**inputs, "migrations_present": None},
            "enforced": enforced,
            "forced": False,
        },
        "run_id": "INC-3-20260101-000000-abcdef",
        "mode": mode,
        "headline": "demo: a headline",
        "service": {"name": "demo"},
        "target": {"name": "app", "kind": "symlink"},
        "requested": "v1.2.9" if mode != "gate-verify" else None,
        "expect_version": None,
        "from_version": "v1.3.0",
        "to_version": "v1.2.9",
        "outcome": {"status": status, "message": ""} if status else None,
        "exit": {"code": 0, "meaning": "success"},
        "started": "2026-01-01T00:00:00.000+00:00",
        "finished": "2026-01-01T00:01:00.000+00:00",
        "duration_s": 60.0,
        "comparisons": [],
        "timeline": [],
        "tests": [],
    }


def decision_notes(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("- Not enforced")]


@pytest.mark.parametrize("status", ["dry-run", "rolled-back"])
def test_a_rollback_without_a_decision_does_not_claim_it_had_no_preflight(status: str) -> None:
    # Was: "Not enforced: this run had no preflight", on a run whose preflight had passed.
    notes = decision_notes(incident_markdown(evidence("rollback", "not-assessed", status)))
    assert notes == ["- Not enforced: no --severity / --data-impact given, so there was no decision to enforce"]


def test_a_verify_gate_says_its_decision_is_for_the_report_only() -> None:
    notes = decision_notes(incident_markdown(evidence("gate-verify", "rollback", None)))
    assert notes == ["- Not enforced: a verify gate has no preflight; the decision is computed for this report only"]


def test_a_rollback_that_ended_before_judging_says_so() -> None:
    notes = decision_notes(incident_markdown(evidence("rollback", "rollback", "preflight-refused")))
    assert notes == [
        "- Not enforced: the run ended before its preflight judged the decision; computed for this report only"
    ]


def test_an_enforced_decision_has_no_note() -> None:
    assert decision_notes(incident_markdown(evidence("rollback", "rollback", "rolled-back", enforced=True))) == []


def test_a_dry_run_status_says_nothing_changed_and_is_no_update_for_users() -> None:
    status = status_markdown(evidence("rollback", "not-assessed", "dry-run"))
    assert status.startswith("# demo: Dry run, no change\n")
    assert "Investigating" not in status and "preparing to roll" not in status
    assert "dry run" in status and "Nothing has been changed" in status and "no update for users" in status
