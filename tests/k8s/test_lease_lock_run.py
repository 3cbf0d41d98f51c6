"""``[lock] backend = "kubernetes"``: two harness runs against one Deployment, kept apart by a Lease."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from deployments import read_evidence
from k8s_emulator import Emulator
from k8s_support import deployment_manifest, image_of, wait_rolled_out, write_kubeconfig, written

HOLD_LOCK = Path(__file__).parent.parent / "locks" / "hold_lock.py"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
# service, target, run id, lease seconds
LEASE_ARGS = ("web", "web", "run-elsewhere", "20")
pytestmark = pytest.mark.real_pods


@pytest.fixture
def cluster(emulator: Emulator, pytester: pytest.Pytester) -> Path:
    """web: v1.2.9 (revision 1), then v1.3.0 live; a config whose lock is a Lease."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:v1.3.0"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    wait_rolled_out(emulator, "web")
    kubeconfig = write_kubeconfig(pytester.path / "kubeconfig", emulator.url)
    config = pytester.path / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "web"
base_url = "{emulator.service({"app": "web"})}"
timeout = "2s"

[service.version]
path = "/version"

[lock]
backend = "kubernetes"
lease_duration = "20s"

[targets.web]
kind = "kubernetes"
kubeconfig = "{kubeconfig.name}"
deployment = "web"
ready_timeout = "20s"
"""
    )
    return config


@pytest.fixture
def other_run(cluster: Path) -> Iterator[subprocess.Popen[str]]:
    """Another machine's run holding the Lease of service web / target web."""
    process = subprocess.Popen(
        [sys.executable, str(HOLD_LOCK), "kubernetes", str(cluster.parent / "kubeconfig"), "default", *LEASE_ARGS],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(timeout=30)


def run(pytester: pytest.Pytester, config: Path, folder: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={config}", f"--report-dir={pytester.path / folder}", *args
    )


def lock_finding(reports: Path) -> str:
    [check] = [t["check"] for t in read_evidence(reports)["tests"] if t["nodeid"].endswith("preflight-target-lock")]
    summary: str = check["summary"]
    return summary


def test_a_run_holds_the_lease_and_releases_it(pytester: pytest.Pytester, emulator: Emulator, cluster: Path) -> None:
    result = run(pytester, cluster, "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 0, result.stdout.str()
    assert "this run holds Lease default/rollback-harness-web-web" in lock_finding(pytester.path / "reports")
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"
    lease = emulator.get("leases", "rollback-harness-web-web")
    assert lease["spec"]["holderIdentity"] == ""  # released at the end of the run
    assert lease["spec"]["leaseTransitions"] == 0


def test_a_second_run_is_refused_while_another_holds_the_lease(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path, other_run: subprocess.Popen[str]
) -> None:
    before = written(emulator.get("deployments", "web"))
    result = run(pytester, cluster, "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*another run holds the lock Lease default/rollback-harness-web-web: "
            f"run run-elsewhere (pid {other_run.pid} on *, user *, since *"
        ]
    )
    assert written(emulator.get("deployments", "web")) == before  # nothing changed
    assert emulator.get("leases", "rollback-harness-web-web")["spec"]["holderIdentity"].startswith("run-elsewhere@")

    broke = run(
        pytester,
        cluster,
        "broke",
        "--rollback-to",
        "v1.2.9",
        "--rollback-yes",
        "--rollback-break-lock",
        "run-elsewhere",
    )
    assert broke.ret == 0, broke.stdout.str()
    assert "broke the lock of run run-elsewhere (--rollback-break-lock)" in lock_finding(pytester.path / "broke")
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"
