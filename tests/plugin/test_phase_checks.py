"""A phase's checks run once, quick ones together, latency ones alone after them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fault_server import FaultServer, Pool

from rollback_harness.plugins import phase as phase_module
from rollback_harness.plugins import probes
from rollback_harness.plugins.items import CheckSpec
from rollback_harness.plugins.phase import PhaseChecks
from rollback_harness.plugins.state import MODE_GATE_VERIFY, HarnessRun
from rollback_harness.rollback.config import EndpointConfig, load_config
from rollback_harness.rollback.results import CheckResult


def fake_run(progress: list[str] | None = None, latency_connections: int | None = None) -> Any:
    """What PhaseChecks reads of a run: its progress line writer and the service's URL."""
    lines = progress if progress is not None else []
    service = SimpleNamespace(base_url="http://127.0.0.1:9", settle=0.0)
    verify = SimpleNamespace(latency_connections=latency_connections)
    settings = SimpleNamespace(service=service, verify=verify)
    return SimpleNamespace(progress=lines.append, config=SimpleNamespace(settings=settings))


def test_quick_checks_overlap_and_latency_runs_alone_after_them() -> None:
    both_quick_running = threading.Barrier(2, timeout=10)
    finished: list[str] = []
    calls: list[str] = []

    def quick(name: str) -> Any:
        def run(run: object, phase: str) -> CheckResult:
            calls.append(name)
            both_quick_running.wait()  # raises BrokenBarrierError unless both run at once
            finished.append(name)
            return CheckResult(name, "passed", f"{name} in {phase}")

        return run

    def latency(run: object, phase: str) -> CheckResult:
        calls.append("latency[/]")
        return CheckResult("latency[/]", "passed", f"started after {sorted(finished)}")

    specs = [CheckSpec("endpoint[/a]", quick("a")), CheckSpec("latency[/]", latency), CheckSpec("health", quick("b"))]
    phase = PhaseChecks(run=fake_run(), phase="verify", specs=specs)

    assert phase.result("latency[/]").summary == "started after ['a', 'b']"
    assert phase.result("endpoint[/a]").summary == "a in verify"
    assert phase.result("health").passed
    assert sorted(calls) == ["a", "b", "latency[/]"]  # each check ran exactly once


def _latency_pair(overlapped: list[bool]) -> list[CheckSpec]:
    """Two latency checks of 4 connections each; ``overlapped`` says whether they ran at once."""
    both_running = threading.Barrier(2, timeout=2)

    def latency(name: str) -> Any:
        def run(run: object, phase: str) -> CheckResult:
            try:
                both_running.wait()
                overlapped.append(True)
            except threading.BrokenBarrierError:
                overlapped.append(False)
            return CheckResult(name, "passed", name)

        return run

    return [CheckSpec(f"latency[/{n}]", latency(f"latency[/{n}]"), connections=4) for n in ("a", "b")]


@pytest.mark.parametrize(("budget", "side_by_side"), [(None, False), (4, False), (7, False), (8, True)])
def test_latency_checks_run_side_by_side_only_within_the_connection_budget(
    budget: int | None, side_by_side: bool
) -> None:
    overlapped: list[bool] = []
    phase = PhaseChecks(run=fake_run(latency_connections=budget), phase="baseline", specs=_latency_pair(overlapped))

    assert phase.result("latency[/a]").passed and phase.result("latency[/b]").passed
    assert overlapped == [side_by_side] * 2


def test_a_latency_check_never_overlaps_another_runs_probes() -> None:
    # A fleet's targets run their phases side by side in one process: target B's latency samples
    # wait for target A's probes in flight, and a probe that comes later waits for B's samples.
    a_running, a_release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def a_health(run: object, phase: str) -> CheckResult:
        a_running.set()
        seen["a_released"] = a_release.wait(10)
        seen["a_done"] = True
        return CheckResult("health", "passed", "a")

    def b_latency(run: object, phase: str) -> CheckResult:
        seen["b_saw_a_done"] = seen.get("a_done", False)
        seen["b_done"] = True
        return CheckResult("latency[/]", "passed", "b")

    def c_version(run: object, phase: str) -> CheckResult:
        seen["c_saw_b_done"] = seen.get("b_done", False)
        return CheckResult("version", "passed", "c")

    a = PhaseChecks(run=fake_run(), phase="verify", specs=[CheckSpec("health", a_health)])
    b = PhaseChecks(run=fake_run(), phase="verify", specs=[CheckSpec("latency[/]", b_latency)])
    c = PhaseChecks(run=fake_run(), phase="verify", specs=[CheckSpec("version", c_version)])
    a.start()
    assert a_running.wait(10)
    b.start()
    deadline = time.monotonic() + 10
    while phase_module.TRAFFIC._latency_waiting == 0:  # B's latency is held back by A's probe
        assert time.monotonic() < deadline, "the latency check never asked to run"
        time.sleep(0.01)
    c.start()  # a probe asked for while B's samples wait: it comes after them
    a_release.set()

    assert a.result("health").passed and b.result("latency[/]").passed and c.result("version").passed
    assert seen == {"a_released": True, "a_done": True, "b_saw_a_done": True, "b_done": True, "c_saw_b_done": True}


def test_a_broken_phase_runner_fails_its_checks_instead_of_hanging() -> None:
    run = fake_run()
    del run.config.settings.verify  # the latency runner raises reading its budget
    specs = [CheckSpec("health", lambda run, phase: CheckResult("health", "passed", "ok")), *_latency_pair([])]
    phase = PhaseChecks(run=run, phase="verify", specs=specs)

    result = phase.result("latency[/a]")
    assert result.status == "failed" and "AttributeError" in result.summary
    assert phase.result("health").passed


def test_a_check_that_raises_is_a_failed_result_of_one_short_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was: the exception reached the item, and its traceback (locals, os.environ) the artifacts.
    monkeypatch.setenv("ROLLBACK_TEST_TOKEN", "tok-5f3a9c1e")

    def broken(run: object, phase: str) -> CheckResult:
        raise KeyError("PYTEST_CURRENT_TEST")

    def chatty(run: object, phase: str) -> CheckResult:
        raise RuntimeError("failed:\n" + "'X': 'y', " * 100)

    def leaky(run: object, phase: str) -> CheckResult:
        raise RuntimeError(f"environ({{'ROLLBACK_TEST_TOKEN': '{os.environ['ROLLBACK_TEST_TOKEN']}'}})")

    specs = [CheckSpec("latency[/]", broken), CheckSpec("health", chatty), CheckSpec("version", leaky)]
    phase = PhaseChecks(run=fake_run(), phase="verify", specs=specs)
    result = phase.result("latency[/]")
    assert (result.name, result.status) == ("latency[/]", "failed")
    assert result.summary == "the check failed unexpectedly: KeyError: 'PYTEST_CURRENT_TEST'"
    assert result.measured == {"error": "KeyError"}
    long = phase.result("health")
    assert long.status == "failed" and "\n" not in long.summary
    assert len(long.summary) < 250 and long.summary.endswith("...")
    leaked = phase.result("version")
    assert leaked.summary == (
        "the check failed unexpectedly: RuntimeError: (message withheld: it quotes the environment)"
    )


def test_a_long_check_says_it_is_still_running(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phase_module, "PROGRESS_EVERY", 0.05)
    lines: list[str] = []

    def slow(run: object, phase: str) -> CheckResult:
        # Finishes only once the waiting item has reported progress (or fails after 10 s).
        deadline = time.monotonic() + 10
        while not any("still running latency[/]" in line for line in lines):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return CheckResult("latency[/]", "passed", "slow but fine")

    phase = PhaseChecks(run=fake_run(lines), phase="baseline", specs=[CheckSpec("latency[/]", slow)])

    assert phase.result("latency[/]").summary == "slow but fine"
    assert lines[0] == "baseline: running 1 check against http://127.0.0.1:9"


INTERRUPTED_PHASE = """
import signal, sys, threading
from types import SimpleNamespace
from rollback_harness.plugins.items import CheckSpec
from rollback_harness.plugins.phase import PhaseChecks
from rollback_harness.plugins.state import MODE_GATE_VERIFY, HarnessRun
from rollback_harness.rollback.config import EndpointConfig, load_config
from rollback_harness.rollback.results import CheckResult

def forever(run, phase):
    print("waiting", flush=True)  # the main thread is in phase.result by now
    threading.Event().wait()
    return CheckResult("health", "passed", "never")

service = SimpleNamespace(base_url="http://127.0.0.1:9", settle=0.0)
settings = SimpleNamespace(service=service, verify=SimpleNamespace(latency_connections=None))
run = SimpleNamespace(progress=lambda line: None, config=SimpleNamespace(settings=settings))
specs = [CheckSpec("health", forever)]
phase = PhaseChecks(run=run, phase="verify", specs=specs)
try:
    phase.result("health")
except KeyboardInterrupt:
    print("interrupted", flush=True)
"""


def test_checks_still_running_never_keep_an_interrupted_process_alive(tmp_path: Path) -> None:
    script = tmp_path / "interrupted_phase.py"
    script.write_text(INTERRUPTED_PHASE)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "waiting\n"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)  # a joined worker thread would block forever
    finally:
        process.kill()
    assert output == "interrupted\n"
    assert process.returncode == 0


def verify_run(tmp_path: Path, server: FaultServer, settle: str) -> HarnessRun:
    config = tmp_path / "rollback.toml"
    config.write_text(
        f"""
[service]
name = "shop"
base_url = "{server.base_url}"
timeout = "2s"
settle = "{settle}"

[service.version]
consecutive = 2
interval = "50ms"

[health]
consecutive = 2
interval = "50ms"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""
    )
    return HarnessRun(
        mode=MODE_GATE_VERIFY,
        config=load_config(config),
        target_spec=None,
        requested=None,
        expect_version="v1.3.0",
        dry_run=False,
        assume_yes=True,
        run_id="settle-test",
        run_dir=tmp_path,
        is_worker=False,
    )


def test_an_app_that_dies_right_after_verify_fails_the_settle_probe(tmp_path: Path) -> None:
    server = FaultServer().start()

    def app_exits(run: object, phase: str) -> CheckResult:
        # The last verify check; the app goes away just after it, as in the issue (0.65 s).
        server.stop()
        return CheckResult("latency[/]", "passed", "fast")

    run = verify_run(tmp_path, server, settle="100ms")
    specs = [
        CheckSpec("version", probes.version),
        CheckSpec("health", probes.health),
        CheckSpec("latency[/]", app_exits),
    ]
    phase = PhaseChecks(run=run, phase="verify", specs=specs)

    version = phase.result("version")
    health = phase.result("health")
    assert version.status == "failed", version.summary
    assert version.summary.startswith("live version v1.3.0 as expected on all 59 answers")
    assert ", but 0.1s after the other verify checks: GET " in version.summary
    assert version.summary.endswith("connection refused")
    assert version.measured["settle"]["status"] == "failed"
    assert health.status == "failed", health.summary
    assert "0.1s after the other verify checks" in health.summary
    assert phase.result("latency[/]").passed


def test_a_service_that_stays_up_passes_the_settle_probe(tmp_path: Path) -> None:
    with FaultServer() as server:
        run = verify_run(tmp_path, server, settle="100ms")
        phase = PhaseChecks(run=run, phase="verify", specs=[CheckSpec("version", probes.version)])
        version = phase.result("version")
    assert version.status == "passed", version.summary
    looked = "live version v1.3.0 as expected on all 59 answers (rules out 1 wrong answer in 20 at 95% confidence)"
    assert version.summary == looked
    second = version.measured["settle"]
    assert {key: second[key] for key in ("after_s", "status", "summary")} == {
        "after_s": 0.1,
        "status": "passed",
        "summary": looked,
    }
    # no rollback in this run: the settle time counts from the first probes, and was waited out
    assert second["counted_from"] == "the first probes" and second["started_after_s"] >= 0.1
    assert version.measured["attempts"] == 59  # and 59 more in the second look


def test_the_settle_time_counts_from_when_the_rollback_saw_the_service_come_up(tmp_path: Path) -> None:
    # As Kubernetes' minReadySeconds counts from ready: a service up for 5 s has had its 3 s settle
    # time; the second look runs as soon as the other checks are done, never sooner than 3 s.
    lines: list[str] = []
    with FaultServer() as server:
        run = verify_run(tmp_path, server, settle="3s")
        run.progress = lines.append
        run.runbook = SimpleNamespace(ready_at=time.monotonic() - 5.0, from_version="v1.2.9")  # type: ignore[assignment]
        phase = PhaseChecks(run=run, phase="verify", specs=[CheckSpec("version", probes.version)])
        version = phase.result("version")
    assert version.status == "passed", version.summary
    second = version.measured["settle"]
    assert second["counted_from"] == "the service came up" and second["started_after_s"] >= 3.0
    assert second["status"] == "passed"
    assert "verify: probing version once more, over 3s after the service came up" in lines
    assert not [line for line in lines if "waiting" in line]


def test_a_crash_after_the_service_came_up_fails_the_second_look(tmp_path: Path) -> None:
    server = FaultServer().start()

    def app_exits(run: object, phase: str) -> CheckResult:
        server.stop()  # the app goes away after the first look, within its settle time
        return CheckResult("latency[/]", "passed", "fast")

    run = verify_run(tmp_path, server, settle="200ms")
    run.runbook = SimpleNamespace(ready_at=time.monotonic(), from_version="v1.2.9")  # type: ignore[assignment]
    specs = [CheckSpec("version", probes.version), CheckSpec("latency[/]", app_exits)]
    version = PhaseChecks(run=run, phase="verify", specs=specs).result("version")
    assert version.status == "failed", version.summary
    assert "s after the service came up: GET " in version.summary
    assert version.summary.endswith("connection refused")
    assert version.measured["settle"]["started_after_s"] >= 0.2


def test_service_version_is_capped_by_the_time_a_readiness_wait_has_left(tmp_path: Path) -> None:
    with FaultServer() as good:
        assert probes.service_version(verify_run(tmp_path, good, settle="0s"), timeout=1.0) == "v1.3.0"
    with FaultServer(mode="trickle-headers") as trickling:
        run = verify_run(tmp_path, trickling, settle="0s")  # service.timeout is 2 s
        started = time.monotonic()
        assert probes.service_version(run, timeout=0.3) is None
        took = time.monotonic() - started
        assert probes.service_version(run, timeout=0.0) is None
        assert trickling.hits["trickle-headers"] == 1  # no time left: nothing sent
    assert took < 10  # "did not hang": one byte every 0.2 s would never end


def test_a_critical_endpoint_is_asked_once_in_the_baseline_and_sampled_in_verify(tmp_path: Path) -> None:
    # Before the rollback its answer is a record (a slow bad release would make 59 cost the restore
    # seconds); after it, verify asks as often as for the version and health (one failing replica).
    with FaultServer(pool=Pool.unhealthy(0.0)) as server:
        run = verify_run(tmp_path, server, settle="0s")
        check = probes.endpoint(EndpointConfig(path="/api/orders"), "endpoint[/api/orders]")
        before = check(run, "baseline")
        asked_before = server.hits["api"]
        after = check(run, "verify")
        asked_after = server.hits["api"] - asked_before
    assert asked_before == 1 and before.passed, before.summary
    assert before.measured["fixed"] == probes.ONE_BASELINE_ANSWER
    assert asked_after == 59 and after.measured["attempts"] == 59
    assert after.summary.startswith("GET /api/orders answered 200 on all 59 answers, median ")
