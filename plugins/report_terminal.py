"""The terminal's part: the header's rollback lines and the "rollback" section of the summary.

Registered beside the evidence reporter (plugins/report.py); the facts shown are its RunEvidence;
every line that can carry the target's text passes through the run's Redactor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..rollback.evidence_model import EVIDENCE_NAME
from . import exit_codes
from . import report_features as features
from .report_evidence import RunEvidence
from .state import MODE_GATE_PREFLIGHT, MODE_GATE_VERIFY

# Two columns of comparisons when each gets at least this many characters, else stacked.
_COLUMN_MIN = 48


class TerminalSummary:
    """pytest's terminal hooks for the run: what it is about, then how it ended and where the evidence is."""

    def __init__(self, source: RunEvidence, write_failures: list[str]) -> None:
        self.source = source
        # The evidence reporter's list of files that could not be written, filled as they fail.
        self.write_failures = write_failures

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        run = self.source.run
        what = {
            MODE_GATE_VERIFY: "verify gate, expecting "
            + (run.expect_version or "the version the target's platform says is deployed"),
            MODE_GATE_PREFLIGHT: f"preflight gate for a rollback to {run.requested}",
        }.get(run.mode, f"rollback to {run.requested}{' (dry run)' if run.dry_run else ''}")
        target = f", target {run.target_spec.name} ({run.target_spec.kind})" if run.target_spec else ""
        if run.is_fleet:
            target = f", fleet of {len(run.fleet)} targets ({', '.join(run.fleet)}), {run.fleet_parallel} at a time"
        return [
            f"rollback: {run.config.settings.service.name}: {what}{target}",
            f"rollback: config {run.config.path}; evidence in {run.run_dir}",
        ]

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        source = self.source
        if source.run.is_worker:
            return
        redact = source.redactor.text
        write = terminalreporter.write_line
        code = source.exit_code if source.exit_code is not None else exitstatus
        # As pytest does: -q shortens the section to its verdict and where the evidence is, -qq to one line.
        verbosity = config.get_verbosity()
        if verbosity <= -2:
            write(redact(f"rollback: {source.headline()} (exit code {code})"))
            return
        terminalreporter.write_sep("=", "rollback")
        if source.exit_code == pytest.ExitCode.USAGE_ERROR:
            write(redact(source.headline()))
            return
        evidence = source.shown_evidence()
        for line in features.terminal_head(self.source.run, evidence):
            write(redact(line))
        write(redact(source.headline()))
        comparisons = source.comparisons() if verbosity >= 0 else []
        if comparisons:
            for line in _comparison_lines(comparisons, config.get_terminal_writer().fullwidth, redact):
                write(line)
        for line in features.terminal_lines(self.source.run, evidence):
            write(redact(line))
        for relaxed in source.relaxed_safety():
            write(redact(f"relaxed safety: {relaxed['setting']}: {relaxed['effect']}"))
        write(f"exit code {code}: {exit_codes.MEANINGS.get(code, 'see pytest exit codes')}")
        for failure in self.write_failures:
            write(redact(f"not written: {failure}"))
        path = source.run.run_dir / EVIDENCE_NAME
        write(f"evidence: {path}" if path.is_file() else f"evidence: {path} was NOT written")
        html = getattr(config.option, "htmlpath", None)
        if html and Path(html).is_file():
            write(f"report:   {html}")


def _comparison_lines(comparisons: list[dict[str, Any]], fullwidth: int, redact: Callable[[str], str]) -> list[str]:
    """Each check before and after: two columns when the terminal is wide enough to show them whole."""
    width = max(len(c["check"]) for c in comparisons) + 2
    column = (fullwidth - width) // 2
    if column < _COLUMN_MIN:
        return [
            redact(f"{c['check']}\n  before: {_short(c['before'], 200)}\n  after:  {_short(c['after'], 200)}")
            for c in comparisons
        ]
    lines = [f"{'check':<{width}}{'before':<{column}}after"]
    for c in comparisons:
        before, after = _short(c["before"], column - 2), _short(c["after"], column - 2)
        lines.append(redact(f"{c['check']:<{width}}{before:<{column}}{after}"))
    return lines


def _short(check: dict[str, Any] | None, limit: int) -> str:
    if check is None:
        return "not run"
    text = f"{check['status']}: {check['summary']}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
