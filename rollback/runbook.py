"""The rollback runbook for one target: preflight findings, the plan, and the journaled action.

The pytest plugin drives it, but nothing here needs pytest: any tool can build a ``Runbook``,
read ``preflight()``, show ``plan()`` and call ``execute()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollback_harness.rollback.config import HarnessConfig, TargetSpec
from rollback_harness.rollback.errors import HarnessError, RollbackFailed
from rollback_harness.rollback.journal import Journal, utc_now
from rollback_harness.rollback.lock import TargetLock
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import Finding, Target, TargetContext
from rollback_harness.rollback.versions import PREVIOUS, resolve_target, same_version, version_problem

# The preflight findings, in the order they are judged; the plugin makes one item of each.
PREFLIGHT_FINDINGS = ("target-version", "target-lock", "live-version", "target-exists", "target-deployable")


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


STATUS_ROLLED_BACK = "rolled-back"
STATUS_ALREADY_AT_TARGET = "already-at-target"
STATUS_DRY_RUN = "dry-run"
STATUS_REFUSED = "preflight-refused"
STATUS_NOT_CONFIRMED = "not-confirmed"
STATUS_FAILED = "rollback-failed"


class Runbook:
    def __init__(
        self,
        config: HarnessConfig,
        spec: TargetSpec,
        requested: str,
        journal: Journal,
        *,
        progress: Callable[[str], None],
        service_version: Callable[[], str | None],
        run_id: str,
    ) -> None:
        self.config = config
        self.spec = spec
        self.requested = requested
        self.journal = journal
        self.target: Target = create_target(
            spec,
            TargetContext(
                name=config.settings.service.name,
                base_dir=config.base_dir,
                progress=progress,
                service_version=service_version,
            ),
        )
        self.lock = TargetLock(self.target.lock_path() or config.base_dir / f".rollback-{spec.name}.lock", run_id)
        self.live: str | None = None
        self.to_version: str | None = None
        self.history: list[str] = []
        self._findings: dict[str, Finding] | None = None

    def preflight(self) -> dict[str, Finding]:
        """Judge every preflight finding once; later calls return the same findings."""
        if self._findings is None:
            self.journal.record("target", "described", **self.target.describe())
            self._findings = {f.name: f for f in self._judge()}
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
        problem = version_problem(self.requested) if self.requested != PREVIOUS else None
        findings.append(Finding("target-version", problem is None, problem or f"{self.requested} is a plain version"))
        # Taken before anything is read, held until close(): what preflight sees stays true.
        holder = self.lock.acquire()
        if self.lock.taken_over is not None:  # a run that died holding it: say from whom
            self.journal.record("lock-takeover", "recorded", **self.lock.taken_over)
        taken = f"; {self.lock.describe_takeover()}" if self.lock.taken_over else ""
        findings.append(Finding("target-lock", holder is None, holder or f"this run holds {self.lock.path}{taken}"))
        try:
            self.live = self.target.live_version()
            self.history = self.target.history()
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

        self.to_version, how = resolve_target(self.requested, self.live, self.history)
        if self.to_version is not None and self.to_version not in self.history:
            # --rollback-to 1.2.9 when the platform names it v1.2.9 (or the other way round).
            spelled = next((v for v in self.history if same_version(v, self.to_version)), None)
            if spelled is not None:
                how = f"requested {self.requested}, named {spelled} here"
                self.to_version = spelled
        listing = ", ".join(self.history) or "none"
        if self.to_version is None:
            exists = Finding("target-exists", False, f"{how}")
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
            deployable = self.target.deployable(self.to_version)
        except (HarnessError, OSError) as exc:
            deployable = [Finding("target-deployable", False, str(exc))]
        bad = [f for f in deployable if not f.ok]
        findings.append(Finding("target-deployable", not bad, "; ".join(f.message for f in (bad or deployable))))
        return findings

    def _safe_history(self) -> list[str]:
        try:
            return self.target.history()
        except (HarnessError, OSError):
            return []

    def close(self) -> None:
        """Release the target's lock; the run is over."""
        self.lock.release()

    @property
    def already_at_target(self) -> bool:
        return self.live is not None and self.live == self.to_version

    def plan(self) -> list[str]:
        if self.to_version is None or self.refusals():
            return []
        if self.already_at_target:
            return [f"nothing to change: {self.spec.name} already runs {self.to_version}"]
        return self.target.plan(self.to_version)

    def execute(self) -> RollbackOutcome:
        """Roll the target back and wait until it serves; raise nothing, report everything."""
        outcome = RollbackOutcome(
            status=STATUS_ROLLED_BACK, message="", from_version=self.live, to_version=self.to_version
        )
        started = time.monotonic()
        try:
            if self.refusals() or self.to_version is None:
                raise RollbackFailed("preflight did not pass")  # the plugin never gets here
            if self.already_at_target:
                self.journal.record("rollback", "skipped", reason=f"already at target {self.to_version}")
                outcome.status = STATUS_ALREADY_AT_TARGET
                outcome.message = f"already at target {self.to_version}: nothing changed"
            else:
                with self.journal.step("rollback", **{"from": self.live, "to": self.to_version}):
                    self.target.rollback(self.to_version, self.journal)
                    self.target.wait_ready(self.to_version, self.journal)
                outcome.message = f"rolled back from {self.live} to {self.to_version}"
        except (HarnessError, OSError) as exc:
            outcome.status = STATUS_FAILED
            outcome.message = f"rollback failed: {exc}"
        outcome.finished = utc_now()
        outcome.duration_s = round(time.monotonic() - started, 3)
        return outcome
