"""The runbook's act steps: the actions and the driver's steps in order, journaled, with the
record beside the lock saying how far this run got (so that a later run can resume it).

Around the driver's steps: each action's before() first, after() once the target serves,
newest first; on a failure each started action undoes what it changed.
"""

from __future__ import annotations

import time
from typing import Any

from .journal import utc_now
from .resume import write_record
from .runbook_outcome import STATUS_ALREADY_AT_TARGET, RollbackOutcome
from .runbook_state import RunbookState


class RollbackSteps(RunbookState):
    def _finish_already_at_target(self, outcome: RollbackOutcome) -> None:
        outcome.status = STATUS_ALREADY_AT_TARGET
        # What a killed run's actions left (maintenance on, servers drained, flags off): after()
        # now, finish() after verify, as that run would have.
        assert self.to_version is not None
        for action in reversed(self.actions):
            if action.left_over() is not None:
                self.started_actions.append(action)
                action.after(self.from_version, self.to_version, self.journal)
        if self.resuming:
            # Killed after its last step but before it said so: record that it completed.
            outcome.resumed_from = self.previous.run_id
            outcome.from_version = self.from_version
            self._write_record(completed=True)
            self.journal.record(
                "rollback", "skipped", reason=f"run {self.previous.run_id} had done every step", **self._versions()
            )
            for step in self.target.steps():
                self.journal.record(step, "skipped", reason=self._skip_reason())
            outcome.steps = self._step_words()
            outcome.message = (
                f"already at target {self.to_version}: run {self.previous.run_id} had done every step "
                f"({self.previous.describe_steps(self.target.steps())}); nothing changed"
            )
            return
        self.journal.record("rollback", "skipped", reason=f"already at target {self.to_version}")
        outcome.message = f"already at target {self.to_version}: nothing changed"

    def _roll_back(self, outcome: RollbackOutcome) -> None:
        assert self.to_version is not None and self.remaining is not None
        steps = self.target.steps()
        wait_step = steps[-1]
        if self.resuming:
            outcome.resumed_from = self.previous.run_id
        self._write_record(completed=False)
        with self.journal.step("rollback", **self._versions(), steps=self.remaining, resumed_from=outcome.resumed_from):
            for step in steps:
                if step not in self.remaining:
                    self.journal.record(step, "skipped", reason=self._skip_reason())
            try:
                for action in self.actions:
                    self.started_actions.append(action)
                    action.before(self.from_version, self.to_version, self.journal)
                driver_steps = [step for step in self.remaining if step != wait_step]
                if driver_steps:
                    self.target.rollback(self.to_version, self.journal, self.observed, driver_steps)
                if wait_step in self.remaining:
                    self.target.wait_ready(self.to_version, self.journal)
                    self.ready_at = time.monotonic()
                for action in reversed(self.actions):
                    action.after(self.from_version, self.to_version, self.journal)
            except BaseException:
                self._undo_actions()
                raise
        self._write_record(completed=True)
        outcome.steps = self._step_words()
        outcome.message = self._rolled_back_message(outcome, steps)

    def _rolled_back_message(self, outcome: RollbackOutcome, steps: list[str]) -> str:
        """What a completed rollback did, in words: finished a resumed run, finished what was left
        on a target already reached, restarted a service that disagreed, or moved the version."""
        assert self.remaining is not None
        if outcome.resumed_from is not None:
            earlier = [step for step in steps if step not in self.remaining]
            return (
                f"finished the rollback from {self.from_version} to {self.to_version} that run "
                f"{outcome.resumed_from} left unfinished (done by it: {', '.join(earlier) or 'none'}; "
                f"done now: {', '.join(self.remaining) or 'the actions around them'})"
            )
        if self.live == self.to_version and not self.remaining:
            pending = ", ".join(action.name for action in self.actions)
            return f"{self.spec.name} was already on {self.to_version}: finished what was left ({pending})"
        if self.live == self.to_version:
            return (
                f"{self.spec.name} was on {self.to_version} but the service answered "
                f"{self.service_answer or 'nothing'}: did {', '.join(self.remaining)}"
            )
        moved = "rolled forward" if self.rolls_forward else "rolled back"
        return f"{moved} from {self.live} to {self.to_version}"

    def _skip_reason(self) -> str:
        if self.resuming:
            return f"done by run {self.previous.run_id}"
        return f"{self.spec.name} is already on {self.to_version}"

    def _undo_actions(self) -> None:
        """After a failure: each started action puts back what it changed, newest first."""
        for action in reversed(self.started_actions):
            try:
                action.undo(self.journal)
            except Exception as exc:  # the original failure is what gets raised; this one is journaled
                self.journal.record(f"{action.name}:undo", "failed", error=str(exc))
                self.target.context.progress(f"{action.name}: could not undo: {exc}")
        self.started_actions = []  # undone: nothing is left for finish()

    def finish(self, *, verified: bool) -> list[str]:
        """After the verify gate of an executed rollback: each action's finish (restore traffic,
        reset flags), newest first. What went wrong, in words; never raises."""
        problems = []
        for action in reversed(self.started_actions):
            try:
                action.finish(self.journal, verified)
            except Exception as exc:
                self.journal.record(f"{action.name}:finish", "failed", error=str(exc))
                problems.append(f"{action.name}: could not finish after verify: {exc}")
        return problems

    def cleanup(self) -> str | None:
        """Run the driver's cleanup after a verified rollback; what went wrong, in words, or None."""
        try:
            self.target.cleanup(self.journal)
        except Exception as exc:  # the rollback stands verified: a failed cleanup is reported, not raised
            return f"cleanup after the verified rollback failed: {exc}"
        return None

    # -- the record beside the lock ------------------------------------------------------------

    def _write_record(self, *, completed: bool) -> None:
        record: dict[str, Any] = {
            "run_id": self.run_id,
            "target": self.spec.name,
            "from": self.from_version,
            "to": self.to_version,
            "journal": str(self.journal.path.resolve()),
            "started": utc_now(),
            "completed": utc_now() if completed else None,
        }
        if self.resuming:
            record["resumed_from"] = self.previous.run_id
        write_record(self.record_path, record)

    def _restore_record(self) -> None:
        if self.previous.problem is None:
            write_record(self.record_path, self.previous.record)
