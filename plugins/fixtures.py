"""Fixtures: the rollback itself (session scoped, exactly once) and the service under test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .state import RUN_KEY, TARGET_KEY, HarnessRun

if TYPE_CHECKING:
    from ..rollback.runbook import RollbackOutcome, Runbook


RUN_LOCK_NAME = "run.lock"  # removed when the run ends: not evidence


def harness_run(config: pytest.Config, fixture: str) -> HarnessRun:
    if RUN_KEY not in config.stash:
        pytest.fail(
            f"the {fixture} fixture needs a harness run: pass --rollback-to VERSION or --gate verify",
            pytrace=False,
        )
    return config.stash[RUN_KEY]


def runbook_for(run: HarnessRun) -> Runbook:
    """The run's runbook, made on first use in the process that runs the gates."""
    if run.runbook is None:
        from ..rollback.runbook import Runbook
        from . import probes

        assert run.target_spec is not None and run.requested is not None
        run.runbook = Runbook(
            run.config,
            run.target_spec,
            run.requested,
            run.journal,
            progress=run.progress,
            service_version=lambda timeout=None: probes.service_version(run, timeout=timeout),
            last_answer=lambda: probes.last_answer(run),
            run_id=run.run_id,
            fast=run.fast,
            break_lock=run.break_lock,
            options=run.options,
        )
    return run.runbook


def recorded_outcome(run: HarnessRun) -> RollbackOutcome | None:
    """The outcome this run already journaled, if any: the rollback happens once per run."""
    from ..rollback.runbook import RollbackOutcome

    fields = RollbackOutcome.__dataclass_fields__
    for entry in reversed(run.journal.entries()):
        if entry["step"] == "outcome":
            return RollbackOutcome(**{k: v for k, v in entry.items() if k in fields})
    return None


def perform_rollback(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    from filelock import FileLock

    # The lock and the journal make the rollback happen once per run, even if several
    # processes of the same run ask for it.
    with FileLock(str(run.run_dir / RUN_LOCK_NAME)):
        done = recorded_outcome(run)
        if done is not None:
            return done
        outcome = _decide_and_act(run, config)
        run.journal.record("outcome", outcome.status, **{k: v for k, v in outcome.to_dict().items() if k != "status"})
        return outcome


def _decide_and_act(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    from ..rollback.runbook import STATUS_DRY_RUN, STATUS_NOT_CONFIRMED, STATUS_REFUSED, RollbackOutcome
    from . import incident

    runbook = runbook_for(run)
    refusals = [f"{f.name}: {f.message}" for f in runbook.refusals() if f.checked]
    refusals += [f"{nodeid} failed" for nodeid in run.preflight_failures]
    refusals += incident.refusals(run, config)
    live, target = runbook.from_version, runbook.to_version
    if refusals:
        return RollbackOutcome(STATUS_REFUSED, "preflight refused: " + "; ".join(refusals), live, target)
    plan = runbook.plan()
    resumed = runbook.previous.run_id if runbook.resuming else None
    run.journal.record("plan", "planned", steps=plan, resumes=resumed, **{"from": live, "to": target})
    if resumed is not None:
        run.progress(
            f"run {resumed} left this rollback unfinished: {runbook.previous.describe_steps(runbook.target.steps())}"
        )
        run.progress(f"plan to finish it for {config_service(run)}: {live} -> {target}")
    else:
        run.progress(f"rollback plan for {config_service(run)}: {live} -> {target}")
    for number, step in enumerate(plan, 1):
        run.progress(f"  {number}. {step}")
    if run.dry_run:
        return RollbackOutcome(STATUS_DRY_RUN, "dry run: nothing was changed", live, target)
    if not runbook.already_at_target:
        confirmed, how = _confirm(run, config, live, target, resumed)
        run.journal.record("confirmation", "given" if confirmed else "refused", how=how)
        if not confirmed:
            return RollbackOutcome(STATUS_NOT_CONFIRMED, f"not confirmed ({how}): nothing was changed", live, target)
    return runbook.execute()


def config_service(run: HarnessRun) -> str:
    return run.config.settings.service.name


def _confirm(
    run: HarnessRun, config: pytest.Config, live: str | None, target: str | None, resumed: str | None
) -> tuple[bool, str]:
    question = f"Proceed with rollback of {config_service(run)} from {live} to {target}? (yes/no) "
    if resumed is not None:
        question = (
            f"Finish the rollback of {config_service(run)} from {live} to {target} left by run {resumed}? (yes/no) "
        )
    return confirm(run, config, question)


def confirm(run: HarnessRun, config: pytest.Config, question: str) -> tuple[bool, str]:
    """Whether to proceed, and how that was decided; the prompt defaults to no."""
    if run.assume_yes:
        return True, "--rollback-yes"
    if run.is_worker:
        return False, "an xdist worker cannot ask: pass --rollback-yes"
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    try:
        if not sys.stdin.isatty():
            return False, "no TTY to ask on: pass --rollback-yes to proceed without a prompt"
        try:
            answer = input("\n" + question)
        except EOFError:
            answer = ""
    finally:
        if capture is not None:
            capture.resume_global_capture()
    if answer.strip().lower() == "yes":
        return True, "answered yes at the prompt"
    return False, f"answered {answer.strip()!r} at the prompt" if answer.strip() else "no answer at the prompt"


@pytest.fixture(scope="session")
def rollback_outcome(request: pytest.FixtureRequest) -> RollbackOutcome | None:
    """Rolls the target back, once per run, after preflight; None in a gate-only run.

    Tests that depend on it are skipped when the rollback was refused, not confirmed or a dry
    run, and error when it failed: verify results then never describe an unchanged system.
    """
    from ..rollback.runbook import (
        STATUS_CONFLICT,
        STATUS_DRY_RUN,
        STATUS_FAILED,
        STATUS_NOT_CONFIRMED,
        STATUS_REFUSED,
    )

    run = harness_run(request.config, "rollback_outcome")
    if not run.rolls_back:
        return None
    if run.is_fleet:
        from .fleet import perform_fleet_rollback

        outcome = perform_fleet_rollback(run, request.config)
        if outcome.status in (STATUS_REFUSED, STATUS_NOT_CONFIRMED, STATUS_DRY_RUN):
            pytest.skip(outcome.message)
        return outcome  # each target's items judge their own target; user gates, the fleet's (_rollback_gate)
    outcome = perform_rollback(run, request.config)
    if outcome.status in (STATUS_REFUSED, STATUS_NOT_CONFIRMED, STATUS_DRY_RUN):
        pytest.skip(outcome.message)
    if outcome.status in (STATUS_FAILED, STATUS_CONFLICT):
        pytest.fail(outcome.message, pytrace=False)
    return outcome


@pytest.fixture(autouse=True)
def _rollback_gate(request: pytest.FixtureRequest) -> None:
    """User tests marked ``gate("verify")`` run only after the rollback, like the built-in checks."""
    if RUN_KEY not in request.config.stash:
        return
    marker = request.node.get_closest_marker("gate")
    if marker is not None and gate_phase(*marker.args, **marker.kwargs) == "verify":
        outcome = request.getfixturevalue("rollback_outcome")
        run = request.config.stash[RUN_KEY]
        if run.is_fleet and TARGET_KEY not in request.node.stash:
            from ..rollback.fleet import SUCCESS

            if outcome is None or outcome.status not in SUCCESS:
                # A user's verify gate checks the whole service: only a fleet that rolled back completely.
                why = outcome.message if outcome else "no outcome"
                pytest.fail(f"the fleet did not roll back completely: {why}", pytrace=False)


def gate_phase(phase: str) -> str:
    """Validates ``@pytest.mark.gate(phase)`` arguments; returns the phase."""
    if phase not in ("preflight", "baseline", "verify"):
        raise ValueError(f"gate phase {phase!r} is not one of: preflight, baseline, verify")
    return phase


@pytest.fixture(scope="session")
def rollback_base_url(request: pytest.FixtureRequest) -> str:
    """The service's base URL from the config, without a trailing slash."""
    return harness_run(request.config, "rollback_base_url").config.settings.service.base_url


@pytest.fixture(scope="session")
def rollback_http(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A requests.Session set up like the harness's own probes: TLS verification as configured,
    and each request times out after the service's ``timeout`` unless the call passes its own."""
    from .user_http import ServiceSession

    service = harness_run(request.config, "rollback_http").config.settings.service
    with ServiceSession(service.timeout, verify_tls=service.verify_tls) as session:
        yield session


@pytest.fixture(scope="session")
def rollback_db_engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A SQLAlchemy engine for the configured database; disposed at the end of the session."""
    run = harness_run(request.config, "rollback_db_engine")
    url = run.config.database_url()
    if url is None:
        pytest.fail(f"rollback_db_engine needs a [database] table in {run.config.path}", pytrace=False)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    yield engine
    engine.dispose()
