"""The whole demo rollback (preflight, baseline, rollback, verify) against the runbook's own way.

    .venv/bin/python bench/bench_runbook.py [--rounds N]

On one demo deployment (v1.3.0 live: 400 ms per answer, /api/orders failing; v1.2.9 good), each
round puts v1.3.0 back (untimed), then times

- harness: ``pytest --rollback-to v1.2.9 --rollback-yes`` with the demo's rollback.toml, as an
  engineer types it (a fresh process: pytest's start-up, the report and the evidence included);
- by hand: bench/runbook_by_hand.sh, the same checks one after another with curl, ``ln -sfn``, the
  restart and a polling loop (no fixed sleeps).

Medians of N rounds; goal: harness at most 0.5x the script's wall time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import goal_line, machine  # noqa: E402

from demo import deployment  # noqa: E402

SCRIPT = Path(__file__).with_name("runbook_by_hand.sh")


def put_back(layout: deployment.DemoLayout, version: str) -> None:
    deployment.switch_release(layout, version)
    subprocess.run(layout.restart_command, cwd=layout.root, check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while answered(layout) != version:
        assert time.monotonic() < deadline, f"the demo did not come back on {version}"
        time.sleep(0.05)


def answered(layout: deployment.DemoLayout) -> str | None:
    try:
        return deployment.live_version(layout)
    except OSError:  # restarting
        return None


def harness(layout: deployment.DemoLayout, workdir: Path) -> float:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--rollback-config={layout.config_path}",
        f"--rollback-report-dir={workdir / 'reports'}",
        "--rollback-to",
        "v1.2.9",
        "--rollback-yes",
    ]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:]
    return elapsed


def by_hand(layout: deployment.DemoLayout) -> float:
    command = ["bash", str(SCRIPT), str(layout.root), layout.base_url, "v1.2.9", *layout.restart_command]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    assert result.returncode == 0 and "rolled back to v1.2.9" in result.stdout, result.stdout + result.stderr
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        workdir = Path(temp)
        layout = deployment.lay_out(workdir / "deploy", live="v1.3.0")
        (workdir / "run").mkdir()
        deployment.start(layout)
        try:
            harness_times, script_times = [], []
            for _ in range(args.rounds):
                put_back(layout, "v1.3.0")
                harness_times.append(harness(layout, workdir / "run"))
                put_back(layout, "v1.3.0")
                script_times.append(by_hand(layout))
        finally:
            deployment.stop(layout)
    ours, theirs = statistics.median(harness_times), statistics.median(script_times)
    print(f"demo rollback: harness {ours:.2f} s, by hand (bash + curl) {theirs:.2f} s (medians of {args.rounds})")
    print(goal_line("demo rollback: harness / by hand", ours / theirs, "<=", 0.5))
    print(machine())


if __name__ == "__main__":
    main()
