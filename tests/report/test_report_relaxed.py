"""Every setting that lowered a guard is in the evidence, the HTML summary and the terminal."""

from __future__ import annotations

from html import unescape

import pytest
from deployments import Deployment, read_evidence, run_dir

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_relaxed_safety_settings_are_recorded(pytester: pytest.Pytester, demo: Deployment, workers: list[str]) -> None:
    config = demo.config()
    config["service"]["verify_tls"] = False
    config["health"]["consecutive"] = 1
    demo.write_config(config)

    result = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "-k", "not latency", *workers
        )
    )

    assert result.ret == 0, result.stdout.str()
    relaxed = read_evidence(pytester.path / "reports")["relaxed_safety"]
    assert [r["setting"] for r in relaxed] == [
        "service.verify_tls = false",
        "health.consecutive = 1",
        "--rollback-yes",
        "-k 'not latency'",
    ]
    assert relaxed[3]["effect"] == "gate checks deselected, not run: verify-latency[/]"
    result.stdout.fnmatch_lines(
        [
            "relaxed safety: service.verify_tls = false: the service's TLS certificate was not verified by any probe",
            "relaxed safety: health.consecutive = 1: *",
            "relaxed safety: --rollback-yes: the rollback proceeded without a confirmation prompt",
            "relaxed safety: -k 'not latency': gate checks deselected, not run: verify-latency[[]/[]]",
            "exit code 0: success",
        ]
    )
    html = unescape((run_dir(pytester.path / "reports") / "report.html").read_text())
    assert "Relaxed safety settings" in html
    assert "service.verify_tls = false: the service's TLS certificate was not verified" in html


def test_a_run_with_every_guard_up_records_none(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--gate", "verify"))

    assert result.ret == 13, result.stdout.str()  # v1.3.0 is live and bad
    assert read_evidence(pytester.path / "reports")["relaxed_safety"] == []
    assert "relaxed safety" not in result.stdout.str()


def test_a_check_left_out_with_deselect_is_relaxed_safety_too(pytester: pytest.Pytester, demo: Deployment) -> None:
    """-k is not the only way to leave a gate check out: --deselect (and node ids) are named as well."""
    result = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "reports",
            "--rollback-to",
            "v1.2.9",
            "--rollback-yes",
            f"--deselect={demo.config_path.name}::verify-latency[/]",
        )
    )

    assert result.ret == 0, result.stdout.str()
    relaxed = read_evidence(pytester.path / "reports")["relaxed_safety"]
    assert relaxed[-1] == {
        "setting": f"--deselect {demo.config_path.name}::verify-latency[/]",
        "effect": "gate checks deselected, not run: verify-latency[/]",
    }, relaxed
