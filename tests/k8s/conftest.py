"""Fixtures for the Kubernetes tests: the API emulator on loopback and the real kubectl pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_emulator import Emulator
from k8s_support import KUBECTL, Kubectl, deployment_manifest, wait_rolled_out, write_kubeconfig


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "real_pods: the emulator's pods are real demo app processes and its Service a real proxy"
    )


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    """The API emulator; with ``@pytest.mark.real_pods`` its pods are real processes (else records)."""
    with Emulator(real_pods=request.node.get_closest_marker("real_pods") is not None) as api:
        yield api


@pytest.fixture
def kubectl(emulator: Emulator, tmp_path: Path) -> Kubectl:
    if KUBECTL is None:
        pytest.skip("the real kubectl is not installed on this machine (the machine image has it)")
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, emulator.url)
    return Kubectl(kubeconfig, tmp_path / "kube-cache")


@pytest.fixture
def web(emulator: Emulator) -> dict[str, Any]:
    """Deployment ``web``: 3 replicas of demo:v1.2.9, rolled out (revision 1)."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    return emulator.get("deployments", "web")


# Imported before any in-process pytester run, so pytester's sys.modules snapshot keeps one copy
# of the kubernetes client (its urllib3 pool and models) across runs.
import rollback_harness.rollback.targets.kubernetes  # noqa: E402, F401
