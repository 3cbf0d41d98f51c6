"""``pytest --rollback-to`` with ``kind = "kubernetes"``: the whole runbook against the emulator.

The service the checks probe is the emulator's Service, a proxy over the deployment's ready pods,
each a real process of the demo app at its image's version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from deployments import read_evidence
from k8s_emulator import Emulator
from k8s_support import deployment_manifest, image_of, revisions, wait_rolled_out, write_kubeconfig, written

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
pytestmark = pytest.mark.real_pods


def set_image(emulator: Emulator, version: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    wait_rolled_out(emulator, "web")


@pytest.fixture
def cluster(emulator: Emulator, pytester: pytest.Pytester) -> Path:
    """web: v1.2.9 (revision 1), then v1.3.0 live (revision 2); a config for the harness."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    set_image(emulator, "v1.3.0")
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


def run(pytester: pytest.Pytester, config: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={config}", f"--report-dir={pytester.path / 'reports'}", *args
    )


@pytest.mark.parametrize("requested", ["v1.2.9", "previous"])
def test_rolls_a_deployment_back(pytester: pytest.Pytester, emulator: Emulator, cluster: Path, requested: str) -> None:
    result = run(pytester, cluster, "--rollback-to", requested, "--rollback-yes")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled back from v1.3.0 to v1.2.9; verified*", "exit code 0: success"])
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == "demo:v1.2.9"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert sorted(revisions(emulator)) == [2, 3]
    evidence: dict[str, Any] = read_evidence(pytester.path / "reports")
    assert evidence["outcome"]["status"] == "rolled-back"
    assert (evidence["from_version"], evidence["to_version"]) == ("v1.3.0", "v1.2.9")
    steps = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    assert steps == ["rollback", "patch-deployment", "wait-ready"]
    assert any("revision 1 (v1.2.9)" in line for line in evidence["plan"])
    details = {e["what"]: e["detail"] for e in evidence["timeline"] if e["status"] == "done"}
    before, after = details["patch-deployment"]["before"], details["wait-ready"]["after"]
    assert [r["version"] for r in before["revisions"]] == ["v1.2.9", "v1.3.0"]
    assert [r["version"] for r in after["revisions"]] == ["v1.3.0", "v1.2.9"]
    assert {p["images"][0] for p in before["pods"]} == {"demo:v1.3.0"}
    assert {p["images"][0] for p in after["pods"]} == {"demo:v1.2.9"}


def test_paused_deployment_is_refused_in_preflight(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps({"spec": {"paused": True}}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    before = written(emulator.get("deployments", "web"))
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*deployment default/web is paused*"])
    assert written(emulator.get("deployments", "web")) == before
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"


def test_dry_run_shows_the_servers_answer_and_changes_nothing(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    before = written(emulator.get("deployments", "web"))
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-dry-run")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*server dry run (dryRun=All): accepted, the template would run v1.2.9*"])
    assert written(emulator.get("deployments", "web")) == before


def test_a_deploy_during_the_run_is_a_conflict(pytester: pytest.Pytester, emulator: Emulator, cluster: Path) -> None:
    # Someone runs `kubectl set image` while the harness is in its baseline phase.
    pytester.makepyfile(
        test_someone_deploys=f"""
        import json, requests, pytest

        @pytest.mark.gate("preflight")
        def test_someone_deploys():
            container = {{"name": "app", "image": "demo:v1.5.0"}}
            patch = {{"spec": {{"template": {{"spec": {{"containers": [container]}}}}}}}}
            requests.patch(
                "{emulator.url}{DEPLOY}/web",
                data=json.dumps(patch),
                headers={{"Content-Type": "application/strategic-merge-patch+json"}},
                timeout=10,
            ).raise_for_status()
        """
    )
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-yes", "-v")
    assert result.ret == 14, result.stdout.str()
    result.stdout.fnmatch_lines(["*deployment default/web changed after this run read it*"])
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.5.0"


def test_a_missing_permission_is_refused_in_preflight(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    emulator.denied.add(("patch", "apps", "deployments"))
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*the current user may not patch deployments.apps in namespace default*"])
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"
    assert not [p for p in emulator.patches if "json-patch" in p[1]]


def test_rolls_back_to_a_revision_number(pytester: pytest.Pytester, emulator: Emulator, cluster: Path) -> None:
    set_image(emulator, "v1.4.0")  # revisions: 1 = v1.2.9, 2 = v1.3.0, 3 = v1.4.0 (live)
    result = run(pytester, cluster, "--rollback-to", "revision:2", "--rollback-yes")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*web: rolled back from v1.4.0 to v1.3.0; verified*", "exit code 0: success"])
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == "demo:v1.3.0"
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert revisions(emulator)[4]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"
    evidence: dict[str, Any] = read_evidence(pytester.path / "reports")
    assert (evidence["from_version"], evidence["to_version"]) == ("v1.4.0", "v1.3.0")
    assert any("revision 2 (v1.3.0)" in line for line in evidence["plan"])


def test_a_missing_revision_number_is_refused_in_preflight(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    result = run(pytester, cluster, "--rollback-to", "revision:9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*unable to find specified revision 9 in history; revisions: 1=v1.2.9, 2=v1.3.0*"])
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"


@pytest.mark.parametrize("requested", ["revision:", "revision:two", "revision:-1", "rev:2"])
def test_a_malformed_revision_is_refused_naming_the_accepted_forms(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path, requested: str
) -> None:
    result = run(pytester, cluster, "--rollback-to", requested, "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*is not a plain version*or 'previous'; or revision:<number> (e.g. revision:3)*"])
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"


def test_a_context_that_selects_another_namespace_is_refused_in_preflight(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    write_kubeconfig(pytester.path / "kubeconfig", emulator.url, namespace="prod")
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*the kubeconfig's context 'emulator' selects namespace 'prod', but this target's namespace is "
            "'default' (the default): set namespace = 'prod' in the config, or use a context for 'default'*"
        ]
    )
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"
    assert not [p for p in emulator.patches if "json-patch" in p[1]]


def test_a_configured_context_the_kubeconfig_lacks_is_refused(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    cluster.write_text(cluster.read_text().replace('deployment = "web"', 'deployment = "web"\ncontext = "staging"'))
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-yes")
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*the configured context 'staging' is not in the kubeconfig */kubeconfig "
            "(its current context: 'emulator'; its contexts: emulator)*"
        ]
    )
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"


def test_the_configured_context_and_namespace_pass_preflight(
    pytester: pytest.Pytester, emulator: Emulator, cluster: Path
) -> None:
    cluster.write_text(
        cluster.read_text().replace(
            'deployment = "web"', 'deployment = "web"\ncontext = "emulator"\nnamespace = "default"'
        )
    )
    result = run(pytester, cluster, "--rollback-to", "v1.2.9", "--rollback-dry-run")
    assert result.ret == 0, result.stdout.str()
    evidence: dict[str, Any] = read_evidence(pytester.path / "reports")
    assert "context 'emulator', namespace 'default', as configured" in json.dumps(evidence)
