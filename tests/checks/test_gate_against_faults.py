"""The verify gate as users run it, against a service that misbehaves (tests/fault_server.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_server import FaultServer


def gate(pytester: pytest.Pytester, server: FaultServer, expect: str, extra: str = "") -> pytest.RunResult:
    config = pytester.path / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "shop"
base_url = "{server.base_url}"
timeout = "1s"
settle = "0s"
{extra}

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""
    )
    (pytester.path / "releases" / expect).mkdir(parents=True, exist_ok=True)
    link = pytester.path / "current"
    if not link.is_symlink():
        link.symlink_to(Path("releases") / expect)
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        f"--rollback-config={config}",
        f"--report-dir={pytester.path / 'reports'}",
        "--gate",
        "verify",
        "--expect-version",
        expect,
        timeout=120,
    )


def evidence_tests(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    (evidence,) = (pytester.path / "reports").glob("*/evidence.json")
    tests = json.loads(evidence.read_text())["tests"]
    return {test["check"]["name"]: test["check"] for test in tests if test.get("check")}


def test_trickled_headers_fail_the_gate_instead_of_hanging_it(pytester: pytest.Pytester) -> None:
    with FaultServer(mode="trickle-headers") as server:
        started = time.monotonic()
        result = gate(pytester, server, "v1.3.0")
        took = time.monotonic() - started
    assert result.ret == 13, result.stdout.str()  # verify failed
    result.stdout.fnmatch_lines(["GET http://127.0.0.1:*/version: timed out after *s"])
    assert took < 90  # did not hang (stopped at the first answer that did not come: 4 at once, each cut at 1 s)
    assert "Traceback" not in result.stdout.str()


def test_a_fleet_answering_two_versions_fails_the_gate(pytester: pytest.Pytester) -> None:
    with FaultServer(mode="alternating-version") as server:
        result = gate(pytester, server, "v1.3.0", "[service.version]\ninterval = '10ms'")
    assert result.ret == 13, result.stdout.str()
    result.stdout.fnmatch_lines(["*a replica is still on another version: v1.* on * of 59 answers, v1.* on *"])
    version = evidence_tests(pytester)["version"]
    measured = version["measured"]
    assert isinstance(measured, dict) and set(measured["answers"]) == {"v1.2.9", "v1.3.0"}


def test_a_stable_service_passes_the_gate(pytester: pytest.Pytester) -> None:
    with FaultServer() as server:
        result = gate(pytester, server, "v1.3.0")
    assert result.ret == 0, result.stdout.str()
    assert server.hits["version"] == 59


def test_ctrl_c_during_a_stalled_probe_exits_promptly(tmp_path: Path) -> None:
    with FaultServer(mode="stall-before-headers") as server:
        config = tmp_path / "rollback.toml"
        config.write_text(
            f"""
[service]
name = "shop"
base_url = "{server.base_url}"
timeout = "10m"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""
        )
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={config}",
            f"--report-dir={tmp_path / 'reports'}", "--gate", "verify", "--expect-version", "v1.3.0",
        ]  # fmt: skip
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while server.hits["stall-before-headers"] < 1:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the version probe never reached the server"
                time.sleep(0.05)
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=30)  # a joined probe thread would wait 10 minutes
        finally:
            process.kill()
    assert process.returncode == 2, output  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
