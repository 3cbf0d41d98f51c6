"""The emulator with real pods: each ready pod is a demo app process at its image's version, the
Service a round-robin proxy over them; pods that go (scale down, delete, emulator stop) leave no process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from k8s_emulator import Emulator
from k8s_support import deployment_manifest, wait_rolled_out

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
pytestmark = pytest.mark.real_pods


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)  # poll interval, bounded by the deadline


def set_image(emulator: Emulator, version: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}}}
    requests.patch(
        f"{emulator.url}{DEPLOY}/web",
        data=json.dumps(patch),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    ).raise_for_status()


def pod_ports(emulator: Emulator) -> dict[str, int | None]:
    assert emulator.pod_processes is not None
    return {p["metadata"]["name"]: emulator.pod_processes.port_of(p["metadata"]["uid"]) for p in emulator.list("pods")}


def versions_from(url: str, times: int = 12) -> list[str]:
    return [requests.get(f"{url}/version", timeout=10).text.strip() for _ in range(times)]


@pytest.fixture
def web(emulator: Emulator) -> dict[str, Any]:
    emulator.create("deployments", deployment_manifest())
    wait_rolled_out(emulator, "web")
    return emulator.get("deployments", "web")


def test_each_ready_pod_is_a_demo_app_process_at_its_version(emulator: Emulator, web: dict[str, Any]) -> None:
    ports = pod_ports(emulator)
    assert len(ports) == 3 and len(set(ports.values())) == 3
    for port in ports.values():
        answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert answer.json() == {"status": "ok", "version": "v1.2.9"}
    service = emulator.service({"app": "web"})
    assert set(versions_from(service)) == {"v1.2.9"}
    assert requests.get(f"{service}/api/orders", timeout=10).status_code == 200
    assert requests.get(f"{service}/nowhere", timeout=10).status_code == 404  # the app's own answer
    head = requests.head(f"{service}/version", timeout=10)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, str(len("v1.2.9\n")), b"")
    pod = emulator.list("pods")[0]
    assert pod["status"]["phase"] == "Running"
    assert "running" in pod["status"]["containerStatuses"][0]["state"]


def test_a_half_finished_rollout_answers_from_two_versions(emulator: Emulator, web: dict[str, Any]) -> None:
    service = emulator.service({"app": "web"})
    set_image(emulator, "v1.3.0")

    def half_way() -> bool:
        ready: dict[str, int] = {}
        for pod in emulator.store.objects["pods"].values():
            if emulator.controller.is_ready(pod):
                image = pod["spec"]["containers"][0]["image"]
                ready[image] = ready.get(image, 0) + 1
        if ready.get("demo:v1.3.0", 0) >= 1 and ready.get("demo:v1.2.9", 0) >= 1:
            emulator.controller.stopped = True  # freeze the rollout here (the store is locked)
            return True
        return False

    emulator.wait_for(half_way, timeout=20)
    assert set(versions_from(service, times=24)) == {"v1.2.9", "v1.3.0"}


def test_pods_that_go_leave_no_process() -> None:
    with Emulator(real_pods=True) as emulator:
        emulator.create("deployments", deployment_manifest())
        wait_rolled_out(emulator, "web")
        assert emulator.pod_processes is not None
        first = emulator.pod_processes.all_pids()
        assert len(first) == 3 and all(alive(pid) for pid in first)
        requests.patch(
            f"{emulator.url}{DEPLOY}/web/scale",
            data=json.dumps({"spec": {"replicas": 1}}),
            headers={"Content-Type": "application/merge-patch+json"},
            timeout=10,
        ).raise_for_status()
        until(lambda: sum(alive(pid) for pid in first) == 1, what="two of three pod processes gone")
        (victim,) = emulator.list("pods")
        requests.delete(f"{emulator.url}/api/v1/namespaces/default/pods/{victim['metadata']['name']}", timeout=10)
        until(lambda: not any(alive(pid) for pid in first), what="the deleted pod's process gone")
        wait_rolled_out(emulator, "web")  # its replacement runs
        everything = first + emulator.pod_processes.all_pids()
        assert any(alive(pid) for pid in everything)
    assert not [pid for pid in everything if alive(pid)]


def test_a_crashing_version_really_exits_and_restarts(emulator: Emulator, web: dict[str, Any]) -> None:
    service = emulator.service({"app": "web"})
    emulator.controller.crashing.add("demo:v1.3.0")
    set_image(emulator, "v1.3.0")
    assert emulator.pod_processes is not None
    processes = emulator.pod_processes

    def crash_looping() -> dict[str, Any] | None:
        for pod in emulator.list("pods"):
            (status,) = pod["status"].get("containerStatuses") or [{}]
            if status.get("image") == "demo:v1.3.0" and status.get("restartCount", 0) >= 2:
                return pod
        return None

    until(lambda: crash_looping() is not None, what="a v1.3.0 pod restarted twice")
    pod = crash_looping()
    assert pod is not None
    status = pod["status"]["containerStatuses"][0]
    assert status["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert not status["ready"]
    box = processes.containers[(pod["metadata"]["uid"], "app")]
    assert len(box.pids) >= 2  # each restart was a new process
    assert set(versions_from(service)) == {"v1.2.9"}  # the old pods still serve


def test_an_unpullable_image_starts_no_process(emulator: Emulator, web: dict[str, Any]) -> None:
    emulator.controller.unpullable.add("demo:v9.9.9")
    set_image(emulator, "v9.9.9")

    def stuck() -> bool:
        return any(
            (s.get("state") or {}).get("waiting", {}).get("reason") == "ImagePullBackOff"
            for p in emulator.store.objects["pods"].values()
            for s in (p.get("status") or {}).get("containerStatuses", [])
        )

    emulator.wait_for(stuck, timeout=20)
    assert emulator.pod_processes is not None
    assert {box.image for box in emulator.pod_processes.containers.values()} == {"demo:v1.2.9"}
