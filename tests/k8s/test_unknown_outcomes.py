"""What the Kubernetes driver says when the API server does not answer: only what it knows.

An API server that is down leaves the history unknown, not empty. A patch whose answer timed out on
the client side may still be applied by the server: it is read again until it is known to be applied
or known not to be (the resourceVersion it is preconditioned on has moved on), else reported unknown.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import requests
from k8s_emulator import Emulator
from k8s_support import deployment_manifest, image_of, make_target, wait_rolled_out, write_kubeconfig

from rollback_harness.rollback.errors import RollbackFailed
from rollback_harness.rollback.journal import Journal

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def two_releases(emulator: Emulator) -> None:
    """Revisions 1 (v1.2.9) and 2 (v1.4.0, live)."""
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "demo:v1.4.0"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    wait_rolled_out(emulator, "web")


def undo_patches(emulator: Emulator) -> list[object]:
    """The harness's JSON patches the emulator has processed (a delayed one only once its delay is over)."""
    return [p for p in emulator.patches if "json-patch" in p[1] and "dryRun" not in p[0]]


def write_step(journal: Journal) -> dict[str, object]:
    return next(e for e in reversed(journal.entries()) if e["step"] == "patch-deployment")


def test_preflight_with_the_api_server_down_says_the_history_could_not_be_read(pytester: pytest.Pytester) -> None:
    emulator = Emulator().start()
    kubeconfig = write_kubeconfig(pytester.path / "kubeconfig", emulator.url)
    service = emulator.service({"app": "web"})
    emulator.stop()  # nothing answers on either port any more
    config = pytester.path / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "web"
base_url = "{service}"
timeout = "1s"

[targets.web]
kind = "kubernetes"
kubeconfig = "{kubeconfig.name}"
deployment = "web"
request_timeout = "1s"
"""
    )

    result = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--rollback-to",
        "v1.2.9",
        "--rollback-yes",
    )

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*cannot tell whether v1.2.9 is in history: the history could not be read: "
            "cannot read deployment default/web: the API server did not answer*"
        ]
    )
    assert "is not in history" not in result.stdout.str()
    assert "available: none" not in result.stdout.str()


def test_a_timed_out_write_that_lands_while_read_again_is_applied(emulator: Emulator, tmp_path: Path) -> None:
    two_releases(emulator)
    # The answer comes after the client gave up (2 s), the write lands before the re-reading ends (4 s).
    emulator.inject("PATCH", "/deployments/web", kind="delay", delay=2.6)
    journal = Journal(tmp_path / "journal.jsonl")
    target = make_target(emulator, tmp_path, request_timeout=2.0)

    target.rollback("v1.2.9", journal)

    assert image_of(emulator.get("deployments", "web")) == "demo:v1.2.9"
    assert len(undo_patches(emulator)) == 1  # read again, never sent again
    step = write_step(journal)
    assert (step["status"], step["write"]) == ("done", "applied (seen by reading the deployment again)")


def test_a_timed_out_write_still_unseen_is_unknown_not_failed_to_apply(emulator: Emulator, tmp_path: Path) -> None:
    two_releases(emulator)
    emulator.inject("PATCH", "/deployments/web", kind="delay", delay=4.0)
    journal = Journal(tmp_path / "journal.jsonl")
    target = make_target(emulator, tmp_path, request_timeout=1.0)

    with pytest.raises(RollbackFailed) as caught:
        target.rollback("v1.2.9", journal)

    message = str(caught.value)
    assert "the patch of deployment default/web to revision 1 (v1.2.9) got no clear answer (no answer: " in message
    assert "whether it was applied is unknown: read again for 1.0 s, the deployment is unchanged" in message
    assert "running v1.4.0 (revision 2)), and the API server may still apply it; it was not sent again" in message
    assert "kubectl rollout history deployment/web -n default" in message
    assert write_step(journal)["write"] == "unknown"
    # And so it was right not to call it "not applied": the server applies it once its delay is over.
    emulator.wait_for(lambda: image_of(emulator.store.objects["deployments"][("default", "web")]) == "demo:v1.2.9")
    assert len(undo_patches(emulator)) == 1


def test_a_timed_out_write_overtaken_by_another_is_known_not_applied(emulator: Emulator, tmp_path: Path) -> None:
    two_releases(emulator)
    emulator.inject("PATCH", "/deployments/web", kind="delay", delay=3.0)
    journal = Journal(tmp_path / "journal.jsonl")
    target = make_target(emulator, tmp_path, request_timeout=1.0)

    def another_write_meanwhile() -> None:
        """Once the harness's patch is on its way, someone annotates the deployment (a new resourceVersion)."""
        deadline = time.monotonic() + 10
        while not any(m == "PATCH" and "json-patch" in c for m, _, c in emulator.requests):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        requests.patch(
            f"{emulator.url}{DEPLOY}/web",
            data=json.dumps({"metadata": {"annotations": {"team": "payments"}}}),
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=10,
        ).raise_for_status()

    other = threading.Thread(target=another_write_meanwhile)
    other.start()
    try:
        with pytest.raises(RollbackFailed) as caught:
            target.rollback("v1.2.9", journal)
    finally:
        other.join(timeout=15)

    message = str(caught.value)
    assert "it was not applied: the deployment moved on from resourceVersion" in message, message
    assert "the deployment runs v1.4.0 (revision 2); it was not sent again" in message
    assert write_step(journal)["write"] == "not applied"
    # The delayed patch reaches the server after all, and its precondition refuses it.
    emulator.wait_for(lambda: len(undo_patches(emulator)) == 1)
    wait_rolled_out(emulator, "web")
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.4.0"
