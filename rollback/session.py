"""Decide, plan, confirm, act: one rollback session, for one target or for a fleet, in plain Python.

The pytest layer (plugins/fixtures.py, plugins/fleet.py) gathers what preflight refused and
passes in how to confirm: a prompt, ``--rollback-yes``, or a refusal where nobody can be asked.
Everything decided is journaled before anything changes: the plan, then the confirmation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .fleet import fleet_outcome, outcome_record, run_fleet
from .journal import Journal, JournalNotWritten
from .runbook import STATUS_DRY_RUN, STATUS_FAILED, STATUS_NOT_CONFIRMED, STATUS_REFUSED, RollbackOutcome, Runbook

# Asked a yes/no question: whether to proceed, and how that was decided (recorded as said).
Confirm = Callable[[str], tuple[bool, str]]


@dataclass(frozen=True)
class Session:
    """What a session needs besides the runbooks: who it is for, and how to talk to the operator."""

    service: str
    journal: Journal
    progress: Callable[[str], None]
    confirm: Confirm
    dry_run: bool = False


def roll_back(session: Session, runbook: Runbook, refusals: list[str]) -> RollbackOutcome:
    """One target: refused by preflight, else planned, confirmed and executed by its runbook."""
    try:
        return _roll_back(session, runbook, refusals)
    except JournalNotWritten as exc:  # before the first change: a plan or consent that cannot be recorded
        return RollbackOutcome(
            STATUS_FAILED,
            f"rollback not attempted: {exc}; nothing was changed",
            runbook.from_version,
            runbook.to_version,
        )


def _roll_back(session: Session, runbook: Runbook, refusals: list[str]) -> RollbackOutcome:
    live, target = runbook.from_version, runbook.to_version
    if refusals:
        return RollbackOutcome(STATUS_REFUSED, "preflight refused: " + "; ".join(refusals), live, target)
    plan = runbook.plan()
    resumed = runbook.previous.run_id if runbook.resuming else None
    session.journal.record("plan", "planned", steps=plan, resumes=resumed, **{"from": live, "to": target})
    if resumed is not None:
        session.progress(
            f"run {resumed} left this rollback unfinished: {runbook.previous.describe_steps(runbook.target.steps())}"
        )
        session.progress(f"plan to finish it for {session.service}: {live} -> {target}")
    else:
        session.progress(f"rollback plan for {session.service}: {live} -> {target}")
    for number, step in enumerate(plan, 1):
        session.progress(f"  {number}. {step}")
    if session.dry_run:
        return RollbackOutcome(STATUS_DRY_RUN, "dry run: nothing was changed", live, target)
    if not runbook.already_at_target:
        question = f"Proceed with rollback of {session.service} from {live} to {target}? (yes/no) "
        if resumed is not None:
            question = (
                f"Finish the rollback of {session.service} from {live} to {target} left by run {resumed}? (yes/no) "
            )
        confirmed, how = _confirmed(session, question)
        if not confirmed:
            return RollbackOutcome(STATUS_NOT_CONFIRMED, f"not confirmed ({how}): nothing was changed", live, target)
    return runbook.execute()


@dataclass(frozen=True)
class Fleet:
    """A fleet's runbooks and each target's journal, by target name, in config order."""

    runbooks: Mapping[str, Runbook]
    journals: Mapping[str, Journal]
    parallel: int


def roll_back_fleet(session: Session, fleet: Fleet, user_refusals: list[str]) -> RollbackOutcome:
    """Every target's preflight passed (or the fleet is refused), one plan, one confirmation, then
    ``rollback/fleet.py`` runs the runbooks ``parallel`` at a time; each target's outcome is journaled."""
    try:
        return _roll_back_fleet(session, fleet, user_refusals)
    except JournalNotWritten as exc:  # before the first change: the plans or consent cannot be recorded
        return _each(fleet, STATUS_FAILED, f"rollback not attempted: {exc}; nothing was changed")


def _roll_back_fleet(session: Session, fleet: Fleet, user_refusals: list[str]) -> RollbackOutcome:
    refusals = {
        name: found
        for name, runbook in fleet.runbooks.items()
        if (found := [f"{f.name}: {f.message}" for f in runbook.refusals() if f.checked])
    }
    if refusals or user_refusals:
        return _refuse_fleet(fleet, refusals, user_refusals)
    _plan_fleet(session, fleet)
    if session.dry_run:
        return _each(fleet, STATUS_DRY_RUN, "dry run: nothing was changed")
    if not all(runbook.already_at_target for runbook in fleet.runbooks.values()):
        moves = ", ".join(f"{name} {rb.from_version} -> {rb.to_version}" for name, rb in fleet.runbooks.items())
        question = (
            f"Proceed with the rollback of {len(fleet.runbooks)} targets of {session.service} ({moves})? (yes/no) "
        )
        confirmed, how = _confirmed(session, question)
        if not confirmed:
            return _each(fleet, STATUS_NOT_CONFIRMED, f"not confirmed ({how}): nothing was changed")

    def record(name: str, outcome: RollbackOutcome) -> None:
        fleet.journals[name].record_after("outcome", outcome.status, **outcome_record(outcome))

    return fleet_outcome(run_fleet(fleet.runbooks, fleet.parallel, session.progress, on_outcome=record))


def _confirmed(session: Session, question: str) -> tuple[bool, str]:
    confirmed, how = session.confirm(question)
    session.journal.record("confirmation", "given" if confirmed else "refused", how=how)
    return confirmed, how


def _refuse_fleet(fleet: Fleet, refusals: dict[str, list[str]], user_refusals: list[str]) -> RollbackOutcome:
    """Nothing moves when any target (or a user's preflight gate) refuses: each target says why."""
    outcomes = {}
    for name, runbook in fleet.runbooks.items():
        own = refusals.get(name)
        message = (
            f"preflight refused: {'; '.join(own)}"
            if own
            else f"not rolled back: the fleet's preflight refused ({', '.join(refusals) or 'a user gate'}); "
            "nothing was changed"
        )
        outcomes[name] = RollbackOutcome(STATUS_REFUSED, message, runbook.from_version, runbook.to_version)
    _settle(fleet, outcomes)
    why = [f"{name}: {'; '.join(found)}" for name, found in refusals.items()] + user_refusals
    return RollbackOutcome(
        STATUS_REFUSED, "preflight refused the fleet: " + " | ".join(why) + "; nothing was changed", None, None
    )


def _plan_fleet(session: Session, fleet: Fleet) -> None:
    """Each target's plan in its own journal, the fleet's in the run's, and all of it on the terminal."""
    plans = {}
    lines = []
    for name, runbook in fleet.runbooks.items():
        plan = runbook.plan()
        plans[name] = plan
        resumed = runbook.previous.run_id if runbook.resuming else None
        fleet.journals[name].record(
            "plan", "planned", steps=plan, resumes=resumed, **{"from": runbook.from_version, "to": runbook.to_version}
        )
        if resumed is not None:
            steps = runbook.previous.describe_steps(runbook.target.steps())
            lines.append(f"{name}: run {resumed} left this rollback unfinished: {steps}")
        lines.append(f"{name}: {runbook.from_version} -> {runbook.to_version}")
        lines.extend(f"  {number}. {step}" for number, step in enumerate(plan, 1))
    session.journal.record(
        "plan",
        "planned",
        steps=[f"{name}: {step}" for name, plan in plans.items() for step in plan],
        targets=list(fleet.runbooks),
        parallel=fleet.parallel,
    )
    session.progress(f"fleet plan for {session.service}: {len(fleet.runbooks)} targets, {fleet.parallel} at a time")
    for line in lines:
        session.progress(line)


def _each(fleet: Fleet, status: str, message: str) -> RollbackOutcome:
    """The same outcome for every target (a dry run, no confirmation), journaled in each."""
    outcomes = {
        name: RollbackOutcome(status, message, runbook.from_version, runbook.to_version)
        for name, runbook in fleet.runbooks.items()
    }
    return _settle(fleet, outcomes)


def _settle(fleet: Fleet, outcomes: Mapping[str, RollbackOutcome]) -> RollbackOutcome:
    """Journal each target's outcome in its own journal; the fleet's outcome."""
    for name, outcome in outcomes.items():
        fleet.journals[name].record_after("outcome", outcome.status, **outcome_record(outcome))
    return fleet_outcome(outcomes)
