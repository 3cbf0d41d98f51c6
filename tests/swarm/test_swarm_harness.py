"""`pytest --rollback-to` end to end against a 3-replica swarm service on a real engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from swarm_helpers import BROKEN, Service, docker, wait_for

pytestmark = pytest.mark.integration


def write_config(path: Path, service: Service) -> Path:
    config = {
        "service": {"name": "web", "base_url": service.base_url, "timeout": "2s", "version": {"path": "/version"}},
        "health": {"path": "/health", "consecutive": 2},
        "endpoints": [{"path": "/"}],
        "targets": {"web": {"kind": "swarm", "service": service.name, "ready_timeout": "60s"}},
    }
    path.write_text(tomli_w.dumps(config))
    return path


def read_evidence(report_dir: Path) -> dict[str, object]:
    (found,) = report_dir.glob("*/evidence.json")
    result: dict[str, object] = json.loads(found.read_text())
    return result


def test_harness_rolls_a_swarm_service_back_to_previous(
    pytester: pytest.Pytester, make_service: Callable[..., Service]
) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    config = write_config(pytester.path / "rollback.toml", service)

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "previous",
        "--rollback-yes",
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled back from v1.3.0 to v1.2.9; verified*", "exit code 0: success"])
    assert service.running_versions() == ["v1.2.9"] * 3
    assert service.update_state() == "rollback_completed"
    evidence = read_evidence(pytester.path / "reports")
    steps = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]  # type: ignore[attr-defined]
    assert steps == ["rollback", "update-service", "wait-ready"]


def test_harness_reports_a_rollback_whose_tasks_fail(
    pytester: pytest.Pytester, make_service: Callable[..., Service]
) -> None:
    service = make_service("v1.2.9", replicas=2)
    config = write_config(pytester.path / "rollback.toml", service)

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        BROKEN,
        "--rollback-yes",
    )

    assert result.ret == 12, result.stdout.str()
    result.stdout.fnmatch_lines(["*Swarm paused the rollback*non-zero exit (1)*"])
    evidence = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] != "rolled-back"  # type: ignore[index]


def test_harness_refuses_a_version_whose_image_is_not_on_the_node(
    pytester: pytest.Pytester, make_service: Callable[..., Service]
) -> None:
    # v1.2.7 is PreviousSpec's image, then its tag is removed from the node: in history, not deployable.
    service = make_service("v1.2.9", replicas=1)
    gone = service.images.name("v1.2.7")
    docker("tag", service.images.name("v1.2.9"), gone)
    service.images.made.append(gone)  # removed at teardown even if this test stops half way
    service.update("v1.2.7")
    wait_for(lambda: service.running_versions() == ["v1.2.7"], 60, "v1.2.7 to run")  # it answers v1.2.9
    service.update("v1.3.0")
    service.wait_converged("v1.3.0")
    docker("image", "rm", gone)
    service_image = service.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    index = service.inspect()["Version"]["Index"]
    config = write_config(pytester.path / "rollback.toml", service)

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "v1.2.7",
        "--rollback-yes",
    )

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines([f"*image {gone} is not on this node*"])
    assert service.inspect()["Version"]["Index"] == index  # nothing changed
    assert service.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == service_image


def test_rollback_fast_replaces_every_task_at_once_and_says_what_it_traded(
    pytester: pytest.Pytester, make_service: Callable[..., Service]
) -> None:
    service = make_service("v1.2.9", history=("v1.3.0",))
    config = write_config(pytester.path / "rollback.toml", service)

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "previous",
        "--rollback-yes",
        "--rollback-fast",
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled back from v1.3.0 to v1.2.9; verified*", "*--rollback-fast*"])
    assert service.running_versions() == ["v1.2.9"] * 3
    update = service.inspect()["Spec"]["UpdateConfig"]
    assert (update["Parallelism"], update["Monitor"], update["Order"]) == (0, 1_000_000_000, "stop-first")
    evidence = read_evidence(pytester.path / "reports")
    assert any(r["setting"] == "--rollback-fast" for r in evidence["relaxed_safety"])  # type: ignore[attr-defined]
    assert any("every task replaced at once" in line for line in evidence["plan"])  # type: ignore[attr-defined]
