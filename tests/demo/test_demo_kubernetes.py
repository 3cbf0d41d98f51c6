"""`python -m demo --platform kubernetes`: the demo's story on the API emulator, and nothing left running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from deployments import assert_the_demo_signed

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kubernetes_demo_rolls_back_and_stops_what_it_started(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_REPORT_DIR": str(tmp_path / "reports")}
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--platform", "kubernetes"],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    before, after = out.split("\nbefore:\n", 1)[1].split("\nafter:\n", 1)
    assert "web: rolled back from v1.3.0 to v1.2.9; verified" in out
    assert "endpoint[/api/orders]" in out and "before: failed: GET /api/orders answered 500" in out
    assert re.search(r"^\s+2  demo:v1\.3\.0\s+replicas 3  <- live$", before, re.M)
    assert len(re.findall(r"demo:v1\.3\.0\s+ready\s+restarts 0", before)) == 3
    assert re.search(r"^\s+3  demo:v1\.2\.9\s+replicas 3  <- live$", after, re.M)
    assert len(re.findall(r"demo:v1\.2\.9\s+ready\s+restarts 0", after)) == 3
    report = re.search(r"^report: (\S+report\.html)$", out, re.M)
    assert report is not None and Path(report.group(1)).is_file()
    assert "web-" in Path(report.group(1)).read_text()  # the pods are in the report
    assert_the_demo_signed(out)
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+), port \d+\)", out)]
    assert len(pids) == 6
    assert not [pid for pid in pids if alive(pid)]  # the demo process has exited: its pods went with it
    config = re.search(r"config (\S+)/rollback\.toml", out)
    assert config is not None and not Path(config.group(1)).exists()
