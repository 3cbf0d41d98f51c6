"""A fleet: several targets of one config rolled back in one run, a bounded number at a time.

Each target keeps its own ``Runbook`` (preflight, plan, lock, journal, record beside the lock):
this module only decides which runbook runs when, and says where the whole fleet stands. A
failure (or a conflict) on one target stops the targets not started yet; the ones already
running finish their steps, since a rollback cut half way is worse than one that completes.
Nothing here needs pytest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .journal import utc_now
from .runbook import (
    STATUS_ALREADY_AT_TARGET,
    STATUS_CONFLICT,
    STATUS_DRY_RUN,
    STATUS_FAILED,
    STATUS_NOT_CONFIRMED,
    STATUS_REFUSED,
    STATUS_ROLLED_BACK,
    RollbackOutcome,
    Runbook,
)

# A target the fleet stopped before it started: nothing was changed on it.
STATUS_NOT_STARTED = "not-started"
# The fleet's outcome when some targets changed and others failed or were not started.
STATUS_PARTIAL = "partially-rolled-back"

SUCCESS = (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET)
STOPPING = (STATUS_FAILED, STATUS_CONFLICT)
JOIN_EVERY = 0.2  # seconds: the waiting thread wakes this often, so Ctrl-C lands at once


def run_fleet(
    runbooks: Mapping[str, Runbook],
    parallel: int,
    progress: Callable[[str], None],
    on_outcome: Callable[[str, RollbackOutcome], None] = lambda name, outcome: None,
) -> dict[str, RollbackOutcome]:
    """Execute every runbook (preflight already passed), at most ``parallel`` at once, in order.

    Returns each target's outcome; a target never started says why. ``on_outcome`` hears each
    one as soon as it is known (the journal keeps it, even if the run is killed next). Never
    raises but for KeyboardInterrupt, after which no further target starts.
    """
    queue = deque(runbooks)
    guard = threading.Lock()
    stopped_by: list[str] = []
    outcomes: dict[str, RollbackOutcome] = {}

    def next_name() -> str | None:
        with guard:
            while queue:
                name = queue.popleft()
                if not stopped_by:
                    return name
                outcomes[name] = not_started(runbooks[name], f"stopped because {', '.join(stopped_by)} failed")
                on_outcome(name, outcomes[name])
            return None

    def work() -> None:
        while (name := next_name()) is not None:
            runbook = runbooks[name]
            progress(f"{name}: rolling back {runbook.from_version} -> {runbook.to_version}")
            outcome = runbook.execute()  # raises nothing: every failure is in the outcome
            on_outcome(name, outcome)
            progress(f"{name}: {outcome.status}")
            with guard:
                outcomes[name] = outcome
                if outcome.status in STOPPING:
                    stopped_by.append(name)

    workers = [
        threading.Thread(target=work, name=f"fleet-{i}", daemon=True) for i in range(max(1, min(parallel, len(queue))))
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(JOIN_EVERY)
    except BaseException:
        with guard:
            stopped_by.append("the run was interrupted")
        raise
    return {name: outcomes[name] for name in runbooks if name in outcomes}


def not_started(runbook: Runbook, why: str) -> RollbackOutcome:
    steps = {step: "not started" for step in runbook.target.steps()}
    outcome = RollbackOutcome(
        STATUS_NOT_STARTED,
        f"not started ({why}): nothing was changed on it; run again to roll it back",
        runbook.from_version,
        runbook.to_version,
        steps=steps,
    )
    outcome.finished = utc_now()
    return outcome


def fleet_outcome(outcomes: Mapping[str, RollbackOutcome]) -> RollbackOutcome:
    """The whole fleet's outcome: partial when this run rolled some targets back and another one
    failed, conflicted or was not started; else the worst target's status."""
    statuses = {name: outcome.status for name, outcome in outcomes.items()}
    targets = list(outcomes.values())
    to_versions = {o.to_version for o in targets}
    to_version = next(iter(to_versions)) if len(to_versions) == 1 else None
    count = f"{len(outcomes)} target{'' if len(outcomes) == 1 else 's'}"
    words = "; ".join(f"{name} {status}" for name, status in statuses.items())
    steps = dict(statuses)
    if all(status in SUCCESS for status in statuses.values()):
        status = STATUS_ROLLED_BACK if STATUS_ROLLED_BACK in statuses.values() else STATUS_ALREADY_AT_TARGET
        message = f"fleet of {count} rolled back to {to_version or 'their targets'} ({words})"
    elif STATUS_ROLLED_BACK in statuses.values() and any(
        s in (*STOPPING, STATUS_NOT_STARTED) for s in statuses.values()
    ):
        status = STATUS_PARTIAL
        message = f"fleet of {count} PARTIALLY rolled back ({words}): see each target's state"
    else:
        status = next(
            (
                s
                for s in (STATUS_REFUSED, STATUS_FAILED, STATUS_CONFLICT, STATUS_NOT_CONFIRMED, STATUS_DRY_RUN)
                if s in statuses.values()
            ),
            STATUS_FAILED,
        )
        changed_nothing = status in (STATUS_REFUSED, STATUS_NOT_CONFIRMED)
        message = f"fleet of {count}: {status} ({words})" + (
            ": nothing was changed" if changed_nothing else ": see each target's state"
        )
        if status == STATUS_DRY_RUN:
            message = f"dry run of a fleet of {count}: nothing was changed"
    outcome = RollbackOutcome(status, message, None, to_version, steps=steps)
    outcome.finished = utc_now()
    return outcome


def target_state(outcome: RollbackOutcome | None, verify: str | None = None) -> str:
    """One line on where a target stands, for the summary and its report section."""
    if outcome is None:
        return "not started: nothing was changed on it"
    if outcome.status in SUCCESS:
        verdict = {"passed": "verified", "failed": "verify FAILED"}.get(verify or "", "NOT verified")
        return f"{outcome.message}; {verdict}"
    return outcome.message


def outcome_record(outcome: RollbackOutcome) -> dict[str, Any]:
    """The journal entry's fields of an outcome (its status is the entry's status)."""
    return {k: v for k, v in outcome.to_dict().items() if k != "status"}
