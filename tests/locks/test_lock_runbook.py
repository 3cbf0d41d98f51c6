"""The runbook asks its lock once more just before the rollback: a lock broken since preflight stops it."""

from __future__ import annotations

from pathlib import Path

import pytest
from deployments import Deployment

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.lock import TargetLock
from rollback_harness.rollback.runbook import STATUS_CONFLICT, Runbook

pytestmark = pytest.mark.integration


def test_a_lock_broken_after_preflight_stops_the_rollback_before_any_change(demo: Deployment, tmp_path: Path) -> None:
    config = load_config(demo.config_path)
    runbook = Runbook(
        config,
        config.target(None),
        "v1.2.9",
        Journal(tmp_path / "journal.jsonl"),
        progress=lambda message: None,
        service_version=lambda timeout=None: demo.live_version(),
        run_id="run-slow",
    )
    try:
        assert runbook.refusals() == []
        assert runbook.lock.held
        breaker = TargetLock(runbook.lock.path, "run-breaker", break_run="run-slow")
        assert breaker.acquire() is None
        try:
            outcome = runbook.execute()
        finally:
            breaker.release()
    finally:
        runbook.close()
    assert outcome.status == STATUS_CONFLICT
    assert "this run no longer holds the target's lock: run run-breaker broke this run's lock" in outcome.message
    assert outcome.message.endswith("nothing was changed")
    assert demo.restarts() == 0 and demo.linked_version() == "v1.3.0"
