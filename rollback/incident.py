"""The incident write-up (incident.md) and the user-facing status update (status.md).

Both are built from the run's evidence (the dict evidence.json holds), so they say exactly
what the evidence says. Text that came from the target (versions, summaries, messages) is made
inert for Markdown renderers: no tags, no table breaks, no code spans, one line each.
"""

from __future__ import annotations

import re
from typing import Any

_FILL = "_To be filled in._"


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


def incident_markdown(evidence: dict[str, Any]) -> str:
    """The incident report, with root cause, lessons and follow-ups left for people to write."""
    target = evidence.get("target") or {}
    lines = [
        _title(evidence),
        "",
        "| | |",
        "|---|---|",
        f"| Incident | {md(evidence['incident']['id'] or 'not given (--incident-id)')} |",
        f"| Service | {md(evidence['service']['name'])} |",
        f"| Target | {md(target.get('name', 'none'))} ({md(target.get('kind', '-'))}) |",
        f"| Versions | {_versions(evidence)} (requested {md(evidence.get('requested') or '-')}) |",
        f"| Result | {md(evidence['headline'])} |",
        f"| Exit code | {md(evidence['exit']['code'])}: {md(evidence['exit']['meaning'])} |",
        f"| Start | {_clock(evidence['started'])} |",
        f"| End | {_clock(evidence['finished'])} |",
        f"| Duration | {_seconds(evidence['duration_s'])} |",
        f"| Reason | {md(evidence['incident']['reason'] or 'not given (--reason)')} |",
        f"| Run | {md(evidence['run_id'])}; evidence.json, report.html, journal.jsonl beside this file |",
        "",
        "## Decision",
        "",
        *_decision_lines(evidence),
        "",
        "## Impact: before and after the rollback",
        "",
        *_impact_lines(evidence),
        "",
        "## Timeline (UTC)",
        "",
        *_timeline_lines(evidence),
        "",
        "## What failed",
        "",
        *_failure_lines(evidence),
        "",
        "## Root cause",
        "",
        _FILL,
        "",
        "## Lessons learned",
        "",
        _FILL,
        "",
        "## Follow-ups",
        "",
        "- [ ] " + _FILL,
        "",
    ]
    return "\n".join(lines)


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


def status_markdown(evidence: dict[str, Any]) -> str:
    """A short status update for users: what happened, what was done, what comes next."""
    service = md(evidence["service"]["name"])
    outcome = (evidence.get("outcome") or {}).get("status")
    code = evidence["exit"]["code"]
    to_version = md(evidence.get("to_version") or evidence.get("requested") or "the previous version")
    at = _clock(evidence["finished"])
    if outcome in ("rolled-back", "already-at-target") and code == 0:
        state = "Mitigated, monitoring"
        said = (
            f"We rolled {service} back to the previous version ({to_version}). Our checks after the rollback "
            "pass. We keep watching and will share what caused the problem."
        )
    elif outcome == "dry-run":
        # A rehearsal: nothing to tell users, and nothing that could be mistaken for an update.
        state = "Dry run, no change"
        said = (
            f"This was a dry run: a rollback of {service} to {to_version} was planned and checked, not carried out. "
            "Nothing has been changed, so this run has no update for users."
        )
    elif outcome in ("preflight-refused", "not-confirmed") or code == 10:
        state = "Investigating"
        said = f"{service} has not been changed. We are working on a fix."
    elif outcome is None and evidence["mode"] != "rollback":
        state = "Monitoring" if code == 0 else "Investigating"
        said = f"Checks of {service} {'pass' if code == 0 else 'do not pass yet'}."
    else:
        state = "Investigating"
        said = (
            f"We tried to roll {service} back to {to_version}; it is not yet confirmed healthy. "
            "We are working on it and will update this page."
        )
    incident = evidence["incident"]["id"]
    lines = [
        f"# {service}: {state}",
        "",
        f"**{at}**{f' · incident {md(incident)}' if incident else ''}",
        "",
        said,
        "",
    ]
    return "\n".join(lines)
