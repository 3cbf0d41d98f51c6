"""Fixtures: the rollback itself (session scoped, exactly once) and the service under test."""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from ..rollback import run_files
from .state import RUN_KEY, TARGET_KEY, HarnessRun

if TYPE_CHECKING:
    from ..rollback.runbook import RollbackOutcome, Runbook
    from ..rollback.session import Session


RUN_LOCK_NAME = run_files.RUN_LOCK  # removed when the run ends: not evidence


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


class RunLockUnavailable(Exception):
    """The run's own lock file cannot be made (a full or read-only report disk): nothing may start."""


@contextmanager
def held_run_lock(run: HarnessRun) -> Iterator[None]:
    """The lock and the journal make the rollback happen once per run, even if several processes of
    the same run ask for it; a lock that cannot be taken is RunLockUnavailable, not a traceback."""
    from filelock import FileLock

    lock = FileLock(str(run.run_dir / RUN_LOCK_NAME))
    try:
        lock.acquire()
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0)
        reason = f"{exc.strerror or exc}" + (f" ({code})" if code else "")
        raise RunLockUnavailable(f"cannot take the run's lock {lock.lock_file}: {reason}") from None
    try:
        yield
    finally:
        lock.release()


def not_attempted(run: HarnessRun, why: str, live: str | None, target: str | None) -> RollbackOutcome:
    """The rollback did not start: said as it is, and kept for this run's report."""
    from ..rollback.runbook import STATUS_FAILED, RollbackOutcome

    outcome = RollbackOutcome(STATUS_FAILED, f"rollback not attempted: {why}; nothing was changed", live, target)
    run.journal.record_after("outcome", outcome.status, **{k: v for k, v in outcome.to_dict().items() if k != "status"})
    return outcome


def perform_rollback(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    try:
        with held_run_lock(run):
            return _once(run, config)
    except RunLockUnavailable as exc:
        runbook = runbook_for(run)
        return not_attempted(run, str(exc), runbook.from_version, runbook.to_version)


def _once(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    done = recorded_outcome(run)
    if done is not None:
        return done
    outcome = _decide_and_act(run, config)
    run.journal.record_after("outcome", outcome.status, **{k: v for k, v in outcome.to_dict().items() if k != "status"})
    return outcome


def _decide_and_act(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    from ..rollback.session import roll_back

    runbook = runbook_for(run)
    refusals = [f"{f.name}: {f.message}" for f in runbook.refusals() if f.checked]
    refusals += [f"{nodeid} failed" for nodeid in run.preflight_failures]
    for found in config.hook.pytest_rollback_refusals(run=run, config=config):
        refusals += found
    return roll_back(session_of(run, config), runbook, refusals)


def session_of(run: HarnessRun, config: pytest.Config) -> Session:
    """The rollback session of ``run``: its journal and progress, confirmed at the prompt (or not)."""
    from ..rollback.session import Session

    return Session(
        service=config_service(run),
        journal=run.journal,
        progress=run.progress,
        confirm=lambda question: confirm(run, config, question),
        dry_run=run.dry_run,
    )


def config_service(run: HarnessRun) -> str:
    return run.config.settings.service.name


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
    started = time.monotonic()
    try:
        return _roll_back_once(request)
    finally:
        if RUN_KEY in request.config.stash:
            request.config.stash[RUN_KEY].rollback_wall_s += time.monotonic() - started


def _roll_back_once(request: pytest.FixtureRequest) -> RollbackOutcome | None:
    """The rollback, and what its outcome means for the items that depend on it."""
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
    # A feature may roll back another way (a fleet: every target, plugins/fleet.py).
    performed: RollbackOutcome | None = request.config.hook.pytest_rollback_perform(run=run, config=request.config)
    if performed is not None:
        if performed.status in (STATUS_REFUSED, STATUS_NOT_CONFIRMED, STATUS_DRY_RUN):
            pytest.skip(performed.message)
        return performed  # each target's items judge their own target; user gates, the fleet's (_rollback_gate)
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
    marker = gate_marker(request.node)
    if marker is not None and gate_phase(*marker.args, **marker.kwargs) == "verify":
        outcome = request.getfixturevalue("rollback_outcome")
        run = request.config.stash[RUN_KEY]
        if run.is_fleet and TARGET_KEY not in request.node.stash:
            from ..rollback.fleet import SUCCESS

            if outcome is None or outcome.status not in SUCCESS:
                # A user's verify gate checks the whole service: only a fleet that rolled back completely.
                why = outcome.message if outcome else "no outcome"
                pytest.fail(f"the fleet did not roll back completely: {why}", pytrace=False)


def gate_marker(item: pytest.Item) -> pytest.Mark | None:
    """``@pytest.mark.rollback_gate(phase)``, or its short alias ``@pytest.mark.gate(phase)``."""
    return item.get_closest_marker("rollback_gate") or item.get_closest_marker("gate")


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
