"""The kubernetes driver against the emulator: kubectl's undo semantics, preconditions, refusals, waits.

The driver talks through the official ``kubernetes`` client to the emulator on loopback; where kubectl
is the reference, the same starting state is built on two emulators and both end states compared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from k8s_emulator import Emulator
from k8s_support import (
    Kubectl,
    deployment_manifest,
    image_of,
    make_target,
    revisions,
    wait_rolled_out,
    written,
)

from rollback_harness.rollback import targets
from rollback_harness.rollback.errors import ConfigError, Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.kubernetes import KubernetesSettings, KubernetesTarget
from rollback_harness.rollback.targets.kubernetes_objects import pruned

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
JSON_PATCH = "application/json-patch+json"
CHANGE_CAUSE = "kubernetes.io/change-cause"
REVISION = "deployment.kubernetes.io/revision"


def release(emulator: Emulator, version: str, cause: str) -> None:
    """What a deploy pipeline does: set the image (strategic merge patch), then the change-cause."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    wait_rolled_out(emulator, "web")
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps({"metadata": {"annotations": {CHANGE_CAUSE: cause}}}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    emulator.wait_for(lambda: any(cause == causes(rs) for rs in emulator.store.objects["replicasets"].values()))


def causes(rs: dict[str, Any]) -> str | None:
    return (rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)


def three_releases(emulator: Emulator) -> None:
    """Revisions 1 (v1.2.9), 2 (v1.3.0), 3 (v1.4.0); v1.4.0 live."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    release(emulator, "v1.3.0", "release v1.3.0")
    release(emulator, "v1.4.0", "release v1.4.0")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


@pytest.fixture
def second_emulator() -> Iterator[Emulator]:
    with Emulator() as api:
        yield api


def end_state(emulator: Emulator) -> dict[str, Any]:
    """What a rollback leaves that must not depend on who did it (no uids, times or versions)."""
    deployment = emulator.get("deployments", "web")
    return {
        "template": pruned(deployment["spec"]["template"]),
        "annotations": deployment["metadata"].get("annotations"),
        "generation": deployment["metadata"]["generation"],
        "revisions": {
            revision: (rs["metadata"]["name"], image_of(rs), rs["metadata"]["annotations"])
            for revision, rs in revisions(emulator).items()
        },
    }


def test_harness_and_kubectl_reach_the_same_state(
    emulator: Emulator, second_emulator: Emulator, kubectl: Kubectl, tmp_path: Path, journal: Journal
) -> None:
    three_releases(emulator)
    three_releases(second_emulator)
    assert end_state(emulator) == end_state(second_emulator)

    kubectl("rollout", "undo", "deployment/web", "--to-revision=2")
    wait_rolled_out(emulator, "web")
    target = make_target(second_emulator, tmp_path)
    target.rollback("v1.3.0", journal, expected_state=target.observe())
    wait_rolled_out(second_emulator, "web")

    state = end_state(second_emulator)
    assert state == end_state(emulator)
    assert state["annotations"] == {REVISION: "4", CHANGE_CAUSE: "release v1.3.0"}
    assert sorted(state["revisions"]) == [1, 3, 4]
    assert state["revisions"][4][2]["deployment.kubernetes.io/revision-history"] == "2"
    # The same JSON patch as kubectl's, led by the resourceVersion precondition kubectl does not send.
    ((_, kubectl_type, kubectl_ops),) = [p for p in emulator.patches if "json-patch" in p[1]]
    ((_, harness_type, harness_ops),) = [p for p in second_emulator.patches if "json-patch" in p[1]]
    assert kubectl_type == harness_type == "application/json-patch+json"
    assert harness_ops[0]["path"] == "/metadata/resourceVersion"
    assert pruned(harness_ops[1:]) == pruned(kubectl_ops)


@pytest.mark.real_pods
def test_history_live_version_and_previous(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path)
    assert target.live_version() == "v1.4.0"
    assert target.history() == ["v1.2.9", "v1.3.0", "v1.4.0"]
    findings = target.deployable("v1.2.9")
    assert all(f.ok for f in findings), findings
    assert {f.name: f.message for f in findings}["target-revision"] == "v1.2.9 is revision 1 of deployment default/web"
    target.rollback("v1.2.9", journal)
    target.wait_ready("v1.2.9", journal)
    assert target.live_version() == "v1.2.9"
    # The history after a rollback: v1.2.9 moved to the newest revision.
    assert target.history() == ["v1.3.0", "v1.4.0", "v1.2.9"]
    states = journal.step_states()
    assert states == {"patch-deployment": "done", "wait-ready": "done"}
    done = {e["step"]: e for e in journal.entries() if e["status"] == "done"}
    before, after = done["patch-deployment"]["before"], done["wait-ready"]["after"]
    assert [(r["revision"], r["version"]) for r in before["revisions"]] == [(1, "v1.2.9"), (2, "v1.3.0"), (3, "v1.4.0")]
    assert [(r["revision"], r["version"]) for r in after["revisions"]] == [(2, "v1.3.0"), (3, "v1.4.0"), (4, "v1.2.9")]
    assert {tuple(p["images"]) for p in before["pods"]} == {("demo:v1.4.0",)}
    assert {tuple(p["images"]) for p in after["pods"]} == {("demo:v1.2.9",)}
    assert all(p["ready"] and p["node"] == "emulator-node" and p["restarts"] == 0 for p in after["pods"])
    assert len(after["pods"]) == 3
    assert done["patch-deployment"]["patch"][1]["path"] == "/spec/template"


def test_rollback_to_a_revision_number(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path)
    target.rollback("revision:2", journal)
    wait_rolled_out(emulator, "web")
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"
    with pytest.raises(RollbackFailed, match="unable to find specified revision 9 in history"):
        target.rollback("revision:9", journal)


def test_unknown_version_names_the_revisions(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    findings = make_target(emulator, tmp_path).deployable("v0.9.0")
    assert [(f.ok, f.message) for f in findings] == [
        (False, "deployment default/web: no revision runs v0.9.0; revisions: 1=v1.2.9, 2=v1.3.0, 3=v1.4.0")
    ]


def test_rollback_to_the_live_template_is_skipped(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    three_releases(emulator)
    before = written(emulator.get("deployments", "web"))
    make_target(emulator, tmp_path).rollback("v1.4.0", journal)
    assert written(emulator.get("deployments", "web")) == before
    done = [e for e in journal.entries() if e["status"] == "done"]
    assert done[0]["note"] == "skipped rollback (current template already matches revision 3)"
    assert not [p for p in emulator.patches if "json-patch" in p[1]]


def test_paused_deployment_is_refused_before_any_change(
    emulator: Emulator, kubectl: Kubectl, tmp_path: Path, journal: Journal
) -> None:
    three_releases(emulator)
    kubectl("rollout", "pause", "deployment/web")
    target = make_target(emulator, tmp_path)
    refused = [f for f in target.deployable("v1.2.9") if not f.ok]
    assert len(refused) == 1
    assert "deployment default/web is paused" in refused[0].message
    assert "kubectl rollout resume deployment/web -n default" in refused[0].message
    before = written(emulator.get("deployments", "web"))
    with pytest.raises(RollbackFailed, match="is paused"):
        target.rollback("v1.2.9", journal)
    assert written(emulator.get("deployments", "web")) == before
    assert journal.entries() == []


def test_a_deploy_after_preflight_is_a_conflict(
    emulator: Emulator, kubectl: Kubectl, tmp_path: Path, journal: Journal
) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path)
    observed = target.observe()
    kubectl("set", "image", "deployment/web", "app=demo:v1.5.0")  # someone deploys during the run
    with pytest.raises(Conflict, match="changed after this run read it"):
        target.rollback("v1.2.9", journal, expected_state=observed)
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.5.0"


def test_a_change_between_read_and_write_is_a_409_conflict(
    emulator: Emulator, kubectl: Kubectl, tmp_path: Path, journal: Journal
) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path)
    stale = target.read_deployment()
    kubectl("set", "image", "deployment/web", "app=demo:v1.5.0")
    target.read_deployment = lambda timeout=None: stale  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="changed between this run's read"):
        target.rollback("v1.2.9", journal)
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.5.0"
    assert journal.step_states() == {"patch-deployment": "failed"}


def test_dry_run_plan_asks_the_server_and_changes_nothing(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    before = written(emulator.get("deployments", "web"))
    plan = make_target(emulator, tmp_path).plan("v1.2.9")
    assert plan[0].startswith("JSON-patch deployment default/web: template and annotations of revision 1 (v1.2.9)")
    assert plan[0].endswith("; server dry run (dryRun=All): accepted, the template would run v1.2.9")
    assert len(plan) == 2
    assert any("dryRun=All" in path for path, _, _ in emulator.patches)
    assert written(emulator.get("deployments", "web")) == before


def test_a_stalled_rollout_fails_at_its_progress_deadline_with_the_pods_reasons(
    emulator: Emulator, tmp_path: Path, journal: Journal
) -> None:
    emulator.create("deployments", deployment_manifest("demo:v1.0.0", progressDeadlineSeconds=1))
    wait_rolled_out(emulator, "web")
    release(emulator, "v1.2.9", "release v1.2.9")
    emulator.controller.unpullable.add("demo:v1.0.0")  # the old image is gone from the registry
    target = make_target(emulator, tmp_path, ready_timeout=30.0)
    target.rollback("v1.0.0", journal)
    with pytest.raises(RollbackFailed) as failure:
        target.wait_ready("v1.0.0", journal)
    message = str(failure.value)
    assert 'deployment "web" exceeded its progress deadline' in message
    assert "ImagePullBackOff" in message
    assert journal.step_states()["wait-ready"] == "failed"


def test_wait_ready_is_bounded_and_reports_progress(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    three_releases(emulator)
    emulator.controller.unpullable.add("demo:v1.2.9")
    progress: list[str] = []
    target = make_target(emulator, tmp_path, progress=progress, ready_timeout=2.5)
    target.rollback("v1.2.9", journal)
    with pytest.raises(RollbackFailed, match=r"did not roll out within 2\.5 ?s"):
        target.wait_ready("v1.2.9", journal)
    assert any(line.endswith("1/3 updated, 3 old pods terminating") for line in progress), progress


def test_config_names_the_driver_and_its_settings() -> None:
    assert targets.driver_class("kubernetes", "targets.web.kind") is KubernetesTarget
    with pytest.raises(Exception, match="deployment"):
        KubernetesSettings.model_validate({"namespace": "prod"})
    assert isinstance(ConfigError("x"), Exception)


def test_a_rollout_in_progress_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    emulator.controller.ready_delay = 60.0  # new pods take a minute: the rollout stays in progress
    release_patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "demo:v1.5.0"}]
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(release_patch),
        headers={"Content-Type": "application/json-patch+json"},
        timeout=10,
    ).raise_for_status()
    emulator.wait_for(lambda: len(emulator.store.objects["replicasets"]) == 4)
    refused = [f for f in make_target(emulator, tmp_path).deployable("v1.2.9") if not f.ok]
    assert len(refused) == 1
    assert "a rollout is in progress" in refused[0].message
    assert "kubectl rollout status deployment/web -n default" in refused[0].message


@pytest.mark.real_pods
def test_a_stalled_rollout_can_be_rolled_back(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    emulator.create("deployments", deployment_manifest(progressDeadlineSeconds=1))
    wait_rolled_out(emulator, "web")
    emulator.controller.unpullable.add("demo:v1.3.0")  # the bad release never pulls
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:v1.3.0"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()

    def stalled() -> bool:
        conditions = emulator.store.objects["deployments"][("default", "web")]["status"].get("conditions", [])
        return any(c["reason"] == "ProgressDeadlineExceeded" for c in conditions)

    emulator.wait_for(stalled)
    target = make_target(emulator, tmp_path)
    findings = target.deployable("v1.2.9")
    assert all(f.ok for f in findings), findings
    assert any("stalled (ProgressDeadlineExceeded" in f.message for f in findings)
    target.rollback("v1.2.9", journal)
    target.wait_ready("v1.2.9", journal)
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"
    assert {p["spec"]["containers"][0]["image"] for p in emulator.list("pods")} == {"demo:v1.2.9"}


def test_wait_ignores_a_deadline_condition_the_controller_has_not_renewed(
    emulator: Emulator, tmp_path: Path, journal: Journal
) -> None:
    emulator.create("deployments", deployment_manifest(progressDeadlineSeconds=1))
    wait_rolled_out(emulator, "web")
    emulator.controller.unpullable.add("demo:v1.3.0")
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "demo:v1.3.0"}]
    requests.patch(
        f"{emulator.url}{DEPLOY}/web", data=json.dumps(patch), headers={"Content-Type": JSON_PATCH}, timeout=10
    ).raise_for_status()
    emulator.wait_for(
        lambda: any(
            c["reason"] == "ProgressDeadlineExceeded"
            for c in emulator.store.objects["deployments"][("default", "web")]["status"].get("conditions", [])
        )
    )
    with emulator.store.cond:
        emulator.controller.stopped = True  # the status keeps describing the stalled rollout
    target = make_target(emulator, tmp_path, ready_timeout=1.0)
    target.rollback("v1.2.9", journal)
    with pytest.raises(RollbackFailed) as failure:
        target.wait_ready("v1.2.9", journal)
    assert "waiting for the deployment spec update to be observed" in str(failure.value)
    assert "exceeded its progress deadline" not in str(failure.value)
    with emulator.store.cond:
        emulator.controller.stopped = False
    make_target(emulator, tmp_path, ready_timeout=20.0).wait_ready("v1.2.9", journal)


def test_reads_are_retried_on_server_errors(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path)
    emulator.inject("GET", "/deployments/web", status=500, times=2)
    assert target.live_version() == "v1.4.0"
    emulator.inject("GET", "/deployments/web", status=500, times=3)
    with pytest.raises(RollbackFailed, match=r"cannot read deployment default/web: 500 InternalError: injected fault"):
        target.live_version()


def test_a_slow_api_server_fails_the_read_in_bounded_time(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    target = make_target(emulator, tmp_path, request_timeout=0.3)
    emulator.inject("GET", "/deployments/web", kind="delay", delay=2.0, times=3)
    started = time.monotonic()
    with pytest.raises(RollbackFailed, match="cannot read deployment default/web: the API server did not answer"):
        target.live_version()
    assert time.monotonic() - started < 15.0  # did not hang: 3 attempts of 0.3 s and 0.7 s of backoff


def test_a_write_whose_answer_is_lost_is_reread_not_resent(
    emulator: Emulator, tmp_path: Path, journal: Journal
) -> None:
    three_releases(emulator)
    emulator.inject("PATCH", "/deployments/web", kind="lost-answer")
    make_target(emulator, tmp_path).rollback("v1.2.9", journal)
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"
    sent = [p for p in emulator.patches if "json-patch" in p[1] and "dryRun" not in p[0]]
    assert len(sent) == 1
    assert journal.step_states() == {"patch-deployment": "done"}


def test_a_failed_write_is_not_resent(emulator: Emulator, tmp_path: Path, journal: Journal) -> None:
    three_releases(emulator)
    emulator.inject("PATCH", "/deployments/web", status=500)
    with pytest.raises(RollbackFailed, match=r"got no clear answer .* it was not sent again"):
        make_target(emulator, tmp_path).rollback("v1.2.9", journal)
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.4.0"
    assert len([p for p in emulator.patches if "json-patch" in p[1]]) == 0  # the fault answered before reading
    assert journal.step_states() == {"patch-deployment": "failed"}


def test_a_missing_permission_is_named_before_any_change(emulator: Emulator, tmp_path: Path) -> None:
    three_releases(emulator)
    emulator.denied.update({("patch", "apps", "deployments"), ("list", "", "pods")})
    findings = make_target(emulator, tmp_path).deployable("v1.2.9")
    refused = [f for f in findings if not f.ok]
    assert [(f.name, f.message) for f in refused] == [
        (
            "target-permissions",
            "the current user may not patch deployments.apps, list pods in namespace default "
            "(SelfSubjectAccessReview); a rollback needs them: ask for a Role that grants them",
        )
    ]
    reviews = [r for r in emulator.requests if r[1].endswith("/selfsubjectaccessreviews")]
    assert len(reviews) == 4
    assert not [p for p in emulator.patches if "json-patch" in p[1]]


def test_a_crash_looping_target_fails_with_the_pods_reason(
    emulator: Emulator, tmp_path: Path, journal: Journal
) -> None:
    emulator.create("deployments", deployment_manifest("demo:v1.0.0", progressDeadlineSeconds=1))
    wait_rolled_out(emulator, "web")
    release(emulator, "v1.2.9", "release v1.2.9")
    emulator.controller.crashing.add("demo:v1.0.0")  # the old version no longer starts (a secret it needs is gone)
    target = make_target(emulator, tmp_path, ready_timeout=30.0)
    target.rollback("v1.0.0", journal)
    with pytest.raises(RollbackFailed, match=r"exceeded its progress deadline .*CrashLoopBackOff"):
        target.wait_ready("v1.0.0", journal)
    failed = next(e for e in journal.entries() if e["status"] == "failed")
    waiting = [p for p in failed["after"]["pods"] if p["waiting"]]
    assert [p["waiting"] for p in waiting] == ["CrashLoopBackOff"]
    assert {p["images"][0] for p in failed["after"]["pods"] if p["ready"]} == {"demo:v1.2.9"}


def test_a_missing_deployment_is_named(emulator: Emulator, tmp_path: Path) -> None:
    with pytest.raises(
        RollbackFailed, match=r'cannot read deployment default/web: 404 NotFound: deployments.apps "web"'
    ):
        make_target(emulator, tmp_path).live_version()


def test_a_missing_kubeconfig_is_named(emulator: Emulator, tmp_path: Path) -> None:
    context = TargetContext("web", tmp_path, lambda line: None, lambda **kwargs: None)
    target = KubernetesTarget(KubernetesSettings(deployment="web", kubeconfig=Path("nope/kubeconfig")), context)
    with pytest.raises(RollbackFailed, match=r"cannot load the kubeconfig .*nope/kubeconfig"):
        target.live_version()


def test_an_api_server_that_is_down_fails_in_bounded_time(tmp_path: Path) -> None:
    emulator = Emulator().start()
    target = make_target(emulator, tmp_path, request_timeout=1.0)
    emulator.stop()  # nothing listens on its port any more
    started = time.monotonic()
    with pytest.raises(RollbackFailed, match="cannot read deployment default/web: the API server did not answer"):
        target.live_version()
    assert time.monotonic() - started < 15.0
