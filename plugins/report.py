"""Evidence: the pytest hooks that collect the run's reports, the exit code policy and the files written.

What evidence.json says is built from plain data by rollback/evidence_model.py; the pytest-html
additions are plugins/report_html.py, the terminal summary plugins/report_terminal.py, and every
question to the features (one hook call each) goes through plugins/report_features.py.
Everything written here passes through the run's Redactor.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from ..rollback import evidence_model as model
from ..rollback import run_files
from ..rollback.evidence import MANIFEST_NAME, write_json, write_manifest
from ..rollback.evidence_model import EVIDENCE_NAME
from ..rollback.fleet import STATUS_PARTIAL
from ..rollback.retention import prune_runs
from ..rollback.runbook import STATUS_CONFLICT, STATUS_FAILED, STATUS_NOT_CONFIRMED, STATUS_REFUSED
from . import exit_codes
from . import report_features as features
from .fixtures import RUN_LOCK_NAME, recorded_outcome
from .items import CHECK_PROPERTY, GATE_PROPERTY
from .report_evidence import RunEvidence
from .report_html import HtmlAdditions
from .report_reading import phase_report, plain_nodeid, user_property
from .report_terminal import TerminalSummary
from .state import MODE_GATE_VERIFY, XDIST_GROUP, HarnessRun

__all__ = ["EVIDENCE_NAME", "EvidenceReporter"]

_INTERRUPTED_WHILE_WRITING = "interrupted while it was being written"


class EvidenceReporter:
    """Registered by the harness for one run; collects reports and writes the evidence.

    It registers its HTML and terminal parts beside itself, so that they run where it runs.
    """

    def __init__(self, run: HarnessRun, config: pytest.Config) -> None:
        self.run = run
        self.config = config
        self.redactor = run.redactor
        self.evidence = RunEvidence(run, config)
        self.ledger = self.evidence.ledger
        # "evidence.json was not written: No space left on device", shown in the summary.
        self.write_failures: list[str] = []
        self._session: pytest.Session | None = None
        self.html = HtmlAdditions(self.evidence)
        config.pluginmanager.register(self.html, "rollback-evidence-html")
        config.pluginmanager.register(TerminalSummary(self.evidence, self.write_failures), "rollback-evidence-terminal")

    # -- where the items run ---------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if getattr(report, "wasxfail", None) and user_property(report, GATE_PROPERTY) == "baseline":
            # A baseline measurement, not a broken test: its words, not the harness's own source.
            report.longrepr = str(getattr(report, "wasxfail"))  # noqa: B009
        self._redact_report(report)
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
            self.ledger.collection_errors.append(report.nodeid or "(session)")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        gate = user_property(report, GATE_PROPERTY)
        if report.failed and gate == "preflight" and user_property(report, CHECK_PROPERTY) is None:
            # A user's preflight gate failed (the runbook's own findings refuse by themselves).
            self.run.preflight_failures.append(plain_nodeid(report))
        if not self.run.is_worker:
            self.ledger.record(phase_report(report, self.redactor.text))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.evidence.selected_names.update(item.name for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the workers collect (and apply -k / -m); the controller hears their ids."""
        self.evidence.selected_names.update(
            nodeid.rpartition("::")[2].removesuffix("@" + XDIST_GROUP) for nodeid in ids
        )

    # -- the controller: the exit code and the files -----------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.run.is_worker:
            return
        evidence = self.evidence
        code = policy_exit_code(self.run, self.ledger, int(exitstatus))
        evidence.exit_code = features.exit_code(self.run, self.ledger.tests, code)
        session.exitstatus = evidence.exit_code
        if evidence.exit_code == pytest.ExitCode.USAGE_ERROR and not self.run.journal.entries():
            return  # nothing ran: no evidence to keep
        for member in self.run.members():  # what happened is known, but the journal on disk lacks some of it
            if member.journal.unwritten:
                self.write_failures.append(
                    f"{member.journal.path.name} is incomplete: {len(member.journal.unwritten)} record(s) "
                    f"could not be written ({member.journal.write_error}); this run's report holds them"
                )
        # The webhooks' last word, bounded.
        features.session_end(self.run, self.config, evidence.headline(), evidence.exit_code)
        final = evidence.final = evidence.evidence()
        written = self._write_guarded(
            EVIDENCE_NAME, lambda: write_json(self.run.run_dir / EVIDENCE_NAME, final, self.redactor)
        )
        if written:  # built from the evidence; after a Ctrl-C or a full disk there, nothing more is written
            features.write_files(self.run, self.config, final, self._write_guarded)
        self._session = session
        self._evidence_missing()

    def _evidence_missing(self) -> None:
        """A success whose evidence could not all be written ends with its own exit code, never 0;
        any run's evidence.json lists what was not written (a failed run's too)."""
        if not self.write_failures or self._session is None:
            return
        if self.evidence.exit_code == exit_codes.OK:
            self.evidence.exit_code = exit_codes.EVIDENCE_NOT_WRITTEN
            self._session.exitstatus = self.evidence.exit_code
        self._restate_exit()

    def _restate_exit(self) -> None:
        """evidence.json was written before a later file failed: it must give the exit code the run ends with."""
        final, path = self.evidence.final, self.run.run_dir / EVIDENCE_NAME
        if final is None or not path.is_file():
            return
        code = self.evidence.exit_code
        said = (final.get("exit") or {}).get("code")
        if code is None or (final.get("not_written") == self.write_failures and said == code):
            return  # already says so
        final["exit"] = {"code": code, "meaning": exit_codes.MEANINGS.get(code, "see pytest's exit codes")}
        final["not_written"] = list(self.write_failures)
        self._write_guarded(EVIDENCE_NAME, lambda: write_json(path, final, self.redactor))

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
            self.write_failures.append(f"{name} was not written: {_INTERRUPTED_WHILE_WRITING}")
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
            reason = _os_reason(exc) if isinstance(exc, OSError) else _INTERRUPTED_WHILE_WRITING
            self.write_failures.append(f"{name} was not written: {reason}")
            path = getattr(self.config.option, "htmlpath" if self.html.started else "xmlpath", None)
            if path and name == self.evidence.artifact(path):
                _remove_quietly(Path(path))  # a cut file must not pass for the evidence
        for path in (getattr(self.config.option, key, None) for key in ("htmlpath", "xmlpath")):
            if path and not Path(path).is_file():
                name = self.evidence.artifact(path) or str(path)
                if not any(failure.startswith(f"{name} ") for failure in self.write_failures):
                    self.write_failures.append(f"{name} was not written: an earlier writer failed")
        html_path = getattr(self.config.option, "htmlpath", None)
        if html_path and not Path(html_path).is_file():
            self._silence_html_report()
        self._evidence_missing()
        return None

    def _silence_html_report(self) -> None:
        """pytest-html's terminal line would announce a report that is not there.

        pytest-html 4 offers no public way to drop that line or its plugin (it registers its
        report object without a name): its report class is the only way to find it.
        """
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
            return self.evidence.artifact(str(filename)) or str(filename)
        # pytest-html asks for its summary just before it writes; JUnit XML writes before it.
        if self.html.started:
            return self.evidence.artifact(getattr(self.config.option, "htmlpath", None)) or "report.html"
        xml = getattr(self.config.option, "xmlpath", None)
        if xml and not _complete_junit(Path(xml)):
            return self.evidence.artifact(xml) or "junit.xml"
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
        features.remove_empty_folders(self.run)
        if not (run_dir / self.run.journal.path.name).exists() and not (run_dir / EVIDENCE_NAME).exists():
            if _remove_empty_run(config, run_dir):
                return
        if not self._write_guarded(MANIFEST_NAME, lambda: write_manifest(run_dir)):
            self._late_line(self.write_failures[-1])
            if self.evidence.exit_code == exit_codes.OK:
                self._evidence_missing()
                meaning = exit_codes.MEANINGS[exit_codes.EVIDENCE_NOT_WRITTEN]
                self._late_line(f"exit code {self.evidence.exit_code}: {meaning}")
            return
        if (run_dir / MANIFEST_NAME).is_file() and not self._manifest_written(run_dir / MANIFEST_NAME):
            return
        keep = self.run.config.settings.reports.keep
        if keep is not None:
            for line in prune_runs(run_dir, keep).lines():
                self._late_line(line)

    def _manifest_written(self, manifest: Path) -> bool:
        """The features' files about the manifest (its signature); False when one was not written.

        A success then ends with exit code 22: evidence.json says so, and the manifest, written
        again, lists it as it now is (an unsigned bundle that says it is unsigned).
        """
        before = len(self.write_failures)
        features.manifest_written(self.run, self.config, manifest, self._write_guarded)
        signed = (manifest.parent / run_files.SIGNATURE).is_file()
        if self.run.config.settings.reports.signing is not None and not signed and len(self.write_failures) == before:
            # A key is configured and no plugin signed (one left out with -p no:...): never a plain success.
            self.write_failures.append(
                f"{run_files.SIGNATURE} was not written: [reports.signing] is set, no plugin signed"
            )
        failures = self.write_failures[before:]
        for line in failures:
            self._late_line(line)
        if failures and self.evidence.exit_code == exit_codes.OK:
            self._evidence_missing()
            if not self._write_guarded(MANIFEST_NAME, lambda: write_manifest(self.run.run_dir)):
                self._late_line(self.write_failures[-1])
            meaning = exit_codes.MEANINGS[exit_codes.EVIDENCE_NOT_WRITTEN]
            self._late_line(f"exit code {self.evidence.exit_code}: {meaning}")
        return not failures

    def _late_line(self, message: str) -> None:
        """A line after the terminal summary (the manifest is written after it)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        line = f"[rollback] {self.redactor.text(message)}"
        if reporter is not None:
            reporter.write_line(line)
        else:
            sys.stderr.write(line + "\n")


def policy_exit_code(run: HarnessRun, ledger: model.TestLedger, exitstatus: int) -> int:
    """The harness's exit code from pytest's: a rollback refused, failed or not verified is never 0."""
    if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return exitstatus
    outcome = recorded_outcome(run)
    status = outcome.status if outcome else None
    if ledger.failed("preflight") or status == STATUS_REFUSED:
        return exit_codes.PREFLIGHT_REFUSED
    if status == STATUS_PARTIAL:
        return exit_codes.PARTIAL
    if status == STATUS_NOT_CONFIRMED:
        return exit_codes.NOT_CONFIRMED
    if status == STATUS_FAILED:
        return exit_codes.ROLLBACK_FAILED
    if status == STATUS_CONFLICT:
        return exit_codes.CONFLICT
    if ledger.failed("verify"):
        return exit_codes.VERIFY_FAILED
    acted = run.rolls_back and not run.dry_run
    if acted and outcome is None:
        # A rollback was asked for and did not happen: never a success.
        return exit_codes.ROLLBACK_FAILED
    if acted and ledger.required_not_run(_verify_owners(run)):
        # Deselected under xdist, where collection cannot refuse: never a success.
        return exit_codes.VERIFY_FAILED
    if (acted or run.mode == MODE_GATE_VERIFY) and not ledger.passed("verify"):
        # Rolled back (or gated) with nothing verified: never a success either.
        return exit_codes.VERIFY_FAILED
    if any(member.finish_problems for member in run.members()):
        return exit_codes.ACTIONS_NOT_FINISHED
    return exitstatus


def _verify_owners(run: HarnessRun) -> list[tuple[str | None, bool]]:
    """Each target verify must have checked: its name in a fleet (None on one target), and
    whether it has a target whose replicas a census counts."""
    owners = list(run.fleet.values()) if run.is_fleet else [run]
    return [
        (
            owner.target_spec.name if run.is_fleet and owner.target_spec is not None else None,
            owner.target_spec is not None,
        )
        for owner in owners
    ]


def _remove_empty_run(config: pytest.Config, run_dir: Path) -> bool:
    """Nothing ran and nothing was recorded (a usage error): the empty report pytest-html and
    JUnit XML wrote go, and the folder with them if nothing else is in it. True when it went."""
    for key in ("htmlpath", "xmlpath"):
        path = getattr(config.option, key, None)
        if path and Path(path).resolve().parent == run_dir.resolve():
            _remove_quietly(Path(path))
    try:
        run_dir.rmdir()  # only when empty: never another file is deleted with it
    except OSError:
        return False
    return True


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
