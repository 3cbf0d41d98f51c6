"""`python -m demo --platform swarm`: the demo's story on a 3-replica Docker Swarm service.

v1.2.9 is deployed, then a bad v1.3.0 with the other demos' bug: every page but /health and /version
takes ~400 ms, and /api/orders answers 500. `pytest --rollback-to previous` rolls the service back
with Swarm's own rollback and verifies it. The images are made here from Debian's static busybox
(nothing is pulled): each serves its files with `busybox httpd` on one port that the service's
tasks take turns on (host networking). Needs a Docker Engine that is a swarm manager; without one
it says how to start one. The service and image names hold a hash of the demo's folder, so demos
in two folders run side by side; `--stop` removes the folder's service and images.
"""

from __future__ import annotations

import hashlib
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

from demo import signing
from demo.deployment import service_checks_toml

# The prefix of every demo service's name; each folder's own is SERVICE-<hash> (names()).
SERVICE = "rollback-demo"
VERSIONS = ("v1.2.8", "v1.2.9", "v1.3.0")
BAD = "v1.3.0"
BUSYBOX = Path("/bin/busybox")
START = "start one with: sudo bash scripts/start-docker.sh (installs Debian's docker.io and busybox-static if missing)"
SERVE = (
    'trap "exit 0" TERM INT; '
    "while :; do /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www & wait $!; /bin/busybox sleep 0.1; done"
)
# v1.3.0's bug, as demo/app.py's Release("v1.3.0", delay_ms=400, failing_paths=("/api/orders",)):
# busybox httpd cannot run a script for /api/orders (CGI only under /cgi-bin/, no rewrites), so the
# release puts this script in front of it: `nc -ll` runs it per connection; it reads the request,
# waits, answers 500 itself or hands the request to `httpd -i` (one request on stdin/stdout).
# busybox nc cannot bind one address: while v1.3.0 runs, its port listens on every interface.
BAD_SERVER = r"""#!/bin/busybox sh
CR=$(printf '\r')
read -r method target protocol
while read -r line && [ "${line%"$CR"}" != "" ]; do :; done
path=${target%%\?*}
case "$path" in
/health | /version) ;;
*) /bin/busybox sleep 0.4 ;;
esac
if [ "$path" = /api/orders ]; then
    body='{"error": "internal server error", "path": "/api/orders", "version": "v1.3.0"}'
    printf 'HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n'
    printf 'Content-Length: %s\r\nConnection: close\r\n\r\n%s\n' "$((${#body} + 1))" "$body"
    exit 0
fi
printf '%s %s HTTP/1.0\r\n\r\n' "$method" "$target" | exec /bin/busybox httpd -i -h /www
"""
SERVE_BAD = (
    'trap "exit 0" TERM INT; '
    "while :; do /bin/busybox nc -ll -p $PORT -e /bin/serve & wait $!; /bin/busybox sleep 0.1; done"
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def names(root: Path) -> tuple[str, str]:
    """The service and image repository of the demo in ``root``: two folders never share them."""
    digest = hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:8]
    return f"{SERVICE}-{digest}", f"{SERVICE}-{digest}/shop"


def default_root() -> Path:
    """Where `python -m demo --platform swarm` keeps its files (demo/__main__.py: DEMO_DIR's sibling)."""
    base = os.environ.get("DEMO_DIR") or Path(__file__).resolve().parent.parent / ".demo"
    return Path(base).absolute().with_name(".demo-swarm")


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
    files = {
        "www/version": version + "\n",
        "www/health": "ok\n",
        "www/index.html": f"shop {version}\n",
        "www/api/orders": '[{"id": 1}]\n',
    }
    if version == BAD:
        files["bin/serve"] = BAD_SERVER
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _check(result: subprocess.CompletedProcess[bytes], what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.decode().strip()}")


def _wait(root: Path, version: str, port: int, timeout: float = 60) -> None:
    service, repo = names(root)
    deadline = time.monotonic() + timeout
    while True:
        state = docker("service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", service)
        tasks = docker(
            "service", "ps", service, "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}"
        )
        running = [line for line in tasks.stdout.decode().splitlines() if line.startswith(f"{repo}:{version} Running")]
        try:
            with _NO_PROXY.open(f"http://127.0.0.1:{port}/version", timeout=1) as answer:
                serving = answer.read().decode().strip()
        except OSError:
            serving = None
        if state.stdout.decode().strip() in ("", "completed") and len(running) == 3 and serving == version:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service} did not run {version} on 3 tasks within {timeout:g}s")
        time.sleep(0.2)


def stop(root: Path | None = None) -> str:
    """Remove the service and images of the demo in ``root`` (default: the usual folder); its name."""
    service, repo = names(root or default_root())
    docker("service", "rm", service)
    deadline = time.monotonic() + 30
    while repo + ":" in docker("ps", "-a", "--format", "{{.Image}}").stdout.decode() and time.monotonic() < deadline:
        time.sleep(0.2)
    for version in VERSIONS:
        docker("image", "rm", "--force", f"{repo}:{version}")
    return service


# The symlink demo's latency check (demo/deployment.py): v1.3.0's ~400 ms fails it, v1.2.9 passes.
LATENCY_TOML = """
[[latency]]
path = "/"
samples = 20
concurrency = 4
min_samples = 10
p95 = "250ms"
max_error_rate = 0.0
"""


def _start(root: Path, port: int) -> None:
    """The images, the service on v1.2.9, then the update to the bad v1.3.0 (RuntimeError when not)."""
    service, repo = names(root)
    for version in VERSIONS:
        command = json.dumps(["/bin/busybox", "sh", "-c", SERVE_BAD if version == BAD else SERVE])
        _check(
            docker("import", "-c", f"CMD {command}", "-", f"{repo}:{version}", data=_image_tar(version)),
            "docker import",
        )
    _check(
        docker(
            "service", "create", "--detach", "--name", service, "--network", "host",
            "--env", f"PORT={port}", "--replicas", "3", "--init", "--stop-grace-period", "1s",
            "--update-parallelism", "1", "--update-monitor", "1s", "--update-failure-action", "pause",
            "--rollback-parallelism", "1", "--rollback-monitor", "1s", "--rollback-failure-action", "pause",
            f"{repo}:v1.2.9",
        ),
        "docker service create",
    )  # fmt: skip
    _wait(root, "v1.2.9", port)
    _check(docker("service", "update", "--detach", "--image", f"{repo}:{BAD}", service), "docker service update")
    _wait(root, BAD, port)


def _write_config(root: Path, port: int) -> Path:
    config = root / "rollback.toml"
    config.write_text(
        f"""# The harness config for the swarm demo (written by python -m demo --platform swarm).
{service_checks_toml("shop", f"http://127.0.0.1:{port}")}{LATENCY_TOML}
[targets.shop]
kind = "swarm"
service = "{names(root)[0]}"
ready_timeout = "60s"
"""
    )
    (root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    return config


def run(root: Path, port: int, reports: Path, key_folder: Path) -> int:
    problem = engine_problem()
    if problem is not None:
        print(f"the swarm demo needs a Docker Engine in swarm mode: {problem}", file=sys.stderr)
        return 2
    stop(root)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    try:
        _start(root, port)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"the swarm demo did not start: {exc}", file=sys.stderr)
        return 1
    config = _write_config(root, port)
    public_key = signing.kept_key(key_folder)
    with config.open("a", encoding="utf-8") as file:
        file.write(signing.signing_toml(str(key_folder / signing.KEY)))
    print(f"swarm service {names(root)[0]} (3 replicas) serves {BAD} at http://127.0.0.1:{port}")
    print(f"  {BAD} is bad: every page takes ~400 ms and /api/orders answers 500; Swarm's PreviousSpec runs v1.2.9")
    print("rolling back with: pytest --rollback-to previous --rollback-yes", flush=True)
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={config}",
        "--rollback-to", "previous", "--rollback-yes", f"--report-dir={reports}", "--rootdir", str(root), str(root),
    ]  # fmt: skip
    started = time.time()
    code = subprocess.run(command, cwd=root, check=False, env={**os.environ}).returncode
    print(f"\npytest exited {code}; the service is left running: python -m demo --platform swarm --stop removes it")
    print("\n".join(signing.report_lines(reports, started, public_key)))
    return code
