"""Reading pytest's reports into plain values: the harness's user properties and a phase's outcome.

Shared by plugins/report.py (the evidence) and plugins/report_html.py (the table's columns).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from ..rollback.evidence_model import PhaseReport
from .items import CHECK_PROPERTY, GATE_PROPERTY, TARGET_PROPERTY
from .state import XDIST_GROUP


def user_property(report: pytest.TestReport | pytest.CollectReport, name: str) -> Any:
    # A CollectReport (pytest-html shows failed collections too) has no user_properties.
    for key, value in getattr(report, "user_properties", ()):
        if key == name:
            # The check's result travels as JSON text (JUnit XML shows it as it is): a dict here.
            return json.loads(value) if name == CHECK_PROPERTY and isinstance(value, str) else value
    return None


def plain_nodeid(report: pytest.TestReport) -> str:
    """xdist's group suffix (@rollback-runbook) is scheduling detail, not part of the name."""
    return report.nodeid.removesuffix("@" + XDIST_GROUP)


def phase_report(report: pytest.TestReport, redact: Callable[[str], str]) -> PhaseReport:
    """One phase of a test for the evidence; an expected failure's reason passes through ``redact``."""
    xfailed = hasattr(report, "wasxfail")
    if report.failed:
        message = _message(report)
    elif report.skipped:
        message = redact(report.wasxfail) if xfailed else _message(report)
    else:
        message = ""
    return PhaseReport(
        nodeid=plain_nodeid(report),
        when=report.when,
        gate=user_property(report, GATE_PROPERTY),
        target=user_property(report, TARGET_PROPERTY),
        check=user_property(report, CHECK_PROPERTY),
        duration=report.duration,
        start=getattr(report, "start", None),
        stop=getattr(report, "stop", None),
        worker=_worker(report),
        failed=report.failed,
        skipped=report.skipped,
        xfailed=xfailed,
        message=message,
    )


def _worker(report: pytest.TestReport) -> str | None:
    """The xdist worker that ran the test (gw0, gw1, ...), None without xdist."""
    node = getattr(report, "node", None)
    return getattr(getattr(node, "gateway", None), "id", None)


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext.strip()
    return text.removeprefix("Failed: ")
