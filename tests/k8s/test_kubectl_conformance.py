"""The real kubectl against the API emulator: what it prints, and what the emulator's state is after.

Each test starts from deployment ``web`` (3 replicas of demo:v1.2.9, revision 1) and asserts the
revisions, templates and annotations the real deployment controller would leave, and kubectl's own
messages (../shared/KUBERNETES.md quotes them).
"""

from __future__ import annotations

from typing import Any

from k8s_emulator import Emulator
from k8s_support import Kubectl, image_of, revisions, wait_rolled_out, written

REVISION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE = "kubernetes.io/change-cause"
HASH = "pod-template-hash"


def set_image(kubectl: Kubectl, emulator: Emulator, version: str, cause: str | None = None) -> None:
    """``kubectl set image``, then the change-cause on the deployment; waits until the rollout is done.

    The controller copies the deployment's annotations to its current ReplicaSet, so the cause is
    annotated after the new ReplicaSet exists (before, it would land on the old revision too).
    """
    kubectl("set", "image", "deployment/web", f"app=demo:{version}")
    wait_rolled_out(emulator, "web")
    if cause is not None:
        kubectl("annotate", "deployment/web", f"{CHANGE_CAUSE}={cause}", "--overwrite")
        emulator.wait_for(lambda: any(cause == causes(rs) for rs in emulator.store.objects["replicasets"].values()))


def causes(rs: dict[str, Any]) -> str | None:
    return (rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)


def template_without_hash(rs: dict[str, Any]) -> dict[str, Any]:
    template: dict[str, Any] = rs["spec"]["template"]
    labels = {k: v for k, v in template["metadata"]["labels"].items() if k != HASH}
    return {**template, "metadata": {**template["metadata"], "labels": labels}}


def test_get_deploy_wide_prints_the_server_columns(kubectl: Kubectl, web: dict[str, Any]) -> None:
    out = kubectl("get", "deploy", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    name, ready, updated, available, _age, containers, images, selector = out[1].split()
    assert (name, ready, updated, available) == ("web", "3/3", "3", "3")
    assert (containers, images, selector) == ("app", "demo:v1.2.9", "app=web")


def test_get_pods_and_replicasets_by_label(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    pods = kubectl("get", "pods", "-l", "app=web", "-o", "name").stdout.split()
    (rs,) = revisions(emulator).values()
    assert len(pods) == 3
    assert all(p.startswith(f"pod/{rs['metadata']['name']}-") for p in pods)
    assert kubectl("get", "pods", "-l", "app=other", "-o", "name").stdout.split() == []
    rs_lines = kubectl("get", "rs", "-o", "wide").stdout.splitlines()
    assert rs_lines[1].split()[:4] == [rs["metadata"]["name"], "3", "3", "3"]


def test_set_image_makes_a_new_revision(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    out = kubectl("set", "image", "deployment/web", "app=demo:v1.3.0").stdout
    assert out.strip() == "deployment.apps/web image updated"
    assert any(
        method == "PATCH" and ctype == "application/strategic-merge-patch+json"
        for method, _, ctype in emulator.requests
    )
    wait_rolled_out(emulator, "web")
    by_revision = revisions(emulator)
    assert sorted(by_revision) == [1, 2]
    assert image_of(by_revision[1]) == "demo:v1.2.9"
    assert image_of(by_revision[2]) == "demo:v1.3.0"
    assert by_revision[1]["spec"]["replicas"] == 0
    assert by_revision[2]["spec"]["replicas"] == 3
    deployment = emulator.get("deployments", "web")
    assert deployment["metadata"]["annotations"][REVISION] == "2"
    assert deployment["metadata"]["generation"] == 2
    assert deployment["status"]["observedGeneration"] == 2
    images = {p["spec"]["containers"][0]["image"] for p in emulator.list("pods")}
    assert images == {"demo:v1.3.0"}


def test_rollout_history_lists_revisions_and_change_causes(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    set_image(kubectl, emulator, "v1.3.0", cause="bump to v1.3.0")
    out = kubectl("rollout", "history", "deployment/web").stdout
    lines = [line.rstrip() for line in out.splitlines() if line.strip()]
    assert lines == ["deployment.apps/web", "REVISION  CHANGE-CAUSE", "1         <none>", "2         bump to v1.3.0"]
    detail = kubectl("rollout", "history", "deployment/web", "--revision=1").stdout
    assert "demo:v1.2.9" in detail
    assert "demo:v1.3.0" not in detail


def test_undo_goes_back_to_the_previous_revision(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    set_image(kubectl, emulator, "v1.3.0", cause="bump to v1.3.0")
    first_rs = revisions(emulator)[1]
    out = kubectl("rollout", "undo", "deployment/web").stdout
    assert out.strip() == "deployment.apps/web rolled back"
    assert any(method == "PATCH" and ctype == "application/json-patch+json" for method, _, ctype in emulator.requests)
    wait_rolled_out(emulator, "web")
    deployment = emulator.get("deployments", "web")
    by_revision = revisions(emulator)
    # The old ReplicaSet is reused: it becomes revision 3 and remembers it was revision 1.
    assert sorted(by_revision) == [2, 3]
    assert by_revision[3]["metadata"]["uid"] == first_rs["metadata"]["uid"]
    assert by_revision[3]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert deployment["spec"]["template"] == template_without_hash(by_revision[3])
    assert image_of(deployment) == "demo:v1.2.9"
    assert deployment["metadata"]["annotations"][REVISION] == "3"
    # The target's annotations came along: revision 1 had no change-cause, so the deployment has none now.
    assert CHANGE_CAUSE not in deployment["metadata"]["annotations"]
    history = kubectl("rollout", "history", "deployment/web").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]


def test_undo_twice_toggles_between_the_last_two(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    set_image(kubectl, emulator, "v1.3.0")
    kubectl("rollout", "undo", "deployment/web")
    wait_rolled_out(emulator, "web")
    kubectl("rollout", "undo", "deployment/web")
    wait_rolled_out(emulator, "web")
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == "demo:v1.3.0"
    assert deployment["metadata"]["annotations"][REVISION] == "4"


def test_undo_to_revision_restores_that_template_and_its_annotations(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    set_image(kubectl, emulator, "v1.3.0", cause="release v1.3.0")
    set_image(kubectl, emulator, "v1.4.0", cause="release v1.4.0")
    assert sorted(revisions(emulator)) == [1, 2, 3]
    out = kubectl("rollout", "undo", "deployment/web", "--to-revision=2").stdout
    assert out.strip() == "deployment.apps/web rolled back"
    wait_rolled_out(emulator, "web")
    deployment = emulator.get("deployments", "web")
    by_revision = revisions(emulator)
    assert sorted(by_revision) == [1, 3, 4]
    assert image_of(by_revision[4]) == "demo:v1.3.0"
    assert deployment["spec"]["template"] == template_without_hash(by_revision[4])
    assert deployment["metadata"]["annotations"][REVISION] == "4"
    assert deployment["metadata"]["annotations"][CHANGE_CAUSE] == "release v1.3.0"
    assert {p["spec"]["containers"][0]["image"] for p in emulator.list("pods")} == {"demo:v1.3.0"}


def test_undo_to_a_missing_revision_is_refused(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    set_image(kubectl, emulator, "v1.3.0")
    before = emulator.get("deployments", "web")
    result = kubectl("rollout", "undo", "deployment/web", "--to-revision=7", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: unable to find specified revision 7 in history"
    assert written(emulator.get("deployments", "web")) == written(before)


def test_undo_without_history_is_refused(kubectl: Kubectl, web: dict[str, Any]) -> None:
    result = kubectl("rollout", "undo", "deployment/web", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: no rollout history found for deployment "web"'


def test_undo_to_the_current_template_is_skipped(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    set_image(kubectl, emulator, "v1.3.0")
    before = emulator.get("deployments", "web")
    result = kubectl("rollout", "undo", "deployment/web", "--to-revision=2")
    assert result.stdout.strip() == "deployment.apps/web skipped rollback (current template already matches revision 2)"
    after = emulator.get("deployments", "web")
    assert written(after) == written(before)


def test_paused_deployment_refuses_undo_until_resumed(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    set_image(kubectl, emulator, "v1.3.0")
    assert kubectl("rollout", "pause", "deployment/web").stdout.strip() == "deployment.apps/web paused"
    assert emulator.get("deployments", "web")["spec"]["paused"] is True
    result = kubectl("rollout", "undo", "deployment/web", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume' and try again"
    )
    deployment = emulator.get("deployments", "web")
    assert image_of(deployment) == "demo:v1.3.0"
    assert deployment["metadata"]["annotations"][REVISION] == "2"
    assert sorted(revisions(emulator)) == [1, 2]
    kubectl("rollout", "resume", "deployment/web")
    kubectl("rollout", "undo", "deployment/web")
    wait_rolled_out(emulator, "web")
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"


def test_paused_deployment_does_not_roll_out_a_new_template(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    kubectl("rollout", "pause", "deployment/web")
    kubectl("set", "image", "deployment/web", "app=demo:v1.3.0")
    emulator.wait_for(
        lambda: emulator.store.objects["deployments"][("default", "web")]["status"]["observedGeneration"] == 3
    )
    assert sorted(revisions(emulator)) == [1]
    progressing = {c["type"]: c for c in emulator.get("deployments", "web")["status"]["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    kubectl("rollout", "resume", "deployment/web")
    wait_rolled_out(emulator, "web")
    assert sorted(revisions(emulator)) == [1, 2]


def test_rollout_status_follows_a_rollout_to_the_end(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    emulator.controller.ready_delay = 0.5  # each new pod is ready half a second after it is made
    kubectl("set", "image", "deployment/web", "app=demo:v1.3.0")
    result = kubectl("rollout", "status", "deployment/web", "--timeout=30s")
    lines = result.stdout.splitlines()
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert any(line.startswith('Waiting for deployment "web" rollout to finish:') for line in lines[:-1])
    deployment = emulator.get("deployments", "web")
    assert deployment["status"]["updatedReplicas"] == deployment["status"]["availableReplicas"] == 3
    assert any("watch=true" in path for method, path, _ in emulator.requests if method == "GET")


def test_rollout_status_times_out_on_a_stalled_rollout(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    emulator.controller.unpullable.add("demo:v9.9.9")
    kubectl("set", "image", "deployment/web", "app=demo:v9.9.9")
    result = kubectl("rollout", "status", "deployment/web", "--timeout=2s", check=False)
    assert result.returncode == 1
    assert "error: timed out waiting for the condition" in result.stderr
    assert 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...' in (
        result.stdout
    )
    # Max surge 1, max unavailable 0: one new pod that never pulls, the three old ones still serve.
    reasons = {
        p["spec"]["containers"][0]["image"]: p["status"]["containerStatuses"][0]["state"] for p in emulator.list("pods")
    }
    assert reasons["demo:v9.9.9"] == {
        "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "demo:v9.9.9"'}
    }
    assert sum(1 for p in emulator.list("pods") if p["spec"]["containers"][0]["image"] == "demo:v1.2.9") == 3


def test_rollout_status_reports_an_exceeded_progress_deadline(
    kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]
) -> None:
    emulator.controller.unpullable.add("demo:v9.9.9")
    kubectl("patch", "deployment/web", "-p", '{"spec":{"progressDeadlineSeconds":1}}')
    kubectl("set", "image", "deployment/web", "app=demo:v9.9.9")
    result = kubectl("rollout", "status", "deployment/web", "--timeout=30s", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: deployment "web" exceeded its progress deadline'
    conditions = {c["type"]: c for c in emulator.get("deployments", "web")["status"]["conditions"]}
    assert (conditions["Progressing"]["status"], conditions["Progressing"]["reason"]) == (
        "False",
        "ProgressDeadlineExceeded",
    )


def test_get_pods_shows_a_crash_loop(kubectl: Kubectl, emulator: Emulator, web: dict[str, Any]) -> None:
    emulator.controller.crashing.add("demo:v1.3.0")
    kubectl("set", "image", "deployment/web", "app=demo:v1.3.0")

    def restarted() -> bool:
        return any(
            s.get("restartCount", 0) >= 1
            for p in emulator.store.objects["pods"].values()
            for s in (p.get("status") or {}).get("containerStatuses", [])
        )

    emulator.wait_for(restarted)
    rows = [line.split() for line in kubectl("get", "pods").stdout.splitlines()[1:]]
    crashing = [row for row in rows if row[2] == "CrashLoopBackOff"]
    assert len(crashing) == 1  # max surge 1, max unavailable 0: one new pod, the old three serve
    assert crashing[0][1] == "0/1"
    assert int(crashing[0][3]) >= 1
    assert sum(1 for row in rows if row[2] == "Running") == 3
