"""`python -m demo --platform aws`: the rollback behind a target group and a CloudFront cache on moto's
server, with the load balancer and CDN steps in the report's timeline, and nothing left running."""

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


def test_aws_demo_rolls_back_behind_the_load_balancer_and_invalidates_the_cdn(tmp_path: Path) -> None:
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "demo"), "DEMO_REPORT_DIR": str(tmp_path / "reports")}
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--platform", "aws"],
        cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
        check=False,
    )  # fmt: skip

    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    before = re.search(r"^  target group web: (i-\w+) \(v1\.3\.0\) healthy$", out, re.M)
    after = re.search(r"^target group web now: (i-\w+) \(v1\.2\.9\) healthy$", out, re.M)
    assert before is not None and after is not None, out
    assert re.search(r"^live now: v1\.2\.9 at http://127\.0\.0\.1:\d+$", out, re.M)
    report = re.search(r"^report: (\S+report\.html)$", out, re.M)
    assert report is not None, out
    evidence = json.loads((Path(report.group(1)).parent / "evidence.json").read_text())
    done = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    order = ["load_balancer:deregister-web", "load_balancer:drained-web", "switch-link",
             "load_balancer:register-web", "load_balancer:healthy-web", "cdn:invalidate-shop-cdn",
             "cdn:completed-shop-cdn"]  # fmt: skip
    assert [step for step in done if step in order] == order
    invalidation = next(e for e in evidence["timeline"] if e["what"] == "cdn:invalidate-shop-cdn")
    assert re.fullmatch(r"[A-Z0-9]+", invalidation["detail"]["invalidation_id"])
    html = Path(report.group(1)).read_text()
    assert "load_balancer:register-web" in html and "cdn:invalidate-shop-cdn" in html
    assert "stopped the demo deployment and moto's server" in out
    assert "demo-secret-key" not in out + result.stderr
    assert_the_demo_signed(out)
