"""The latency check against a real app process whose delay is known."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo import deployment
from rollback_harness.checks.latency import LatencyThresholds, check_latency

pytestmark = pytest.mark.integration
DELAY_MS = 120


@pytest.fixture
def slow_app(tmp_path: Path) -> Iterator[deployment.DemoLayout]:
    layout = deployment.lay_out(tmp_path / "deploy", live="v1.2.9", env={"DEMO_DELAY_MS": str(DELAY_MS)})
    deployment.start(layout)
    try:
        yield layout
    finally:
        deployment.stop(layout)


def test_latency_check_reports_the_injected_delay(slow_app: deployment.DemoLayout) -> None:
    result = check_latency(
        slow_app.base_url + "/",
        samples=12,
        concurrency=4,
        timeout=5,
        min_samples=12,
        thresholds=LatencyThresholds(p95=DELAY_MS / 1000 / 2),
    )

    assert result.status == "failed"
    assert result.measured["succeeded"] == 12
    assert DELAY_MS <= result.measured["p50_ms"] < DELAY_MS * 10
    assert result.measured["min_ms"] >= DELAY_MS
    assert f"> {DELAY_MS // 2} ms" in result.summary


def test_too_few_successes_are_inconclusive(slow_app: deployment.DemoLayout) -> None:
    # A timeout shorter than the delay: every sample fails, so latency cannot be judged.
    result = check_latency(
        slow_app.base_url + "/",
        samples=6,
        concurrency=3,
        timeout=DELAY_MS / 1000 / 4,
        min_samples=3,
        thresholds=LatencyThresholds(p95=10.0),
    )

    assert result.status == "inconclusive"
    assert result.measured["succeeded"] == 0
