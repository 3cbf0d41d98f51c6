"""The swarm driver's census against a real Docker Engine: which task runs which image, and Swarm's word on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from swarm_helpers import BROKEN, Images, Service, docker, make_target, wait_for, write_config

from rollback_harness.rollback.census import judge_census
from rollback_harness.rollback.errors import RollbackFailed

pytestmark = pytest.mark.integration

MakeService = Callable[..., Service]


def running_task_ids(service: Service) -> dict[str, str]:
    """Full task id -> version of every running task Swarm wants running, as `docker service ps` shows them."""
    out = docker(
        "service", "ps", service.name, "--no-trunc", "--filter", "desired-state=running",
        "--format", "{{.ID}} {{.Image}} {{.CurrentState}}",
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if " Running" in line]
    return {row[0]: row[1].split("@")[0].rsplit(":", 1)[1] for row in rows}


def test_a_converged_service_passes_and_leaves_replaced_tasks_out(make_service: MakeService) -> None:
    # Three v1.2.9 tasks were shut down on the way to v1.3.0: history, not replicas.
    service = make_service("v1.2.9", history=("v1.3.0",))

    census = make_target(service).census()
    result = judge_census(census, "v1.3.0")

    assert result.status == "passed", result.summary
    assert census.unit == "task"
    assert [(r.version, r.serving, r.state) for r in census.replicas] == [("v1.3.0", True, "running")] * 3
    assert {name.split()[1] for name in (r.name for r in census.replicas)} == {
        task_id[:12] for task_id in running_task_ids(service)
    }
    assert [r.name.split("(")[1].split(",")[0] for r in census.replicas] == ["slot 1", "slot 2", "slot 3"]
    assert census.problems == ()
    facts = census.facts
    assert (facts["spec_replicas"], facts["running"], facts["update_state"]) == (3, 3, "completed")
    assert facts["image"].split("@")[0] == service.images.name("v1.3.0")
    assert facts["version_index"] == service.inspect()["Version"]["Index"]
    assert judge_census(census, "v1.2.9").status == "failed"


def leave_one_task_behind(service: Service) -> str:
    """From v1.3.0 to v1.2.9 two tasks at a time, then ten minutes' delay: the id of the task left on v1.3.0."""
    service.update("v1.2.9", "--update-parallelism", "2", "--update-delay", "600s")
    wait_for(
        lambda: sorted(running_task_ids(service).values()) == ["v1.2.9", "v1.2.9", "v1.3.0"],
        60,
        f"{service.name}: two tasks on v1.2.9 and one on v1.3.0",
    )
    (old_task,) = [task_id for task_id, version in running_task_ids(service).items() if version == "v1.3.0"]
    return old_task


def test_a_task_left_on_the_old_image_fails_and_is_named(make_service: MakeService) -> None:
    service = make_service("v1.3.0")
    old_task = leave_one_task_behind(service)

    census = make_target(service).census()
    result = judge_census(census, "v1.2.9")

    assert result.status == "failed", result.summary
    assert result.summary.startswith("1 task of 3 serving still on another version: task " + old_task[:12])
    assert "(v1.3.0)" in result.summary
    assert f"Swarm is still updating service {service.name}" in result.summary
    assert sorted(r.version or "" for r in census.serving()) == ["v1.2.9", "v1.2.9", "v1.3.0"]
    assert census.facts["update_state"] == "updating"


def leave_update_paused(service: Service) -> None:
    """One task at a time to the broken image, never restarted: the first task fails, Swarm pauses the update."""
    service.update(BROKEN, "--update-parallelism", "1", "--restart-condition", "none")


def leave_rollback_paused(service: Service) -> None:
    """The broken image becomes PreviousSpec, then Swarm's rollback to it (every task at once) fails and pauses."""
    service.update(BROKEN, "--update-failure-action", "continue", "--restart-condition", "none")
    wait_for(lambda: service.update_state() == "completed", 60, f"{service.name}: the update to {BROKEN} to end")
    service.update("v1.3.0", "--update-failure-action", "pause", "--restart-condition", "any")
    service.wait_converged("v1.3.0")
    docker("service", "rollback", "--detach", service.name)


@pytest.mark.parametrize(
    ("state", "words", "leave"),
    [
        ("paused", "Swarm paused the update of service", leave_update_paused),
        ("rollback_paused", "Swarm paused the rollback of service", leave_rollback_paused),
    ],
    ids=["paused", "rollback_paused"],
)
def test_a_paused_update_is_a_problem(
    make_service: MakeService, state: str, words: str, leave: Callable[[Service], None]
) -> None:
    service = make_service("v1.2.9")
    leave(service)
    wait_for(lambda: service.update_state() == state, 60, f"{service.name}: update state {state}")

    census = make_target(service).census()
    result = judge_census(census, None)

    assert result.status == "failed", result.summary
    problems = [p for p in census.problems if p.startswith(f"{words} {service.name} ({state}: ")]
    assert len(problems) == 1, census.problems
    assert problems[0] in result.summary
    # At least one v1.2.9 task was replaced by one that failed, and failed tasks are never restarted here.
    running = census.facts["running"]
    assert census.facts["update_state"] == state and running == len(census.serving()) < 3
    count = f"only {running} of the 3 tasks" if running else "none of the 3 tasks"
    assert any(p.startswith(f"{count} service {service.name} asks for") for p in census.problems), census.problems


def test_a_missing_service_is_a_clear_error(engine: None) -> None:
    service = Service(name=f"harness-{uuid.uuid4().hex[:10]}", port=0, images=Images(repo="none"), replicas=1)

    with pytest.raises(RollbackFailed, match=f"no swarm service named '{service.name}'"):
        make_target(service).census()


def test_the_verify_gate_fails_on_a_task_left_on_the_old_image(
    pytester: pytest.Pytester, make_service: MakeService
) -> None:
    service = make_service("v1.3.0")
    old_task = leave_one_task_behind(service)
    config = write_config(pytester.path / "rollback.toml", service)
    args = ["-p", "no:cacheprovider", f"--rollback-config={config}", f"--report-dir={pytester.path / 'reports'}"]
    gate = ["--rollback-gate", "verify", "--rollback-expect-version", "v1.2.9"]

    listed = pytester.runpytest_subprocess(*args, *gate, "--co", "-q")
    listed.stdout.fnmatch_lines(["*verify-replicas*"])
    result = pytester.runpytest_subprocess(*args, *gate, "-rA")

    assert result.ret == 13, result.stdout.str()
    named = f"1 task of 3 serving still on another version: task {old_task[:12]} (slot *, node *) (v1.3.0)*"
    result.stdout.fnmatch_lines(["*_ verify-replicas _*", named, "*FAILED rollback.toml::verify-replicas*"])
