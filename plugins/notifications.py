"""A feature plugin: ``[[notify]]`` webhooks. The controller, which sees every report (under xdist
too), tells them about the start, each gate phase, the rollback and the end, in the background
(rollback/notify.py); what was delivered goes into the evidence and the report.

It plugs in through the harness's hooks alone (plugins/hookspecs.py): ``pytest_rollback_run_made``
to set up, ``pytest_rollback_session_end`` for the last word, ``pytest_rollback_evidence`` and
``pytest_rollback_html_sections`` for the record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from . import exit_codes
from .fixtures import recorded_outcome
from .items import CHECK_PROPERTY, GATE_PROPERTY
from .state import MODE_GATE_VERIFY, MODE_ROLLBACK, HarnessRun

if TYPE_CHECKING:
    from ..rollback.notify import Notifier

# Phases after verify whose reports mean the rollback has happened (plugins/gates.py names them).
AFTER_ROLLBACK_GATES = ("verify", "reverify", "watch")
PLUGIN_NAME = "rollback-notifications"


@dataclass
class NotifyState:
    """The webhooks' queues, and the phase being reported with its tests' outcomes so far."""

    notifier: Notifier
    phase: str | None = None
    phase_tests: dict[str, str] = field(default_factory=dict)
    phase_failures: list[str] = field(default_factory=list)
    rollback_told: bool = False


@pytest.hookimpl(trylast=True)
def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    if run.is_worker or not run.config.settings.notify or config.option.collectonly:
        return
    reporter = NotificationsReporter(run, NotifyState(_notifier(run)), config)
    config.pluginmanager.register(reporter, PLUGIN_NAME)


def _notifier(run: HarnessRun) -> Notifier:
    from ..rollback.notify import Notifier, Receiver

    receivers = [
        Receiver(
            name=hook.name or f"notify[{index}]",
            url=hook.url,
            format=hook.format,
            headers=dict(hook.headers),
            events=tuple(hook.events),
            timeout=hook.timeout,
        )
        for index, hook in enumerate(run.config.settings.notify)
    ]
    return Notifier(receivers, redact=run.redactor.text)


def _reporter(config: pytest.Config) -> NotificationsReporter | None:
    reporter = config.pluginmanager.get_plugin(PLUGIN_NAME)
    return reporter if isinstance(reporter, NotificationsReporter) else None


def pytest_rollback_session_end(config: pytest.Config, run: HarnessRun, headline: str, exit_code: int) -> None:
    reporter = _reporter(config)
    if reporter is not None:
        reporter.session_end(headline, exit_code)


@pytest.hookimpl(tryfirst=True)  # the first of the features' keys in evidence.json, as it always was
def pytest_rollback_evidence(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    reporter = _reporter(config)
    deliveries = reporter.state.notifier.deliveries if reporter is not None else []
    return {"notifications": [delivery.to_dict() for delivery in deliveries]}


@pytest.hookimpl(trylast=True)  # after the gates' sections, as it always was
def pytest_rollback_html_sections(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    """The report's table of what was sent where (everything escaped)."""
    sent = evidence.get("notifications") or []
    if not sent:
        return []
    rows = "".join(
        f"<tr><td>{h(d['receiver'])}</td><td>{h(d['event'])}</td><td>{h(d['status'])}</td>"
        f"<td>{h(d['detail'])}</td></tr>"
        for d in sent
    )
    return [
        '<h3>Notifications</h3><table id="rollback-notifications"><tr><th>Receiver</th><th>Event</th>'
        f"<th>Status</th><th>Detail</th></tr>{rows}</table>"
    ]


class NotificationsReporter:
    """Webhook events from the controller, which sees every report (under xdist too)."""

    def __init__(self, run: HarnessRun, state: NotifyState, config: pytest.Config) -> None:
        self.run = run
        self.state = state
        self.config = config

    def _base_event(self, kind: str) -> dict[str, Any]:
        run = self.run
        return {
            "event": kind,
            "run_id": run.run_id,
            "service": run.config.settings.service.name,
            "target": run.target_spec.name if run.target_spec else None,
            "incident_id": getattr(self.config.option, "rollback_incident_id", None),
        }

    def _send(self, event: dict[str, Any]) -> None:
        from ..rollback.notify import message

        event["text"] = self.run.redactor.text(message(event))
        self.state.notifier.send(self.run.redactor.data(event))

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        run, option = self.run, self.config.option
        hooks = run.config.settings.notify
        if run.mode == MODE_GATE_VERIFY:
            action = f"deploy gate: verifying {run.expect_version or 'the deployed version'}"
            on_failure = getattr(option, "rollback_on_failure", None)
            if on_failure:
                action += f", rolling back to {on_failure} if it fails"
            versions = {"from": None, "to": run.expect_version}
        elif run.mode == MODE_ROLLBACK:
            action = "dry run of a rollback" if run.dry_run else "rollback"
            versions = {"from": None, "to": run.requested}
        else:
            action = f"preflight gate for a rollback to {run.requested}"
            versions = {"from": None, "to": run.requested}
        impact = ", ".join(
            f"{name} {value}"
            for name, value in (
                ("severity", getattr(option, "rollback_severity", None)),
                ("data impact", getattr(option, "rollback_data_impact", None)),
            )
            if value
        )
        event = self._base_event("start")
        event.update(
            action=action,
            **versions,
            eta=next((hook.eta for hook in hooks if hook.eta), None),
            impact=impact or None,
            status_channel=next((hook.status_channel for hook in hooks if hook.status_channel), None),
        )
        self._send(event)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.run.is_worker:
            return
        gate = dict(report.user_properties).get(GATE_PROPERTY)
        if gate is None:
            return
        if gate != self.state.phase:
            self._phase_done()
            self.state.phase = str(gate)
        if gate in AFTER_ROLLBACK_GATES:
            self._tell_rollback()
        outcome = self.state.phase_tests.get(report.nodeid, "passed")
        if report.failed:
            outcome = "failed"
            check = dict(report.user_properties).get(CHECK_PROPERTY)
            name = report.nodeid.rpartition("::")[2]
            self.state.phase_failures.append(f"{name}: {_summary_of(check) or report.longreprtext[:200]}")
        elif report.skipped and outcome == "passed":
            outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        self.state.phase_tests[report.nodeid] = outcome

    def _phase_done(self) -> None:
        state = self.state
        if state.phase is None or not state.phase_tests:
            return
        outcomes = list(state.phase_tests.values())
        counts = ", ".join(
            f"{outcomes.count(o)} {o}" for o in ("passed", "failed", "xfailed", "skipped") if o in outcomes
        )
        if "failed" in outcomes:
            result = "FAILED"
        elif "passed" in outcomes:
            result = "passed" if state.phase != "baseline" else "measured"
        else:
            result = "did not run"
        event = self._base_event("gate")
        event.update(gate=state.phase, result=result, counts=counts, failures=list(state.phase_failures))
        self._send(event)
        state.phase, state.phase_tests, state.phase_failures = None, {}, []

    def _tell_rollback(self) -> None:
        if self.state.rollback_told:
            return
        outcome = recorded_outcome(self.run)
        if outcome is None:
            return
        self.state.rollback_told = True
        event = self._base_event("rollback")
        event.update(
            status=outcome.status,
            summary=outcome.message,
            duration_s=outcome.duration_s,
            **{"from": outcome.from_version, "to": outcome.to_version},
        )
        self._send(event)

    def session_end(self, headline_text: str, code: int) -> None:
        """The last event, then a bounded wait for every queue; what was not delivered is journaled
        and said on the terminal. Called by report.py just before the evidence is written."""
        notifier = self.state.notifier
        self._phase_done()
        self._tell_rollback()
        event = self._base_event("end")
        event.update(headline=headline_text, exit_code=code, meaning=exit_codes.MEANINGS.get(code))
        self._send(event)
        try:
            deliveries = notifier.close()
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting for the webhooks, keep the evidence
            deliveries = notifier.close(wait_s=0)
        for delivery in deliveries:
            # "undelivered", not "failed": a message is not a step of the rollback (journal.STEP_STATES).
            status = "sent" if delivery.status == "sent" else "undelivered"
            detail = {k: v for k, v in delivery.to_dict().items() if k != "status"}
            self.run.journal.record("notify", status, result=delivery.status, **detail)
        for delivery in notifier.undelivered():
            self.run.progress(
                f"notification {delivery.event} to {delivery.receiver} {delivery.status}: {delivery.detail}"
            )


def _summary_of(check: object) -> str | None:
    if isinstance(check, str):
        try:
            data = json.loads(check)
        except ValueError:
            return None
        return str(data.get("summary")) if isinstance(data, dict) else None
    return None
