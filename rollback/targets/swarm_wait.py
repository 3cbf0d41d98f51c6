"""Waiting for a swarm service to finish rolling back: Swarm's own account of the update, and every
task it wants running on the target image.

A paused update, or a spec that moved to another version, ends the wait as a failed rollback with
the tasks' errors; so does the timeout.
"""

from __future__ import annotations

import time
from typing import Any

from ..durations import format_duration
from ..errors import RollbackFailed
from ..journal import Journal
from .base import TargetContext
from .swarm_engine import SwarmEngine, spec_image, split_image
from .swarm_settings import STEP_WAIT

POLL_INTERVAL = 0.25  # seconds between looks at the service while waiting
REPORT_EVERY = 2.0  # seconds between progress lines
PAUSED = ("paused", "rollback_paused")
DONE = ("completed", "rollback_completed")


def wait_for_tasks(engine: SwarmEngine, context: TargetContext, version: str, journal: Journal) -> None:
    """Until Swarm reports the update done and every task it wants runs ``version``; journaled as wait-ready."""
    timeout = engine.settings.ready_timeout
    name = engine.settings.service
    with journal.step(STEP_WAIT, service=name, version=version, timeout_s=timeout) as step:
        started = time.monotonic()
        deadline = started + timeout
        next_report = started + REPORT_EVERY
        while True:
            service = engine.service()
            state = (service.get("UpdateStatus") or {}).get("State")
            message = (service.get("UpdateStatus") or {}).get("Message", "")
            specified = split_image(spec_image(service["Spec"]))[1]
            tasks = engine.tasks(service["ID"], desired_running=True)
            desired = _desired(service, tasks)
            on_target = [
                t
                for t in tasks
                if (t.get("Status") or {}).get("State") == "running"
                and split_image(spec_image({"TaskTemplate": t.get("Spec") or {}}))[1] == version
            ]
            progress = f"{len(on_target)}/{desired} tasks on {version}"
            if specified != version:
                step.detail["tasks_after"] = engine.task_table(service["ID"])
                raise RollbackFailed(
                    f"service {name} now specifies {specified}, not {version} (update state {state}: {message}); "
                    "Swarm rolled the update back or another deploy replaced it"
                )
            if state in PAUSED:
                table = engine.task_table(service["ID"])
                step.detail["tasks_after"] = table
                raise RollbackFailed(
                    f"Swarm paused the rollback of {name} ({state}: {message}); {progress}; "
                    f"task errors: {_task_errors(table, version)}"
                )
            if state in (*DONE, None) and len(on_target) == desired == len(tasks):
                step.detail["waited_s"] = round(time.monotonic() - started, 3)
                step.detail["update_state"] = state
                step.detail["tasks_after"] = engine.task_table(service["ID"])
                return
            now = time.monotonic()
            if now >= deadline:
                table = engine.task_table(service["ID"])
                step.detail["tasks_after"] = table
                raise RollbackFailed(
                    f"service {name} did not finish rolling back to {version} within {format_duration(timeout)}: "
                    f"{progress}, update state {state or 'none'}; task errors: {_task_errors(table, version)}"
                )
            if now >= next_report:
                context.progress(
                    f"{name}: {progress} (update {state or 'pending'}), "
                    f"{format_duration(now - started)} of {format_duration(timeout)}"
                )
                next_report = now + REPORT_EVERY
            pause = POLL_INTERVAL / 2.5 if context.fast else POLL_INTERVAL
            time.sleep(min(pause, max(0.0, deadline - now)))


def _desired(service: dict[str, Any], tasks: list[dict[str, Any]]) -> int:
    mode = service["Spec"].get("Mode") or {}
    if "Replicated" in mode:
        return int(mode["Replicated"].get("Replicas", 1))
    return len(tasks)  # global: one task per eligible node, as the orchestrator wants them


def _task_errors(table: list[dict[str, Any]], version: str) -> str:
    """The errors of the failed tasks, newest first: what `docker service ps` shows in ERROR."""
    errors = []
    for row in sorted(table, key=lambda r: str(r["since"]), reverse=True):
        if row["error"] or row["state"] in ("failed", "rejected"):
            errors.append(f"task {row['id']} (slot {row['slot']}, {row['version']}): {row['state']}: {row['error']}")
    return "; ".join(errors[:5]) or "none reported"
