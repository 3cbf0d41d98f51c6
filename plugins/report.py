"""Evidence: the JSON bundle, the pytest-html additions, the terminal summary and exit codes.

Everything written here passes through the run's Redactor, and everything that came from the
target is escaped before it reaches HTML.
"""

from __future__ import annotations

import errno
import json
import sys
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import pytest

from ..rollback.evidence import MANIFEST_NAME, write_json, write_manifest
from ..rollback.fleet import STATUS_PARTIAL
from ..rollback.runbook import (
    STATUS_ALREADY_AT_TARGET,
    STATUS_CONFLICT,
    STATUS_FAILED,
    STATUS_NOT_CONFIRMED,
    STATUS_REFUSED,
    STATUS_ROLLED_BACK,
    RollbackOutcome,
)
from . import exit_codes, gates, incident, pictures
from .fixtures import RUN_LOCK_NAME, recorded_outcome
from .items import CHECK_PROPERTY, GATE_PROPERTY, TARGET_PROPERTY
from .state import MODE_GATE_PREFLIGHT, MODE_GATE_VERIFY, XDIST_GROUP, HarnessRun

EVIDENCE_NAME = "evidence.json"


def _property(report: pytest.TestReport | pytest.CollectReport, name: str) -> Any:
    # A CollectReport (pytest-html shows failed collections too) has no user_properties.
    for key, value in getattr(report, "user_properties", ()):
        if key == name:
            # The check's result travels as JSON text (JUnit XML shows it as it is): a dict here.
            return json.loads(value) if name == CHECK_PROPERTY and isinstance(value, str) else value
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
        # Tests whose call phase reported: a test cut short after its setup did not pass.
        self.called: set[str] = set()
        # Built once when the session ends; the HTML summary shows the very same facts.
        self.final_evidence: dict[str, Any] | None = None
        # "evidence.json was not written: No space left on device", shown in the summary.
        self.write_failures: list[str] = []
        self._session: pytest.Session | None = None
        self._html_started = False
        # Names of the items left after -k / -m: a gate deselected there is a relaxed guard.
        self.selected_names: set[str] = set()

    # -- where the items run ---------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if getattr(report, "wasxfail", None) and _property(report, GATE_PROPERTY) == "baseline":
            # A baseline measurement, not a broken test: its words, not the harness's own source.
            report.longrepr = str(getattr(report, "wasxfail"))  # noqa: B009
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
        if isinstance(getattr(report, "wasxfail", None), str):  # JUnit XML's message for a baseline's xfail
            report.wasxfail = redact(report.wasxfail)  # type: ignore[union-attr]
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
        target = _property(report, TARGET_PROPERTY)
        if target is not None:
            entry["target"] = target  # a fleet's item: the target it checks
        entry["duration_s"] = round(entry["duration_s"] + report.duration, 3)
        if report.when == "call":
            self.called.add(nodeid)
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
        if run.is_fleet:
            target = f", fleet of {len(run.fleet)} targets ({', '.join(run.fleet)}), {run.fleet_parallel} at a time"
        return [
            f"rollback: {run.config.settings.service.name}: {what}{target}",
            f"rollback: config {run.config.path}; evidence in {run.run_dir}",
        ]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.run.is_worker:
            return
        self.exit_code = gates.exit_code(self.run, self.tests, self._exit_code(int(exitstatus)))
        session.exitstatus = self.exit_code
        if self.exit_code == pytest.ExitCode.USAGE_ERROR and not self.run.journal.entries():
            return  # nothing ran: no evidence to keep
        gates.session_end(self.config, self.headline(), self.exit_code)  # the webhooks' last word, bounded
        self.final_evidence = self.evidence()
        written = self._write_guarded(
            EVIDENCE_NAME, lambda: write_json(self.run.run_dir / EVIDENCE_NAME, self.final_evidence, self.redactor)
        )
        if written:  # built from the evidence; after a Ctrl-C or a full disk there, nothing more is written
            incident.write_markdown(self.run, self.config, self.final_evidence, self._write_guarded)
        self._session = session
        self._evidence_missing()

    def _evidence_missing(self) -> None:
        """A success whose evidence could not all be written ends with its own exit code, never 0."""
        if self.write_failures and self.exit_code == exit_codes.OK and self._session is not None:
            self.exit_code = exit_codes.EVIDENCE_NOT_WRITTEN
            self._session.exitstatus = self.exit_code

    def _write_guarded(self, name: str, write: Callable[[], object]) -> bool:
        """Run one evidence writer; a full disk, a read-only folder or Ctrl-C is recorded, not raised.

        The run's outcome does not change because its evidence could not be written: the
        headline and the exit code stay true, and the terminal says which file is missing.
        """
        try:
            write()
        except OSError as exc:
            self.write_failures.append(f"{name} was not written: {_os_reason(exc)}")
            return False
        except KeyboardInterrupt:
            self.write_failures.append(f"{name} was not written: interrupted while it was being written")
            return False
        return True

    @pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_guard(self, session: pytest.Session) -> Generator[None, None, None]:
        """pytest-html and JUnit XML write their files in their own pytest_sessionfinish.

        Innermost of the wrappers, so a failure there (ENOSPC, EROFS, Ctrl-C) is caught before
        the terminal reporter's wrapper: the rollback section still prints, with the true
        headline and exit code, and pytest does not turn it into an internal error.
        """
        if self.run.is_worker:
            return (yield)
        try:
            yield
        except (OSError, KeyboardInterrupt) as exc:
            name = self._artifact_being_written(exc)
            reason = _os_reason(exc) if isinstance(exc, OSError) else "interrupted while it was being written"
            self.write_failures.append(f"{name} was not written: {reason}")
            path = getattr(self.config.option, "htmlpath" if self._html_started else "xmlpath", None)
            if path and name == self._artifact(path):
                _remove_quietly(Path(path))  # a cut file must not pass for the evidence
        for path in (getattr(self.config.option, key, None) for key in ("htmlpath", "xmlpath")):
            if path and not Path(path).is_file():
                name = self._artifact(path) or str(path)
                if not any(failure.startswith(f"{name} ") for failure in self.write_failures):
                    self.write_failures.append(f"{name} was not written: an earlier writer failed")
        html_path = getattr(self.config.option, "htmlpath", None)
        if html_path and not Path(html_path).is_file():
            self._silence_html_report()
        self._evidence_missing()
        return None

    def _silence_html_report(self) -> None:
        """pytest-html's terminal line would announce a report that is not there."""
        try:
            from pytest_html.basereport import BaseReport
        except ImportError:  # pragma: no cover - pytest-html is a dependency
            return
        for plugin in self.config.pluginmanager.get_plugins():
            if isinstance(plugin, BaseReport):
                self.config.pluginmanager.unregister(plugin)

    def _artifact_being_written(self, exc: BaseException) -> str:
        filename = getattr(exc, "filename", None)
        if filename:
            return self._artifact(str(filename)) or str(filename)
        # pytest-html asks for its summary just before it writes; JUnit XML writes before it.
        if self._html_started:
            return self._artifact(getattr(self.config.option, "htmlpath", None)) or "report.html"
        xml = getattr(self.config.option, "xmlpath", None)
        if xml and not _complete_junit(Path(xml)):
            return self._artifact(xml) or "junit.xml"
        return "a report file (another plugin's)"

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Last of all, once every writer is done: the manifest of what is in the run folder.

        A folder that holds a journal is never deleted, whatever failed: only a run that
        changed and recorded nothing (a usage error) leaves no folder behind.
        """
        run_dir = self.run.run_dir
        if self.run.is_worker or not run_dir.is_dir():
            return
        _remove_quietly(run_dir / RUN_LOCK_NAME)
        from .fleet import remove_empty_folders

        remove_empty_folders(self.run)
        if not (run_dir / self.run.journal.path.name).exists() and not (run_dir / EVIDENCE_NAME).exists():
            # Nothing ran and nothing was recorded (a usage error): the empty report pytest-html
            # and JUnit XML wrote go, and the folder with them if nothing else is in it.
            for key in ("htmlpath", "xmlpath"):
                path = getattr(config.option, key, None)
                if path and Path(path).resolve().parent == run_dir.resolve():
                    _remove_quietly(Path(path))
            try:
                run_dir.rmdir()  # only when empty: never another file is deleted with it
            except OSError:
                pass
            else:
                return
        if not self._write_guarded(MANIFEST_NAME, lambda: write_manifest(run_dir)):
            self._late_line(self.write_failures[-1])
            if self.exit_code == exit_codes.OK:
                self._evidence_missing()
                meaning = exit_codes.MEANINGS[exit_codes.EVIDENCE_NOT_WRITTEN]
                self._late_line(f"exit code {self.exit_code}: {meaning}")
            return
        keep = self.run.config.settings.reports.keep
        if keep is not None:
            from ..rollback.retention import prune_runs

            for line in prune_runs(run_dir, keep).lines():
                self._late_line(line)

    def _late_line(self, message: str) -> None:
        """A line after the terminal summary (the manifest is written after it)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        line = f"[rollback] {self.redactor.text(message)}"
        if reporter is not None:
            reporter.write_line(line)
        else:
            sys.stderr.write(line + "\n")

    def _failed(self, gate: str) -> bool:
        return any(t["gate"] == gate and t["outcome"] in ("failed", "error") for t in self.tests.values())

    def _passed(self, gate: str) -> bool:
        """Some check of the gate ran and passed (deselected or skipped checks verify nothing)."""
        return any(
            t["gate"] == gate and t["outcome"] == "passed" and t["nodeid"] in self.called for t in self.tests.values()
        )

    def _required_not_run(self) -> bool:
        """verify-version did not pass, or the census did not run, on some target of this rollback."""
        runs = list(self.run.fleet.values()) if self.run.is_fleet else [self.run]
        for owner in runs:
            target = owner.target_spec.name if self.run.is_fleet and owner.target_spec is not None else None
            ran = {
                t["check"]["name"]: t["outcome"]
                for t in self.tests.values()
                if t["gate"] == "verify" and t.get("check") and t.get("target") == target
            }
            if ran.get("version") != "passed":
                return True
            if owner.target_spec is not None and ran.get("replicas") not in ("passed", "skipped"):
                return True
        return False

    def _exit_code(self, exitstatus: int) -> int:
        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
            return exitstatus
        run = self.run
        outcome = recorded_outcome(run)
        status = outcome.status if outcome else None
        if self._failed("preflight") or status == STATUS_REFUSED:
            return exit_codes.PREFLIGHT_REFUSED
        if status == STATUS_PARTIAL:
            return exit_codes.PARTIAL
        if status == STATUS_NOT_CONFIRMED:
            return exit_codes.NOT_CONFIRMED
        if status == STATUS_FAILED:
            return exit_codes.ROLLBACK_FAILED
        if status == STATUS_CONFLICT:
            return exit_codes.CONFLICT
        if self._failed("verify"):
            return exit_codes.VERIFY_FAILED
        if run.rolls_back and not run.dry_run and outcome is None:
            # A rollback was asked for and did not happen: never a success.
            return exit_codes.ROLLBACK_FAILED
        if run.rolls_back and not run.dry_run and self._required_not_run():
            # Deselected under xdist, where collection cannot refuse: never a success.
            return exit_codes.VERIFY_FAILED
        if (run.rolls_back and not run.dry_run) or run.mode == MODE_GATE_VERIFY:
            if not self._passed("verify"):
                # Rolled back (or gated) with nothing verified: never a success either.
                return exit_codes.VERIFY_FAILED
        return exitstatus

    # -- the evidence -----------------------------------------------------------------------

    def headline(self) -> str:
        return gates.headline(self.run, self.config, self.tests, self.exit_code, self._headline())

    def _headline(self) -> str:
        run = self.run
        outcome = recorded_outcome(run)
        service = run.config.settings.service.name
        verify = self._gate_counts("verify")
        interrupted = self.exit_code == pytest.ExitCode.INTERRUPTED
        if self.exit_code == pytest.ExitCode.USAGE_ERROR:
            return f"{service}: usage error, nothing was run"
        if self.collection_errors and not self.tests:
            where = ", ".join(self.collection_errors)
            return f"{service}: collection failed ({where}): nothing was run"
        if interrupted:
            service = f"{service}: {f'TERMINATED ({run.terminated_by})' if run.terminated_by else 'INTERRUPTED'}"
        if run.mode == MODE_GATE_VERIFY:
            if self._failed("verify"):
                verdict = "FAILED"
            elif interrupted:
                verdict = "INTERRUPTED, not passed"
            else:
                verdict = "passed" if self._passed("verify") else "did NOT run (every check deselected or skipped)"
            return f"{service}: verify gate {verdict} ({verify}){self._verify_seen()}"
        if run.mode == MODE_GATE_PREFLIGHT:
            if self._failed("preflight"):
                verdict = "REFUSED"
            elif interrupted:
                verdict = "did not finish"
            else:
                verdict = "passed" if self._passed("preflight") else "did NOT run (deselected)"
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
            from .fleet import steps_of_targets

            steps.update(steps_of_targets(run))  # a fleet: each target's steps, named "target: step"
            if steps:
                # Cut short mid-rollback (Ctrl-C, a crash): say exactly which steps got how far.
                done = ", ".join(f"{step} {state}" for step, state in steps.items())
                return f"{service}: rollback to {run.requested} did not finish: {done}"
            if run.rolls_back and not run.dry_run and not interrupted:
                return f"{service}: rollback to {run.requested} was NOT attempted (no selected test needed it)"
            return f"{service}: no rollback was attempted"
        if outcome.status in (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET):
            return f"{service}: {outcome.message}; {self._verify_verdict('verified')} ({verify}){self._verify_seen()}"
        return f"{service}: {outcome.message}"

    # The checks whose findings a headline repeats, most telling first.
    _SEEN_FIRST = ("version", "replicas", "health")

    def _verify_seen(self) -> str:
        """What verify saw, for the headline: the first failed check's own words, else the census.

        A verdict an on-call engineer can bet on names what was seen ("a replica is still on the
        old version: v1.2.9 on 54 of 59 answers, v1.3.0 on 5"), not only how many checks passed.
        """
        checks = [t["check"] for t in self.tests.values() if t["gate"] == "verify" and t.get("check")]
        order = {name: index for index, name in enumerate(self._SEEN_FIRST)}
        checks.sort(key=lambda check: order.get(check["name"], len(order)))
        failed = [check for check in checks if check["status"] != "passed"]
        if failed:
            return f": {failed[0]['name']}: {failed[0]['summary']}"
        census = next((c for c in checks if c["name"] == "replicas" and "unit" in c["measured"]), None)
        return f"; census: {census['summary']}" if census is not None else ""

    def _verify_verdict(self, success: str) -> str:
        """What the verify gate showed, in words that are true whether it ran, failed or was cut short."""
        if self._failed("verify"):
            return "verify FAILED"
        if self.exit_code == pytest.ExitCode.INTERRUPTED:
            return "NOT verified: the verify gate was interrupted"
        if not self._passed("verify"):
            return "NOT verified: the verify gate was deselected or skipped"
        return success

    def _gate_counts(self, gate: str) -> str:
        outcomes = [
            "not finished" if t["outcome"] == "passed" and t["nodeid"] not in self.called else t["outcome"]
            for t in self.tests.values()
            if t["gate"] == gate
        ]
        names = ("passed", "failed", "error", "skipped", "not finished")
        counts = {name: outcomes.count(name) for name in names if name in outcomes}
        return ", ".join(f"{n} {name}" for name, n in counts.items()) or "no checks"

    def comparisons(self) -> list[dict[str, Any]]:
        """Each check's baseline and verify result side by side, in config order."""
        rows: dict[str, dict[str, Any]] = {}
        sides = gates.comparison_sides(self.tests)  # after an automatic rollback: deploy, then rollback
        for test in self.tests.values():
            check = test["check"]
            if check is None or test["gate"] not in sides:
                continue
            side = sides[test["gate"]]
            name = f"{test['target']}: {check['name']}" if test.get("target") else check["name"]
            rows.setdefault(name, {"check": name, "before": None, "after": None})[side] = check
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
        evidence: dict[str, Any] = {
            "schema": "rollback-evidence/1",
            **incident.evidence_fields(run, self.config),  # the decision and its inputs come first
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
            "relaxed_safety": self.relaxed_safety(),
            "comparisons": self.comparisons(),
            "tests": list(self.tests.values()),
            "timeline": self.timeline(),
            **gates.evidence(self.run, self.config, self.tests),
            "artifacts": {
                "html": self._artifact(getattr(self.config.option, "htmlpath", None)),
                "junit": self._artifact(getattr(self.config.option, "xmlpath", None)),
                # A gate run that journaled nothing has no journal: only files that exist are listed.
                "journal": run.journal.path.name if run.journal.path.is_file() else None,
                "manifest": MANIFEST_NAME,
                **incident.artifacts(run, self.config),
            },
        }
        from .fleet import evidence_additions

        evidence.update(evidence_additions(run, self.tests))  # a fleet's targets, a target's hosts
        return evidence

    def relaxed_safety(self) -> list[dict[str, str]]:
        """Every setting of this run that lowered a guard, so no reader takes the result for more."""
        run = self.run
        settings = run.config.settings
        relaxed = []
        if not settings.service.verify_tls:
            relaxed.append(
                {
                    "setting": "service.verify_tls = false",
                    "effect": "the service's TLS certificate was not verified by any probe",
                }
            )
        if settings.health is not None and settings.health.consecutive == 1:
            relaxed.append(
                {
                    "setting": "health.consecutive = 1",
                    "effect": "one healthy answer counted as healthy: flaps go unseen",
                }
            )
        if run.rolls_back and run.assume_yes and not run.dry_run:
            relaxed.append(
                {"setting": "--rollback-yes", "effect": "the rollback proceeded without a confirmation prompt"}
            )
        if run.rolls_back and run.fast and not run.dry_run:
            relaxed.append(
                {
                    "setting": "--rollback-fast",
                    "effect": "emergency mode: the driver traded its rollout safety for speed "
                    "(swarm: every task replaced at once, a 1 s failure watch, stop-first); the plan says how",
                }
            )
        relaxed.extend(incident.relaxed(run, self.config))
        if run.rolls_back and run.options.get("allow_data_loss"):
            relaxed.append(
                {"setting": "--allow-data-loss", "effect": "a database downgrade that drops data was permitted"}
            )
        skipped = self._gates_not_run()
        if skipped:
            selection = " ".join(
                f"{flag} {value!r}"
                for flag, value in (("-k", self.config.option.keyword), ("-m", self.config.option.markexpr))
                if value
            )
            relaxed.append(
                {
                    "setting": selection or "deselected gate items",
                    "effect": f"gate checks deselected, not run: {', '.join(skipped)}",
                }
            )
        return relaxed

    def _gates_not_run(self) -> list[str]:
        """The runbook's preflight and verify items that -k / -m left out."""
        if not (self.config.option.keyword or self.config.option.markexpr):
            return []
        from ..rollback.runbook import preflight_finding_names
        from .items import check_specs

        expected = []
        if "preflight" in self.run.phases:
            expected += [f"preflight-{name}" for name in preflight_finding_names(self.run.config, self.run.target_spec)]
        if "verify" in self.run.phases:
            expected += [f"verify-{spec.key}" for spec in check_specs(self.run)]
        return [name for name in expected if name not in self.selected_names]

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected_names.update(item.name for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the workers collect (and apply -k / -m); the controller hears their ids."""
        self.selected_names.update(nodeid.rpartition("::")[2].removesuffix("@" + XDIST_GROUP) for nodeid in ids)

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
            target = _property(report, TARGET_PROPERTY)
            name = f"{target}: {check['name']}" if target else check["name"]
            baseline = next((c["before"] for c in self.comparisons() if c["check"] == name), None)
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
        self._html_started = True
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
            incident.decision_html(evidence, h),
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
        rows = "".join(
            f"<tr><td>{h(c['check'])}</td><td>{self._cell(c['before'])}</td><td>{self._cell(c['after'])}</td></tr>"
            for c in evidence["comparisons"]
        )
        if rows:
            parts.append(
                '<h3>Before and after</h3><table id="rollback-comparison"><tr><th>Check</th>'
                f"<th>Before (baseline)</th><th>After (verify)</th></tr>{rows}</table>"
            )
        parts += pictures.latency_pictures(evidence["comparisons"], self.redactor.text)
        parts.extend(gates.summary_html(evidence, h))
        timeline = "".join(
            f"<tr><td>{h(_clock(e['at']))}</td><td>{h(e['what'])}</td><td>{h(e['status'])}</td>"
            f"<td>{h(_seconds(e['duration_s']))}</td><td>{h(_detail(e['detail']))}</td></tr>"
            for e in evidence["timeline"]
        )
        parts.append(
            f"<h3>Timeline</h3>{pictures.timeline_svg(evidence['timeline'], self.redactor.text)}"
            '<table id="rollback-timeline"><tr><th>At (UTC)</th><th>Step</th><th>Status</th>'
            f"<th>Duration</th><th>Detail</th></tr>{timeline}</table>"
        )
        from .fleet import html_sections

        parts.extend(html_sections(evidence, h, self._cell))
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
        if self.exit_code == pytest.ExitCode.USAGE_ERROR:
            write(self.redactor.text(self.headline()))
            return
        write(self.redactor.text(incident.decision_line(self.final_evidence or self.evidence())))
        write(self.redactor.text(self.headline()))
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
        from .fleet import terminal_lines

        for line in terminal_lines(self.final_evidence or self.evidence()):
            write(self.redactor.text(line))
        for relaxed in self.relaxed_safety():
            write(self.redactor.text(f"relaxed safety: {relaxed['setting']}: {relaxed['effect']}"))
        write(f"exit code {code}: {exit_codes.MEANINGS.get(code, 'see pytest exit codes')}")
        for failure in self.write_failures:
            write(self.redactor.text(f"not written: {failure}"))
        evidence = self.run.run_dir / EVIDENCE_NAME
        write(f"evidence: {evidence}" if evidence.is_file() else f"evidence: {evidence} was NOT written")
        html = getattr(config.option, "htmlpath", None)
        if html and Path(html).is_file():
            write(f"report:   {html}")


def _os_reason(exc: OSError) -> str:
    """``No space left on device (ENOSPC)``: the OS's words and the code to search for."""
    code = errno.errorcode.get(exc.errno or 0)
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason} ({code})" if code else reason


def _complete_junit(path: Path) -> bool:
    try:
        return path.read_bytes().rstrip().endswith(b"</testsuites>")
    except OSError:
        return False


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


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
