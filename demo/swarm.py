"""`python -m demo --platform swarm`: the demo's story on a 3-replica Docker Swarm service.

v1.2.9 is deployed, then a bad v1.3.0 (its /api/orders answers 404); `pytest --rollback-to previous`
rolls the service back with Swarm's own rollback and verifies it. The images are made here from
Debian's static busybox (nothing is pulled): each serves its files with `busybox httpd` on one
loopback port that the service's tasks take turns on (host networking). Needs a Docker Engine that
is a swarm manager; without one it says how to start one. `--stop` removes the service and images.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from demo.deployment import service_checks_toml

SERVICE = "rollback-demo"
REPO = "rollback-demo/shop"
VERSIONS = ("v1.2.8", "v1.2.9", "v1.3.0")
BAD = "v1.3.0"
BUSYBOX = Path("/bin/busybox")
START = "start one with: sudo bash scripts/start-docker.sh (installs Debian's docker.io and busybox-static if missing)"
SERVE = (
    'trap "exit 0" TERM INT; '
    "while :; do /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www & wait $!; /bin/busybox sleep 0.1; done"
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def docker(*args: str, data: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], input=data, capture_output=True, timeout=timeout, check=False)


def engine_problem() -> str | None:
    """Why the demo cannot run here, or None."""
    if shutil.which("docker") is None:
        return f"the docker command is not installed; {START}"
    try:
        info = docker("info", "--format", "{{json .Swarm}}", timeout=20)
    except subprocess.TimeoutExpired:
        return f"the Docker Engine did not answer within 20 s; {START}"
    if info.returncode != 0:
        return f"no Docker Engine answers ({info.stderr.decode().strip()}); {START}"
    swarm = json.loads(info.stdout or b"{}")
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        return (
            f"the Docker Engine is not a swarm manager; run: docker swarm init --advertise-addr 127.0.0.1 (or {START})"
        )
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing: apt-get install busybox-static (or {START})"
    return None


def _image_tar(version: str) -> bytes:
    files = {"www/version": version, "www/health": "ok", "www/index.html": f"shop {version}"}
    if version != BAD:
        files["www/api/orders"] = '[{"id": 1}]'
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name, text in files.items():
            data = (text + "\n").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _check(result: subprocess.CompletedProcess[bytes], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.decode().strip()}")


def _wait(version: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = docker("service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", SERVICE)
        tasks = docker(
            "service", "ps", SERVICE, "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}"
        )
        running = [line for line in tasks.stdout.decode().splitlines() if line.startswith(f"{REPO}:{version} Running")]
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{port}/version", timeout=1) as answer:
                serving = answer.read().decode().strip()
        except OSError:
            serving = None
        if state.stdout.decode().strip() in ("", "completed") and len(running) == 3 and serving == version:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SERVICE} did not run {version} on 3 tasks within {timeout:g}s")
        time.sleep(0.2)


def stop() -> None:
    docker("service", "rm", SERVICE)
    deadline = time.monotonic() + 30
    while REPO + ":" in docker("ps", "-a", "--format", "{{.Image}}").stdout.decode() and time.monotonic() < deadline:
        time.sleep(0.2)
    for version in VERSIONS:
        docker("image", "rm", "--force", f"{REPO}:{version}")


def run(root: Path, port: int, reports: Path) -> int:
    problem = engine_problem()
    if problem is not None:
        print(f"the swarm demo needs a Docker Engine in swarm mode: {problem}", file=sys.stderr)
        return 2
    stop()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        for version in VERSIONS:
            command = json.dumps(["/bin/busybox", "sh", "-c", SERVE])
            _check(
                docker("import", "-c", f"CMD {command}", "-", f"{REPO}:{version}", data=_image_tar(version)),
                "docker import",
            )
        _check(
            docker(
                "service", "create", "--detach", "--name", SERVICE, "--network", "host",
                "--env", f"PORT={port}", "--replicas", "3", "--init", "--stop-grace-period", "1s",
                "--update-parallelism", "1", "--update-monitor", "1s", "--update-failure-action", "pause",
                "--rollback-parallelism", "1", "--rollback-monitor", "1s", "--rollback-failure-action", "pause",
                f"{REPO}:v1.2.9",
            ),
            "docker service create",
        )  # fmt: skip
        _wait("v1.2.9", port)
        _check(docker("service", "update", "--detach", "--image", f"{REPO}:{BAD}", SERVICE), "docker service update")
        _wait(BAD, port)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"the swarm demo did not start: {exc}", file=sys.stderr)
        return 1
    config = root / "rollback.toml"
    config.write_text(
        f"""# The harness config for the swarm demo (written by python -m demo --platform swarm).
{service_checks_toml("shop", f"http://127.0.0.1:{port}")}
[targets.shop]
kind = "swarm"
service = "{SERVICE}"
ready_timeout = "60s"
"""
    )
    (root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    print(f"swarm service {SERVICE} (3 replicas) serves {BAD} at http://127.0.0.1:{port}")
    print(f"  {BAD} is bad: /api/orders answers 404; Swarm's PreviousSpec runs v1.2.9")
    print("rolling back with: pytest --rollback-to previous --rollback-yes", flush=True)
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={config}",
        "--rollback-to", "previous", "--rollback-yes", f"--report-dir={reports}", "--rootdir", str(root), str(root),
    ]  # fmt: skip
    code = subprocess.run(command, cwd=root, check=False, env={**os.environ}).returncode
    print(f"\npytest exited {code}; the service is left running: python -m demo --platform swarm --stop removes it")
    return code
