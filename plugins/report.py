"""Evidence: the JSON bundle, the pytest-html additions, the terminal summary and exit codes.

Everything written here passes through the run's Redactor, and everything that came from the
target is escaped before it reaches HTML.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Generator
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import pytest

from rollback_harness.plugins import exit_codes
from rollback_harness.plugins.fixtures import RUN_LOCK_NAME, recorded_outcome
from rollback_harness.plugins.items import CHECK_PROPERTY, GATE_PROPERTY
from rollback_harness.plugins.state import MODE_GATE_PREFLIGHT, MODE_GATE_VERIFY, XDIST_GROUP, HarnessRun
from rollback_harness.rollback.evidence import MANIFEST_NAME, write_json, write_manifest
from rollback_harness.rollback.runbook import (
    STATUS_ALREADY_AT_TARGET,
    STATUS_FAILED,
    STATUS_NOT_CONFIRMED,
    STATUS_REFUSED,
    STATUS_ROLLED_BACK,
    RollbackOutcome,
)

EVIDENCE_NAME = "evidence.json"


def _property(report: pytest.TestReport | pytest.CollectReport, name: str) -> Any:
    # A CollectReport (pytest-html shows failed collections too) has no user_properties.
    for key, value in getattr(report, "user_properties", ()):
        if key == name:
            return value
    return None


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def _worker(report: pytest.TestReport) -> str | None:
    """The xdist worker that ran the test (gw0, gw1, ...), None without xdist."""
    node = getattr(report, "node", None)
    return getattr(getattr(node, "gateway", None), "id", None)


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext.strip()
    return text.removeprefix("Failed: ")


class EvidenceReporter:
    """Registered by the harness for one run; collects reports and writes the evidence."""

    def __init__(self, run: HarnessRun, config: pytest.Config) -> None:
        self.run = run
        self.config = config
        self.redactor = run.redactor
        self.tests: dict[str, dict[str, Any]] = {}
        self.exit_code: int | None = None
        self.collection_errors: list[str] = []
        # Built once when the session ends; the HTML summary shows the very same facts.
        self.final_evidence: dict[str, Any] | None = None

    # -- where the items run ---------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        self._redact_report(report)
        check = _property(report, CHECK_PROPERTY)
        if report.when == "call" and check is not None:
            try:
                from pytest_html import extras
            except ImportError:  # pragma: no cover - pytest-html is a dependency
                return report
            measured = extras.json(check, name="measured")  # redacted when recorded
            # pytest-html reads `report.extras`, an attribute pytest itself does not declare.
            setattr(report, "extras", [*getattr(report, "extras", []), measured])  # noqa: B010
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        self._redact_report(report)
        return report

    def _redact_report(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        """Failure text and captured output can carry a secret (a user's gate printing a password).

        Redacted where the test ran, before the terminal, pytest-html, JUnit XML or the xdist
        controller see the report.
        """
        redact = self.redactor.text
        report.sections = [(title, redact(content)) for title, content in report.sections]
        if isinstance(report.longrepr, tuple):  # a skip: (path, line, message)
            path, line, message = report.longrepr
            report.longrepr = (path, line, redact(message))
        elif report.longrepr is not None:
            text = report.longreprtext
            redacted = redact(text)
            if redacted != text:
                # A traceback cannot be redacted piece by piece: its text replaces it.
                report.longrepr = redacted

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and not self.run.is_worker:
            self.collection_errors.append(report.nodeid or "(session)")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        gate = _property(report, GATE_PROPERTY)
        if report.failed and gate == "preflight" and _property(report, CHECK_PROPERTY) is None:
            # A user's preflight gate failed (the runbook's own findings refuse by themselves).
            self.run.preflight_failures.append(report.nodeid.removesuffix("@" + XDIST_GROUP))
        if self.run.is_worker:
            return
        # xdist's group suffix (@rollback-runbook) is scheduling detail, not part of the name.
        nodeid = report.nodeid.removesuffix("@" + XDIST_GROUP)
        entry = self.tests.setdefault(
            nodeid,
            {
                "nodeid": nodeid,
                "gate": gate,
                "outcome": "passed",
                "message": "",
                "duration_s": 0.0,
                "start": _iso(getattr(report, "start", None)),
                "check": None,
                "worker": _worker(report),
            },
        )
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        entry["stop"] = _iso(getattr(report, "stop", None))
        check = _property(report, CHECK_PROPERTY)
        if check is not None:
            entry["check"] = check
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = _message(report)
        elif report.skipped and entry["outcome"] == "passed":
            # A baseline check that measured a failure is an expected failure, never a pass.
            xfailed = hasattr(report, "wasxfail")
            entry["outcome"] = "xfailed" if xfailed else "skipped"
            entry["message"] = self.redactor.text(report.wasxfail) if xfailed else _message(report)

    # -- the controller ---------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        run = self.run
        what = {
            MODE_GATE_VERIFY: "verify gate, expecting "
            + (run.expect_version or "the version the target's platform says is deployed"),
            MODE_GATE_PREFLIGHT: f"preflight gate for a rollback to {run.requested}",
        }.get(run.mode, f"rollback to {run.requested}{' (dry run)' if run.dry_run else ''}")
        target = f", target {run.target_spec.name} ({run.target_spec.kind})" if run.target_spec else ""
        return [
            f"rollback: {run.config.settings.service.name}: {what}{target}",
            f"rollback: config {run.config.path}; evidence in {run.run_dir}",
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.run.is_worker:
            return
        self.exit_code = self._exit_code(int(exitstatus))
        session.exitstatus = self.exit_code
        if self.exit_code == pytest.ExitCode.USAGE_ERROR and not self.run.journal.entries():
            return  # nothing ran: no evidence to keep
        self.final_evidence = self.evidence()
        write_json(self.run.run_dir / EVIDENCE_NAME, self.final_evidence, self.redactor)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.run.is_worker or not self.run.run_dir.is_dir():
            return
        if not (self.run.run_dir / EVIDENCE_NAME).exists():
            # A usage error stopped the run before anything happened: leave no empty folder.
            shutil.rmtree(self.run.run_dir, ignore_errors=True)
            return
        (self.run.run_dir / RUN_LOCK_NAME).unlink(missing_ok=True)
        # Last, once pytest-html has written the report: a checksum of every artifact.
        write_manifest(self.run.run_dir)

    def _failed(self, gate: str) -> bool:
        return any(t["gate"] == gate and t["outcome"] in ("failed", "error") for t in self.tests.values())

    def _exit_code(self, exitstatus: int) -> int:
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            return exitstatus
        outcome = recorded_outcome(self.run)
        status = outcome.status if outcome else None
        if self._failed("preflight") or status == STATUS_REFUSED:
            return exit_codes.PREFLIGHT_REFUSED
        if status == STATUS_NOT_CONFIRMED:
            return exit_codes.NOT_CONFIRMED
        if status == STATUS_FAILED:
            return exit_codes.ROLLBACK_FAILED
        if self._failed("verify"):
            return exit_codes.VERIFY_FAILED
        return exitstatus

    # -- the evidence -----------------------------------------------------------------------

    def headline(self) -> str:
        run = self.run
        outcome = recorded_outcome(run)
        service = run.config.settings.service.name
        verify = self._gate_counts("verify")
        if self.exit_code == pytest.ExitCode.USAGE_ERROR:
            return f"{service}: usage error, nothing was run"
        if self.collection_errors and not self.tests:
            where = ", ".join(self.collection_errors)
            return f"{service}: collection failed ({where}): nothing was run"
        if self.exit_code == pytest.ExitCode.INTERRUPTED:
            service = f"{service}: INTERRUPTED"
        if run.mode == MODE_GATE_VERIFY:
            return f"{service}: verify gate {'FAILED' if self._failed('verify') else 'passed'} ({verify})"
        if run.mode == MODE_GATE_PREFLIGHT:
            verdict = "REFUSED" if self._failed("preflight") else "passed"
            return f"{service}: preflight gate {verdict} for {run.requested}"
        if outcome is None:
            if self._failed("preflight"):
                return f"{service}: preflight REFUSED the rollback to {run.requested}: nothing was changed"
            steps = {
                step: state
                for step, state in self.run.journal.step_states().items()
                # "rollback" wraps the driver's steps; the steps themselves say how far it got.
                if not step.startswith("preflight:") and step != "rollback"
            }
            if steps:
                # Cut short mid-rollback (Ctrl-C, a crash): say exactly which steps got how far.
                done = ", ".join(f"{step} {state}" for step, state in steps.items())
                return f"{service}: rollback to {run.requested} did not finish: {done}"
            return f"{service}: no rollback was attempted"
        if outcome.status in (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET):
            verdict = "verify FAILED" if self._failed("verify") else "verified"
            return f"{service}: {outcome.message}; {verdict} ({verify})"
        return f"{service}: {outcome.message}"

    def _gate_counts(self, gate: str) -> str:
        outcomes = [t["outcome"] for t in self.tests.values() if t["gate"] == gate]
        counts = {name: outcomes.count(name) for name in ("passed", "failed", "error", "skipped") if name in outcomes}
        return ", ".join(f"{n} {name}" for name, n in counts.items()) or "no checks"

    def comparisons(self) -> list[dict[str, Any]]:
        """Each check's baseline and verify result side by side, in config order."""
        rows: dict[str, dict[str, Any]] = {}
        for test in self.tests.values():
            check = test["check"]
            if check is None or test["gate"] not in ("baseline", "verify"):
                continue
            side = "before" if test["gate"] == "baseline" else "after"
            rows.setdefault(check["name"], {"check": check["name"], "before": None, "after": None})[side] = check
        return list(rows.values())

    def timeline(self) -> list[dict[str, Any]]:
        """Every step and test in time order; a journaled action is one row from start to end."""
        events: list[dict[str, Any]] = []
        running: dict[str, dict[str, Any]] = {}
        for entry in self.run.journal.entries():
            step, status = entry["step"], entry["status"]
            if step.startswith("preflight:") or step == "target":
                continue  # the preflight items report the findings; the target is in its own section
            detail = {k: v for k, v in entry.items() if k not in ("ts", "step", "status", "duration_s")}
            if step == "plan":
                detail = {"steps": len(entry.get("steps", []))}
            elif step == "outcome":
                detail = {"message": entry.get("message")}
            if status == "started":
                running[step] = {
                    "at": entry["ts"],
                    "what": step,
                    "status": "started, never finished",
                    "duration_s": None,
                    "detail": detail,
                }
                events.append(running[step])
            elif step in running:
                event = running.pop(step)
                event.update(status=status, duration_s=entry.get("duration_s"), detail={**event["detail"], **detail})
            else:
                events.append(
                    {
                        "at": entry["ts"],
                        "what": step,
                        "status": status,
                        "duration_s": entry.get("duration_s"),
                        "detail": detail,
                    }
                )
        for test in self.tests.values():
            detail = {"message": test["message"]} if test["message"] else {}
            events.append(
                {
                    "at": test["start"],
                    "what": test["nodeid"],
                    "status": test["outcome"],
                    "duration_s": test["duration_s"],
                    "detail": detail,
                }
            )
        return sorted(events, key=lambda e: e["at"] or "")

    def evidence(self) -> dict[str, Any]:
        run = self.run
        outcome: RollbackOutcome | None = recorded_outcome(run)
        plan = next((e for e in reversed(run.journal.entries()) if e["step"] == "plan"), None)
        code = self.exit_code if self.exit_code is not None else 0
        return {
            "schema": "rollback-evidence/1",
            "run_id": run.run_id,
            "mode": run.mode,
            "headline": self.headline(),
            "service": {"name": run.config.settings.service.name, "base_url": run.config.settings.service.base_url},
            "target": self._target(),
            "config": str(run.config.path),
            "requested": run.requested,
            "expect_version": run.expect_version,
            "dry_run": run.dry_run,
            "from_version": outcome.from_version if outcome else None,
            "to_version": outcome.to_version if outcome else None,
            "outcome": outcome.to_dict() if outcome else None,
            "plan": plan["steps"] if plan else [],
            "exit": {"code": code, "meaning": exit_codes.MEANINGS.get(code, "see pytest's exit codes")},
            "started": _iso(run.started),
            "finished": _iso(time.time()),
            "duration_s": round(time.time() - run.started, 3),
            "collection_errors": self.collection_errors,
            "comparisons": self.comparisons(),
            "tests": list(self.tests.values()),
            "timeline": self.timeline(),
            "artifacts": {
                "html": self._artifact(getattr(self.config.option, "htmlpath", None)),
                "junit": self._artifact(getattr(self.config.option, "xmlpath", None)),
                "journal": "journal.jsonl",
                "manifest": MANIFEST_NAME,
            },
        }

    def _target(self) -> dict[str, Any] | None:
        """The target as configured, with what its driver said about itself at preflight."""
        spec = self.run.target_spec
        if spec is None:
            return None
        described = next((e for e in self.run.journal.entries() if e["step"] == "target"), {})
        facts = {k: v for k, v in described.items() if k not in ("ts", "step", "status")}
        return {**facts, "name": spec.name, "kind": spec.kind}

    def _artifact(self, path: str | None) -> str | None:
        """A file's name inside the run folder, or its full path when the user put it elsewhere."""
        if not path:
            return None
        resolved = Path(path).resolve()
        return resolved.name if resolved.parent == self.run.run_dir.resolve() else str(resolved)

    # -- pytest-html ------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        report.title = f"Rollback evidence: {self.run.config.settings.service.name} ({self.run.run_id})"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="sortable" data-column-type="gate">Gate</th>')
        cells.insert(3, "<th>Measured</th>")
        cells.insert(4, "<th>Before (baseline)</th>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        gate = _property(report, GATE_PROPERTY) or ""
        check = _property(report, CHECK_PROPERTY)
        measured = self._cell(check) if check else ""
        before = ""
        if check and gate == "verify":
            baseline = next((c["before"] for c in self.comparisons() if c["check"] == check["name"]), None)
            before = self._cell(baseline) if baseline else ""
        test_id = report.nodeid if report.when == "call" else f"{report.nodeid}::{report.when}"
        # pytest-html puts the test id in unescaped: names can carry a target's text.
        cells[1] = f'<td class="col-testId">{self._h(test_id)}</td>'
        cells.insert(1, f'<td class="col-gate">{self._h(gate)}</td>')
        # Both cells are built by _cell, which escapes everything that came from the target.
        cells.insert(3, f"<td>{measured}</td>")
        cells.insert(4, f"<td>{before}</td>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        prefix.extend(self._summary_html())

    def _h(self, value: object) -> str:
        return escape(self.redactor.text(str(value)))

    def _summary_html(self) -> list[str]:
        evidence = self.final_evidence or self.evidence()
        h = self._h
        ok = evidence["exit"]["code"] == 0
        parts = [
            "<style>#rollback-comparison th, #rollback-comparison td, #rollback-timeline th, "
            "#rollback-timeline td {padding: 2px 10px; text-align: left; border-bottom: 1px solid #e1e4e8; "
            "vertical-align: top}</style>",
            f'<h2 style="color:{"#1a7f37" if ok else "#cf222e"}">{h(evidence["headline"])}</h2>',
            f"<p>Exit code {h(evidence['exit']['code'])}: {h(evidence['exit']['meaning'])}. "
            f"Run {h(evidence['run_id'])}, config {h(evidence['config'])}.</p>",
        ]
        if evidence["plan"]:
            parts.append("<h3>Plan</h3><ol>" + "".join(f"<li>{h(step)}</li>" for step in evidence["plan"]) + "</ol>")
        rows = "".join(
            f"<tr><td>{h(c['check'])}</td><td>{self._cell(c['before'])}</td><td>{self._cell(c['after'])}</td></tr>"
            for c in evidence["comparisons"]
        )
        if rows:
            parts.append(
                '<h3>Before and after</h3><table id="rollback-comparison"><tr><th>Check</th>'
                f"<th>Before (baseline)</th><th>After (verify)</th></tr>{rows}</table>"
            )
        timeline = "".join(
            f"<tr><td>{h(_clock(e['at']))}</td><td>{h(e['what'])}</td><td>{h(e['status'])}</td>"
            f"<td>{h(_seconds(e['duration_s']))}</td><td>{h(_detail(e['detail']))}</td></tr>"
            for e in evidence["timeline"]
        )
        parts.append(
            '<h3>Timeline</h3><table id="rollback-timeline"><tr><th>At (UTC)</th><th>Step</th><th>Status</th>'
            f"<th>Duration</th><th>Detail</th></tr>{timeline}</table>"
        )
        parts.append(
            f"<p>Evidence beside this report: {EVIDENCE_NAME}, journal.jsonl, {MANIFEST_NAME} (sha256sum -c).</p>"
        )
        return parts

    def _cell(self, check: dict[str, Any] | None) -> str:
        if check is None:
            return "not run"
        colour = {"passed": "#1a7f37", "failed": "#cf222e"}.get(check["status"], "#9a6700")
        return f'<span style="color:{colour}">{self._h(check["status"])}</span>: {self._h(check["summary"])}'

    # -- the terminal -----------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if self.run.is_worker:
            return
        write = terminalreporter.write_line
        code = self.exit_code if self.exit_code is not None else exitstatus
        # As pytest does: -q shortens the section to its verdict and where the evidence is, -qq to one line.
        verbosity = config.get_verbosity()
        if verbosity <= -2:
            write(self.redactor.text(f"rollback: {self.headline()} (exit code {code})"))
            return
        terminalreporter.write_sep("=", "rollback")
        write(self.redactor.text(self.headline()))
        if self.exit_code == pytest.ExitCode.USAGE_ERROR:
            return
        comparisons = self.comparisons() if verbosity >= 0 else []
        if comparisons:
            width = max(len(c["check"]) for c in comparisons) + 2
            # Two columns when the terminal is wide enough to show them whole, else stacked.
            column = (config.get_terminal_writer().fullwidth - width) // 2
            if column >= 48:
                write(f"{'check':<{width}}{'before':<{column}}after")
                for c in comparisons:
                    before, after = _short(c["before"], column - 2), _short(c["after"], column - 2)
                    write(self.redactor.text(f"{c['check']:<{width}}{before:<{column}}{after}"))
            else:
                for c in comparisons:
                    write(
                        self.redactor.text(
                            f"{c['check']}\n  before: {_short(c['before'], 200)}\n  after:  {_short(c['after'], 200)}"
                        )
                    )
        write(f"exit code {code}: {exit_codes.MEANINGS.get(code, 'see pytest exit codes')}")
        write(f"evidence: {self.run.run_dir / EVIDENCE_NAME}")
        html = getattr(config.option, "htmlpath", None)
        if html:
            write(f"report:   {html}")


def _clock(timestamp: str | None) -> str:
    """``2026-11-26T03:53:05.008+00:00`` as ``03:53:05.008``: the date is in the report's header."""
    return timestamp[11:23] if timestamp else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} s"


def _detail(detail: dict[str, Any]) -> str:
    return "; ".join(f"{key}={value}" for key, value in detail.items())


def _short(check: dict[str, Any] | None, limit: int) -> str:
    if check is None:
        return "not run"
    text = f"{check['status']}: {check['summary']}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
