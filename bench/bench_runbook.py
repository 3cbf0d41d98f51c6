"""Time to restore and total time: the harness against the runbook by hand, in two cases.

    .venv/bin/python bench/bench_runbook.py [--rounds N]

Two demo deployments, each rolled back to v1.2.9 once per round by every contender in turn
(alternating, so the machine's load falls on all of them alike):

- quick: between two fast releases (v1.2.8 live, no migrations);
- incident: from the slow, failing v1.3.0 (400 ms per answer, /api/orders failing), whose
  migration the harness backs up and downgrades (the script does neither).

Contenders: ``pytest --rollback-to v1.2.9 --rollback-yes`` as an engineer types it (a fresh process:
start-up, the report and the evidence included), the same with ``--rollback-fast``, and
bench/runbook_by_hand.sh (the same checks one after another with curl, ``ln -sfn``, the restart
and a polling loop; no fixed sleeps).

Time to restore: from the command's start to the first time a 10 ms poller sees the service answer
v1.2.9. Total: until the command exits. Medians of N rounds; goals from issue 19.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import PYTEST, goal_line, machine  # noqa: E402

from demo import deployment  # noqa: E402
from demo import migrations as demo_migrations  # noqa: E402

SCRIPT = Path(__file__).with_name("runbook_by_hand.sh")
TARGET = "v1.2.9"
POLL_S = 0.01


@dataclass
class Case:
    name: str
    live: str
    migrations: bool  # the harness downgrades the schema after a verified backup (--rollback-allow-data-loss)
    # goals: (time to restore, total) for the harness and for --rollback-fast, as ratios to the script
    goals: dict[str, tuple[float, float | None]]
    times: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


CASES = (
    Case("quick", "v1.2.8", False, {"harness": (1.5, 2.0), "fast": (1.15, None)}),
    Case("incident", "v1.3.0", True, {"harness": (0.3, 0.4), "fast": (1.15, None)}),
)


def put_back(layout: deployment.DemoLayout, case: Case) -> None:
    """The case's starting point again (untimed): its live release, running, its schema."""
    deployment.switch_release(layout, case.live)
    if case.migrations:
        scripts = layout.releases_dir / case.live / demo_migrations.FOLDER
        demo_migrations.upgrade(layout.database, scripts)
    subprocess.run(layout.restart_command, cwd=layout.root, check=True, capture_output=True)
    deadline = time.monotonic() + 30
    while answered(layout) != case.live:
        assert time.monotonic() < deadline, f"the demo did not come back on {case.live}"
        time.sleep(0.05)


def answered(layout: deployment.DemoLayout) -> str | None:
    try:
        return deployment.live_version(layout, timeout=1.0)
    except (OSError, http.client.HTTPException):  # restarting: refused, or cut off mid-answer
        return None


def timed(
    layout: deployment.DemoLayout, command: list[str], cwd: Path, ok: Callable[[str], bool]
) -> tuple[float, float]:
    """(time to restore, total) of one command, the first from a poller running beside it."""
    restored: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if answered(layout) == TARGET:
                restored.append(time.perf_counter())
                return
            time.sleep(POLL_S)

    started = time.perf_counter()
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    total = time.perf_counter() - started
    done.set()
    poller.join(timeout=5)
    assert ok(result.stdout), f"{command[:4]}... failed (exit {result.returncode}):\n{result.stdout[-3000:]}"
    assert restored, f"{command[:4]}... ended without the service answering {TARGET}"
    return restored[0] - started, total


def harness_command(layout: deployment.DemoLayout, workdir: Path, *extra: str) -> list[str]:
    return [
        *PYTEST,
        "-p",
        "no:cacheprovider",
        "-q",
        f"--rollback-config={layout.config_path}",
        f"--rollback-report-dir={workdir / 'reports'}",
        "--rollback-to",
        TARGET,
        "--rollback-yes",
        *extra,
    ]


def run_case(case: Case, rounds: int, workdir: Path) -> None:
    layout = deployment.lay_out(workdir / case.name, live=case.live, migrations=case.migrations)
    run_dir = workdir / f"{case.name}-run"
    run_dir.mkdir()
    script = ["bash", str(SCRIPT), str(layout.root), layout.base_url, TARGET, *layout.restart_command]
    extra = ["--rollback-allow-data-loss"] if case.migrations else []
    contenders: dict[str, tuple[list[str], Callable[[str], bool]]] = {
        "harness": (harness_command(layout, run_dir, *extra), lambda out: "exit code 0" in out),
        "fast": (harness_command(layout, run_dir, *extra, "--rollback-fast"), lambda out: "exit code 0" in out),
        "script": (script, lambda out: f"rolled back to {TARGET}" in out),
    }
    deployment.start(layout)
    try:
        for _ in range(rounds):
            for name, (command, ok) in contenders.items():
                put_back(layout, case)
                case.times.setdefault(name, []).append(timed(layout, command, run_dir, ok))
    finally:
        deployment.stop(layout)


def report(case: Case) -> None:
    def medians(name: str) -> tuple[float, float]:
        runs = case.times[name]
        return statistics.median(r for r, _ in runs), statistics.median(t for _, t in runs)

    script_restore, script_total = medians("script")
    print(f"{case.name}: from {case.live} to {TARGET} (medians of {len(case.times['script'])})")
    print(f"  by hand (bash + curl): time to restore {script_restore:.2f} s, total {script_total:.2f} s")
    for name, (restore_goal, total_goal) in case.goals.items():
        restore, total = medians(name)
        label = "harness" if name == "harness" else "harness --rollback-fast"
        print(f"  {label}: time to restore {restore:.2f} s, total {total:.2f} s")
        print(goal_line(f"  {case.name}, {label}: time to restore", restore / script_restore, "<=", restore_goal))
        if total_goal is not None:
            print(goal_line(f"  {case.name}, {label}: total", total / script_total, "<=", total_goal))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--case", choices=[case.name for case in CASES], action="append")
    args = parser.parse_args()
    chosen = [case for case in CASES if not args.case or case.name in args.case]
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        for case in chosen:
            run_case(case, args.rounds, Path(temp))
    for case in chosen:
        report(case)
    print(machine())


if __name__ == "__main__":
    main()
