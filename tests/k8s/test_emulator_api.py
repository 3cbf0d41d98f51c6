"""The emulator's wire behaviour that the driver relies on: preconditions, Status errors, patches, watch.

Plain HTTP (requests) against the emulator on loopback, as the official client talks to it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from k8s_emulator import Emulator
from k8s_emulator.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from k8s_emulator.store import label_selector_matches
from k8s_support import deployment_manifest, image_of, revisions, wait_rolled_out

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def test_put_with_a_stale_resource_version_is_a_409_status(emulator: Emulator, web: dict[str, Any]) -> None:
    stale = requests.get(f"{emulator.url}{DEPLOY}/web", timeout=10).json()
    fresh = json.loads(json.dumps(stale))
    fresh["metadata"]["labels"]["team"] = "a"
    assert requests.put(f"{emulator.url}{DEPLOY}/web", json=fresh, timeout=10).status_code == 200
    stale["metadata"]["labels"]["team"] = "b"
    answer = requests.put(f"{emulator.url}{DEPLOY}/web", json=stale, timeout=10)
    assert answer.status_code == 409
    assert answer.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "web", "group": "apps", "kind": "deployments"},
        "code": 409,
    }
    assert emulator.get("deployments", "web")["metadata"]["labels"]["team"] == "a"


def test_json_patch_carrying_an_old_resource_version_is_refused(emulator: Emulator, web: dict[str, Any]) -> None:
    wait_rolled_out(emulator, "web")
    read_rv = emulator.get("deployments", "web")["metadata"]["resourceVersion"]
    patch = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": read_rv},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "demo:v1.3.0"},
    ]
    ok = requests.patch(f"{emulator.url}{DEPLOY}/web", data=json.dumps(patch), headers=JSON_PATCH, timeout=10)
    assert ok.status_code == 200, ok.text
    assert ok.json()["metadata"]["resourceVersion"] != read_rv
    patch[1]["value"] = "demo:v1.4.0"  # the same precondition again: the object has moved on since
    refused = requests.patch(f"{emulator.url}{DEPLOY}/web", data=json.dumps(patch), headers=JSON_PATCH, timeout=10)
    assert refused.status_code == 409
    assert refused.json()["reason"] == "Conflict"
    assert image_of(emulator.get("deployments", "web")) == "demo:v1.3.0"


def test_failed_json_patch_test_op_is_422_and_changes_nothing(emulator: Emulator, web: dict[str, Any]) -> None:
    patch = [
        {"op": "test", "path": "/spec/replicas", "value": 5},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]
    answer = requests.patch(f"{emulator.url}{DEPLOY}/web", data=json.dumps(patch), headers=JSON_PATCH, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["kind"] == "Status"
    assert emulator.get("deployments", "web")["spec"]["replicas"] == 3


def test_missing_object_is_a_404_status(emulator: Emulator) -> None:
    answer = requests.get(f"{emulator.url}{DEPLOY}/nope", timeout=10)
    assert answer.status_code == 404
    assert answer.json()["message"] == 'deployments.apps "nope" not found'
    assert answer.json()["reason"] == "NotFound"


def test_dry_run_all_answers_the_result_and_stores_nothing(emulator: Emulator, web: dict[str, Any]) -> None:
    wait_rolled_out(emulator, "web")
    before = emulator.get("deployments", "web")
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "demo:v1.3.0"}]
    answer = requests.patch(
        f"{emulator.url}{DEPLOY}/web?dryRun=All", data=json.dumps(patch), headers=JSON_PATCH, timeout=10
    )
    assert answer.status_code == 200
    assert image_of(answer.json()) == "demo:v1.3.0"
    after = emulator.get("deployments", "web")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert image_of(after) == "demo:v1.2.9"


def test_invalid_deployment_is_a_422_naming_the_field(emulator: Emulator) -> None:
    manifest = deployment_manifest()
    manifest["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    answer = requests.post(f"{emulator.url}{DEPLOY}", json=manifest, timeout=10)
    assert answer.status_code == 422
    assert "`selector` does not match template `labels`" in answer.json()["message"]


def test_list_by_label_and_field_selector(emulator: Emulator, web: dict[str, Any]) -> None:
    other = deployment_manifest()
    other["metadata"]["name"] = "api"
    other["spec"]["selector"]["matchLabels"] = other["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    emulator.create("deployments", other)
    by_field = requests.get(f"{emulator.url}{DEPLOY}", params={"fieldSelector": "metadata.name=api"}, timeout=10)
    assert [d["metadata"]["name"] for d in by_field.json()["items"]] == ["api"]
    assert by_field.json()["kind"] == "DeploymentList"
    emulator.wait_for(lambda: len(emulator.store.objects["pods"]) == 6)
    pods = requests.get(
        f"{emulator.url}/api/v1/namespaces/default/pods", params={"labelSelector": "app in (web)"}, timeout=10
    ).json()["items"]
    assert len(pods) == 3
    assert {p["metadata"]["labels"]["app"] for p in pods} == {"web"}


def test_watch_streams_the_changes_after_a_list(emulator: Emulator, web: dict[str, Any]) -> None:
    wait_rolled_out(emulator, "web")
    listed = requests.get(f"{emulator.url}{DEPLOY}", params={"fieldSelector": "metadata.name=web"}, timeout=10)
    rv = listed.json()["metadata"]["resourceVersion"]
    patch = {"spec": {"replicas": 2}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "1", "fieldSelector": "metadata.name=web"}
    with requests.get(f"{emulator.url}{DEPLOY}", params=params, stream=True, timeout=10) as stream:
        events = [json.loads(line) for line in stream.iter_lines() if line]
    assert events, "the watch sent no event"
    assert {e["type"] for e in events} == {"MODIFIED"}
    assert events[0]["object"]["spec"]["replicas"] == 2
    assert all(int(e["object"]["metadata"]["resourceVersion"]) > int(rv) for e in events)


def test_old_replicasets_beyond_the_history_limit_are_deleted(emulator: Emulator) -> None:
    emulator.create("deployments", deployment_manifest(revisionHistoryLimit=2))
    wait_rolled_out(emulator, "web")  # else the controller may first see v1.3.0: no v1.2.9 revision at all
    for version in ("v1.3.0", "v1.4.0", "v1.5.0"):
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": f"demo:{version}"}]
        requests.patch(
            f"{emulator.url}{DEPLOY}/web", data=json.dumps(patch), headers=JSON_PATCH, timeout=10
        ).raise_for_status()
        wait_rolled_out(emulator, "web")
    emulator.wait_for(lambda: len(emulator.store.objects["replicasets"]) == 3)
    assert sorted(revisions(emulator)) == [2, 3, 4]


def test_scale_subresource(emulator: Emulator, web: dict[str, Any]) -> None:
    answer = requests.patch(
        f"{emulator.url}{DEPLOY}/web/scale",
        data=json.dumps({"spec": {"replicas": 1}}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json()["kind"] == "Scale"
    emulator.wait_for(lambda: len(emulator.store.objects["pods"]) == 1)


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    pod_spec = {"containers": [{"name": "app", "image": "a:1", "env": [{"name": "X", "value": "1"}]}, {"name": "side"}]}
    patched = strategic_merge_patch(
        {"spec": pod_spec},
        {"spec": {"$setElementOrder/containers": [{"name": "app"}], "containers": [{"name": "app", "image": "a:2"}]}},
    )
    assert patched["spec"]["containers"] == [
        {"name": "app", "image": "a:2", "env": [{"name": "X", "value": "1"}]},
        {"name": "side"},
    ]
    deleted = strategic_merge_patch(
        {"spec": pod_spec}, {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["app"]


def test_merge_patch_replaces_lists_and_deletes_with_null() -> None:
    patched = merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None}, "l": [3]})
    assert patched == {"a": {"c": 2}, "l": [3]}


def test_json_patch_operations() -> None:
    doc = {"metadata": {"annotations": {"a/b": "1"}}, "list": [1, 2]}
    patched = json_patch(
        doc,
        [
            {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
            {"op": "add", "path": "/list/-", "value": 3},
            {"op": "remove", "path": "/list/0"},
            {"op": "copy", "from": "/list", "path": "/copy"},
        ],
    )
    assert patched == {"metadata": {"annotations": {"a/b": "2"}}, "list": [2, 3], "copy": [2, 3]}
    assert doc["list"] == [1, 2]
    with pytest.raises(PatchError, match="missing key"):
        json_patch(doc, [{"op": "replace", "path": "/nope/x", "value": 1}])


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("app=web", True),
        ("app==web,tier!=db", True),
        ("app in (api, web)", True),
        ("app notin (web)", False),
        ("tier", False),
        ("!tier", True),
        ("app=web,tier=db", False),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert label_selector_matches(selector, {"app": "web"}) is matches


def test_service_answers_as_the_ready_pods(emulator: Emulator, web: dict[str, Any]) -> None:
    service = emulator.service({"app": "web"})
    assert {requests.get(f"{service}/version", timeout=10).text for _ in range(6)} == {"v1.2.9"}
    assert requests.get(f"{service}/health", timeout=10).text == "ok"
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps({"spec": {"replicas": 0}}),
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    ).raise_for_status()
    emulator.wait_for(lambda: not emulator.store.objects["pods"])
    assert requests.get(f"{service}/version", timeout=10).status_code == 503
