"""The decision matrix (rollback/decision.py) and the table docs/incident.md publishes for it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from rollback_harness.rollback.decision import (
    CONSIDER,
    DATA_IMPACTS,
    FORWARD_FIX,
    NOT_ASSESSED,
    ROLLBACK,
    SEVERITIES,
    DecisionInputs,
    decide,
)

HOUR = 3600.0
DOCS = Path(__file__).parents[2] / "docs" / "incident.md"


@pytest.mark.parametrize(
    ("severity", "impact", "time_to_fix", "verdict"),
    [
        # The brief's named rows.
        ("critical", "none", 31 * 60, ROLLBACK),
        ("high", "minor", 61 * 60, ROLLBACK),
        ("medium", "none", 2 * HOUR + 1, CONSIDER),
        ("low", "none", 10 * HOUR, FORWARD_FIX),
        # The bars are "more than": exactly at the bar a fix is close enough.
        ("critical", "none", 30 * 60, CONSIDER),
        ("high", "minor", 60 * 60, FORWARD_FIX),
        ("medium", "none", 2 * HOUR, FORWARD_FIX),
        # Unknown time to fix: no fix in sight.
        ("critical", "minor", None, ROLLBACK),
        ("medium", "minor", None, CONSIDER),
        ("low", "major", None, FORWARD_FIX),
        # Major data impact: never an automatic rollback.
        ("critical", "major", 10 * HOUR, CONSIDER),
        ("high", "major", 0, CONSIDER),
    ],
)
def test_named_rows_and_their_edges(severity: str, impact: str, time_to_fix: float | None, verdict: str) -> None:
    assert decide(DecisionInputs(severity, impact, time_to_fix)).verdict == verdict


@pytest.mark.parametrize(
    ("without", "with_migrations"),
    [(ROLLBACK, CONSIDER), (CONSIDER, FORWARD_FIX), (FORWARD_FIX, FORWARD_FIX)],
)
def test_migrations_move_one_step_towards_forward_fix(without: str, with_migrations: str) -> None:
    cases = {
        ROLLBACK: ("critical", "none", 2 * HOUR),
        CONSIDER: ("medium", "none", 3 * HOUR),
        FORWARD_FIX: ("low", "none", None),
    }
    severity, impact, fix = cases[without]
    assert decide(DecisionInputs(severity, impact, fix, migrations_present=False)).verdict == without
    present = decide(DecisionInputs(severity, impact, fix, migrations_present=True))
    assert present.verdict == with_migrations
    assert "migrations present" in present.rule
    assert "unknown (not checked)" in decide(DecisionInputs(severity, impact, fix)).rule


def test_without_severity_and_impact_nothing_is_assessed() -> None:
    decision = decide(DecisionInputs(time_to_fix=HOUR))
    assert decision.verdict == NOT_ASSESSED and not decision.refuses


def test_every_combination_has_a_verdict_and_only_forward_fix_refuses() -> None:
    for severity, impact, fix, migrations in itertools.product(
        SEVERITIES, DATA_IMPACTS, (None, 0.0, 45 * 60.0, 3 * HOUR), (None, False, True)
    ):
        decision = decide(DecisionInputs(severity, impact, fix, migrations))
        assert decision.verdict in (ROLLBACK, CONSIDER, FORWARD_FIX)
        assert decision.refuses == (decision.verdict == FORWARD_FIX)


def _docs_table() -> list[list[str]]:
    text = DOCS.read_text()
    table = text.split("<!-- decision-table -->")[1]
    rows = [line for line in table.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_the_published_table_is_what_the_code_decides() -> None:
    """docs/incident.md lists severity x data impact x time to fix; each row is checked here."""
    times = {"unknown": None, "<= bar": "within", "> bar": "above"}
    bars = {"critical": 30 * 60.0, "high": HOUR, "medium": 2 * HOUR, "low": HOUR}
    rows = _docs_table()
    assert len(rows) == len(SEVERITIES) * len(DATA_IMPACTS) * len(times)
    for severity, impact, time_text, no_migrations, migrations in rows:
        kind = times[time_text]
        fix = None if kind is None else bars[severity] + (60 if kind == "above" else 0)
        words = {ROLLBACK: "rollback", CONSIDER: "consider", FORWARD_FIX: "forward fix"}
        assert words[decide(DecisionInputs(severity, impact, fix, False)).verdict] == no_migrations, (
            severity,
            impact,
            time_text,
        )
        assert words[decide(DecisionInputs(severity, impact, fix, True)).verdict] == migrations, (
            severity,
            impact,
            time_text,
        )
    assert re.search(r"--force.*--reason", DOCS.read_text())
