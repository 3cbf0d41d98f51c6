"""A run interrupted mid-rollback says exactly how far each step got."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration


def journal_has(reports: Path, step: str, status: str) -> bool:
    for journal in reports.glob("*/journal.jsonl"):
        for line in journal.read_text().splitlines():
            entry = json.loads(line)
            if entry["step"] == step and entry["status"] == status:
                return True
    return False


def test_ctrl_c_during_restart_is_reported(demo: Deployment, tmp_path: Path) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["sleep", "60"]
    demo.write_config(data)
    reports = tmp_path / "reports"
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", *demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not journal_has(reports, "restart", "started"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the restart step never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()

    assert process.returncode == 2, output
    evidence = read_evidence(reports)
    assert evidence["exit"]["code"] == 2
    assert "did not finish" in evidence["headline"], evidence["headline"]
    assert "switch-link done" in evidence["headline"] and "restart interrupted" in evidence["headline"]
    assert "did not finish: switch-link done" in output
    # The link did move: the report must not pretend nothing changed.
    assert demo.linked_version() == "v1.2.9"
