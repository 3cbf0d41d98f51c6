"""Optional "no worse than baseline": a one-sided Mann-Whitney test, as Kayenta judges a canary."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from fault_server import FaultServer

from rollback_harness.checks.latency import LatencyThresholds, check_latency
from rollback_harness.plugins import probes
from rollback_harness.plugins.state import MODE_ROLLBACK, HarnessRun
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.results import CheckResult
from rollback_harness.rollback.sampling import mann_whitney_worse


def exact_p_value(baseline: list[float], candidate: list[float]) -> float:
    """P(U >= u observed) over every way to split the pooled values (no ties), by enumeration."""
    pooled = sorted(baseline + candidate)
    rank = {value: i + 1 for i, value in enumerate(pooled)}
    n_c = len(candidate)

    def u_of(values: tuple[float, ...]) -> float:
        return sum(rank[v] for v in values) - n_c * (n_c + 1) / 2

    observed = u_of(tuple(candidate))
    splits = list(itertools.combinations(pooled, n_c))
    return sum(1 for split in splits if u_of(split) >= observed) / len(splits)


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15, 16]),
        ([1, 3, 5, 7, 9, 11, 13, 15], [2, 4, 6, 8, 10, 12, 14, 16]),
        ([5, 6, 7, 8, 13, 14, 15, 16], [1, 2, 3, 4, 9, 10, 11, 12]),
        ([1, 2, 4, 7, 8, 12, 14, 15], [3, 5, 6, 9, 10, 11, 13, 16]),
    ],
)
def test_the_normal_approximation_is_close_to_the_exact_test(baseline: list[float], candidate: list[float]) -> None:
    approximate = mann_whitney_worse(baseline, candidate, tolerance=0.0, confidence=0.95).p_value
    assert approximate == pytest.approx(exact_p_value(baseline, candidate), abs=0.02)


def test_ties_and_tolerance() -> None:
    same = mann_whitney_worse([1.0] * 10, [1.0] * 10, tolerance=0.0, confidence=0.95)
    assert not same.worse
    # 5 % slower everywhere: worse with no tolerance, not with 10 %.
    baseline = [0.1 + i / 1000 for i in range(40)]
    slower = [value * 1.05 for value in baseline]
    assert mann_whitney_worse(baseline, [v + 0.02 for v in baseline], tolerance=0.0, confidence=0.95).worse
    assert not mann_whitney_worse(baseline, slower, tolerance=0.1, confidence=0.95).worse


def sample(server: FaultServer, **options: object) -> CheckResult:
    return check_latency(
        server.url("/slow-tail"),
        samples=20,
        concurrency=4,
        timeout=5.0,
        min_samples=10,
        thresholds=LatencyThresholds(p50=5.0),
        **options,  # type: ignore[arg-type]
    )


def test_a_slower_service_than_its_baseline_fails() -> None:
    # Margins far above a busy machine's noise: 150 ms of injected delay against loopback's ~ms.
    with FaultServer(tail_every=1, tail_delay=0.0) as server:
        fast: list[float] = []
        slow: list[float] = []
        before = sample(server, samples_out=fast)
        server.tail_delay = 0.15
        after = sample(server, baseline=fast, samples_out=slow)
        server.tail_delay = 0.0
        again = sample(server, baseline=slow)
    assert before.passed and len(fast) == 20
    assert after.status == "failed", after.summary
    assert after.summary.startswith("slower than the baseline at 95% confidence (baseline p50 ")
    assert after.measured["baseline_comparison"]["worse"] is True
    assert again.passed, again.summary
    assert "; no worse than the baseline (baseline p50 " in again.summary
    assert again.measured["baseline_comparison"]["baseline_samples"] == 20


def test_verify_compares_with_the_samples_of_the_baseline_phase(tmp_path: Path) -> None:
    with FaultServer(tail_every=1, tail_delay=0.15) as server:
        config = tmp_path / "rollback.toml"
        config.write_text(
            f"""
[service]
name = "shop"
base_url = "{server.base_url}"

[[latency]]
path = "/slow-tail"
samples = 20
p50 = "5s"
compare_to_baseline = true

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""
        )
        run = HarnessRun(
            mode=MODE_ROLLBACK,
            config=load_config(config),
            target_spec=None,
            requested="v1.2.9",
            expect_version=None,
            dry_run=False,
            assume_yes=True,
            run_id="baseline-test",
            run_dir=tmp_path,
            is_worker=False,
        )
        check = probes.latency(run.config.settings.latency[0], "latency[/slow-tail]")
        unjudged = check(run, "verify")  # no baseline phase yet: said, not failed
        before = check(run, "baseline")  # the slow, bad version
        server.tail_delay = 0.0  # rolled back: fast again
        after = check(run, "verify")
    assert unjudged.passed and unjudged.summary.endswith(
        "not compared with a baseline: the baseline phase took no samples"
    )
    assert before.passed and len(run.latency_baselines["latency[/slow-tail]"]) == 20
    assert after.passed and "no worse than the baseline" in after.summary
