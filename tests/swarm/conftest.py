"""Fixtures of the swarm tests: the engine, this session's images, 3-replica services (swarm_helpers.py)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from swarm_helpers import (
    BUSYBOX,
    START_HINT,
    Images,
    Service,
    build_images,
    create_service,
    docker,
    free_port,
    wait_for,
)


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker Engine that answers and is a swarm manager; the tests fail (not skip) without one."""
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{json .Swarm}}"], capture_output=True, timeout=20, check=False
        )
    except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"no Docker Engine for the swarm tests ({exc}); {START_HINT}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(
            f"no Docker Engine answers for the swarm tests: {result.stderr.decode().strip()}; {START_HINT}",
            pytrace=False,
        )
    swarm = json.loads(result.stdout)
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        pytest.fail(f"the Docker Engine is not a swarm manager ({swarm.get('LocalNodeState')}); {START_HINT}")
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} is missing (Debian's busybox-static); {START_HINT}", pytrace=False)


@pytest.fixture(scope="session")
def images(engine: None) -> Iterator[Images]:
    """One local image per version, in a repository named after this session."""
    made = Images(repo=f"harness-test-{uuid.uuid4().hex[:8]}/web")
    try:
        build_images(made)
        yield made
    finally:
        # The services are removed (make_service); wait for their containers, then the images go.
        wait_for(
            lambda: made.repo + ":" not in docker("ps", "-a", "--format", "{{.Image}}"),
            60,
            f"the containers of {made.repo} to go",
        )
        for image in made.made:
            docker("image", "rm", "--force", image, check=False)


@pytest.fixture
def make_service(images: Images) -> Iterator[Callable[..., Service]]:
    """Creates services (3 replicas by default) running a version; removes them at teardown."""
    services: list[Service] = []

    def make(
        version: str = "v1.2.9", *, replicas: int = 3, global_mode: bool = False, history: tuple[str, ...] = ()
    ) -> Service:
        """``global_mode``: one task per node (this engine is the only node: one task)."""
        count = 1 if global_mode else replicas
        service = Service(name=f"harness-{uuid.uuid4().hex[:10]}", port=free_port(), images=images, replicas=count)
        mode = ["--mode", "global"] if global_mode else ["--replicas", str(replicas)]
        services.append(service)
        return create_service(service, version, mode, history)

    yield make
    for service in services:
        docker("service", "rm", service.name, check=False)
