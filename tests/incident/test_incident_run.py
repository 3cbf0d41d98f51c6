"""The incident workflow as users run it: the decision, the incident id, incident.md and status.md."""

from __future__ import annotations

import json

import pytest
from deployments import Deployment, run_dir

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))


def test_demo_run_with_an_incident_id_writes_the_incident_and_status(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    result = rollback(
        pytester,
        demo,
        "--rollback-to=v1.2.9",
        "--rollback-yes",
        "--severity=critical",
        "--data-impact=none",
        "--time-to-fix=2h",
        "--incident-id=INC-1",
        "--reason=checkout returns 500 since v1.3.0",
    )

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    # The decision and its inputs come first in the terminal summary.
    result.stdout.fnmatch_lines(
        [
            "*= rollback =*",
            "incident INC-1: decision: ROLLBACK: critical, data impact none, fix in 2 h > 30 min*; "
            "reason: checkout returns 500 since v1.3.0",
            "demo: rolled back from v1.3.0 to v1.2.9; verified*",
        ]
    )
    folder = run_dir(pytester.path / "reports")
    assert folder.name.startswith("INC-1-")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert list(evidence)[:3] == ["schema", "incident", "decision"]
    assert evidence["incident"] == {"id": "INC-1", "reason": "checkout returns 500 since v1.3.0"}
    assert evidence["decision"]["verdict"] == "rollback"
    assert evidence["decision"]["inputs"]["severity"] == "critical"
    assert evidence["decision"]["inputs"]["time_to_fix_s"] == 7200
    assert evidence["decision"]["enforced"] is True
    assert evidence["run_id"].startswith("INC-1-")
    assert evidence["artifacts"]["incident"] == "incident.md"

    incident = (folder / "incident.md").read_text()
    assert incident.startswith("# Incident INC-1: demo, v1.3.0 -> v1.2.9")
    for section in ("## Decision", "## Impact", "## Timeline", "## What failed", "## Root cause", "## Lessons"):
        assert section in incident
    assert "**rollback**" in incident
    # Impact from the comparisons: latency and error rate before and after.
    latency_row = next(line for line in incident.splitlines() if line.startswith("| latency\\[/\\]"))
    assert "errors" in latency_row and "p50" in latency_row
    assert "| switch-link | done |" in incident
    status = (folder / "status.md").read_text()
    assert "Mitigated" in status and "v1.2.9" in status and "INC-1" in status

    manifest = (folder / "manifest.sha256").read_text()
    assert "  incident.md" in manifest and "  status.md" in manifest
    assert verify_manifest(folder) == []

    html = (folder / "report.html").read_text()
    # The report opens with the outcome; the decision asked for follows it, before every other section.
    decision_at = html.index('id="rollback-decision"')
    assert html.index('id="rollback-headline"') < decision_at
    assert decision_at < html.index('id="rollback-comparison"') < html.index('id="rollback-timeline"')


def test_forward_fix_refuses_before_any_change(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to=v1.2.9", "--rollback-yes", "--severity=low", "--data-impact=none")

    assert result.ret == 10, result.stdout.str()
    assert demo.live_version() == "v1.3.0"
    assert demo.restarts() == 0
    result.stdout.fnmatch_lines(
        ["refused: decision is forward fix (severity low: fix forward*nothing was changed*--force --reason*"]
    )
    folder = run_dir(pytester.path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["decision"]["verdict"] == "forward-fix"
    assert evidence["outcome"]["status"] == "preflight-refused"
    assert "decision: severity low" in evidence["outcome"]["message"]
    assert "has not been changed" in (folder / "status.md").read_text()


def test_force_with_a_reason_overrides_forward_fix_and_is_recorded(pytester: pytest.Pytester, demo: Deployment) -> None:
    reason = "the fix needs a vendor <b>release</b> | `now`"
    result = rollback(
        pytester,
        demo,
        "--rollback-to=v1.2.9",
        "--rollback-yes",
        "--severity=high",
        "--data-impact=minor",
        "--time-to-fix=30m",
        "--force",
        f"--reason={reason}",
    )

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    result.stdout.fnmatch_lines(
        ["decision: FORWARD-FIX: high, data impact minor, fix in 30 min <= 1 h*(overridden by --force)*"]
    )
    folder = run_dir(pytester.path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["decision"]["verdict"] == "forward-fix"
    assert evidence["decision"]["forced"] is True
    effect = f"the decision said forward fix and was overridden; reason: {reason}"
    assert {"setting": "--force", "effect": effect} in evidence["relaxed_safety"]
    # The reason is the user's text: shown as text in the HTML and the Markdown, never as markup.
    html = (folder / "report.html").read_text()
    assert "vendor &lt;b&gt;release&lt;/b&gt;" in html and "vendor <b>release" not in html
    incident = (folder / "incident.md").read_text()
    assert "vendor &lt;b>release&lt;/b> &#124; &#96;now&#96;" in incident and "<b>" not in incident


def test_without_the_options_the_decision_is_not_assessed(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = rollback(pytester, demo, "--rollback-to=v1.2.9", "--rollback-dry-run")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["decision: not assessed*"])
    folder = run_dir(pytester.path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["decision"]["verdict"] == "not-assessed"
    assert evidence["decision"]["enforced"] is False
    assert not any(t["nodeid"].endswith("preflight-decision") for t in evidence["tests"])
    status = (folder / "status.md").read_text()
    assert "Dry run, no change" in status and "Nothing has been changed" in status and "Investigating" not in status
    # Its preflight passed: the decision was not enforced because none was asked for.
    preflight = [t["outcome"] for t in evidence["tests"] if t["gate"] == "preflight"]
    assert preflight and set(preflight) == {"passed"}
    assert "- Not enforced: no --severity / --data-impact given" in (folder / "incident.md").read_text()
    # Without --incident-id the journal names the run only.
    records = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    assert records and all(r["run"] == folder.name and "incident" not in r for r in records)


def test_logs_and_metrics_checks_run_in_baseline_and_verify(pytester: pytest.Pytester, demo: Deployment) -> None:
    from incident_servers import demo_exporter, metrics_server

    base_url = demo.config()["service"]["base_url"]
    with metrics_server(demo_exporter(base_url)) as exporter:
        demo.update_config(
            logs=[
                {
                    "name": "app",
                    "files": [str(demo.layout.app_log)],
                    # The demo's access log: v1.3.0 answers /api/orders with 500.
                    "patterns": {"server_error": r'" 5\d\d ', "error": r"\bERROR\b"},
                    "max": {"server_error": 0, "error": 0},
                    # supervisord writes the app's output with a lag of up to a second.
                    "window": "3s",
                }
            ],
            metrics=[
                {
                    "path": exporter + "/metrics",
                    "name": "exporter",
                    "series": [{"select": 'demo_http_requests_total{code=~"5.."}', "max": 0}],
                }
            ],
        )
        result = rollback(pytester, demo, "--rollback-to=v1.2.9", "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*baseline-logs?app? XFAIL*", "*baseline-metrics?exporter? XFAIL*"])
    result.stdout.fnmatch_lines(["*verify-logs?app? PASSED*", "*verify-metrics?exporter? PASSED*"])
    evidence = json.loads((run_dir(pytester.path / "reports") / "evidence.json").read_text())
    comparisons = {c["check"]: c for c in evidence["comparisons"]}
    logs = comparisons["logs[app]"]
    assert logs["before"]["measured"]["counts"]["server_error"] >= 1
    assert logs["after"]["measured"]["counts"]["server_error"] == 0
    metrics = comparisons["metrics[exporter]"]
    series = 'demo_http_requests_total{code=~"5.."}'
    assert metrics["before"]["measured"]["series"][series]["value"] == 7
    assert metrics["after"]["measured"]["series"][series] == {
        "value": 0,
        "samples": 1,
        "max": 0,
        "min": None,
        "before": 7,
    }
    assert "(before 7)" in metrics["after"]["summary"]


def test_under_xdist_the_decision_and_the_checks_reach_the_controller(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    demo.update_config(logs=[{"name": "app", "files": [str(demo.layout.app_log)], "window": "0s"}])
    result = rollback(
        pytester,
        demo,
        "-n",
        "2",
        "--rollback-to=v1.2.9",
        "--rollback-yes",
        "--severity=critical",
        "--data-impact=none",
        "--incident-id=INC-2",
    )

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["incident INC-2: decision: ROLLBACK: critical, data impact none, time to fix unknown*"]
    )
    folder = run_dir(pytester.path / "reports")
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["decision"]["recorded"] is True
    assert any(t["nodeid"].endswith("preflight-decision") and t["outcome"] == "passed" for t in evidence["tests"])
    assert {c["check"] for c in evidence["comparisons"]} >= {"logs[app]"}
    assert (folder / "incident.md").is_file() and (folder / "status.md").is_file()
    # Every journal line, the controller's and the workers', names the run and the incident.
    records = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
    assert {"decision", "switch-link", "outcome"} <= {r["step"] for r in records}
    assert {(r["run"], r["incident"]) for r in records} == {(folder.name, "INC-2")}


def test_a_secret_in_a_metrics_url_reaches_no_artifact(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from incident_servers import demo_exporter, metrics_server

    secret = "s3cr3t-metrics-token-42"
    monkeypatch.setenv("METRICS_TOKEN", secret)
    base_url = demo.config()["service"]["base_url"]
    with metrics_server(demo_exporter(base_url)) as exporter:
        demo.update_config(
            metrics=[
                {
                    "path": exporter + "/nowhere?token=${METRICS_TOKEN}",
                    "series": [{"select": "up", "min": 1}],
                }
            ]
        )
        result = rollback(pytester, demo, "--rollback-to=v1.2.9", "--rollback-dry-run", "--incident-id=INC-3")

    assert result.ret == 0, result.stdout.str()
    assert secret not in result.stdout.str() + result.stderr.str()
    folder = run_dir(pytester.path / "reports")
    assert {"incident.md", "status.md", "evidence.json", "report.html"} <= {p.name for p in folder.iterdir()}
    for path in folder.iterdir():
        assert secret not in path.read_text(errors="replace"), path.name
    assert "metrics[/nowhere?token=***]" in (folder / "incident.md").read_text().replace("\\", "")


def test_a_preflight_gate_refuses_a_forward_fix_and_writes_no_incident_files(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    result = rollback(
        pytester,
        demo,
        "--rollback-gate=preflight",
        "--rollback-to=v1.2.9",
        "--severity=medium",
        "--data-impact=minor",
        "--time-to-fix=1h",
    )

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["decision: FORWARD-FIX: medium, data impact minor, fix in 1 h <= 2 h*"])
    folder = run_dir(pytester.path / "reports")
    assert not (folder / "incident.md").exists() and not (folder / "status.md").exists()
    evidence = json.loads((folder / "evidence.json").read_text())
    assert evidence["artifacts"]["incident"] is None
    assert evidence["decision"]["enforced"] is True
