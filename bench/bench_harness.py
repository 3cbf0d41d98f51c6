"""Harness overhead, as ratios against bare baselines run in the same invocation.

    .venv/bin/python bench/bench_harness.py [--rounds N]

1. startup: `pytest --co` of a trivial test file with the plugin installed but inert, against
   `-p no:rollback` (what every ordinary test run pays for having the harness installed).
2. latency check: checks.latency.check_latency against a bare ThreadPoolExecutor + requests loop
   with the same samples and concurrency, on the demo app's good release.
3. rollback step: the symlink driver's rollback + wait_ready (journaled) against a bare
   `ln -sfn` + `supervisorctl restart` + poll loop, on a real demo deployment.
4. verify phase, 60 endpoints on an app answering in ~20 ms: the plugin's phase runner
   (plugins.phase.PhaseChecks over the configured checks) against a bare loop of GETs.
5. demo verify: the demo's verify phase as configured (every answer judged: 59 per version,
   health and critical endpoint check, the replica census, the settle wait and the second look) against the same phase
   taking one answer per check (what verify cost before it judged every answer).
Medians of N rounds; the ratio is harness / bare (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo import deployment  # noqa: E402
from rollback_harness.checks.latency import LatencyThresholds, check_latency  # noqa: E402
from rollback_harness.rollback.config import load_config  # noqa: E402
from rollback_harness.rollback.journal import Journal  # noqa: E402
from rollback_harness.rollback.targets import create_target  # noqa: E402
from rollback_harness.rollback.targets.base import TargetContext  # noqa: E402


def median_time(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def report(name: str, harness: float, bare: float) -> None:
    print(f"{name:<16} harness {harness * 1000:9.1f} ms   bare {bare * 1000:9.1f} ms   ratio {harness / bare:5.2f}")


def bench_startup(rounds: int, workdir: Path) -> None:
    (workdir / "test_trivial.py").write_text("def test_one():\n    pass\n")
    base = [sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", str(workdir)]

    def run(extra: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(base + extra, cwd=workdir, capture_output=True, check=True)

    report("startup", median_time(run([]), rounds), median_time(run(["-p", "no:rollback"]), rounds))


def bench_latency(rounds: int, url: str) -> None:
    samples, concurrency = 200, 8

    def bare() -> None:
        local = requests.Session()

        def one(_: int) -> float:
            started = time.perf_counter()
            local.get(url, timeout=5).raise_for_status()
            return time.perf_counter() - started

        with ThreadPoolExecutor(concurrency) as pool:
            sorted(pool.map(one, range(samples)))

    def harness() -> None:
        result = check_latency(
            url,
            samples=samples,
            concurrency=concurrency,
            timeout=5,
            min_samples=samples,
            thresholds=LatencyThresholds(p95=5.0),
        )
        assert result.passed, result.summary

    report("latency check", median_time(harness, rounds), median_time(bare, rounds))


def bench_rollback(rounds: int, layout: deployment.DemoLayout) -> None:
    config = load_config(layout.config_path)
    session = requests.Session()

    def answered(timeout: float | None = None) -> str | None:
        try:
            return session.get(layout.base_url + "/version", timeout=min(2.0, timeout or 2.0)).text.strip()
        except requests.RequestException:
            return None

    target = create_target(
        config.target(None),
        TargetContext(name="demo", base_dir=layout.root, progress=lambda m: None, service_version=answered),
    )
    versions = iter(["v1.2.9", "v1.2.8"] * rounds * 2)

    def harness() -> None:
        version = next(versions)
        journal = Journal(layout.root / "bench-journal" / f"{time.monotonic_ns()}.jsonl")
        target.rollback(version, journal)
        target.wait_ready(version, journal)

    def bare() -> None:
        version = next(versions)
        subprocess.run(["ln", "-sfn", f"releases/{version}", "current"], cwd=layout.root, check=True)
        subprocess.run(layout.restart_command, cwd=layout.root, check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while answered() != version:
            assert time.monotonic() < deadline, "bare rollback did not become ready"
            time.sleep(0.05)

    report("rollback step", median_time(harness, rounds), median_time(bare, rounds))


def bench_phase(rounds: int, workdir: Path) -> None:
    import tomli_w
    import tomllib

    from rollback_harness.plugins.items import check_specs
    from rollback_harness.plugins.phase import PhaseChecks
    from rollback_harness.plugins.state import MODE_GATE_VERIFY, HarnessRun

    layout = deployment.lay_out(workdir / "slow", live="v1.2.9", env={"DEMO_DELAY_MS": "20"})
    paths = [f"/?page={n}" for n in range(60)]
    data = tomllib.loads(layout.config_path.read_text())
    data["endpoints"] = [{"path": path} for path in paths]
    data["latency"], data["health"] = [], {"path": "/health", "consecutive": 1}
    # Like for like with the bare loop: one version answer, no settle wait before re-probing
    # ([verify] at 0.5 / 0.5 asks for a single answer).
    data["service"].update(settle=0, version={"path": "/version", "consecutive": 1})
    data["verify"] = {"detect_share": 0.5, "confidence": 0.5, "concurrency": 1}
    layout.config_path.write_text(tomli_w.dumps(data))
    deployment.start(layout)
    try:
        config = load_config(layout.config_path)
        session = requests.Session()

        def harness() -> None:
            run = HarnessRun(
                mode=MODE_GATE_VERIFY,
                config=config,
                target_spec=None,
                requested=None,
                expect_version=None,
                dry_run=False,
                assume_yes=True,
                run_id=f"bench-{time.monotonic_ns()}",
                run_dir=workdir / "phase-runs",
                is_worker=False,
            )
            specs = check_specs(run)
            phase = PhaseChecks(run, "verify", specs)
            assert all(phase.result(spec.key).passed for spec in specs)

        def bare() -> None:
            for path in ["/version", "/health", *paths]:
                session.get(layout.base_url + path, timeout=5).raise_for_status()
            with sqlite3.connect(layout.database) as connection:
                connection.execute("SELECT 1")

        report("verify phase", median_time(harness, rounds), median_time(bare, rounds))
    finally:
        deployment.stop(layout)


def bench_demo_verify(rounds: int, workdir: Path) -> None:
    """The demo's verify phase as configured (59 answers per version, health and endpoint check, the census,
    the settle wait and the second look) against the same phase taking one answer per check: what
    judging every answer costs."""
    import tomli_w
    import tomllib

    from rollback_harness.plugins.items import check_specs
    from rollback_harness.plugins.phase import PhaseChecks
    from rollback_harness.plugins.state import MODE_GATE_VERIFY, HarnessRun

    layout = deployment.lay_out(workdir / "demo-verify", live="v1.2.9")
    data = tomllib.loads(layout.config_path.read_text())
    one = layout.config_path.parent / "one-answer.toml"  # relative paths stay relative to the same folder
    one.write_text(tomli_w.dumps({**data, "verify": {"detect_share": 0.5, "confidence": 0.5, "concurrency": 1}}))
    deployment.start(layout)
    try:
        configs = {"judged": load_config(layout.config_path), "one": load_config(one)}

        def phase(name: str) -> Callable[[], None]:
            def verify() -> None:
                config = configs[name]
                run = HarnessRun(
                    mode=MODE_GATE_VERIFY,
                    config=config,
                    target_spec=next(iter(config.targets.values())),
                    requested=None,
                    expect_version="v1.2.9",
                    dry_run=False,
                    assume_yes=True,
                    run_id=f"bench-{time.monotonic_ns()}",
                    run_dir=workdir / "phase-runs",
                    is_worker=False,
                )
                specs = check_specs(run)
                checks = PhaseChecks(run, "verify", specs)
                failed = [checks.result(spec.key) for spec in specs if not checks.result(spec.key).passed]
                assert not failed, failed

            return verify

        judged, single = median_time(phase("judged"), rounds), median_time(phase("one"), rounds)
        print(
            f"{'demo verify':<16} every answer judged {judged * 1000:7.1f} ms   one answer per check "
            f"{single * 1000:7.1f} ms   added {(judged - single) * 1000:6.1f} ms   ratio {judged / single:5.2f}"
        )
    finally:
        deployment.stop(layout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        workdir = Path(temp)
        bench_startup(args.rounds, workdir)
        layout = deployment.lay_out(workdir / "deploy", live="v1.2.9")
        deployment.start(layout)
        try:
            bench_latency(args.rounds, layout.base_url + "/")
            bench_rollback(args.rounds, layout)
        finally:
            deployment.stop(layout)
        bench_phase(args.rounds, workdir)
        bench_demo_verify(args.rounds, workdir)
    print(f"(medians of {args.rounds} rounds; python {sys.version.split()[0]}, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
