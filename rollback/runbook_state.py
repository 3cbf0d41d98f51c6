"""What one runbook knows about its target: the target and its actions, the lock, the versions
preflight read, the last run's record, and where the driver's steps stand in the journal.

The base of ``Runbook``: preflight (runbook_preflight.py) fills this state; the rollback steps
(runbook_steps.py) and the failure report (runbook_report.py) read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .actions import build_actions
from .actions.base import Action
from .config import HarnessConfig, TargetSpec
from .journal import Journal
from .lock import create_lock
from .resume import PreviousRun, record_path
from .targets import create_target
from .targets.base import Finding, Target, TargetContext
from .versions import is_newer


class RunbookState:
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
        # time.monotonic() when this run's readiness wait saw the service up on the target: verify's
        # settle time counts from it (plugins/phase.py). None when this run waited for nothing.
        self.ready_at: float | None = None
        self._findings: dict[str, Finding] | None = None

    @property
    def resuming(self) -> bool:
        """This run finishes the unfinished rollback of an earlier run to the same version."""
        return self.previous.unfinished and self.to_version is not None and self.previous.get("to") == self.to_version

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

    def _versions(self) -> dict[str, Any]:
        return {"from": self.from_version, "to": self.to_version}

    def _read_service(self) -> str | None:
        try:
            return self.target.context.service_version()
        except Exception:  # a probe that breaks is a service that does not answer
            return None

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
