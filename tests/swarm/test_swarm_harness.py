"""`pytest --rollback-to` end to end against a 3-replica swarm service on a real engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
from swarm_helpers import BROKEN, Service, docker, wait_for, write_config

pytestmark = pytest.mark.integration


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
    # The service specified the broken version once (its PreviousSpec now), so it is in its history.
    service = make_service("v1.2.9", replicas=2)
    service.update(BROKEN)
    wait_for(lambda: service.update_state() == "paused", 60, "the update to the broken version to pause")
    service.update("v1.2.8")
    service.wait_converged("v1.2.8")
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


def settled_on(service: Service, version: str) -> bool:
    """Every task runs ``version`` and Swarm no longer reports the update in progress."""
    return (
        service.update_state() in (None, "completed", "rollback_completed")
        and service.running_versions() == [version] * service.replicas
    )


def test_the_replaced_image_is_removed_only_after_verify_passed(
    pytester: pytest.Pytester, make_service: Callable[..., Service]
) -> None:
    # A tag of its own for the bad release, so removing it leaves the session's images alone.
    service = make_service("v1.2.9", replicas=2)
    bad = service.images.name("v1.4.0")
    docker("tag", service.images.name("v1.3.0"), bad)
    service.images.made.append(bad)  # removed at teardown even if this test stops half way
    service.update("v1.4.0")
    wait_for(lambda: settled_on(service, "v1.4.0"), 60, "v1.4.0 to run")
    config = write_config(pytester.path / "rollback.toml", service)
    data = tomllib.loads(config.read_text())
    data["targets"]["web"]["remove_replaced_image"] = True
    config.write_text(tomli_w.dumps(data))

    def present(image: str) -> bool:
        return docker("image", "inspect", image, check=False).strip() not in ("", "[]")

    # Verify fails (an endpoint that does not exist): the bad image stays, the way back with it.
    failing = {**data, "endpoints": [{"path": "/nope"}]}
    config.write_text(tomli_w.dumps(failing))
    args = ["-p", "no:cacheprovider", f"--rollback-config={config}", "--rollback-yes"]
    result = pytester.runpytest_subprocess(*args, f"--report-dir={pytester.path / 'r1'}", "--rollback-to", "v1.2.9")
    assert result.ret == 13, result.stdout.str()
    assert present(bad)

    # Back on the bad release, then a rollback that verify passes: the replaced image goes.
    service.update("v1.4.0")
    wait_for(lambda: settled_on(service, "v1.4.0"), 60, "v1.4.0 to run again")
    config.write_text(tomli_w.dumps(data))
    result = pytester.runpytest_subprocess(*args, f"--report-dir={pytester.path / 'r2'}", "--rollback-to", "v1.2.9")
    assert result.ret == 0, result.stdout.str()
    assert not present(bad)
    assert present(service.images.name("v1.3.0"))  # the same image under its own tag stays
    evidence = read_evidence(pytester.path / "r2")
    removed = [e for e in evidence["timeline"] if e["what"] == "remove-image"]  # type: ignore[attr-defined]
    assert [(e["status"], e["detail"]["image"]) for e in removed] == [("done", bad)]
    assert any("remove the replaced image" in line for line in evidence["plan"])  # type: ignore[attr-defined]
