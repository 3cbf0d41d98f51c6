"""The pytest-html additions: the title, the gate and measurement columns, the rollback summary.

Registered beside the evidence reporter (plugins/report.py); the facts shown are its RunEvidence.
Everything that came from the target is redacted and escaped before it reaches HTML.
"""

from __future__ import annotations

from collections.abc import Generator
from html import escape
from typing import Any

import pytest

from ..rollback.evidence import MANIFEST_NAME
from ..rollback.evidence_model import EVIDENCE_NAME
from . import report_features as features
from .items import CHECK_PROPERTY, GATE_PROPERTY, TARGET_PROPERTY
from .report_evidence import RunEvidence
from .report_reading import user_property

_SUMMARY_STYLE = (
    "<style>#rollback-comparison th, #rollback-comparison td, #rollback-timeline th, "
    "#rollback-timeline td {padding: 2px 10px; text-align: left; border-bottom: 1px solid #e1e4e8; "
    "vertical-align: top}</style>"
)


class HtmlAdditions:
    """pytest-html's hooks; ``started`` tells that pytest-html began writing its report."""

    def __init__(self, source: RunEvidence) -> None:
        self.source = source
        self.started = False

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A check's measurement as a JSON extra of its row (redacted when it was recorded)."""
        report = yield
        check = user_property(report, CHECK_PROPERTY)
        if report.when == "call" and check is not None:
            try:
                from pytest_html import extras
            except ImportError:  # pragma: no cover - pytest-html is a dependency
                return report
            measured = extras.json(check, name="measured")
            # pytest-html reads `report.extras`, an attribute pytest itself does not declare.
            setattr(report, "extras", [*getattr(report, "extras", []), measured])  # noqa: B010
        return report

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        run = self.source.run
        report.title = f"Rollback evidence: {run.config.settings.service.name} ({run.run_id})"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="sortable" data-column-type="gate">Gate</th>')
        cells.insert(3, "<th>Measured</th>")
        cells.insert(4, "<th>Before (baseline)</th>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        gate = user_property(report, GATE_PROPERTY) or ""
        check = user_property(report, CHECK_PROPERTY)
        measured = self.cell(check) if check else ""
        before = ""
        if check and gate == "verify":
            target = user_property(report, TARGET_PROPERTY)
            name = f"{target}: {check['name']}" if target else check["name"]
            baseline = next((c["before"] for c in self.source.comparisons() if c["check"] == name), None)
            before = self.cell(baseline) if baseline else ""
        test_id = report.nodeid if report.when == "call" else f"{report.nodeid}::{report.when}"
        # pytest-html puts the test id in unescaped: names can carry a target's text.
        cells[1] = f'<td class="col-testId">{self.h(test_id)}</td>'
        cells.insert(1, f'<td class="col-gate">{self.h(gate)}</td>')
        # Both cells are built by cell(), which escapes everything that came from the target.
        cells.insert(3, f"<td>{measured}</td>")
        cells.insert(4, f"<td>{before}</td>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        self.started = True
        prefix.extend(self.summary_html())

    def h(self, value: object) -> str:
        return escape(self.source.redactor.text(str(value)))

    def cell(self, check: dict[str, Any] | None) -> str:
        if check is None:
            return "not run"
        colour = {"passed": "#1a7f37", "failed": "#cf222e"}.get(check["status"], "#9a6700")
        return f'<span style="color:{colour}">{self.h(check["status"])}</span>: {self.h(check["summary"])}'

    def summary_html(self) -> list[str]:
        """The rollback's sections above pytest-html's table: the very facts of evidence.json."""
        evidence = self.source.shown_evidence()
        h = self.h
        clean = self.source.redactor.text
        parts = [_SUMMARY_STYLE, features.html_head(self.source.run, evidence, h), *self._verdict(evidence)]
        parts += self._comparison(evidence["comparisons"])
        parts += features.latency_pictures(evidence["comparisons"], clean)
        parts.extend(features.html_sections(self.source.run, evidence, h))
        parts.append(self._timeline(evidence["timeline"]))
        parts.extend(features.html_tail(self.source.run, evidence, h, self.cell))
        parts.append(
            f"<p>Evidence beside this report: {EVIDENCE_NAME}, journal.jsonl, {MANIFEST_NAME} (sha256sum -c).</p>"
        )
        return parts

    def _verdict(self, evidence: dict[str, Any]) -> list[str]:
        """The headline, the exit code, the relaxed guards and the plan."""
        h = self.h
        ok = evidence["exit"]["code"] == 0
        parts = [
            f'<h2 style="color:{"#1a7f37" if ok else "#cf222e"}">{h(evidence["headline"])}</h2>',
            f"<p>Exit code {h(evidence['exit']['code'])}: {h(evidence['exit']['meaning'])}. "
            f"Run {h(evidence['run_id'])}, config {h(evidence['config'])}.</p>",
        ]
        if evidence["relaxed_safety"]:
            parts.append(
                '<h3>Relaxed safety settings</h3><ul id="rollback-relaxed">'
                + "".join(f"<li>{h(r['setting'])}: {h(r['effect'])}</li>" for r in evidence["relaxed_safety"])
                + "</ul>"
            )
        if evidence["plan"]:
            parts.append("<h3>Plan</h3><ol>" + "".join(f"<li>{h(step)}</li>" for step in evidence["plan"]) + "</ol>")
        return parts

    def _comparison(self, comparisons: list[dict[str, Any]]) -> list[str]:
        rows = "".join(
            f"<tr><td>{self.h(c['check'])}</td><td>{self.cell(c['before'])}</td><td>{self.cell(c['after'])}</td></tr>"
            for c in comparisons
        )
        if not rows:
            return []
        return [
            '<h3>Before and after</h3><table id="rollback-comparison"><tr><th>Check</th>'
            f"<th>Before (baseline)</th><th>After (verify)</th></tr>{rows}</table>"
        ]

    def _timeline(self, events: list[dict[str, Any]]) -> str:
        h = self.h
        rows = "".join(
            f"<tr><td>{h(_clock(e['at']))}</td><td>{h(e['what'])}</td><td>{h(e['status'])}</td>"
            f"<td>{h(_seconds(e['duration_s']))}</td><td>{h(_detail(e['detail']))}</td></tr>"
            for e in events
        )
        return (
            f"<h3>Timeline</h3>{features.timeline_svg(events, self.source.redactor.text)}"
            '<table id="rollback-timeline"><tr><th>At (UTC)</th><th>Step</th><th>Status</th>'
            f"<th>Duration</th><th>Detail</th></tr>{rows}</table>"
        )


def _clock(timestamp: str | None) -> str:
    """``2026-11-26T03:53:05.008+00:00`` as ``03:53:05.008``: the date is in the report's header."""
    return timestamp[11:23] if timestamp else ""


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f} s"


def _detail(detail: dict[str, Any]) -> str:
    return "; ".join(f"{key}={value}" for key, value in detail.items())
