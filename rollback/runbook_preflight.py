"""The runbook's preflight findings: the requested version, the lock, the live version, the
target's existence and deployability, the last run's record, then each action's findings.

Preflight reads and judges; it changes nothing but the lock it takes (held until the run is
over, so that what preflight saw stays true) and the journal entries saying what it found.
"""

from __future__ import annotations

from .actions import finding_names
from .config import HarnessConfig, TargetSpec
from .errors import HarnessError
from .resume import PreviousRun
from .runbook_state import RunbookState
from .targets.base import Finding
from .versions import (
    PREVIOUS,
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


class PreflightFindings(RunbookState):
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

    # -- the target's findings -----------------------------------------------------------------

    def _judge(self) -> list[Finding]:
        """The target's findings in order: each later one builds on what the earlier ones read."""
        problem = requested_problem(
            self.requested, kind=self.spec.kind, accepts_revisions=self.target.accepts_revisions
        )
        revision = requested_revision(self.requested) if problem is None else None
        valid = (
            f"{self.requested} is a revision number" if revision is not None else f"{self.requested} is a plain version"
        )
        findings = [Finding("target-version", problem is None, problem or valid)]
        findings.append(self._judge_lock())
        findings.append(self._judge_live_version())
        self.history = self._safe_history()
        if problem is not None:
            findings.append(
                Finding("target-exists", False, "not checked: the requested version is not valid", checked=False)
            )
            findings.append(
                Finding("target-deployable", False, "not checked: the requested version is not valid", checked=False)
            )
            return findings
        how = self._resolve_target(revision)
        if self.rolls_forward:
            # Allowed, but named: the words "rollback" would hide that this goes to a newer version.
            findings[0] = Finding(
                "target-version",
                findings[0].ok,
                f"{findings[0].message}; note: {self.to_version} is newer than the live {self.live}: "
                "this run rolls forward",
            )
        exists = self._judge_target_exists(how)
        findings.append(exists)
        if not exists.ok or self.to_version is None:
            findings.append(
                Finding("target-deployable", False, "not checked: the target does not exist", checked=False)
            )
            return findings
        findings.append(self._judge_deployable(self.to_version))
        return findings

    def _judge_lock(self) -> Finding:
        """Take the target's lock before anything is read, held until close(): what preflight sees
        stays true. With the lock held, read the record the last run left beside it."""
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
        finding = Finding("target-lock", holder is None, holder or f"this run holds {self.lock.where}{taken}")
        if holder is None:
            self.previous = PreviousRun.read(self.record_path)
        return finding

    def _judge_live_version(self) -> Finding:
        try:
            # Read first: a change after this point is a conflict the driver reports before writing.
            self.observed = self.target.observe()
            self.live = self.target.live_version()
            return Finding("live-version", True, f"{self.spec.name} runs {self.live}")
        except (HarnessError, OSError) as exc:
            return Finding("live-version", False, f"cannot read the live version: {exc}")

    def _resolve_target(self, revision: int | None) -> str:
        """Set ``to_version`` from the (valid) request; return how it was found, or why not."""
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
        return how

    def _judge_target_exists(self, how: str) -> Finding:
        listing = ", ".join(self.history) or "none"
        if self.to_version is None:
            return Finding("target-exists", False, f"{how}")
        if self.to_version not in self.history and self.history_problem is not None:
            # An empty listing here would claim there is no history; it is only unknown.
            return Finding(
                "target-exists",
                False,
                f"cannot tell whether {self.to_version} is in history: the history could not be read: "
                f"{self.history_problem}",
            )
        if self.to_version not in self.history:
            return Finding("target-exists", False, f"{self.to_version} is not in history; available: {listing}")
        return Finding("target-exists", True, f"{self.to_version} found ({how}); available: {listing}")

    def _judge_deployable(self, to_version: str) -> Finding:
        try:
            # Every command the driver will run must exist and be runnable, before anything changes.
            deployable = self.target.deployable(to_version) + self.target.command_findings()
        except (HarnessError, OSError) as exc:
            deployable = [Finding("target-deployable", False, str(exc))]
        bad = [f for f in deployable if not f.ok]
        return Finding("target-deployable", not bad, "; ".join(f.message for f in (bad or deployable)))

    def _previous_refusal(self) -> str | None:
        """Why ``previous`` names no version on this platform now (Swarm without PreviousSpec), or None."""
        if self.requested != PREVIOUS or self.live is None:
            return None
        try:
            refusal = self.target.previous_refusal()
        except (HarnessError, OSError) as exc:
            return f"'previous' could not be judged: {exc}"
        return refusal

    def _safe_history(self) -> list[str]:
        """The target's history; [] when it cannot be read, and why in ``history_problem``."""
        try:
            return self.target.history()
        except (HarnessError, OSError) as exc:
            self.history_problem = str(exc)
            return []

    # -- the actions' findings -----------------------------------------------------------------

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
            read = action.preflight_detail()
            if read:  # the evidence holds every call and answer, also of a run preflight refuses
                self.journal.record(f"{action.name}:preflight", "read", **read)
            for name in names:
                findings.append(found.get(name) or Finding(name, False, f"{action.name} did not judge {name}"))
        return findings

    # -- the last run, and what this one still has to do ---------------------------------------

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
