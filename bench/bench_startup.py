"""An active run's start-up: ``pytest --rollback-to X --co`` against plain ``pytest --co``.

    .venv/bin/python bench/bench_startup.py [--rounds N]

Both collect the same trivial test file in a fresh process; the active one also loads the demo's
rollback.toml (config models, target registry) and collects the runbook's items. Nothing is
probed or changed (--co). Medians of N alternating rounds; the ratio is active / plain, against
issue 19's goal (1.3x).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import PYTEST, goal_line, machine  # noqa: E402

from demo import deployment  # noqa: E402

GOAL = 1.3


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU (user + system of the child) moves less on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        workdir = Path(temp)
        layout = deployment.lay_out(workdir / "deploy", live="v1.3.0")  # not started: --co probes nothing
        run = workdir / "run"
        run.mkdir()
        (run / "test_trivial.py").write_text("def test_one():\n    pass\n")
        plain = [*PYTEST, "--co", "-q", "-p", "no:cacheprovider"]
        active = [*plain, f"--rollback-config={layout.config_path}", "--rollback-to", "v1.2.9"]
        timed(plain, run)  # warm the file cache and the bytecode
        timed(active, run)
        plain_times, active_times = [], []
        for _ in range(args.rounds):
            plain_times.append(timed(plain, run))
            active_times.append(timed(active, run))
    ours, bare = (statistics.median(t[0] for t in times) for times in (active_times, plain_times))
    ours_cpu, bare_cpu = (statistics.median(t[1] for t in times) for times in (active_times, plain_times))
    print(
        f"start-up: active {ours * 1000:.0f} ms wall / {ours_cpu * 1000:.0f} ms CPU, "
        f"plain {bare * 1000:.0f} ms wall / {bare_cpu * 1000:.0f} ms CPU (medians of {args.rounds})"
    )
    print(goal_line("start-up: active / plain (--co), wall", ours / bare, "<=", GOAL))
    print(goal_line("start-up: active / plain (--co), CPU", ours_cpu / bare_cpu, "<=", GOAL))
    print(machine())


if __name__ == "__main__":
    main()
