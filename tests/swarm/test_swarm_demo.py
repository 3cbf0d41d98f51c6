"""`python -m demo --platform swarm`: the demo's story on a real swarm, and plain advice without one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from swarm_helpers import docker, free_port

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
    try:
        result = run_demo(tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "shop: rolled back from v1.3.0 to v1.2.9; verified" in result.stdout
        assert "GET /api/orders answered 404" in result.stdout
        assert list((tmp_path / "reports").glob("*/report.html"))
    finally:
        stopped = run_demo(tmp_path, "--stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "rollback-demo" not in docker("service", "ls", "--format", "{{.Name}}")


def test_demo_without_an_engine_says_how_to_start_one(tmp_path: Path) -> None:
    result = run_demo(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock")

    assert result.returncode == 2
    assert "no Docker Engine answers" in result.stderr
    assert "sudo bash scripts/start-docker.sh" in result.stderr
