"""The per-target record that lets a run finish what a killed or failed run left half done.

Each run's journal lives in its own run folder, and the next run may write its reports somewhere
else. So beside the target's lock a small JSON record says which run is rolling back from what
to what, where its journal is, and when it completed. The next run reads it in preflight: an
unfinished record plus that run's journal say which steps are done, which one was in flight and
which never started.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import Journal

RECORD_SCHEMA = "rollback-target-record/1"


def record_path(lock_path: Path) -> Path:
    """``.current.rollback.lock`` -> ``.current.rollback.state.json``, in the same folder."""
    return lock_path.with_name(lock_path.name.removesuffix(".lock") + ".state.json")


def read_record(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The record and None, or None and why it could not be read (None, None: there is none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    try:
        record = json.loads(text)
    except ValueError:
        return None, f"{path} is not valid JSON (cut short?)"
    if not isinstance(record, dict) or not isinstance(record.get("run_id"), str):
        return None, f"{path} does not hold a run record"
    return record, None


def write_record(path: Path, record: dict[str, Any] | None) -> None:
    """Replace the record atomically (a crash leaves the old or the new one); None removes it."""
    if record is None:
        path.unlink(missing_ok=True)
        return
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps({"schema": RECORD_SCHEMA, **record}, sort_keys=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# How a step of an unfinished run is named to the user, from its last journal status.
STEP_WORDS = {
    "done": "done",
    "skipped": "done",  # skipped because an even earlier run had done it
    "started": "in flight",
    "failed": "failed",
    "interrupted": "interrupted",
}


@dataclass
class PreviousRun:
    """What the record beside the lock says about the last run against this target."""

    record: dict[str, Any] | None = None
    problem: str | None = None
    # The last status of each step in that run's journal (empty when the journal is gone).
    states: dict[str, str] = field(default_factory=dict)
    journal_found: bool = False

    @classmethod
    def read(cls, path: Path) -> PreviousRun:
        record, problem = read_record(path)
        previous = cls(record=record, problem=problem)
        journal = record.get("journal") if record else None
        if isinstance(journal, str) and Path(journal).is_file():
            previous.states = Journal(Path(journal)).step_states()
            previous.journal_found = True
        return previous

    @property
    def unfinished(self) -> bool:
        return self.record is not None and not self.record.get("completed")

    @property
    def run_id(self) -> str | None:
        return self.record["run_id"] if self.record else None

    def get(self, key: str) -> Any:
        return self.record.get(key) if self.record else None

    def done(self, step: str) -> bool:
        return STEP_WORDS.get(self.states.get(step, ""), "") == "done"

    def describe_steps(self, steps: list[str]) -> str:
        """``done: switch-link; in flight: restart; not started: wait-ready``."""
        if not self.journal_found:
            return f"its journal {self.get('journal')} is gone, so the live state decides"
        return describe_steps({step: STEP_WORDS.get(self.states.get(step, ""), "not started") for step in steps})


def describe_steps(words: dict[str, str]) -> str:
    """Steps grouped by what happened to them, in the order the groups first appear."""
    groups: dict[str, list[str]] = {}
    for step, word in words.items():
        groups.setdefault(word, []).append(step)
    return "; ".join(f"{word}: {', '.join(steps)}" for word, steps in groups.items())
