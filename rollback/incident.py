"""The incident write-up (incident.md) and the user-facing status update (status.md).

Both are rendered from the run's evidence (the dict evidence.json holds) through Jinja2 templates:
the built-in ones in rollback/templates/, or a team's own (``[incident] templates``, one folder
holding incident.md.j2 and/or status.md.j2). Text that came from the target (versions, summaries,
messages) is made inert for Markdown renderers: no tags, no table breaks, no code spans, one line
each. Every value a template outputs passes through ``md`` unless it is ``Markdown`` already (the
ready-made parts below), so a team's template cannot forget it. The sandbox keeps a template to
the evidence: no attribute of Python's internals, no change to the evidence it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jinja2 import BaseLoader, FileSystemLoader, StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ConfigError

_FILL = "_To be filled in._"
INCIDENT_TEMPLATE = "incident.md.j2"
STATUS_TEMPLATE = "status.md.j2"
TEMPLATE_NAMES = (INCIDENT_TEMPLATE, STATUS_TEMPLATE)
BUILT_IN_TEMPLATES = Path(__file__).resolve().parent / "templates"
_FAILURE_LENGTH = 400  # of a render failure's reason, on the terminal and in evidence.json


class Markdown(str):
    """Text that is Markdown already (escaped where it holds the target's words): output as it is."""

    __slots__ = ()


def md(value: object) -> str:
    """``value`` as inert Markdown text on one line (safe in a table cell): no tags, links,
    emphasis, code spans or cell breaks."""
    text = " ".join(str(value).split())
    text = text.replace("\\", "\\\\")
    for char in "*[]":
        text = text.replace(char, "\\" + char)
    text = re.sub(r"&(?=#?\w+;)", "&amp;", text)
    for char, entity in (("<", "&lt;"), ("|", "&#124;"), ("`", "&#96;")):
        text = text.replace(char, entity)
    return text


def _clock(timestamp: str | None) -> str:
    """``2026-11-26 03:53:05 UTC``."""
    return f"{timestamp[:10]} {timestamp[11:19]} UTC" if timestamp else "unknown"


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def _versions(evidence: dict[str, Any]) -> str:
    before, after = evidence.get("from_version"), evidence.get("to_version")
    if before or after:
        return f"{md(before or 'unknown')} -> {md(after or 'unknown')}"
    return md(evidence.get("expect_version") or evidence.get("requested") or "unknown")


def _title(evidence: dict[str, Any]) -> str:
    incident = evidence["incident"]["id"]
    service = evidence["service"]["name"]
    head = f"Incident {md(incident)}" if incident else f"Rollback run {md(evidence['run_id'])}"
    return f"# {head}: {md(service)}, {_versions(evidence)}"


def _decision_lines(evidence: dict[str, Any]) -> list[str]:
    decision = evidence["decision"]
    inputs = decision["inputs"]
    migrations = {True: "present", False: "none", None: "unknown (not checked)"}[inputs["migrations_present"]]
    lines = [
        f"**{md(decision['verdict'])}**: {md(decision['rule'])}",
        "",
        f"- Severity: {md(inputs['severity'] or 'not given')}",
        f"- Data impact: {md(inputs['data_impact'] or 'not given')}",
        f"- Time to fix: {md(inputs['time_to_fix'] or 'unknown')}",
        f"- Migrations between the versions: {migrations}",
    ]
    if decision.get("forced"):
        lines.append(f"- Overridden with --force; reason: {md(decision.get('reason'))}")
    if not decision.get("enforced"):
        lines.append(f"- Not enforced: {_why_not_enforced(evidence)}")
    return lines


def _why_not_enforced(evidence: dict[str, Any]) -> str:
    if evidence["decision"]["verdict"] == "not-assessed":
        return "no --severity / --data-impact given, so there was no decision to enforce"
    if evidence["mode"] == "gate-verify":
        return "a verify gate has no preflight; the decision is computed for this report only"
    # A rollback or preflight gate that ended before its preflight judged the decision.
    return "the run ended before its preflight judged the decision; computed for this report only"


def _latency(check: dict[str, Any] | None) -> str:
    if check is None:
        return "not measured"
    measured = check.get("measured") or {}
    parts = [
        f"p{q} {measured[f'p{q}_ms']:g} ms" for q in (50, 95, 99) if isinstance(measured.get(f"p{q}_ms"), int | float)
    ]
    if isinstance(measured.get("error_rate"), int | float):
        parts.append(f"errors {measured['error_rate']:.1%}")
    return ", ".join(parts) or md(check.get("summary", ""))


def _side(check: dict[str, Any] | None, name: str) -> str:
    if check is None:
        return "not measured"
    if name.startswith("latency["):
        return f"{md(check['status'])}: {_latency(check)}"
    measured = check.get("measured") or {}
    if name.startswith("logs[") and isinstance(measured.get("counts"), dict):
        counts = ", ".join(f"{md(k)} {v}" for k, v in measured["counts"].items())
        return f"{md(check['status'])}: {counts} in {measured.get('lines', 0)} lines"
    if name.startswith("metrics[") and isinstance(measured.get("series"), dict):
        values = ", ".join(f"{md(k)} = {md(v['value'])}" for k, v in measured["series"].items())
        return f"{md(check['status'])}: {values}"
    return f"{md(check['status'])}: {md(check.get('summary', ''))}"


def _impact_lines(evidence: dict[str, Any]) -> list[str]:
    comparisons = evidence.get("comparisons") or []
    if not comparisons:
        return ["No check ran before and after (no baseline or verify phase in this run)."]
    # Error rate and latency first: they are what users felt.
    order = sorted(comparisons, key=lambda c: (not c["check"].startswith(("latency[", "logs[", "metrics[")),))
    lines = ["| Check | Before (baseline) | After (verify) |", "|---|---|---|"]
    for comparison in order:
        name = comparison["check"]
        lines.append(f"| {md(name)} | {_side(comparison['before'], name)} | {_side(comparison['after'], name)} |")
    return lines


def _timeline_lines(evidence: dict[str, Any]) -> list[str]:
    lines = ["| At | Step | Status | Duration |", "|---|---|---|---|"]
    for event in evidence.get("timeline") or []:
        at = event.get("at") or ""
        lines.append(
            f"| {md(at[11:23])} | {md(event['what'])} | {md(event['status'])} | {_seconds(event.get('duration_s'))} |"
        )
    return lines


def _failure_lines(evidence: dict[str, Any]) -> list[str]:
    failed = [t for t in evidence.get("tests") or [] if t["outcome"] in ("failed", "error")]
    outcome = evidence.get("outcome") or {}
    lines = []
    if outcome.get("status") not in (None, "rolled-back", "already-at-target", "dry-run"):
        lines.append(f"- Rollback: {md(outcome.get('status'))}: {md(outcome.get('message', ''))}")
    lines += [f"- {md(t['nodeid'])}: {md(t['message'] or t['outcome'])}" for t in failed]
    return lines or ["Nothing failed."]


def _status(evidence: dict[str, Any]) -> tuple[str, str]:
    """status.md's state and what it tells users (escaped Markdown)."""
    service = md(evidence["service"]["name"])
    outcome = (evidence.get("outcome") or {}).get("status")
    code = evidence["exit"]["code"]
    to_version = md(evidence.get("to_version") or evidence.get("requested") or "the previous version")
    if outcome in ("rolled-back", "already-at-target") and code == 0:
        return "Mitigated, monitoring", (
            f"We rolled {service} back to the previous version ({to_version}). Our checks after the rollback "
            "pass. We keep watching and will share what caused the problem."
        )
    if outcome == "dry-run":
        # A rehearsal: nothing to tell users, and nothing that could be mistaken for an update.
        return "Dry run, no change", (
            f"This was a dry run: a rollback of {service} to {to_version} was planned and checked, not carried out. "
            "Nothing has been changed, so this run has no update for users."
        )
    if outcome in ("preflight-refused", "not-confirmed") or code == 10:
        return "Investigating", f"{service} has not been changed. We are working on a fix."
    if outcome is None and evidence["mode"] != "rollback":
        return ("Monitoring" if code == 0 else "Investigating"), (
            f"Checks of {service} {'pass' if code == 0 else 'do not pass yet'}."
        )
    return "Investigating", (
        f"We tried to roll {service} back to {to_version}; it is not yet confirmed healthy. "
        "We are working on it and will update this page."
    )


def markdown_parts(evidence: dict[str, Any]) -> dict[str, Markdown]:
    """The ready-made pieces of the built-in write-ups, for any template (``parts.NAME``)."""
    target = evidence.get("target") or {}
    state, message = _status(evidence)
    parts = {
        "title": _title(evidence),
        "versions": _versions(evidence),
        "target": f"{md(target.get('name', 'none'))} ({md(target.get('kind', '-'))})",
        "decision": "\n".join(_decision_lines(evidence)),
        "impact": "\n".join(_impact_lines(evidence)),
        "timeline": "\n".join(_timeline_lines(evidence)),
        "failures": "\n".join(_failure_lines(evidence)),
        "to_fill": _FILL,
        "service": md(evidence["service"]["name"]),
        "state": state,
        "message": message,
    }
    return {name: Markdown(text) for name, text in parts.items()}


def template_context(evidence: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: every top-level key of evidence.json by name, ``evidence`` (the whole
    dict) and ``parts`` (ready-made Markdown)."""
    return {**evidence, "evidence": evidence, "parts": markdown_parts(evidence)}


def _escaped(value: object) -> object:
    """Jinja2's ``finalize``: what a template outputs is escaped unless it is Markdown already."""
    return value if isinstance(value, Markdown) else md(value)


def _md_filter(value: object) -> Markdown:
    return value if isinstance(value, Markdown) else Markdown(md(value))


def _environment(loader: BaseLoader) -> ImmutableSandboxedEnvironment:
    environment = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=False,  # Markdown, not HTML: ``md`` is the escaping (finalize applies it)
        keep_trailing_newline=True,
        auto_reload=False,
        finalize=_escaped,
    )
    environment.filters.update(md=_md_filter, clock=_clock, seconds=_seconds)
    return environment


_BUILT_IN = _environment(FileSystemLoader(BUILT_IN_TEMPLATES))


def incident_markdown(evidence: dict[str, Any]) -> str:
    """The incident report, with root cause, lessons and follow-ups left for people to write."""
    return _BUILT_IN.get_template(INCIDENT_TEMPLATE).render(template_context(evidence))


def status_markdown(evidence: dict[str, Any]) -> str:
    """A short status update for users: what happened, what was done, what comes next."""
    return _BUILT_IN.get_template(STATUS_TEMPLATE).render(template_context(evidence))


@dataclass(frozen=True)
class Rendered:
    """A write-up's text, and why a team's template could not make it (then the text is the built-in one)."""

    text: str
    failure: str | None = None


@dataclass(frozen=True)
class IncidentTemplates:
    """The templates incident.md and status.md come from: a team's folder overriding one or both
    of the built-in ones (``[incident] templates``), or the built-in ones alone."""

    folder: Path | None = None
    overrides: tuple[str, ...] = ()

    @classmethod
    def load(cls, folder: Path, key: str) -> IncidentTemplates:
        """Check ``folder`` and parse its templates; a ConfigError names the file, line and problem.

        ``key`` names the setting in messages, e.g. ``rollback.toml: incident.templates = 'ops/'``.
        """
        if not folder.is_dir():
            why = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(f"{key}: {folder} {why}; expected a folder holding {' and/or '.join(TEMPLATE_NAMES)}")
        overrides = tuple(name for name in TEMPLATE_NAMES if (folder / name).is_file())
        if not overrides:
            found = sorted(p.name for p in folder.iterdir())[:10]
            raise ConfigError(
                f"{key}: {folder} holds neither {' nor '.join(TEMPLATE_NAMES)} "
                f"(found: {', '.join(found) or 'nothing'}); name the templates exactly so"
            )
        environment = _environment(FileSystemLoader(folder))
        for name in overrides:
            try:
                environment.get_template(name)
            except TemplateSyntaxError as exc:
                raise ConfigError(f"{key}: {folder / name}, line {exc.lineno}: {exc.message or exc}") from None
            except (UnicodeDecodeError, OSError) as exc:
                raise ConfigError(f"{key}: {folder / name} cannot be read as UTF-8 text: {exc}") from None
        return cls(folder, overrides)

    def render(self, name: str, evidence: dict[str, Any]) -> Rendered:
        """The write-up ``name`` (incident.md.j2 or status.md.j2); a team's template that fails while
        rendering gives the built-in text and says why."""
        built_in = _BUILT_IN.get_template(name)
        if self.folder is None or name not in self.overrides:
            return Rendered(built_in.render(template_context(evidence)))
        path = self.folder / name
        try:
            template = _environment(FileSystemLoader(self.folder)).get_template(name)
            return Rendered(template.render(template_context(evidence)))
        except Exception as exc:  # a team's code: whatever it raises, the built-in text is written
            return Rendered(built_in.render(template_context(evidence)), _failure(exc, path))


def _failure(exc: Exception, path: Path) -> str:
    """``FILE, line N: UndefinedError: 'x' is undefined``, on one line and at most a few hundred characters."""
    where: str | Path = path
    line = _line_in(exc.__traceback__, path)
    if isinstance(exc, TemplateSyntaxError):  # in a file the template includes
        where, line = exc.filename or path, exc.lineno
        text = exc.message or ""
    else:
        text = str(exc)
    why = " ".join(f"{type(exc).__name__}: {text}".split())
    if len(why) > _FAILURE_LENGTH:
        why = why[: _FAILURE_LENGTH - 3] + "..."
    return f"{where}{f', line {line}' if line else ''}: {why}"


def _line_in(trace: TracebackType | None, path: Path) -> int | None:
    """The line of ``path`` where rendering failed (Jinja2 puts the template's frames in the traceback)."""
    line = None
    while trace is not None:
        if Path(trace.tb_frame.f_code.co_filename) == path:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line
