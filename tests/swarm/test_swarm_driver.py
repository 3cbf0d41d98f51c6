"""The swarm driver against a real Docker Engine in swarm mode (3-replica services on loopback)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from swarm_helpers import BROKEN, Service, docker, make_target, wait_for

from rollback_harness.rollback.errors import Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.swarm import SwarmSettings, SwarmTarget

pytestmark = pytest.mark.integration

MakeService = Callable[..., Service]


def entries(journal: Journal) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.path.read_text().splitlines()]


def test_rollback_to_previous_uses_swarms_server_side_rollback(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    target = make_target(service)
    assert target.live_version() == "v1.3.0"
    assert target.history() == ["v1.2.9", "v1.3.0"]  # what it ran; not every tag on the node
    findings = target.command_findings() + target.deployable("v1.2.9")
    assert all(f.ok for f in findings), findings
    assert any("server-side rollback" in f.message for f in findings)
    journal = Journal(tmp_path / "journal.jsonl")

    target.rollback("v1.2.9", journal, expected_state=target.observe())
    target.wait_ready("v1.2.9", journal)

    assert service.update_state() == "rollback_completed"  # Swarm's own rollback, not an image update
    assert service.running_versions() == ["v1.2.9"] * 3
    assert service.answer() == "v1.2.9"
    done = {e["step"]: e for e in entries(journal) if e["status"] == "done"}
    started = {e["step"]: e for e in entries(journal) if e["status"] == "started"}
    assert started["update-service"]["how"] == "server-side rollback"
    assert {row["version"] for row in done["update-service"]["tasks_before"] if row["desired"] == "running"} == {
        "v1.3.0"
    }
    after = [row for row in done["wait-ready"]["tasks_after"] if row["desired"] == "running"]
    assert [(row["version"], row["state"]) for row in after] == [("v1.2.9", "running")] * 3
    # A resumed run does not roll back twice (Swarm would swap back to v1.3.0): nothing happens.
    index = target.observe()
    target.rollback("v1.2.9", Journal(tmp_path / "again.jsonl"))
    assert target.observe() == index and service.image_version() == "v1.2.9"


def test_rollback_to_a_named_version_updates_the_image(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    progress: list[str] = []
    target = make_target(service, progress, parallelism=1, monitor="0s")
    findings = target.deployable("v1.2.8")
    assert all(f.ok for f in findings) and any("one level of history" in f.message for f in findings), findings
    journal = Journal(tmp_path / "journal.jsonl")

    target.rollback("v1.2.8", journal, expected_state=target.observe())
    target.wait_ready("v1.2.8", journal)

    assert service.update_state() == "completed"
    assert service.running_versions() == ["v1.2.8"] * 3
    assert service.answer() == "v1.2.8"
    assert service.inspect()["Spec"]["UpdateConfig"]["Parallelism"] == 1
    assert any("/3 tasks on v1.2.8" in line for line in progress), progress
    started = {e["step"]: e for e in entries(journal) if e["status"] == "started"}
    assert started["update-service"]["how"] == "image update"
    # Running it again changes nothing: the service already specifies the image.
    again = Journal(tmp_path / "again.jsonl")
    target.rollback("v1.2.8", again)
    assert "already specifies" in {e["step"]: e for e in entries(again) if e["status"] == "done"}["update-service"].get(
        "note", ""
    )


def test_failing_tasks_make_a_failed_rollback_with_their_errors(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9")
    target = make_target(service)
    journal = Journal(tmp_path / "journal.jsonl")
    target.rollback(BROKEN, journal, expected_state=target.observe())

    with pytest.raises(RollbackFailed) as caught:
        target.wait_ready(BROKEN, journal)

    message = str(caught.value)
    assert "paused" in message and "non-zero exit (1)" in message, message
    failed = [e for e in entries(journal) if e["step"] == "wait-ready" and e["status"] == "failed"]
    assert failed and any("non-zero exit" in row["error"] for row in failed[0]["tasks_after"])


def test_missing_image_is_refused_before_any_change(make_service: MakeService) -> None:
    service = make_service("v1.2.9", replicas=1)
    target = make_target(service)
    index = target.observe()

    findings = target.deployable("v9.9.9")

    assert [f.ok for f in findings] == [False]
    assert f"{service.images.repo}:v9.9.9 is not on this node" in findings[0].message
    assert target.observe() == index


def test_service_in_the_middle_of_an_update_is_refused(make_service: MakeService) -> None:
    service = make_service("v1.2.9")
    # One task at a time, 60 s between them: the update stays in progress while we look.
    service.update("v1.3.0", "--update-parallelism", "1", "--update-delay", "60s")
    target = make_target(service)
    wait_for(lambda: service.update_state() == "updating", 30, "the update to start")

    findings = target.deployable("v1.2.8")

    assert [f.ok for f in findings] == [False]
    assert "in the middle of an update (state updating" in findings[0].message


def test_a_concurrent_update_is_a_conflict(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    target = make_target(service)
    observed = target.observe()
    docker("service", "update", "--detach", "--env-add", "DEPLOYED_BY=someone-else", service.name)
    journal = Journal(tmp_path / "journal.jsonl")

    with pytest.raises(Conflict, match="version index was"):
        target.rollback("v1.2.9", journal, expected_state=observed)

    assert service.image_version() == "v1.3.0"
    assert not journal.path.exists() or not entries(journal)


def test_an_engine_that_does_not_answer_is_a_clear_error(tmp_path: Path) -> None:
    settings = SwarmSettings.model_validate({"service": "web", "docker_host": f"unix://{tmp_path}/none.sock"})
    context = TargetContext(name="web", base_dir=tmp_path, progress=print, service_version=lambda timeout=None: None)
    target = SwarmTarget(settings, context)

    with pytest.raises(RollbackFailed, match="cannot reach the Docker Engine at unix://"):
        target.live_version()


def test_the_managers_own_precondition_is_a_conflict_too(make_service: MakeService) -> None:
    """A deploy landing between the driver's last read and its write: Swarm refuses the stale index."""
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    target = make_target(service)
    stale = target._service()
    docker("service", "update", "--detach", "--env-add", "DEPLOYED_BY=someone-else", service.name)

    with pytest.raises(Conflict, match="changed after this run read it"):
        target._post_update(stale["ID"], stale["Spec"], {"version": stale["Version"]["Index"]}, "stale")

    assert service.image_version() == "v1.3.0"


def test_a_global_service_rolls_back(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", global_mode=True, history=("v1.3.0",))
    target = make_target(service)
    journal = Journal(tmp_path / "journal.jsonl")

    target.rollback("v1.2.8", journal, expected_state=target.observe())
    target.wait_ready("v1.2.8", journal)

    assert service.running_versions() == ["v1.2.8"]
    assert service.answer() == "v1.2.8"
