"""Swarm history is what the service ran, never every image tag on the node (a real engine in swarm mode).

What it ran: its Spec, its PreviousSpec, and what the harness's own journals (named by the record beside
the target's lock) saw it run. ``previous`` is PreviousSpec's version; without one it is refused in preflight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from swarm_helpers import BROKEN, Service, http_get, make_target, write_config

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.runbook import STATUS_ROLLED_BACK, Runbook

pytestmark = pytest.mark.integration

MakeService = Callable[..., Service]


@contextmanager
def runbook(config: Path, service: Service, requested: str, run_id: str) -> Iterator[Runbook]:
    """A runbook on the config's swarm target, its journal in the config's folder; the lock released after."""
    settings = load_config(config)
    book = Runbook(
        settings,
        settings.target(None),
        requested,
        Journal(config.parent / f"{run_id}.jsonl"),
        progress=lambda line: None,
        service_version=lambda timeout=None: http_get(service.base_url + "/version"),
        run_id=run_id,
    )
    try:
        yield book
    finally:
        book.close()


def test_history_leaves_out_local_images_the_service_never_ran(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    assert make_target(service).history() == ["v1.2.9", "v1.3.0"]  # v1.2.8 and v1.1.0 are on the node too
    config = write_config(tmp_path / "rollback.toml", service)
    index = service.inspect()["Version"]["Index"]

    with runbook(config, service, "v1.2.8", "run-named") as book:
        findings = book.preflight()

    assert not findings["target-exists"].ok
    assert findings["target-exists"].message == "v1.2.8 is not in history; available: v1.2.9, v1.3.0"
    assert service.inspect()["Version"]["Index"] == index


def test_previous_without_a_previous_spec_is_refused_in_preflight(
    pytester: pytest.Pytester, make_service: MakeService
) -> None:
    # Created at v1.3.0 and never updated: Swarm has no PreviousSpec, however many tags the node has.
    service = make_service("v1.3.0", replicas=1)
    assert "PreviousSpec" not in service.inspect()
    config = write_config(pytester.path / "rollback.toml", service)
    index = service.inspect()["Version"]["Index"]

    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "previous",
        "--rollback-yes",
    )

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [f"*'previous' is the version of the service's PreviousSpec*service {service.name} has none*"]
    )
    assert service.inspect()["Version"]["Index"] == index
    assert service.image_version() == "v1.3.0" and service.running_versions() == ["v1.3.0"]


def test_versions_the_harness_saw_the_service_run_stay_in_history(make_service: MakeService, tmp_path: Path) -> None:
    service = make_service("v1.2.9", replicas=1, history=("v1.3.0",))
    config = write_config(tmp_path / "rollback.toml", service)
    with runbook(config, service, "previous", "run-one") as book:
        assert book.refusals() == [] and book.to_version == "v1.2.9"
        assert book.execute().status == STATUS_ROLLED_BACK
    # Someone deploys v1.2.8: Swarm now remembers v1.2.9 (PreviousSpec) and v1.2.8; v1.3.0 only the journal does.
    service.update("v1.2.8")
    service.wait_converged("v1.2.8")

    with runbook(config, service, "v1.3.0", "run-two") as book:
        findings = book.preflight()

    assert book.history == ["v1.3.0", "v1.2.9", "v1.2.8"]
    assert findings["target-exists"].ok, findings["target-exists"].message
    assert BROKEN not in book.history
    with runbook(config, service, "previous", "run-three") as book:
        assert book.refusals() == [] and book.to_version == "v1.2.9"  # PreviousSpec, as Swarm's own rollback
