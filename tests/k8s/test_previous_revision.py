"""``--rollback-to previous`` on Kubernetes is the revision before the live one, as ``kubectl rollout undo``.

Not the next lower version number: a version brought back by an undo gets the newest revision, so
the one before it may well carry a higher version (the run then rolls forward, and says so).
Each case builds its revisions with the real kubectl against the emulator, asks the harness's preflight
what ``previous`` is (nothing changes), then runs the real ``kubectl rollout undo`` and compares.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from deployments import read_evidence
from k8s_emulator import Emulator
from k8s_support import Kubectl, deployment_manifest, image_of, revisions, wait_rolled_out, write_kubeconfig

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.runbook import Runbook

REVISION = "deployment.kubernetes.io/revision"


def set_image(kubectl: Kubectl, emulator: Emulator, version: str) -> None:
    kubectl("set", "image", "deployment/web", f"app=demo:{version}")
    wait_rolled_out(emulator, "web")


def undo(kubectl: Kubectl, emulator: Emulator, *args: str) -> None:
    kubectl("rollout", "undo", "deployment/web", *args)
    wait_rolled_out(emulator, "web")


def two_revisions(kubectl: Kubectl, emulator: Emulator) -> None:
    """1 v1.2.9, 2 v1.3.0 (live)."""
    set_image(kubectl, emulator, "v1.3.0")


def older_version_back_as_revision_4(kubectl: Kubectl, emulator: Emulator) -> None:
    """2 v1.2.9, 3 v1.3.0, 4 v1.2.8 (live, revision 1 brought back)."""
    set_image(kubectl, emulator, "v1.2.9")
    set_image(kubectl, emulator, "v1.3.0")
    undo(kubectl, emulator, "--to-revision=1")


def newer_version_redeployed_as_revision_5(kubectl: Kubectl, emulator: Emulator) -> None:
    """2 v1.2.9, 4 v1.2.8, 5 v1.3.0 (live, deployed again: revision 3's ReplicaSet reused)."""
    older_version_back_as_revision_4(kubectl, emulator)
    set_image(kubectl, emulator, "v1.3.0")


CASES: dict[str, tuple[Callable[[Kubectl, Emulator], None], str, str, int]] = {
    # name: (how the revisions came about, live, previous, its revision)
    "newer-version-redeployed-as-revision-5": (newer_version_redeployed_as_revision_5, "v1.3.0", "v1.2.8", 4),
    "older-version-back-as-revision-4": (older_version_back_as_revision_4, "v1.2.8", "v1.3.0", 3),
    "two-revisions": (two_revisions, "v1.3.0", "v1.2.9", 1),
}


def write_config(directory: Path, emulator: Emulator) -> Path:
    kubeconfig = write_kubeconfig(directory / "kubeconfig", emulator.url)
    config = directory / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "web"
base_url = "{emulator.service({"app": "web"})}"
timeout = "2s"

[service.version]
path = "/version"

[health]
path = "/health"

[targets.web]
kind = "kubernetes"
kubeconfig = "{kubeconfig.name}"
deployment = "web"
ready_timeout = "20s"
"""
    )
    return config


def preflight_previous(config_path: Path, journal: Path) -> tuple[str | None, dict[str, str]]:
    """What the harness's preflight resolves ``previous`` to, and each finding's message; changes nothing."""
    config = load_config(config_path)
    base_url = config.settings.service.base_url

    def service_version(timeout: float | None = None) -> str | None:
        try:
            answer = requests.get(f"{base_url}/version", timeout=min(timeout or 2.0, 2.0))
        except requests.RequestException:
            return None
        return answer.text.strip() if answer.ok else None

    runbook = Runbook(
        config,
        config.target(None),
        "previous",
        Journal(journal),
        progress=lambda line: None,
        service_version=service_version,
        run_id="run-preflight",
    )
    try:
        findings = runbook.preflight()
        assert runbook.refusals() == [], [f.message for f in runbook.refusals()]
        messages = {name: finding.message for name, finding in findings.items()}
        messages.update({f.name: f.message for f in runbook.target.deployable(runbook.to_version or "")})
        return runbook.to_version, messages
    finally:
        runbook.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_previous_is_the_revision_kubectl_rollout_undo_goes_to(
    kubectl: Kubectl, emulator: Emulator, tmp_path: Path, case: str
) -> None:
    build, live, previous, revision = CASES[case]
    version = "v1.2.8" if case != "two-revisions" else "v1.2.9"
    emulator.create("deployments", deployment_manifest(f"demo:{version}"))
    wait_rolled_out(emulator, "web")
    build(kubectl, emulator)
    assert image_of(emulator.get("deployments", "web")) == f"demo:{live}"
    before = revisions(emulator)
    config = write_config(tmp_path, emulator)

    to_version, messages = preflight_previous(config, tmp_path / "journal.jsonl")
    assert to_version == previous
    assert f"'previous' is {previous}, the one before the live {live}" in messages["target-exists"]
    assert messages["target-revision"] == f"{previous} is revision {revision} of deployment default/web"
    assert revisions(emulator).keys() == before.keys()  # preflight changed nothing

    # The real kubectl's plain undo: the second-highest revision.
    assert max(before) != revision and sorted(before)[-2] == revision
    undo(kubectl, emulator)
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == f"demo:{previous}"
    newest = max(revisions(emulator))
    assert revisions(emulator)[newest]["metadata"]["uid"] == before[revision]["metadata"]["uid"]
    assert deployment["metadata"]["annotations"][REVISION] == str(newest)


def run(pytester: pytest.Pytester, config: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={config}", f"--report-dir={pytester.path / 'reports'}", *args
    )


@pytest.mark.real_pods
def test_previous_of_an_older_version_brought_back_rolls_forward_and_says_so(
    pytester: pytest.Pytester, emulator: Emulator, kubectl: Kubectl
) -> None:
    emulator.create("deployments", deployment_manifest("demo:v1.2.8"))
    wait_rolled_out(emulator, "web")
    older_version_back_as_revision_4(kubectl, emulator)
    config = write_config(pytester.path, emulator)

    result = run(pytester, config, "--rollback-to", "previous", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled forward from v1.2.8 to v1.3.0; verified*", "exit code 0: success"])
    assert "rolled back" not in result.stdout.str()
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == "demo:v1.3.0"
    assert deployment["metadata"]["annotations"][REVISION] == "5"
    evidence: dict[str, Any] = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "rolled-back"  # the status value stays; only the words change
    assert evidence["outcome"]["message"] == "rolled forward from v1.2.8 to v1.3.0"
    (finding,) = [t for t in evidence["tests"] if t["nodeid"].endswith("::preflight-target-version")]
    assert finding["outcome"] == "passed"
    assert "note: v1.3.0 is newer than the live v1.2.8: this run rolls forward" in str(finding)
    assert any("revision 3 (v1.3.0)" in line for line in evidence["plan"])
