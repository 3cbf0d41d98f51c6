"""`python -m demo --platform bluegreen-nginx | bluegreen-haproxy`: the rollback with a maintenance
window or a gradual drain in the report's timeline, and nothing left running."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from deployments import assert_the_demo_signed

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


@pytest.mark.parametrize(
    ("platform", "window"),
    [
        ("bluegreen-haproxy", ["traffic:drain-50%", "traffic:drain-0%"]),
        ("bluegreen-nginx", ["traffic:maintenance-on", "traffic:maintenance-off"]),
    ],
)
def test_bluegreen_demo_rolls_back_with_its_traffic_window(platform: str, window: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_REPORT_DIR": str(tmp_path / "reports")}
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--platform", platform],
        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
        check=False,
    )  # fmt: skip

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "sends the traffic to green, which serves v1.3.0" in out
    assert "shop: rolled back from v1.3.0 to v1.2.9; verified" in out
    assert re.search(r"^live now: v1\.2\.9 at http://127\.0\.0\.1:\d+$", out, re.M)
    report = re.search(r"^report: (\S+report\.html)$", out, re.M)
    assert report is not None
    evidence = json.loads((Path(report.group(1)).parent / "evidence.json").read_text())
    done = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    # The traffic window around the switch, in the timeline.
    assert done.index(window[0]) < done.index("switch-proxy")
    assert done.index(window[1]) > done.index(window[0])
    switch = next(e for e in evidence["timeline"] if e["what"] == "switch-proxy")
    assert (switch["detail"]["from_colour"], switch["detail"]["to_colour"]) == ("green", "blue")
    assert window[0] in Path(report.group(1)).read_text()  # and in the HTML report
    assert_the_demo_signed(out)
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", out)]
    assert len(pids) == 2 and not [pid for pid in pids if alive(pid)]
    assert "stopped " in out
