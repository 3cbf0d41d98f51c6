"""The kubernetes driver's census: one replica per pod, read from the API server, and the
controller's own reasons a rollout is unfinished; ``judge_census`` passes only when every serving
pod runs the version.

A rollout is left half way by freezing the emulator's controller at the right moment, or by its
``ready_limit`` switch (pods of an image beyond the limit keep failing their readiness probe, so the
rolling update stops with an old pod still serving, the issue's case).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from deployments import read_evidence
from k8s_emulator import Emulator
from k8s_support import deployment_manifest, make_target, wait_rolled_out, write_kubeconfig

from rollback_harness.rollback.census import Census, Replica, judge_census
from rollback_harness.rollback.errors import RollbackFailed

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def set_image(emulator: Emulator, version: str) -> None:
    """What ``kubectl set image`` sends: a strategic merge patch of the container's image."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()


def ready_images(emulator: Emulator) -> dict[str, list[str]]:
    """Image -> names of its ready pods (call with the store locked)."""
    ready: dict[str, list[str]] = {}
    for pod in emulator.store.objects["pods"].values():
        if emulator.controller.is_ready(pod):
            ready.setdefault(pod["spec"]["containers"][0]["image"], []).append(pod["metadata"]["name"])
    return ready


def by_name(census: Census) -> dict[str, Replica]:
    return {replica.name: replica for replica in census.replicas}


def test_a_rolled_out_deployment_passes(emulator: Emulator, web: dict[str, Any], tmp_path: Path) -> None:
    census = make_target(emulator, tmp_path).census()
    pods = sorted(f"pod {p['metadata']['name']}" for p in emulator.list("pods"))
    assert census.unit == "pod"
    assert [replica.name for replica in census.replicas] == pods and len(pods) == 3
    assert {(r.version, r.serving, r.state) for r in census.replicas} == {("v1.2.9", True, "ready")}
    (rs,) = emulator.list("replicasets")
    assert {r.detail for r in census.replicas} == {
        f"replicaset {rs['metadata']['name']} (revision 1), node emulator-node"
    }
    assert census.problems == ()
    assert census.facts == {
        "deployment": "deployment default/web",
        "spec_replicas": 3,
        "status_replicas": 3,
        "updated_replicas": 3,
        "ready_replicas": 3,
        "available_replicas": 3,
        "generation": 1,
        "observed_generation": 1,
        "revision": 1,
        "replicaset": rs["metadata"]["name"],
        "paused": False,
    }
    verdict = judge_census(census, "v1.2.9")
    assert verdict.status == "passed", verdict.summary
    assert verdict.summary == "every serving pod runs v1.2.9: 3 of 3"
    assert judge_census(census, "v1.3.0").status == "failed"
    json.dumps(verdict.measured)  # plain builtins, for the evidence


def test_a_rollout_half_way_names_the_old_pods(emulator: Emulator, web: dict[str, Any], tmp_path: Path) -> None:
    emulator.controller.ready_delay = 0.3  # each new pod takes a while: the half-way state lasts
    (old_rs,) = emulator.list("replicasets")
    set_image(emulator, "v1.3.0")
    frozen: dict[str, list[str]] = {}

    def half_way() -> bool:
        ready = ready_images(emulator)
        if ready.get("demo:v1.3.0") and ready.get("demo:v1.2.9"):
            emulator.controller.stopped = True  # the controller stops here (the store is locked)
            frozen.update(ready)
            return True
        return False

    emulator.wait_for(half_way, timeout=20)
    census = make_target(emulator, tmp_path).census()
    old_pods = sorted(frozen["demo:v1.2.9"])
    serving_old = sorted(r.name for r in census.serving() if r.version == "v1.2.9")
    assert serving_old == [f"pod {name}" for name in old_pods]
    verdict = judge_census(census, "v1.3.0")
    assert verdict.status == "failed"
    for name in old_pods:
        assert f"pod {name} (v1.2.9)" in verdict.summary
    assert any(p.startswith("updatedReplicas ") and p.endswith("where spec.replicas is 3") for p in census.problems)
    old_ready = len(old_pods)
    assert (
        f"old replicaset {old_rs['metadata']['name']} (revision 1, v1.2.9) still has {old_ready} ready "
        f"pod{'s' if old_ready != 1 else ''}"
    ) in census.problems
    assert census.facts["revision"] == 2
    assert census.facts["replicaset"] != old_rs["metadata"]["name"]


def test_an_unobserved_spec_change_is_a_problem(emulator: Emulator, web: dict[str, Any], tmp_path: Path) -> None:
    with emulator.store.cond:
        emulator.controller.stopped = True  # the controller-manager is down
    set_image(emulator, "v1.3.0")
    census = make_target(emulator, tmp_path).census()
    assert "the controller has not observed generation 2 yet (observedGeneration 1)" in census.problems
    assert "no ReplicaSet has the deployment's template yet" in census.problems
    verdict = judge_census(census, "v1.2.9")  # every pod still runs v1.2.9, but the platform is not done
    assert verdict.status == "failed"
    assert verdict.summary.startswith("every serving pod runs v1.2.9, but the controller has not observed generation 2")


def test_a_stalled_rollout_names_the_deadline_and_the_pods_reason(emulator: Emulator, tmp_path: Path) -> None:
    emulator.create("deployments", deployment_manifest(progressDeadlineSeconds=1))
    wait_rolled_out(emulator, "web")
    emulator.controller.unpullable.add("demo:v1.3.0")
    set_image(emulator, "v1.3.0")

    def stalled() -> bool:
        conditions = emulator.store.objects["deployments"][("default", "web")]["status"].get("conditions", [])
        return any(c["reason"] == "ProgressDeadlineExceeded" for c in conditions)

    emulator.wait_for(stalled, timeout=20)
    census = make_target(emulator, tmp_path).census()
    assert any(
        p.startswith('deployment "web" exceeded its progress deadline (ProgressDeadlineExceeded: ')
        for p in census.problems
    )
    (stuck,) = [r for r in census.replicas if r.version == "v1.3.0"]
    assert (stuck.serving, stuck.state) == (False, "pending")
    assert stuck.detail.endswith("not ready: app: ImagePullBackOff")
    verdict = judge_census(census, "v1.2.9")
    assert verdict.status == "failed"
    assert verdict.summary.startswith("every serving pod runs v1.2.9, but ")  # the old pods still serve
    assert "exceeded its progress deadline" in verdict.summary


def test_a_pod_outside_the_replicasets_that_matches_the_selector_is_counted(
    emulator: Emulator, web: dict[str, Any], tmp_path: Path
) -> None:
    # Started by hand with the app's labels: the Service routes to it, no ReplicaSet owns it.
    emulator.create(
        "pods",
        {
            "metadata": {"name": "web-debug", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "demo:v1.3.0"}]},
        },
    )
    emulator.wait_for(lambda: emulator.controller.is_ready(emulator.store.objects["pods"][("default", "web-debug")]))
    census = make_target(emulator, tmp_path).census()
    stray = by_name(census)["pod web-debug"]
    assert (stray.version, stray.serving) == ("v1.3.0", True)
    assert stray.detail.startswith("not a pod of this deployment's ReplicaSets (owner: no controller)")
    verdict = judge_census(census, "v1.2.9")
    assert verdict.status == "failed"
    assert "1 pod of 4 serving still on another version: pod web-debug (v1.3.0)" in verdict.summary


def test_a_read_the_api_server_refuses_is_a_clear_failure(
    emulator: Emulator, web: dict[str, Any], tmp_path: Path
) -> None:
    emulator.inject("GET", "/api/v1/namespaces/default/pods", status=500, times=3)
    with pytest.raises(RollbackFailed) as failure:
        make_target(emulator, tmp_path).census()
    assert str(failure.value).startswith("cannot read the pods of deployment default/web: 500 InternalError")


@pytest.mark.parametrize(
    ("status", "deleted", "state", "serving", "says"),
    [
        (
            {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            True,
            "terminating",
            False,
            "deleted at 2026-01-01T00:00:00Z",
        ),
        (
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/1 nodes are available: 1 Insufficient cpu.",
                    }
                ],
            },
            False,
            "pending",
            False,
            "not ready: PodScheduled is False (Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.)",
        ),
        (
            {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{"name": "app", "ready": False, "state": {"running": {}}}],
            },
            False,
            "not ready",
            False,
            "not ready: app: running, not ready",
        ),
        (
            {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "True"}]},
            False,
            "succeeded",
            False,
            "not ready: phase Succeeded",
        ),
    ],
    ids=["terminating", "unschedulable", "probe-failing", "succeeded"],
)
def test_only_running_ready_pods_that_stay_serve(
    emulator: Emulator,
    tmp_path: Path,
    status: dict[str, Any],
    deleted: bool,
    state: str,
    serving: bool,
    says: str,
) -> None:
    """States the emulator does not reach (it deletes pods at once and schedules every one), as data."""
    pod: dict[str, Any] = {
        "metadata": {
            "name": "web-abc",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "x", "uid": "u1", "controller": True}],
        },
        "spec": {"containers": [{"name": "app", "image": "registry:5000/demo:v1.2.9@sha256:00"}], "nodeName": "n1"},
        "status": status,
    }
    if deleted:
        pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    rs = {"metadata": {"name": "web-7c9f", "uid": "u1", "annotations": {"deployment.kubernetes.io/revision": "4"}}}
    replica = make_target(emulator, tmp_path).pod_replica(pod, {"u1": rs})
    assert (replica.name, replica.version, replica.state, replica.serving) == ("pod web-abc", "v1.2.9", state, serving)
    assert replica.detail.startswith("replicaset web-7c9f (revision 4), ")
    assert says in replica.detail


def one_old_pod_behind_the_service(emulator: Emulator) -> tuple[str, str]:
    """The issue's deployment: a rollback to v1.2.9 whose rolling update stopped with one v1.3.0 pod of
    three still ready behind the Service (the third v1.2.9 pod never passes its readiness probe).
    Returns that pod's name and the Service's URL."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    set_image(emulator, "v1.3.0")
    wait_rolled_out(emulator, "web")
    service = emulator.service({"app": "web"})
    emulator.controller.ready_limit["demo:v1.2.9"] = 2
    set_image(emulator, "v1.2.9")  # what the rollback's patch does: the template of revision 1

    def stuck() -> bool:
        ready = ready_images(emulator)
        return len(ready.get("demo:v1.2.9", [])) == 2 and len(ready.get("demo:v1.3.0", [])) == 1

    emulator.wait_for(stuck, timeout=30)
    (old_pod,) = ready_images(emulator)["demo:v1.3.0"]
    answers = [requests.get(f"{service}/version", timeout=10).text.strip() for _ in range(12)]
    assert set(answers) == {"v1.2.9", "v1.3.0"}  # the Service really sends one request in three to it
    return old_pod, service


@pytest.mark.real_pods
def test_one_pod_of_three_left_on_the_old_image_fails_and_is_named(emulator: Emulator, tmp_path: Path) -> None:
    """The issue: ``judge_census(target.census(), "v1.2.9")`` fails and names the v1.3.0 pod."""
    old_pod, _ = one_old_pod_behind_the_service(emulator)
    census = make_target(emulator, tmp_path).census()
    verdict = judge_census(census, "v1.2.9")
    assert verdict.status == "failed"
    assert verdict.summary.startswith(f"1 pod of 3 serving still on another version: pod {old_pod} (v1.3.0)")
    assert by_name(census)[f"pod {old_pod}"].detail.startswith("replicaset web-")
    assert any(p.startswith("old replicaset web-") and "v1.3.0) still has 1 ready pod" in p for p in census.problems)
    (waiting,) = [r for r in census.replicas if not r.serving]
    assert (waiting.version, waiting.state) == ("v1.2.9", "not ready")
    assert waiting.detail.endswith("not ready: app: running, not ready")


def gate_config(pytester: pytest.Pytester, emulator: Emulator, service: str) -> Path:
    kubeconfig = write_kubeconfig(pytester.path / "kubeconfig", emulator.url)
    config = pytester.path / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "web"
base_url = "{service}"
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


@pytest.mark.real_pods
def test_the_verify_gate_fails_and_verify_replicas_names_the_pod(pytester: pytest.Pytester, emulator: Emulator) -> None:
    """End to end: ``pytest --rollback-gate verify`` against the issue's deployment."""
    old_pod, service = one_old_pod_behind_the_service(emulator)
    config = gate_config(pytester, emulator, service)
    options = ("-p", "no:cacheprovider", f"--rollback-config={config}", f"--report-dir={pytester.path / 'reports'}")
    collected = pytester.runpytest(*options, "--rollback-gate", "verify", "--co", "-q")
    collected.stdout.fnmatch_lines(["*verify-replicas*"])
    result = pytester.runpytest(*options, "--rollback-gate", "verify", "--rollback-expect-version", "v1.2.9")
    assert result.ret != 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ verify-replicas _*",
            f"1 pod of 3 serving still on another version: pod {old_pod} (v1.3.0)*",
            "FAILED *::verify-replicas - *",
        ]
    )
    evidence: dict[str, Any] = read_evidence(pytester.path / "reports")
    assert f"pod {old_pod} (v1.3.0)" in json.dumps(evidence)
