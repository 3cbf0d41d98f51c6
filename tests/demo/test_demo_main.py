"""`python -m demo` end to end: lays out, starts, hands over to pytest, reports, and stops."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.deployment import free_port, is_running, load_layout, stop

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_PORT": str(free_port()),
        "DEMO_REPORT_DIR": str(tmp_path / "reports"),
    }
    try:
        yield env
    finally:
        if (tmp_path / "demo" / "demo.json").exists():
            stop(load_layout(tmp_path / "demo"))


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_demo_runs_and_stops(demo_env: dict[str, str]) -> None:
    # Harness options after the demo's own go to its run (issue 10's incident demo).
    incident = ["--severity", "critical", "--data-impact", "none", "--time-to-fix", "2h", "--incident-id", "INC-1"]
    result = run_demo(demo_env, *incident)
    out = result.stdout
    port = demo_env["DEMO_PORT"]
    assert f"demo is serving v1.3.0 at http://127.0.0.1:{port}" in out, result.stderr
    assert f"pytest exited {result.returncode}:" in out
    assert "incident INC-1: decision: CONSIDER" in out, out
    runs = list(Path(demo_env["DEMO_REPORT_DIR"]).glob("INC-1-*"))
    assert len(runs) == 1 and (runs[0] / "incident.md").exists() and (runs[0] / "status.md").exists(), runs
    assert "live now: " in out
    assert "stop the demo with: make demo-stop" in out

    layout = load_layout(Path(demo_env["DEMO_DIR"]))
    assert layout.port == int(port)
    assert is_running(layout)

    again = run_demo(demo_env, "--stop")
    assert again.returncode == 0
    assert "stopped" in again.stdout
    assert not is_running(layout)
    assert "no demo running" in run_demo(demo_env, "--stop").stdout


def test_demo_refuses_to_clear_a_foreign_folder(demo_env: dict[str, str]) -> None:
    folder = Path(demo_env["DEMO_DIR"])
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    result = run_demo(demo_env)
    assert result.returncode != 0
    assert "is not a demo folder" in result.stderr
    assert (folder / "precious.txt").read_text() == "keep me"


def test_harness_options_go_only_to_the_symlink_demo(demo_env: dict[str, str]) -> None:
    result = run_demo(demo_env, "--platform", "kubernetes", "--severity", "critical")
    assert result.returncode == 2
    assert "unrecognized arguments: --severity critical" in result.stderr
