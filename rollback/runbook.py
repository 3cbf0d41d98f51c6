"""The rollback runbook for one target: preflight findings, the plan, and the journaled action.

The pytest plugin drives it, but nothing here needs pytest: any tool can build a ``Runbook``,
read ``preflight()``, show ``plan()`` and call ``execute()``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .actions import build_actions, finding_names
from .actions.base import Action
from .config import HarnessConfig, TargetSpec
from .errors import Conflict, HarnessError, RollbackFailed
from .journal import Journal, utc_now
from .lock import create_lock
from .resume import PreviousRun, describe_steps, record_path, write_record
from .targets import create_target
from .targets.base import Finding, Target, TargetContext
from .versions import (
    PREVIOUS,
    is_newer,
    requested_problem,
    requested_revision,
    resolve_target,
    same_version,
)

# The preflight findings, in the order they are judged; the plugin makes one item of each.
PREFLIGHT_FINDINGS = (
    "target-version",
    "target-lock",
    "live-version",
    "target-exists",
    "target-deployable",
    "previous-run",
)


def preflight_finding_names(config: HarnessConfig, spec: TargetSpec | None) -> tuple[str, ...]:
    """Every preflight finding of a run on ``spec``: the target's, then its actions'."""
    return PREFLIGHT_FINDINGS + (finding_names(config, spec) if spec is not None else ())


@dataclass
class RollbackOutcome:
    """What the rollback phase did. ``status`` is one of the STATUS_* values below."""

    status: str
    message: str
    from_version: str | None
    to_version: str | None
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_s: float | None = None
    # The run whose unfinished rollback this one finished, if any.
    resumed_from: str | None = None
    # Each driver step and what happened to it in this run: done / failed / in flight / not started /
    # done earlier (by the run resumed from).
    steps: dict[str, str] = field(default_factory=dict)
    # After a failure or conflict: the live state read again (platform, service answer).
    now: dict[str, Any] = field(default_factory=dict)
    # After a failure or conflict: how to put the version from before back by hand.
    way_back: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


STATUS_ROLLED_BACK = "rolled-back"
STATUS_ALREADY_AT_TARGET = "already-at-target"
STATUS_DRY_RUN = "dry-run"
STATUS_REFUSED = "preflight-refused"
STATUS_NOT_CONFIRMED = "not-confirmed"
STATUS_FAILED = "rollback-failed"
STATUS_CONFLICT = "conflict"


class Runbook:
    def __init__(
        self,
        config: HarnessConfig,
        spec: TargetSpec,
        requested: str,
        journal: Journal,
        *,
        progress: Callable[[str], None],
        service_version: Callable[..., str | None],
        run_id: str,
        last_answer: Callable[[], str | None] = lambda: None,
        fast: bool = False,
        break_lock: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.spec = spec
        self.requested = requested
        self.journal = journal
        self.run_id = run_id
        context = TargetContext(
            name=config.settings.service.name,
            base_dir=config.base_dir,
            progress=progress,
            service_version=service_version,
            last_answer=last_answer,
            fast=fast,
            options=options or {},
        )
        self.target: Target = create_target(spec, context)
        # Database, traffic, config...: done around the driver's steps (rollback/actions/).
        self.actions: list[Action] = build_actions(config, spec, context)
        # The actions whose before() started in this run, in the order they started.
        self.started_actions: list[Action] = []
        lock_path = self.target.lock_path() or config.base_dir / f".rollback-{spec.name}.lock"
        # file (default), postgres or kubernetes: rollback/lock.py, docs/locks.md.
        self.lock = create_lock(config, spec, lock_path, run_id, break_run=break_lock)
        self.record_path = record_path(self.lock.path)
        self.live: str | None = None
        self.to_version: str | None = None
        self.history: list[str] = []
        # Why the history could not be read (then it is unknown, not empty).
        self.history_problem: str | None = None
        # What preflight read: the live state token, the service's own answer, the last run's record.
        self.observed: str | None = None
        self.service_answer: str | None = None
        self.previous = PreviousRun()
        # The driver steps still to do; None until judged, [] when already at target.
        self.remaining: list[str] | None = None
        self._findings: dict[str, Finding] | None = None

    def preflight(self) -> dict[str, Finding]:
        """Judge every preflight finding once; later calls return the same findings."""
        if self._findings is None:
            self.journal.record("target", "described", **self.target.describe())
            for action in self.actions:
                self.journal.record(f"{action.name}:action", "described", **action.describe())
            findings = self._judge()
            findings.append(self._previous_run(passed=all(f.ok for f in findings)))
            findings.extend(self._judge_actions(passed=all(f.ok for f in findings)))
            self._findings = {f.name: f for f in findings}
            for finding in self._findings.values():
                self.journal.record(
                    f"preflight:{finding.name}",
                    "passed" if finding.ok else ("failed" if finding.checked else "not-checked"),
                    message=finding.message,
                )
        return self._findings

    def refusals(self) -> list[Finding]:
        return [f for f in self.preflight().values() if not f.ok]

    def _judge(self) -> list[Finding]:
        findings: list[Finding] = []
        problem = requested_problem(
            self.requested, kind=self.spec.kind, accepts_revisions=self.target.accepts_revisions
        )
        revision = requested_revision(self.requested) if problem is None else None
        valid = (
            f"{self.requested} is a revision number" if revision is not None else f"{self.requested} is a plain version"
        )
        findings.append(Finding("target-version", problem is None, problem or valid))
        # Taken before anything is read, held until close(): what preflight sees stays true.
        try:
            holder = self.lock.acquire()
        except HarnessError as exc:  # the lock's database or API server cannot be reached
            holder = str(exc)
        if self.lock.taken_over is not None:  # a run that died holding it: say from whom
            self.journal.record("lock-takeover", "recorded", **self.lock.taken_over)
        if self.lock.broken is not None:  # --rollback-break-lock: whose lock, in the evidence
            self.journal.record("lock-broken", "recorded", **self.lock.broken)
        taken = f"; {self.lock.describe_takeover()}" if self.lock.taken_over else ""
        if self.lock.broken is not None:
            taken += f"; broke the lock of run {self.lock.broken.get('run_id')} (--rollback-break-lock)"
        findings.append(Finding("target-lock", holder is None, holder or f"this run holds {self.lock.where}{taken}"))
        if holder is None:
            self.previous = PreviousRun.read(self.record_path)
        try:
            # Read first: a change after this point is a conflict the driver reports before writing.
            self.observed = self.target.observe()
            self.live = self.target.live_version()
            findings.append(Finding("live-version", True, f"{self.spec.name} runs {self.live}"))
        except (HarnessError, OSError) as exc:
            findings.append(Finding("live-version", False, f"cannot read the live version: {exc}"))
        self.history = self._safe_history()
        if problem is not None:
            findings.append(
                Finding("target-exists", False, "not checked: the requested version is not valid", checked=False)
            )
            findings.append(
                Finding("target-deployable", False, "not checked: the requested version is not valid", checked=False)
            )
            return findings

        if revision is not None:
            try:
                self.to_version, how = self.target.resolve_revision(revision)
            except (HarnessError, OSError) as exc:
                self.to_version, how = None, str(exc)
        elif self.requested == PREVIOUS and self.live is not None and self.history_problem is not None:
            self.to_version = None
            how = f"'previous' needs the history, and it could not be read: {self.history_problem}"
        else:
            self.to_version, how = resolve_target(self.requested, self.live, self.history)
            refusal = self._previous_refusal()
            if refusal is not None:
                self.to_version, how = None, refusal
        if self.requested == PREVIOUS and self.previous.unfinished and self.previous.get("to") == self.live:
            # The link already moved: 'previous' of it would go one release too far. It means what
            # the unfinished run resolved it to.
            self.to_version = self.live
            how = f"'previous' as run {self.previous.run_id} resolved it, rolling back from {self.previous.get('from')}"
        if self.to_version is not None and self.to_version not in self.history:
            # --rollback-to 1.2.9 when the platform names it v1.2.9 (or the other way round).
            spelled = next((v for v in self.history if same_version(v, self.to_version)), None)
            if spelled is not None:
                how = f"requested {self.requested}, named {spelled} here"
                self.to_version = spelled
        if self.rolls_forward:
            # Allowed, but named: the words "rollback" would hide that this goes to a newer version.
            findings[0] = Finding(
                "target-version",
                findings[0].ok,
                f"{findings[0].message}; note: {self.to_version} is newer than the live {self.live}: "
                "this run rolls forward",
            )
        listing = ", ".join(self.history) or "none"
        if self.to_version is None:
            exists = Finding("target-exists", False, f"{how}")
        elif self.to_version not in self.history and self.history_problem is not None:
            # An empty listing here would claim there is no history; it is only unknown.
            exists = Finding(
                "target-exists",
                False,
                f"cannot tell whether {self.to_version} is in history: the history could not be read: "
                f"{self.history_problem}",
            )
        elif self.to_version not in self.history:
            exists = Finding("target-exists", False, f"{self.to_version} is not in history; available: {listing}")
        else:
            exists = Finding("target-exists", True, f"{self.to_version} found ({how}); available: {listing}")
        findings.append(exists)
        if not exists.ok or self.to_version is None:
            findings.append(
                Finding("target-deployable", False, "not checked: the target does not exist", checked=False)
            )
            return findings
        try:
            # Every command the driver will run must exist and be runnable, before anything changes.
            deployable = self.target.deployable(self.to_version) + self.target.command_findings()
        except (HarnessError, OSError) as exc:
            deployable = [Finding("target-deployable", False, str(exc))]
        bad = [f for f in deployable if not f.ok]
        findings.append(Finding("target-deployable", not bad, "; ".join(f.message for f in (bad or deployable))))
        return findings

    def _previous_refusal(self) -> str | None:
        """Why ``previous`` names no version on this platform now (Swarm without PreviousSpec), or None."""
        if self.requested != PREVIOUS or self.live is None:
            return None
        try:
            refusal = self.target.previous_refusal()
        except (HarnessError, OSError) as exc:
            return f"'previous' could not be judged: {exc}"
        return refusal

    def _judge_actions(self, *, passed: bool) -> list[Finding]:
        """Each action's findings, once the target's passed (they need both versions)."""
        findings: list[Finding] = []
        for action in self.actions:
            names = action.finding_names(self.config, self.spec)
            if not passed or self.to_version is None:
                why = "not checked: an earlier preflight finding failed"
                findings.extend(Finding(name, False, why, checked=False) for name in names)
                continue
            try:
                found = {f.name: f for f in action.preflight(self.from_version, self.to_version)}
            except Exception as exc:  # a broken action refuses the run, with its reason
                error = str(exc) if isinstance(exc, (HarnessError, OSError)) else f"{type(exc).__name__}: {exc}"
                found = {name: Finding(name, False, f"{action.name}: {error}") for name in names}
            for name in names:
                findings.append(found.get(name) or Finding(name, False, f"{action.name} did not judge {name}"))
        return findings

    def _previous_run(self, *, passed: bool) -> Finding:
        """What the last run against this target left, and the steps this run still has to do."""
        name = "previous-run"
        if not self.lock.held:
            return Finding(name, False, "not checked: this run does not hold the target's lock", checked=False)
        previous = self.previous
        notes = []
        if previous.problem is not None:
            notes.append(f"the record of the last run is unreadable ({previous.problem}): the live state decides")
        elif previous.record is None:
            notes.append("no earlier run on record for this target")
        elif not previous.unfinished:
            notes.append(
                f"the last run {previous.run_id} ({previous.get('from')} -> {previous.get('to')}) "
                f"completed at {previous.get('completed')}"
            )
        else:
            notes.append(
                f"run {previous.run_id} rolling back {previous.get('from')} -> {previous.get('to')} did not finish "
                f"({previous.describe_steps(self.target.steps())}; journal {previous.get('journal')})"
            )
        if passed and self.to_version is not None and self.live is not None:
            self.service_answer = self._read_service()
            self.remaining = self._remaining_steps()
            notes.extend(self._what_this_run_does())
        return Finding(name, True, "; ".join(notes))

    def _read_service(self) -> str | None:
        try:
            return self.target.context.service_version()
        except Exception:  # a probe that breaks is a service that does not answer
            return None

    def _read_service_answers(self, count: int = 5) -> Counter[str]:
        """What the service answers now, from a few answers (``{"v1.2.9": 4, "v1.3.0": 1}``).

        One answer from a mixed pool says one version and hides the other. A request that gets
        nothing ends the reading (each is bounded by the service timeout, and this runs on a
        failure, when the engineer is waiting).
        """
        answers: Counter[str] = Counter()
        for _ in range(count):
            answer = self._read_service()
            answers[answer or self.target.context.last_answer() or "nothing"] += 1
            if answer is None:
                break
        return answers

    @staticmethod
    def _answers_in_words(answers: Counter[str]) -> str:
        """ "v1.2.9" when every answer agreed, else "v1.2.9 on 4 of 5, v1.3.0 on 1"."""
        total = sum(answers.values())
        if len(answers) == 1:
            return next(iter(answers))
        return ", ".join(f"{answer} on {n} of {total}" for answer, n in answers.most_common())

    @property
    def resuming(self) -> bool:
        """This run finishes the unfinished rollback of an earlier run to the same version."""
        return self.previous.unfinished and self.to_version is not None and self.previous.get("to") == self.to_version

    def _remaining_steps(self) -> list[str]:
        steps = self.target.steps()
        on_target = self.live == self.to_version
        answers_target = same_version(self.service_answer, self.to_version)
        if not on_target:
            return steps
        if self.resuming and self.previous.journal_found:
            # Steps run in order: everything from the first one the last run did not finish.
            first = next((i for i, step in enumerate(steps) if not self.previous.done(step)), len(steps))
            if first < len(steps):
                return steps[first:]
        if answers_target:
            return []
        # The platform says the target, the service does not: restart (when there is one) and wait.
        return steps[1:]

    def _what_this_run_does(self) -> list[str]:
        notes = []
        if self.live == self.to_version and not same_version(self.service_answer, self.to_version):
            notes.append(
                f"{self.spec.name} is on {self.live} but {self.config.settings.service.name} answers "
                f"{self.service_answer or 'nothing'}: they disagree"
            )
        if self.previous.unfinished and self.previous.get("to") != self.to_version:
            notes.append(f"this run goes to {self.to_version} instead")
        if self.remaining:
            notes.append(f"this run does: {', '.join(self.remaining)}")
        elif self.resuming:
            notes.append("every step was done: this run only records that the rollback completed")
        else:
            notes.append(f"already at target {self.to_version}: the platform and the service agree")
        return notes

    def _safe_history(self) -> list[str]:
        """The target's history; [] when it cannot be read, and why in ``history_problem``."""
        try:
            return self.target.history()
        except (HarnessError, OSError) as exc:
            self.history_problem = str(exc)
            return []

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
                problems.append(f"{action.name}: finishing after verify failed: {exc}")
        return problems

    def cleanup(self) -> str | None:
        """Run the driver's cleanup after a verified rollback; what went wrong, in words, or None."""
        try:
            self.target.cleanup(self.journal)
        except Exception as exc:  # the rollback stands verified: a failed cleanup is reported, not raised
            return f"cleanup after the verified rollback failed: {exc}"
        return None

    def close(self) -> None:
        """Release the target's lock; the run is over."""
        self.lock.release()

    @property
    def already_at_target(self) -> bool:
        """The platform's record and the service's own answer both say the target; no step is left,
        neither the driver's nor an action's (a database a killed run did not downgrade yet)."""
        return self.to_version is not None and self.remaining == [] and not any(a.pending() for a in self.actions)

    @property
    def rolls_forward(self) -> bool:
        """The target is a newer version than the live one (``status`` still says rolled-back)."""
        return is_newer(self.to_version, self.live)

    @property
    def from_version(self) -> str | None:
        """The version before the rollback: the resumed run's, when this run finishes one."""
        if self.resuming:
            from_version = self.previous.get("from")
            return from_version if isinstance(from_version, str) else self.live
        return self.live

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
                for action in reversed(self.actions):
                    action.after(self.from_version, self.to_version, self.journal)
            except BaseException:
                self._undo_actions()
                raise
        self._write_record(completed=True)
        outcome.steps = self._step_words()
        if outcome.resumed_from is not None:
            earlier = [step for step in steps if step not in self.remaining]
            outcome.message = (
                f"finished the rollback from {self.from_version} to {self.to_version} that run "
                f"{outcome.resumed_from} left unfinished (done by it: {', '.join(earlier) or 'none'}; "
                f"done now: {', '.join(self.remaining) or 'the actions around them'})"
            )
        elif self.live == self.to_version and not self.remaining:
            pending = ", ".join(action.name for action in self.actions)
            outcome.message = f"{self.spec.name} was already on {self.to_version}: finished what was left ({pending})"
        elif self.live == self.to_version:
            outcome.message = (
                f"{self.spec.name} was on {self.to_version} but the service answered "
                f"{self.service_answer or 'nothing'}: did {', '.join(self.remaining)}"
            )
        else:
            moved = "rolled forward" if self.rolls_forward else "rolled back"
            outcome.message = f"{moved} from {self.live} to {self.to_version}"

    def _skip_reason(self) -> str:
        if self.resuming:
            return f"done by run {self.previous.run_id}"
        return f"{self.spec.name} is already on {self.to_version}"

    def _versions(self) -> dict[str, Any]:
        return {"from": self.from_version, "to": self.to_version}

    # -- the record beside the lock ----------------------------------------------------------

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

    # -- saying where things stand -----------------------------------------------------------

    def _step_words(self) -> dict[str, str]:
        """Each driver step and what happened to it in this run."""
        states = self.journal.step_states()
        words = {}
        for step in self.target.steps():
            state = states.get(step)
            if state == "skipped":
                words[step] = "done earlier"
            elif state == "started":
                words[step] = "in flight"
            else:
                words[step] = state or "not started"
        return words

    def _changed(self) -> bool:
        return any(word in ("done", "failed", "in flight", "interrupted") for word in self._step_words().values())

    def _failure_report(self, outcome: RollbackOutcome) -> str:
        """Where things stand now, read again, and the exact ways forward and back."""
        try:
            platform = self.target.live_version()
        except Exception as exc:
            platform = f"unknown ({exc})"
        answers = self._read_service_answers()
        outcome.now = {"platform": platform, "service": answers.most_common(1)[0][0], "answers": dict(answers)}
        service = self.config.settings.service.name
        parts = [
            f". Steps: {describe_steps(outcome.steps)}",
            f". Now: {self.spec.name} is on {platform}; {service} answers {self._answers_in_words(answers)}",
            f". To finish: run `pytest --rollback-to {self.to_version}` again (it resumes from here)",
        ]
        if self.from_version is not None and self._changed():
            try:
                outcome.way_back = self.target.way_back(self.from_version)
            except Exception:
                outcome.way_back = None
            by_hand = f"`{outcome.way_back}`" if outcome.way_back else "see the journal"
            back = f"`pytest --rollback-to {self.from_version}`"
            parts.append(f"; to go back to {self.from_version}: {back}, or by hand: {by_hand}")
        return "".join(parts)
