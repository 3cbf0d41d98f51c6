"""`python -m demo --platform swarm`: the demo's story on a real swarm, and plain advice without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deployments import assert_the_demo_signed
from swarm_helpers import docker, free_port

from demo import swarm

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / ".demo"),
        "DEMO_PORT": str(free_port()),
        "DEMO_REPORT_DIR": str(tmp_path / "reports"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "demo", "--platform", "swarm", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_demo_rolls_a_swarm_service_back(engine: None, tmp_path: Path) -> None:
    service, repo = swarm.names(tmp_path / ".demo-swarm")
    try:
        result = run_demo(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"swarm service {service} (3 replicas) serves v1.3.0" in result.stdout
        assert "shop: rolled back from v1.3.0 to v1.2.9; verified" in result.stdout
        (evidence_path,) = (tmp_path / "reports").glob("*/evidence.json")
        assert (evidence_path.parent / "report.html").is_file()
        assert_the_demo_signed(result.stdout)
    finally:
        stopped = run_demo(tmp_path, "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert service not in docker("service", "ls", "--format", "{{.Name}}")
    assert repo not in docker("image", "ls", "--format", "{{.Repository}}")

    # The story of every demo: v1.3.0 answers /api/orders with 500, every page slowly; v1.2.9 is fine.
    evidence = json.loads(evidence_path.read_text())
    assert evidence["target"]["kind"] == "swarm"
    checks = {c["check"]: c for c in evidence["comparisons"]}
    orders = checks["endpoint[/api/orders]"]
    assert orders["before"]["status"] == "failed"
    assert orders["before"]["measured"]["status"] == 500
    assert orders["before"]["summary"] == "GET /api/orders answered 500, expected 200"
    assert orders["after"]["status"] == "passed" and orders["after"]["measured"]["status"] == 200
    latency = checks["latency[/]"]
    assert latency["before"]["status"] == "failed"
    assert latency["before"]["summary"].startswith("p95 ") and "> 250 ms" in latency["before"]["summary"]
    assert latency["after"]["status"] == "passed"
    assert checks["endpoint[/]"]["before"]["measured"]["status"] == 200  # slow, not broken


def test_demos_in_two_folders_have_services_and_images_of_their_own(tmp_path: Path) -> None:
    first, second = swarm.names(tmp_path / "a" / ".demo-swarm"), swarm.names(tmp_path / "b" / ".demo-swarm")
    assert first[0] != second[0] and first[1] != second[1]
    assert first == swarm.names(tmp_path / "a" / ".demo-swarm")  # --stop finds the folder's own
    assert all(name.startswith("rollback-demo-") for name in (*first, *second))
    # `python -m demo --platform swarm` keeps its files beside DEMO_DIR.
    shown = subprocess.run(
        [sys.executable, "-c", "from demo import swarm; print(swarm.default_root())"],
        cwd=ROOT,
        env={**os.environ, "DEMO_DIR": str(tmp_path / "a" / ".demo")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(shown.stdout.strip()) == tmp_path / "a" / ".demo-swarm"


def test_demo_without_an_engine_says_how_to_start_one(tmp_path: Path) -> None:
    result = run_demo(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")

    assert result.returncode == 2
    assert "no Docker Engine answers" in result.stderr
    assert "sudo bash scripts/start-docker.sh" in result.stderr
