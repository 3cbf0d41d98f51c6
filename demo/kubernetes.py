"""`python -m demo --platform kubernetes`: the demo's story on the project's Kubernetes API emulator.

A deployment ``web`` of three pods runs v1.3.0 (revision 2, after v1.2.9 as revision 1); each pod is a
real process of the demo app, and the checks probe a Service URL that proxies to the ready pods. Then
``pytest --rollback-to v1.2.9`` (kind = "kubernetes") rolls it back. The pods and revisions are
printed before and after, the report holds them too. Everything started here is stopped at the end:
the emulator, its pod processes and the temporary folder with the kubeconfig and harness config.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from demo import signing
from demo.deployment import DEFAULT_RELEASES, EXAMPLE_GATES, service_checks_toml
from rollback_harness.plugins.exit_codes import MEANINGS as EXIT_MEANINGS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET = "v1.2.9"
REPLICAS = 3
ROLLOUT_TIMEOUT = 60.0  # seconds a rollout of the demo's deployment may take before the demo gives up


def rollback_toml(service_url: str, kubeconfig: Path) -> str:
    return f"""\
# The harness config for the demo deployment on the Kubernetes emulator (python -m demo --platform kubernetes).

{service_checks_toml("web", service_url)}
[targets.web]
kind = "kubernetes"
kubeconfig = {json.dumps(kubeconfig.name)}
context = "emulator"
namespace = "default"
deployment = "web"
ready_timeout = "60s"
"""


def kubeconfig_text(server: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: emulator
  cluster:
    server: {server}
users:
- name: demo
  user: {{}}
contexts:
- name: emulator
  context:
    cluster: emulator
    user: demo
    namespace: default
current-context: emulator
"""


def manifest(version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]},
            },
        },
    }


def set_image(api_url: str, version: str) -> None:
    """What a deploy pipeline does (`kubectl set image`): a strategic merge patch of the template."""
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": f"demo:{version}"}]}}}}
    request = urllib.request.Request(
        f"{api_url}/apis/apps/v1/namespaces/default/deployments/web",
        data=json.dumps(patch).encode(),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        method="PATCH",
    )
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
        answer.read()


def rolled_out(emulator: Any) -> bool:
    """Called with the store locked: the newest template is observed, updated, available, old pods gone."""
    deployment = emulator.store.objects["deployments"].get(("default", "web"))
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    return bool(
        status.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == REPLICAS
        and status.get("availableReplicas", 0) == REPLICAS
        and status.get("replicas", 0) == REPLICAS
    )


def describe(emulator: Any) -> list[str]:
    """The deployment's revisions and pods, as `kubectl rollout history` and `kubectl get pods` show them."""
    lines = []
    deployment = emulator.get("deployments", "web")
    live = (deployment["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    lines.append("  revisions (oldest first):")
    rows = []
    for rs in emulator.list("replicasets"):
        annotations = rs["metadata"].get("annotations") or {}
        revision = int(annotations.get("deployment.kubernetes.io/revision", "0"))
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        rows.append((revision, image, rs["spec"].get("replicas", 0)))
    for revision, image, replicas in sorted(rows):
        marker = "  <- live" if str(revision) == live else ""
        lines.append(f"    {revision:>3}  {image:<14} replicas {replicas}{marker}")
    lines.append("  pods:")
    for pod in emulator.list("pods"):
        status = (pod.get("status") or {}).get("containerStatuses") or [{}]
        ready = "ready" if status[0].get("ready") else "not ready"
        image = pod["spec"]["containers"][0]["image"]
        restarts = status[0].get("restartCount", 0)
        box = emulator.pod_processes.containers.get((pod["metadata"]["uid"], "app"))
        process = f"pid {box.process.pid}, port {box.port}" if box is not None and box.process is not None else "-"
        lines.append(f"    {pod['metadata']['name']:<28} {image:<14} {ready:<9} restarts {restarts}  ({process})")
    return lines


def run_kubernetes_demo(report_dir: Path, key_folder: Path) -> int:
    sys.path.insert(0, str(PROJECT_ROOT / "tests"))  # the emulator lives with the tests
    from k8s_emulator import Emulator

    with tempfile.TemporaryDirectory(prefix="demo-kubernetes-") as folder, Emulator(real_pods=True) as emulator:
        root = Path(folder)
        assert emulator.pod_processes is not None
        emulator.pod_processes.releases = {r.version: r.to_json() for r in DEFAULT_RELEASES}
        try:
            emulator.create("deployments", manifest(TARGET))
            emulator.wait_for(lambda: rolled_out(emulator), ROLLOUT_TIMEOUT)
            set_image(emulator.url, "v1.3.0")
            emulator.wait_for(lambda: rolled_out(emulator), ROLLOUT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            print(f"the demo deployment did not roll out on the emulator: {exc}", file=sys.stderr)
            return 1
        service_url = emulator.service({"app": "web"})
        kubeconfig = root / "kubeconfig"
        kubeconfig.write_text(kubeconfig_text(emulator.url))
        config = root / "rollback.toml"
        public_key = signing.kept_key(key_folder)  # kept beyond this temporary folder
        config.write_text(rollback_toml(service_url, kubeconfig) + signing.signing_toml(str(key_folder / signing.KEY)))
        (root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
        (root / "test_demo_gates.py").write_text(EXAMPLE_GATES)

        print(f"Kubernetes API emulator at {emulator.url}: deployment default/web, {REPLICAS} pods of v1.3.0")
        print(f"  each pod is a demo app process; the Service {service_url} proxies to the ready ones")
        print("  v1.3.0 is bad: every page takes ~400 ms and /api/orders answers 500")
        print("before:")
        print("\n".join(describe(emulator)))
        print(f"rolling back with: pytest --rollback-to {TARGET} --rollback-yes  (kind = kubernetes)", flush=True)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            f"--rollback-config={config}",
            "--rollback-to",
            TARGET,
            "--rollback-yes",
            f"--report-dir={report_dir}",
            "--rootdir",
            str(root),
            str(root),
        ]
        started = time.time()
        code = subprocess.run(command, cwd=root, check=False).returncode
        print()
        print("after:")
        print("\n".join(describe(emulator)))
        print(f"pytest exited {code}: {EXIT_MEANINGS.get(code, 'see the report')}")
        print("\n".join(signing.report_lines(report_dir, started, public_key)))
    print("stopped the emulator and its pods")
    return code
