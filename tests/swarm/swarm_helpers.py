"""Helpers of the swarm tests: a real Docker Engine in swarm mode, images made here, services on loopback.

Every image is a `docker import` of a tar holding Debian's static busybox and a /www folder served
by `busybox httpd`: /www/version answers the version, /www/health answers ok. The "broken" version
exits at once, so Swarm sees its tasks fail. Services use host networking; all the tasks of one
service take turns on one loopback port (whoever binds it serves; the others retry), so the port
is the service's base_url, as a load balancer in front of it would be. Everything the tests make
is named after this session and removed at teardown.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from rollback_harness.rollback.config import TargetSpec
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.swarm import SwarmSettings, SwarmTarget

GOOD = ("v1.2.8", "v1.2.9", "v1.3.0")
BROKEN = "v1.1.0"  # its tasks exit 1 at once
BUSYBOX = Path("/bin/busybox")
START_HINT = "start one with: sudo bash scripts/start-docker.sh (as `make test` does when run as root)"

SERVE = (
    'trap "exit 0" TERM INT; '
    "while :; do /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www & wait $!; /bin/busybox sleep 0.1; done"
)
FAIL = 'echo "v1.1.0 cannot start: missing setting DATABASE_URL" >&2; exit 1'

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def docker(*args: str, timeout: float = 60.0, check: bool = True, data: bytes | None = None) -> str:
    try:
        result = subprocess.run(["docker", *args], input=data, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        pytest.fail(f"the docker command is not installed; {START_HINT}", pytrace=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}")
    return result.stdout.decode()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 1.0) -> str | None:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


@dataclass
class Images:
    repo: str
    made: list[str] = field(default_factory=list)

    def name(self, version: str) -> str:
        return f"{self.repo}:{version}"


@dataclass
class Service:
    name: str
    port: int
    images: Images
    replicas: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def answer(self) -> str | None:
        return http_get(self.base_url + "/version")

    def inspect(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(docker("service", "inspect", self.name))[0]
        return result

    def image_version(self) -> str:
        return str(self.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]).split("@")[0].rsplit(":", 1)[1]

    def update_state(self) -> str | None:
        state = (self.inspect().get("UpdateStatus") or {}).get("State")
        return None if state is None else str(state)

    def running_versions(self) -> list[str]:
        """The image tag of every running task whose desired state is running."""
        out = docker(
            "service", "ps", self.name, "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}"
        )
        return sorted(line.split()[0].rsplit(":", 1)[1] for line in out.splitlines() if " Running" in line)

    def update(self, version: str, *options: str) -> None:
        docker("service", "update", "--detach", "--image", self.images.name(version), *options, self.name)

    def wait_converged(self, version: str, timeout: float = 60.0) -> None:
        wait_for(
            lambda: (
                self.update_state() in (None, "completed", "rollback_completed")
                and self.running_versions() == [version] * self.replicas
                and self.answer() == version
            ),
            timeout,
            f"{self.name}: {self.replicas} tasks running {version} and answering it",
        )


def image_tar(version: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name, text in (("www/version", version + "\n"), ("www/health", "ok\n"), ("www/index.html", "ok\n")):
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_images(made: Images) -> None:
    """One image per version of GOOD and BROKEN, made here (nothing is pulled)."""
    for version in (*GOOD, BROKEN):
        script = FAIL if version == BROKEN else SERVE
        command = json.dumps(["/bin/busybox", "sh", "-c", script])
        docker("import", "-c", f"CMD {command}", "-", made.name(version), data=image_tar(version))
        made.made.append(made.name(version))


def create_service(service: Service, version: str, mode: list[str], history: tuple[str, ...] = ()) -> Service:
    """Create ``service`` running ``version`` (fast stop; updates and rollbacks of every task at once,
    1 s monitor, pause on failure), then deploy each of ``history`` in turn."""
    docker(
        "service", "create", "--detach", "--name", service.name,
        "--network", "host", "--env", f"PORT={service.port}",
        *mode, "--init", "--stop-grace-period", "1s",
        "--restart-delay", "0s",
        "--update-parallelism", "0", "--update-monitor", "1s", "--update-failure-action", "pause",
        "--rollback-parallelism", "0", "--rollback-monitor", "1s", "--rollback-failure-action", "pause",
        service.images.name(version),
    )  # fmt: skip
    service.wait_converged(version)
    for later in history:  # deploy these in turn: the last is live, the one before it PreviousSpec
        service.update(later)
        service.wait_converged(later)
    return service


def make_target(service: Service, progress: list[str] | None = None, **settings: Any) -> SwarmTarget:
    """The driver for ``service``, made from settings as a config file would give them."""
    values: dict[str, Any] = {"service": service.name, "ready_timeout": "60s", **settings}
    spec = TargetSpec(name="web", kind="swarm", settings=SwarmSettings.model_validate(values))
    lines = progress if progress is not None else []
    context = TargetContext(
        name="web",
        base_dir=Path("."),
        progress=lines.append,
        service_version=lambda timeout=None: http_get(service.base_url + "/version"),
    )
    target = create_target(spec, context)
    assert isinstance(target, SwarmTarget)
    return target


def write_config(path: Path, service: Service) -> Path:
    """A rollback.toml for ``service``: its answers on base_url, the swarm target by its name."""
    config = {
        "service": {"name": "web", "base_url": service.base_url, "timeout": "2s", "version": {"path": "/version"}},
        "health": {"path": "/health", "consecutive": 2},
        "endpoints": [{"path": "/"}],
        "targets": {"web": {"kind": "swarm", "service": service.name, "ready_timeout": "60s"}},
    }
    path.write_text(tomli_w.dumps(config))
    return path
