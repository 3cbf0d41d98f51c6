"""The rollback runbook for one target: preflight findings, the plan, and the journaled action.

The pytest plugin drives it, but nothing here needs pytest: any tool can build a ``Runbook``,
read ``preflight()``, show ``plan()`` and call ``execute()``.

The parts live beside it: the state it keeps (runbook_state.py), the preflight findings
(runbook_preflight.py), the act steps and the record beside the lock (runbook_steps.py), the
report after a failure (runbook_report.py) and the outcome with its status words
(runbook_outcome.py). Every name other modules import stays importable from here.
"""

from __future__ import annotations

import time

from .errors import Conflict, HarnessError, RollbackFailed
from .journal import utc_now
from .runbook_outcome import (
    STATUS_ALREADY_AT_TARGET,
    STATUS_CONFLICT,
    STATUS_DRY_RUN,
    STATUS_FAILED,
    STATUS_NOT_CONFIRMED,
    STATUS_REFUSED,
    STATUS_ROLLED_BACK,
    RollbackOutcome,
)
from .runbook_preflight import PREFLIGHT_FINDINGS, PreflightFindings, preflight_finding_names
from .runbook_report import FailureReport
from .runbook_steps import RollbackSteps

__all__ = [
    "PREFLIGHT_FINDINGS",
    "STATUS_ALREADY_AT_TARGET",
    "STATUS_CONFLICT",
    "STATUS_DRY_RUN",
    "STATUS_FAILED",
    "STATUS_NOT_CONFIRMED",
    "STATUS_REFUSED",
    "STATUS_ROLLED_BACK",
    "RollbackOutcome",
    "Runbook",
    "preflight_finding_names",
]


class Runbook(PreflightFindings, RollbackSteps, FailureReport):
    """One target's rollback: ``preflight()``, ``plan()``, ``execute()``, then ``finish()``,
    ``cleanup()`` and ``close()``. Here: the plan and turning the act steps into an outcome."""

    def plan(self) -> list[str]:
        if self.to_version is None or self.refusals():
            return []
        if self.already_at_target:
            return [f"nothing to change: {self.spec.name} already runs {self.to_version}"]
        before: list[str] = []
        after: list[str] = []
        for action in self.actions:
            words_before, words_after = action.plan(self.from_version, self.to_version)
            before += words_before
            after = words_after + after
        return before + self.target.plan(self.to_version, self.remaining) + after

    def execute(self) -> RollbackOutcome:
        """Roll the target back and wait until it serves; raise nothing, report everything."""
        outcome = RollbackOutcome(
            status=STATUS_ROLLED_BACK, message="", from_version=self.from_version, to_version=self.to_version
        )
        started = time.monotonic()
        try:
            if self.refusals() or self.to_version is None or self.remaining is None:
                raise RollbackFailed("preflight did not pass")  # the plugin never gets here
            lost = self.lock.lost()
            if lost is not None:  # broken or expired since preflight: another run may be acting
                raise Conflict(f"this run no longer holds the target's lock: {lost}")
            if self.already_at_target:
                self._finish_already_at_target(outcome)
            else:
                self._roll_back(outcome)
        except Conflict as exc:
            changed = self._changed()
            if not changed:
                # Nothing happened: the record says again what it said before this run.
                self._restore_record()
            outcome.status = STATUS_CONFLICT
            outcome.steps = self._step_words()
            outcome.message = f"conflict: {exc}"
            if changed:
                outcome.message += self._failure_report(outcome)
            else:
                outcome.message += "; nothing was changed"
        except Exception as exc:
            error = str(exc) if isinstance(exc, (HarnessError, OSError)) else f"{type(exc).__name__}: {exc}"
            error = error.rstrip(" :.")  # "exited 1: false: " with no output
            outcome.status = STATUS_FAILED
            outcome.steps = self._step_words()
            outcome.message = f"rollback failed: {error}" + self._failure_report(outcome)
        outcome.finished = utc_now()
        outcome.duration_s = round(time.monotonic() - started, 3)
        return outcome

    def close(self) -> None:
        """Release the target's lock; the run is over."""
        self.lock.release()
