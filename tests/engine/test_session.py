"""rollback/session.py: a plan or consent that cannot be journaled starts nothing, and says so."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.runbook import STATUS_FAILED
from rollback_harness.rollback.session import Session, roll_back


class Runbook(SimpleNamespace):
    """Just what the session reads before it acts; ``execute`` must never be reached here."""

    def plan(self) -> list[str]:
        return ["point current at releases/v1.2.9"]

    def execute(self) -> Any:
        raise AssertionError("executed although the plan could not be journaled")


def test_a_plan_that_cannot_be_journaled_starts_nothing(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.jsonl"
    journal_path.mkdir()  # a real OSError on every write: the journal is a folder
    asked: list[str] = []
    session = Session(
        service="demo",
        journal=Journal(journal_path),
        progress=lambda line: None,
        confirm=lambda question: (asked.append(question), (True, "--rollback-yes"))[1],
    )
    runbook = Runbook(
        from_version="v1.3.0", to_version="v1.2.9", resuming=False, previous=None, already_at_target=False
    )

    outcome = roll_back(session, runbook, refusals=[])  # type: ignore[arg-type]

    assert outcome.status == STATUS_FAILED
    assert outcome.message.startswith(f"rollback not attempted: cannot write the journal {journal_path}: ")
    assert outcome.message.endswith("; nothing was changed")
    assert asked == []  # not even asked: consent to a plan nobody could read back is no consent
