"""--rollback-fast on a 3-replica swarm service, against a bare `docker service update --rollback`.

    .venv/bin/python bench/bench_swarm.py [--rounds N]

Needs a Docker Engine in swarm mode (sudo bash scripts/start-docker.sh). Each round makes two
identical services (v1.2.9 deployed, then v1.3.0; every task stops within 1 s; the rollback
settings are parallelism 0 and a 1 s monitor) and rolls each back to v1.2.9:

- bare: `docker service update --rollback --detach` and a polling loop of `docker service
  inspect` / `docker service ps` until the update state is rollback_completed and 3 tasks run v1.2.9;
- harness: the swarm driver in fast mode, rollback + wait_ready, journaled.

Medians of N rounds; the ratio is harness / bare (the issue asks for at most 1.10).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "swarm"))

from swarm_helpers import Images, Service, build_images, create_service, docker, free_port, wait_for  # noqa: E402

from rollback_harness.rollback.journal import Journal  # noqa: E402
from rollback_harness.rollback.targets.base import TargetContext  # noqa: E402
from rollback_harness.rollback.targets.swarm import SwarmSettings, SwarmTarget  # noqa: E402

REPLICAS = 3


def new_service(images: Images) -> Service:
    service = Service(name=f"bench-{uuid.uuid4().hex[:10]}", port=free_port(), images=images, replicas=REPLICAS)
    return create_service(service, "v1.2.9", ["--replicas", str(REPLICAS)], history=("v1.3.0",))


def bare(service: Service) -> float:
    started = time.monotonic()
    docker("service", "update", "--rollback", "--detach", service.name)
    deadline = started + 120
    while True:
        state = docker("service", "inspect", "--format", "{{.UpdateStatus.State}}", service.name).strip()
        if state == "rollback_completed" and service.running_versions() == ["v1.2.9"] * REPLICAS:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise RuntimeError(f"bare rollback of {service.name} did not finish: state {state}")
        time.sleep(0.1)


def harness(service: Service, folder: Path) -> float:
    settings = SwarmSettings.model_validate({"service": service.name, "ready_timeout": "120s"})
    context = TargetContext(
        name="web", base_dir=folder, progress=lambda line: None, service_version=lambda timeout=None: None, fast=True
    )
    target = SwarmTarget(settings, context)
    journal = Journal(folder / f"{service.name}.jsonl")
    started = time.monotonic()
    target.rollback("v1.2.9", journal, expected_state=target.observe())
    target.wait_ready("v1.2.9", journal)
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    images = Images(repo=f"harness-bench-{uuid.uuid4().hex[:8]}/web")
    services: list[Service] = []
    bare_s: list[float] = []
    harness_s: list[float] = []
    try:
        build_images(images)
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(args.rounds):
                first, second = new_service(images), new_service(images)
                services += [first, second]
                bare_s.append(bare(first))
                harness_s.append(harness(second, Path(folder)))
                for service in (first, second):
                    docker("service", "rm", service.name, check=False)
    finally:
        for service in services:
            docker("service", "rm", service.name, check=False)
        wait_for(lambda: images.repo + ":" not in docker("ps", "-a", "--format", "{{.Image}}"), 60, "containers to go")
        for image in images.made:
            docker("image", "rm", "--force", image, check=False)
    b, h = statistics.median(bare_s), statistics.median(harness_s)
    print(f"swarm rollback, {REPLICAS} replicas, parallelism 0, 1 s monitor; medians of {args.rounds} rounds")
    print(f"  bare `docker service update --rollback` + polling: {b:.2f} s  ({', '.join(f'{x:.2f}' for x in bare_s)})")
    print(
        f"  harness --rollback-fast (rollback + wait_ready):   {h:.2f} s  ({', '.join(f'{x:.2f}' for x in harness_s)})"
    )
    print(f"  ratio harness / bare: {h / b:.2f} (target: at most 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
