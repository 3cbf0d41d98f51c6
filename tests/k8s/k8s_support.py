"""Helpers for the Kubernetes tests: manifests, a kubectl runner, waits on the emulator's state, a driver."""

from __future__ import annotations

import copy
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from k8s_emulator import Emulator

from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.kubernetes import KubernetesSettings, KubernetesTarget

KUBECTL = shutil.which("kubectl")
KUBECTL_TIMEOUT = 60.0  # a kubectl run that takes longer has hung: fail, do not wait forever

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "demo:v1.2.9"}]},
        },
    },
}


def deployment_manifest(image: str = "demo:v1.2.9", **spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(DEPLOYMENT)
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = image
    manifest["spec"].update(spec)
    return manifest


@dataclass
class Kubectl:
    """Runs the real kubectl against one emulator, with its own kubeconfig and cache dir."""

    kubeconfig: Path
    cache_dir: Path
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        command = [
            KUBECTL,
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache_dir),
            "--request-timeout",
            "20s",
            *args,
        ]
        self.calls.append(list(args))
        result = subprocess.run(command, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result


def wait_rolled_out(emulator: Emulator, name: str, timeout: float = 15.0) -> None:
    """Until the deployment's newest generation is observed and all its replicas are updated and available."""

    def done() -> bool:
        d = emulator.store.objects["deployments"].get(("default", name))
        if d is None:
            return False
        status = d.get("status") or {}
        replicas = d["spec"]["replicas"]
        return bool(
            status.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
        )

    emulator.wait_for(done, timeout)


def revisions(emulator: Emulator, name: str = "web") -> dict[int, dict[str, Any]]:
    """The deployment's ReplicaSets by revision (controller-owned only)."""
    uid = emulator.get("deployments", name)["metadata"]["uid"]
    result = {}
    for rs in emulator.list("replicasets"):
        if any(ref.get("uid") == uid and ref.get("controller") for ref in rs["metadata"].get("ownerReferences", [])):
            result[int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])] = rs
    return result


def written(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What a client's write changes (generation, spec, annotations), unlike the resourceVersion,
    which also moves when the controller writes the status (e.g. a pause's condition, a bit later)."""
    metadata = obj["metadata"]
    return metadata.get("generation"), obj["spec"], metadata.get("annotations")


def image_of(obj: dict[str, Any]) -> str:
    image: str = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    """A kubeconfig whose current context talks to ``server`` without credentials."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {server}
users:
- name: tester
  user: {{}}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: tester
    namespace: {namespace}
current-context: emulator
"""
    )
    return path


def make_target(
    emulator: Emulator, tmp_path: Path, progress: list[str] | None = None, **settings: Any
) -> KubernetesTarget:
    kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{emulator.url.rsplit(':', 1)[1]}", emulator.url)
    service = emulator.service({"app": "web"})

    def service_version(timeout: float) -> str | None:
        try:
            answer = requests.get(f"{service}/version", timeout=min(timeout, 5.0))
        except requests.RequestException:
            return None
        return answer.text.strip() if answer.ok else None

    context = TargetContext(
        name="web",
        base_dir=tmp_path,
        progress=(progress.append if progress is not None else lambda line: None),
        service_version=service_version,
    )
    model = KubernetesSettings(deployment="web", kubeconfig=kubeconfig, **{"request_timeout": 5.0, **settings})
    return KubernetesTarget(model, context)
