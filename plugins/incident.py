"""The incident around a rollback: the decision, the incident id, the logs and metrics checks,
and the incident write-up (glue; the logic is in rollback/decision.py, rollback/incident.py,
checks/logs.py and checks/metrics.py).

A feature plugin: the harness's hooks (plugins/hookspecs.py) ask it for its options' usage
errors, the run id, the decision item, its checks, its refusal and its parts of the evidence, the
terminal, the HTML report and the Markdown write-ups.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..rollback import run_files
from .fixtures import runbook_for
from .items import CHECK_PROPERTY, make_item
from .specs import CheckSpec
from .state import RUN_KEY, HarnessRun

if TYPE_CHECKING:
    from ..checks.logs import LogMark
    from ..rollback.config import HarnessConfig, LogsConfig, MetricsConfig
    from ..rollback.decision import Decision
    from ..rollback.incident import IncidentTemplates
    from ..rollback.results import CheckResult

# Safe in a folder name on every OS and in a URL: letters, digits, '.', '_', '-'; starts with
# a letter or digit (never '.', '-'), at most 64 characters.
INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
INCIDENT_ID_ACCEPTED = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. INC-1234)"
SEVERITIES = ("critical", "high", "medium", "low")
DATA_IMPACTS = ("none", "minor", "major")
REASON_LIMIT = 500
INCIDENT_MD = run_files.INCIDENT
STATUS_MD = run_files.STATUS
# [incident] templates, read and parsed when the config is loaded (absent: the built-in ones).
TEMPLATES_KEY = pytest.StashKey["IncidentTemplates"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback")
    group.addoption(
        "--rollback-severity",
        "--severity",
        dest="rollback_severity",
        choices=SEVERITIES,
        help="Incident severity, for the recorded rollback decision (with --data-impact)",
    )
    group.addoption(
        "--rollback-data-impact",
        "--data-impact",
        dest="rollback_data_impact",
        choices=DATA_IMPACTS,
        help="Data impact of the incident, for the recorded rollback decision (with --severity)",
    )
    group.addoption(
        "--rollback-time-to-fix",
        "--time-to-fix",
        dest="rollback_time_to_fix",
        metavar="DURATION",
        help="Expected time to ship a forward fix, e.g. 45m or 2h (default: unknown, no fix in sight)",
    )
    group.addoption(
        "--rollback-force",
        "--force",
        dest="rollback_force",
        action="store_true",
        help="Roll back although the decision says forward fix (needs --reason; recorded)",
    )
    group.addoption(
        "--rollback-reason",
        "--reason",
        dest="rollback_reason",
        metavar="TEXT",
        help="Why this rollback is run (recorded in every report; required with --force)",
    )
    group.addoption(
        "--rollback-incident-id",
        "--incident-id",
        dest="rollback_incident_id",
        metavar="ID",
        help="Incident id (e.g. INC-1234): names the run folder and appears in every artifact",
    )


@dataclass(frozen=True)
class IncidentOptions:
    incident_id: str | None
    reason: str | None
    severity: str | None
    data_impact: str | None
    time_to_fix: float | None
    force: bool

    @classmethod
    def read(cls, config: pytest.Config) -> IncidentOptions:
        from ..rollback.durations import parse_duration

        option = config.option
        text = getattr(option, "rollback_time_to_fix", None)
        return cls(
            incident_id=getattr(option, "rollback_incident_id", None),
            reason=getattr(option, "rollback_reason", None),
            severity=getattr(option, "rollback_severity", None),
            data_impact=getattr(option, "rollback_data_impact", None),
            time_to_fix=None if text is None else parse_duration(text),
            force=bool(getattr(option, "rollback_force", False)),
        )


def pytest_rollback_check_options(config: pytest.Config, mode: str | None) -> None:
    """Usage errors for the incident options, before the run folder exists."""
    option = config.option
    given = {
        "--severity": getattr(option, "rollback_severity", None),
        "--data-impact": getattr(option, "rollback_data_impact", None),
        "--time-to-fix": getattr(option, "rollback_time_to_fix", None),
        "--force": getattr(option, "rollback_force", False),
        "--reason": getattr(option, "rollback_reason", None),
        "--incident-id": getattr(option, "rollback_incident_id", None),
    }
    if mode is None:
        for flag, value in given.items():
            if value:
                raise pytest.UsageError(f"{flag} needs --rollback-to VERSION or --rollback-gate verify")
        return
    incident_id = getattr(option, "rollback_incident_id", None)
    if incident_id is not None and (not INCIDENT_ID.match(incident_id) or ".." in incident_id):
        raise pytest.UsageError(
            f"--incident-id {incident_id!r}: not a valid incident id; accepted: {INCIDENT_ID_ACCEPTED}"
        )
    reason = given["--reason"]
    if reason is not None and not str(reason).strip():
        raise pytest.UsageError(
            "--reason is empty: say in a few words why, e.g. --reason 'checkout errors since v1.3.0'"
        )
    if reason is not None and len(str(reason)) > REASON_LIMIT:
        raise pytest.UsageError(f"--reason is {len(str(reason))} characters long; at most {REASON_LIMIT}")
    time_to_fix = given["--time-to-fix"]
    if time_to_fix is not None:
        from ..rollback.durations import ACCEPTED, parse_duration

        try:
            parse_duration(time_to_fix)
        except ValueError:
            raise pytest.UsageError(f"--time-to-fix {time_to_fix!r}: expected {ACCEPTED}") from None
    severity, impact = given["--severity"], given["--data-impact"]
    if bool(severity) != bool(impact):
        missing = "--data-impact {none,minor,major}" if severity else "--severity {critical,high,medium,low}"
        present = "--severity" if severity else "--data-impact"
        raise pytest.UsageError(f"{present} needs {missing} too: the decision needs both")
    if time_to_fix is not None and not severity:
        raise pytest.UsageError("--time-to-fix needs --severity and --data-impact: the decision needs all of them")
    if given["--force"]:
        if not severity:
            raise pytest.UsageError(
                "--force overrides a forward-fix decision; without --severity and --data-impact there is none: "
                "drop --force"
            )
        if reason is None:
            raise pytest.UsageError(
                "--force overrides the decision: say why with --reason TEXT (it is recorded for the post-mortem)"
            )


def pytest_rollback_config_loaded(config: pytest.Config, harness_config: HarnessConfig) -> None:
    """``[incident] templates``: the folder exists and its templates parse, before anything changes."""
    folder = harness_config.settings.incident.templates
    if folder is None:
        return
    from ..rollback.errors import ConfigError
    from ..rollback.incident import IncidentTemplates

    prefix = "tool.rollback." if harness_config.path.name == "pyproject.toml" else ""
    key = f"{harness_config.path}: {prefix}incident.templates = {folder!r}"
    try:
        config.stash[TEMPLATES_KEY] = IncidentTemplates.load(harness_config.base_dir / Path(folder).expanduser(), key)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_rollback_run_id(config: pytest.Config, default: str) -> str | None:
    """The run's id, which names its folder: the incident id first when there is one."""
    incident_id = getattr(config.option, "rollback_incident_id", None)
    return f"{incident_id}-{default}" if incident_id else None


# -- state of one run in the process that runs the checks --------------------------------------


@dataclass
class _IncidentState:
    # (check key, phase) -> where the check's files ended at its mark.
    log_marks: dict[tuple[str, str], LogMark] = field(default_factory=dict)
    # command checks: (check key, phase) -> the mark's time.
    since: dict[tuple[str, str], float] = field(default_factory=dict)
    # metrics check key -> the values the baseline read.
    metric_values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        for log_mark in self.log_marks.values():
            log_mark.close()


# Keyed by run id, like plugins/probes.py's sessions: a check gets the run, not the config.
_STATES: dict[str, _IncidentState] = {}


def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    """The run starts: its journals name it and the incident; the logs checks' baseline marks are
    taken now (lines since the run started)."""
    from ..checks.logs import mark

    incident_id = getattr(config.option, "rollback_incident_id", None)
    for member in run.members():
        member.journal.identify(run.run_id, incident_id)
    state = _IncidentState()
    _STATES[run.run_id] = state
    for key, logs in _logs_checks(run):
        if logs.files:
            state.log_marks[(key, "baseline")] = mark(_paths(run, logs), taken=run.started)
        else:
            state.since[(key, "baseline")] = run.started

    def close() -> None:
        _STATES.pop(run.run_id, None)
        state.close()

    config.add_cleanup(close)


def _state(run: HarnessRun) -> _IncidentState:
    return _STATES.setdefault(run.run_id, _IncidentState())


def _paths(run: HarnessRun, logs: LogsConfig) -> list[Path]:
    return [run.config.base_dir / Path(name).expanduser() for name in logs.files]


def _unique(keys: list[str]) -> list[str]:
    """``app.log``, ``app.log#2``: two checks never share an item name."""
    seen: dict[str, int] = {}
    unique = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        unique.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return unique


def _logs_checks(run: HarnessRun) -> list[tuple[str, LogsConfig]]:
    logs = run.config.settings.logs
    keys = _unique([f"logs[{run.redactor.text(item.key)}]" for item in logs])
    return list(zip(keys, logs, strict=True))


def _metrics_checks(run: HarnessRun) -> list[tuple[str, MetricsConfig]]:
    metrics = run.config.settings.metrics
    keys = _unique([f"metrics[{run.redactor.text(item.key)}]" for item in metrics])
    return list(zip(keys, metrics, strict=True))


@pytest.hookimpl(trylast=True)  # after every other check: logs and metrics come last
def pytest_rollback_check_specs(run: HarnessRun) -> list[CheckSpec]:
    """The ``[[logs]]`` and ``[[metrics]]`` checks, in config order (baseline and verify)."""
    specs = [CheckSpec(key, _logs_probe(logs, key), after_others=True) for key, logs in _logs_checks(run)]
    specs += [CheckSpec(key, _metrics_probe(metrics, key)) for key, metrics in _metrics_checks(run)]
    return specs


def pytest_rollback_phase_starting(run: HarnessRun, phase: str) -> None:
    """Verify's marks, before its probes run (the logs checks run after them, and must count what
    the probes caused); the baseline's were taken when the run started."""
    if _mark_key(run, phase) != "verify":
        return
    from ..checks.logs import mark

    state = _state(run)
    for key, logs in _logs_checks(run):
        which = (key, "verify")
        with state.lock:
            if logs.command is not None:
                state.since.setdefault(which, time.time())
            elif which not in state.log_marks:
                state.log_marks[which] = mark(_paths(run, logs))


def _mark_key(run: HarnessRun, phase: str) -> str:
    """Verify after a rollback counts from the rollback's end; otherwise from the run's start."""
    return "verify" if phase == "verify" and run.rolls_back else "baseline"


def _logs_probe(logs: LogsConfig, key: str) -> Callable[[HarnessRun, str], CheckResult]:
    def run_logs(run: HarnessRun, phase: str) -> CheckResult:
        from ..checks.logs import check_log_command, check_log_files, mark

        state = _state(run)
        which = (key, _mark_key(run, phase))
        limits = dict(logs.max)
        if logs.command is not None:
            with state.lock:
                since = state.since.setdefault(which, time.time())
            return check_log_command(
                logs.command,
                since=since,
                patterns=logs.patterns,
                limits=limits,
                max_bytes=logs.max_bytes,
                timeout=logs.timeout,
                window=logs.window,
                cwd=run.config.base_dir,
                name=key,
            )
        with state.lock:
            if which not in state.log_marks:
                # The first verify check after the rollback: lines from here on count.
                state.log_marks[which] = mark(_paths(run, logs))
            log_mark = state.log_marks[which]
        return check_log_files(
            log_mark,
            patterns=logs.patterns,
            limits=limits,
            max_bytes=logs.max_bytes,
            window=logs.window,
            name=key,
        )

    return run_logs


def _metrics_probe(metrics: MetricsConfig, key: str) -> Callable[[HarnessRun, str], CheckResult]:
    def run_metrics(run: HarnessRun, phase: str) -> CheckResult:
        from ..checks.metrics import Threshold, check_metrics
        from . import probes

        state = _state(run)
        values: dict[str, float | None] = {}
        result = check_metrics(
            probes.http_session(run),
            probes.url(run, metrics.path),
            thresholds=[Threshold(s.select, s.max, s.min) for s in metrics.series],
            timeout=metrics.timeout,
            baseline=state.metric_values.get(key) if phase == "verify" else None,
            values_out=values,
            name=key,
        )
        if phase == "baseline":
            state.metric_values[key] = values
        return result

    return run_metrics


# -- the decision ------------------------------------------------------------------------------


def decision_wanted(config: pytest.Config) -> bool:
    """The decision is an item of its own only when it was asked for (--severity / --data-impact)."""
    return bool(getattr(config.option, "rollback_severity", None))


def _migrations(run: HarnessRun) -> bool | None:
    """What the database action found at preflight; None when there is none or it could not tell."""
    if run.runbook is None:
        return None
    for action in run.runbook.actions:
        if getattr(action, "name", None) == "database":
            found = getattr(action, "migrations_present", None)
            return found if isinstance(found, bool) else None
    return None


def _judge(config: pytest.Config, run: HarnessRun) -> Decision:
    from ..rollback.decision import DecisionInputs, decide

    options = IncidentOptions.read(config)
    inputs = DecisionInputs(options.severity, options.data_impact, options.time_to_fix, _migrations(run))
    return decide(inputs)


def assess(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    """The decision of this run, judged once after preflight's findings and journaled.

    Later calls (and other processes of the run) read it back from the journal.
    """
    recorded = _recorded(run)
    if recorded is not None:
        return recorded
    if run.target_spec is not None and run.requested is not None:
        runbook_for(run).preflight()  # the database action fills in migrations_present
    decision = _judge(config, run)
    options = IncidentOptions.read(config)
    forced = options.force and decision.refuses
    entry = {
        **decision.to_dict(),
        "enforced": True,
        "forced": forced,
        "force_given": options.force,
        "reason": options.reason,
    }
    run.journal.record("decision", decision.verdict, **entry)
    return {**entry, "recorded": True}


def _recorded(run: HarnessRun) -> dict[str, Any] | None:
    for entry in reversed(run.journal.entries()):
        if entry["step"] == "decision":
            fields = {k: v for k, v in entry.items() if k not in ("ts", "step", "status")}
            return {"verdict": entry["status"], **fields, "recorded": True}
    return None


def decision_for_report(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    """The journaled decision; in a run that judged none (a verify gate, not asked), what the
    options say, marked as not enforced."""
    recorded = _recorded(run)
    if recorded is not None:
        return recorded
    decision = _judge(config, run)
    options = IncidentOptions.read(config)
    return {
        **decision.to_dict(),
        "enforced": False,
        "forced": False,
        "force_given": options.force,
        "reason": options.reason,
        "recorded": False,
    }


def pytest_rollback_preflight_items(parent: pytest.Collector, run: HarnessRun, target: str | None) -> list[Any]:
    if not decision_wanted(parent.config):
        return []
    return [make_item(parent, "preflight-decision", decision_item, "preflight", "decision", target)]


def pytest_rollback_refusals(run: HarnessRun, config: pytest.Config) -> list[str]:
    """The decision's refusal, for the rollback fixture: a forward fix without --force."""
    if not decision_wanted(config):
        return []
    decision = assess(run, config)
    if decision["verdict"] == "forward-fix" and not decision["forced"]:
        return [f"decision: {decision['rule']}; to roll back anyway: --force --reason TEXT"]
    return []


def decision_item(request: pytest.FixtureRequest) -> None:
    """The ``preflight-decision`` item: the decision, recorded; a forward fix refuses the run."""
    run = request.config.stash[RUN_KEY]
    decision = assess(run, request.config)
    refused = decision["verdict"] == "forward-fix" and not decision["forced"]
    summary = decision["rule"]
    if decision["forced"]:
        summary += f"; overridden by --force: {decision['reason']}"
    result = {"name": "decision", "status": "failed" if refused else "passed", "summary": summary, "measured": decision}
    request.node.user_properties.append((CHECK_PROPERTY, json.dumps(run.redactor.data(result), default=str)))
    if refused:
        pytest.fail(
            f"refused: decision is forward fix ({decision['rule']}); nothing was changed. To roll back anyway: "
            "--force --reason 'why' (recorded)",
            pytrace=False,
        )


# -- what the reports show ---------------------------------------------------------------------


def evidence_fields(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    """``incident`` and ``decision``: the first keys of evidence.json after its schema."""
    options = IncidentOptions.read(config)
    return {
        "incident": {"id": options.incident_id, "reason": options.reason},
        "decision": decision_for_report(run, config),
    }


def artifacts(run: HarnessRun, config: pytest.Config) -> dict[str, str | None]:
    writes = writes_markdown(run, config)
    return {"incident": INCIDENT_MD if writes else None, "status": STATUS_MD if writes else None}


def writes_markdown(run: HarnessRun, config: pytest.Config) -> bool:
    """incident.md and status.md: for a rollback, or any run that names an incident."""
    return run.rolls_back or bool(getattr(config.option, "rollback_incident_id", None))


def relaxed(run: HarnessRun, config: pytest.Config) -> list[dict[str, str]]:
    """--force that overrode a forward-fix decision is a lowered guard."""
    decision = _recorded(run)
    if decision is None or not decision.get("forced"):
        return []
    return [
        {
            "setting": "--force",
            "effect": f"the decision said forward fix and was overridden; reason: {decision.get('reason')}",
        }
    ]


def decision_line(evidence: dict[str, Any]) -> str:
    """One line for the terminal: the decision and its inputs."""
    decision = evidence["decision"]
    incident = evidence["incident"]
    head = f"incident {incident['id']}: " if incident["id"] else ""
    if decision["verdict"] == "not-assessed":
        line = f"{head}decision: not assessed (no --severity / --data-impact given)"
    else:
        line = f"{head}decision: {decision['verdict'].upper()}: {decision['rule']}"
        if decision["forced"]:
            line += " (overridden by --force)"
        if not decision["enforced"]:
            line += " (not enforced: no preflight in this run)"
    if incident["reason"]:
        line += f"; reason: {incident['reason']}"
    return line


def decision_html(evidence: dict[str, Any], h: Callable[[object], str]) -> str:
    """The report's opening section: the decision and every input, escaped by ``h``."""
    decision = evidence["decision"]
    incident = evidence["incident"]
    inputs = decision["inputs"]
    migrations = {True: "present", False: "none", None: "unknown (not checked)"}[inputs["migrations_present"]]
    rows = [
        ("Incident", incident["id"] or "not given"),
        ("Decision", decision["verdict"]),
        ("Rule", decision["rule"]),
        ("Severity", inputs["severity"] or "not given"),
        ("Data impact", inputs["data_impact"] or "not given"),
        ("Time to fix", inputs["time_to_fix"] or "unknown"),
        ("Migrations", migrations),
        ("Overridden (--force)", "yes" if decision["forced"] else "no"),
        ("Reason", incident["reason"] or "not given"),
    ]
    colour = {"rollback": "#1a7f37", "forward-fix": "#cf222e"}.get(decision["verdict"], "#9a6700")
    body = "".join(f"<tr><th>{h(k)}</th><td>{h(v)}</td></tr>" for k, v in rows)
    return (
        f'<section id="rollback-decision"><h2 style="color:{colour}">Decision: {h(decision["verdict"])}</h2>'
        f'<table id="rollback-decision-inputs">{body}</table></section>'
    )


class TemplateFailed(OSError):
    """A team's template failed while rendering: the built-in write-up was written instead.

    An OSError so that the run's file writer records it like a file it could not write: the
    terminal and evidence.json's ``not_written`` say which template and why, and a run that
    would have exited 0 exits 22 (evidence not written as asked).
    """


def write_markdown(
    run: HarnessRun,
    config: pytest.Config,
    evidence: dict[str, Any],
    write_guarded: Callable[[str, Callable[[], object]], bool],
) -> None:
    """incident.md and status.md beside the evidence, atomically, redacted; from the team's
    templates when ``[incident] templates`` names them, else (or when one fails) the built-in ones."""
    if not writes_markdown(run, config):
        return
    from ..rollback.incident import INCIDENT_TEMPLATE, STATUS_TEMPLATE, IncidentTemplates

    templates = config.stash.get(TEMPLATES_KEY, IncidentTemplates())
    for file_name, template in ((INCIDENT_MD, INCIDENT_TEMPLATE), (STATUS_MD, STATUS_TEMPLATE)):
        if template in templates.overrides:
            what = f"{file_name} from the team's template {template}"
        else:
            what = file_name
        write_guarded(what, _markdown_writer(run, templates, template, file_name, evidence))


def _markdown_writer(
    run: HarnessRun, templates: IncidentTemplates, template: str, file_name: str, evidence: dict[str, Any]
) -> Callable[[], None]:
    def write() -> None:
        from ..rollback.evidence import write_text

        rendered = templates.render(template, evidence)
        write_text(run.run_dir / file_name, run.redactor.text(rendered.text))
        if rendered.failure is not None:
            raise TemplateFailed(f"{rendered.failure}; {file_name} holds the built-in template's text instead")

    return write


# -- the harness's hooks for the report (plugins/hookspecs.py) -------------------------------------


def pytest_rollback_evidence_head(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    return evidence_fields(run, config)


def pytest_rollback_artifacts(run: HarnessRun, config: pytest.Config) -> dict[str, str | None]:
    return artifacts(run, config)


def pytest_rollback_relaxed(run: HarnessRun, config: pytest.Config) -> list[dict[str, str]]:
    return relaxed(run, config)


def pytest_rollback_write_files(
    run: HarnessRun, config: pytest.Config, evidence: dict[str, Any], write: Callable[[str, Callable[[], object]], bool]
) -> None:
    write_markdown(run, config, evidence, write)


def pytest_rollback_html_head(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    # The decision only when one was asked for; otherwise the incident's id and reason, if given.
    decision, incident = evidence["decision"], evidence["incident"]
    if decision["verdict"] != "not-assessed" or decision["force_given"]:
        return [decision_html(evidence, h)]
    given = [
        f"{label}: {h(incident[key])}" for label, key in (("Incident", "id"), ("Reason", "reason")) if incident[key]
    ]
    return [f'<p id="rollback-incident">{"; ".join(given)}</p>'] if given else []


def pytest_rollback_terminal_head(evidence: dict[str, Any]) -> list[str]:
    return [decision_line(evidence)]
