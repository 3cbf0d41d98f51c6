"""The evidence model: the tests as reported, the headline, the timeline and evidence.json's layout.

Plain data in, plain data out: the pytest layer (plugins/report.py) reads pytest's reports and the
run's state into the values here, so what the evidence says can be built and read without pytest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .runbook import STATUS_ALREADY_AT_TARGET, STATUS_ROLLED_BACK

if TYPE_CHECKING:
    from .config import HarnessSettings
    from .runbook import RollbackOutcome

SCHEMA_ID = "rollback-evidence/1"
EVIDENCE_NAME = "evidence.json"
# The checks whose findings a headline repeats, most telling first.
SEEN_FIRST = ("version", "replicas", "health")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class PhaseReport:
    """One phase (setup, call or teardown) of one test as pytest reported it, in plain values."""

    nodeid: str
    when: str
    gate: str | None
    target: str | None
    check: dict[str, Any] | None
    duration: float
    start: float | None
    stop: float | None
    worker: str | None
    failed: bool
    skipped: bool
    xfailed: bool
    message: str


class TestLedger:
    """Every test's entry in evidence.json, and what the gates' entries add up to."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        # Tests whose call phase reported: a test cut short after its setup did not pass.
        self.called: set[str] = set()
        self.collection_errors: list[str] = []

    def record(self, phase: PhaseReport) -> None:
        """Fold one phase into its test's entry: durations add up, the worst outcome stays."""
        entry = self.tests.setdefault(
            phase.nodeid,
            {
                "nodeid": phase.nodeid,
                "gate": phase.gate,
                "outcome": "passed",
                "message": "",
                "duration_s": 0.0,
                "start": iso(phase.start),
                "check": None,
                "worker": phase.worker,
            },
        )
        if phase.target is not None:
            entry["target"] = phase.target  # a fleet's item: the target it checks
        entry["duration_s"] = round(entry["duration_s"] + phase.duration, 3)
        if phase.when == "call":
            self.called.add(phase.nodeid)
        entry["stop"] = iso(phase.stop)
        if phase.check is not None:
            entry["check"] = phase.check
        if phase.failed:
            entry["outcome"] = "failed" if phase.when == "call" else "error"
            entry["message"] = phase.message
        elif phase.skipped and entry["outcome"] == "passed":
            # A baseline check that measured a failure is an expected failure, never a pass.
            entry["outcome"] = "xfailed" if phase.xfailed else "skipped"
            entry["message"] = phase.message

    def failed(self, gate: str) -> bool:
        return any(t["gate"] == gate and t["outcome"] in ("failed", "error") for t in self.tests.values())

    def passed(self, gate: str) -> bool:
        """Some check of the gate ran and passed (deselected or skipped checks verify nothing)."""
        return any(
            t["gate"] == gate and t["outcome"] == "passed" and t["nodeid"] in self.called for t in self.tests.values()
        )

    def required_not_run(self, owners: list[tuple[str | None, bool]]) -> bool:
        """verify-version did not pass, or the census did not run, on some target.

        ``owners``: per target of the rollback, its name in a fleet (None on one target) and
        whether it has a target at all (a census needs one).
        """
        for target, has_target in owners:
            ran = {
                t["check"]["name"]: t["outcome"]
                for t in self.tests.values()
                if t["gate"] == "verify" and t.get("check") and t.get("target") == target
            }
            if ran.get("version") != "passed":
                return True
            if has_target and ran.get("replicas") not in ("passed", "skipped"):
                return True
        return False

    def gate_counts(self, gate: str) -> str:
        outcomes = [
            "not finished" if t["outcome"] == "passed" and t["nodeid"] not in self.called else t["outcome"]
            for t in self.tests.values()
            if t["gate"] == gate
        ]
        names = ("passed", "failed", "error", "skipped", "not finished")
        counts = {name: outcomes.count(name) for name in names if name in outcomes}
        return ", ".join(f"{n} {name}" for name, n in counts.items()) or "no checks"

    def verify_seen(self) -> str:
        """What verify saw, for the headline: the first failed check's own words, else the census.

        A verdict an on-call engineer can bet on names what was seen ("a replica is still on the
        old version: v1.2.9 on 54 of 59 answers, v1.3.0 on 5"), not only how many checks passed.
        """
        checks = [t["check"] for t in self.tests.values() if t["gate"] == "verify" and t.get("check")]
        order = {name: index for index, name in enumerate(SEEN_FIRST)}
        checks.sort(key=lambda check: order.get(check["name"], len(order)))
        failed = [check for check in checks if check["status"] != "passed"]
        if failed:
            return f": {failed[0]['name']}: {failed[0]['summary']}"
        census = next((c for c in checks if c["name"] == "replicas" and "unit" in c["measured"]), None)
        return f"; census: {census['summary']}" if census is not None else ""

    def comparisons(self, sides: dict[str, str]) -> list[dict[str, Any]]:
        """Each check's "before" and "after" result side by side, in config order.

        ``sides``: which gate is "before" and which "after" (baseline and verify, usually).
        """
        rows: dict[str, dict[str, Any]] = {}
        for test in self.tests.values():
            check = test["check"]
            if check is None or test["gate"] not in sides:
                continue
            side = sides[test["gate"]]
            name = f"{test['target']}: {check['name']}" if test.get("target") else check["name"]
            rows.setdefault(name, {"check": name, "before": None, "after": None})[side] = check
        return list(rows.values())


@dataclass(frozen=True)
class RunFacts:
    """What the headline says about the run itself, read off the harness's run state."""

    service: str
    requested: str | None
    # "verify" or "preflight" for a gate run, None for a rollback.
    gate: str | None
    rolls_back: bool
    dry_run: bool
    terminated_by: str | None
    outcome: RollbackOutcome | None
    usage_error: bool
    interrupted: bool


def headline(facts: RunFacts, ledger: TestLedger, unfinished_steps: Callable[[], dict[str, str]]) -> str:
    """The run's verdict in one line; ``unfinished_steps`` says how far a rollback cut short got."""
    service = facts.service
    verify = ledger.gate_counts("verify")
    if facts.usage_error:
        return f"{service}: usage error, nothing was run"
    if ledger.collection_errors and not ledger.tests:
        where = ", ".join(ledger.collection_errors)
        return f"{service}: collection failed ({where}): nothing was run"
    if facts.interrupted:
        service = f"{service}: {f'TERMINATED ({facts.terminated_by})' if facts.terminated_by else 'INTERRUPTED'}"
    if facts.gate is not None:
        return _gate_headline(facts, ledger, service, verify)
    outcome = facts.outcome
    if outcome is None:
        if ledger.failed("preflight"):
            return f"{service}: preflight REFUSED the rollback to {facts.requested}: nothing was changed"
        steps = unfinished_steps()
        if steps:
            # Cut short mid-rollback (Ctrl-C, a crash): say exactly which steps got how far.
            done = ", ".join(f"{step} {state}" for step, state in steps.items())
            return f"{service}: rollback to {facts.requested} did not finish: {done}"
        if facts.rolls_back and not facts.dry_run and not facts.interrupted:
            return f"{service}: rollback to {facts.requested} was NOT attempted (no selected test needed it)"
        return f"{service}: no rollback was attempted"
    if outcome.status in (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET):
        verdict = _verify_verdict(ledger, facts.interrupted, "verified")
        return f"{service}: {outcome.message}; {verdict} ({verify}){ledger.verify_seen()}"
    return f"{service}: {outcome.message}"


def _gate_headline(facts: RunFacts, ledger: TestLedger, service: str, verify: str) -> str:
    """A verify or preflight gate's verdict, which no rollback outcome decides."""
    if facts.gate == "verify":
        if ledger.failed("verify"):
            verdict = "FAILED"
        elif facts.interrupted:
            verdict = "INTERRUPTED, not passed"
        else:
            verdict = "passed" if ledger.passed("verify") else "did NOT run (every check deselected or skipped)"
        return f"{service}: verify gate {verdict} ({verify}){ledger.verify_seen()}"
    if ledger.failed("preflight"):
        verdict = "REFUSED"
    elif facts.interrupted:
        verdict = "did not finish"
    else:
        verdict = "passed" if ledger.passed("preflight") else "did NOT run (deselected)"
    return f"{service}: preflight gate {verdict} for {facts.requested}"


def _verify_verdict(ledger: TestLedger, interrupted: bool, success: str) -> str:
    """What the verify gate showed, in words that are true whether it ran, failed or was cut short."""
    if ledger.failed("verify"):
        return "verify FAILED"
    if interrupted:
        return "NOT verified: the verify gate was interrupted"
    if not ledger.passed("verify"):
        return "NOT verified: the verify gate was deselected or skipped"
    return success


def driver_steps(step_states: dict[str, str]) -> dict[str, str]:
    """The driver's own steps of a journal ("rollback" wraps them; preflight findings are no step)."""
    return {
        step: state for step, state in step_states.items() if not step.startswith("preflight:") and step != "rollback"
    }


def timeline(entries: list[dict[str, Any]], tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every journaled step and test in time order; a journaled action is one row from start to end."""
    events: list[dict[str, Any]] = []
    running: dict[str, dict[str, Any]] = {}
    for entry in entries:
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
    for test in tests:
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


def target_section(name: str, kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The target as configured, with what its driver said about itself at preflight."""
    described = next((e for e in entries if e["step"] == "target"), {})
    facts = {k: v for k, v in described.items() if k not in ("ts", "step", "status")}
    return {**facts, "name": name, "kind": kind}


@dataclass(frozen=True)
class Guards:
    """The command line's choices that can lower a guard."""

    rolls_back: bool
    dry_run: bool
    assume_yes: bool
    fast: bool
    allow_data_loss: bool


def relaxed_safety(
    settings: HarnessSettings,
    guards: Guards,
    feature_relaxed: list[dict[str, str]],
    deselected_gates: list[str],
    selection: str,
) -> list[dict[str, str]]:
    """Every setting of the run that lowered a guard, so no reader takes the result for more.

    ``feature_relaxed``: what the feature modules (an incident's --force) add; ``deselected_gates``:
    the gate checks ``selection`` (-k / -m) left out.
    """
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
            {"setting": "health.consecutive = 1", "effect": "one healthy answer counted as healthy: flaps go unseen"}
        )
    acted = guards.rolls_back and not guards.dry_run
    if acted and guards.assume_yes:
        relaxed.append({"setting": "--rollback-yes", "effect": "the rollback proceeded without a confirmation prompt"})
    if acted and guards.fast:
        relaxed.append(
            {
                "setting": "--rollback-fast",
                "effect": "emergency mode: the baseline was one probe per check (a record of what was live, "
                "not a verdict; no latency baseline for verify to compare with), and a driver with an "
                "emergency mode traded its rollout safety for speed (swarm: every task replaced at once, "
                "a 1 s failure watch, stop-first; the plan says how); preflight and verify ran in full",
            }
        )
    relaxed.extend(feature_relaxed)
    if guards.rolls_back and guards.allow_data_loss:
        relaxed.append({"setting": "--allow-data-loss", "effect": "a database downgrade that drops data was permitted"})
    if deselected_gates:
        relaxed.append(
            {
                "setting": selection or "deselected gate items",
                "effect": f"gate checks deselected, not run: {', '.join(deselected_gates)}",
            }
        )
    return relaxed


@dataclass(frozen=True)
class EvidenceParts:
    """Everything evidence.json holds, gathered by the pytest layer; ``evidence_document`` lays it out."""

    leading: dict[str, Any]  # the feature modules' first keys (the incident and its decision)
    run_id: str
    mode: str
    headline: str
    service: dict[str, Any]
    target: dict[str, Any] | None
    config: str
    requested: str | None
    expect_version: str | None
    dry_run: bool
    outcome: RollbackOutcome | None
    plan: list[Any]
    exit: dict[str, Any]
    started: float
    collection_errors: list[str]
    relaxed_safety: list[dict[str, str]]
    comparisons: list[dict[str, Any]]
    tests: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    gates: dict[str, Any]  # the feature modules' keys after the timeline (auto-rollback, watch, ...)
    artifacts: dict[str, Any]
    additions: dict[str, Any]  # the feature modules' last keys (a fleet's targets, a target's hosts)


def evidence_document(parts: EvidenceParts) -> dict[str, Any]:
    """evidence.json, its keys in the order rollback/evidence.schema.json documents them."""
    outcome = parts.outcome
    evidence: dict[str, Any] = {
        "schema": SCHEMA_ID,
        **parts.leading,  # the decision and its inputs come first
        "run_id": parts.run_id,
        "mode": parts.mode,
        "headline": parts.headline,
        "service": parts.service,
        "target": parts.target,
        "config": parts.config,
        "requested": parts.requested,
        "expect_version": parts.expect_version,
        "dry_run": parts.dry_run,
        "from_version": outcome.from_version if outcome else None,
        "to_version": outcome.to_version if outcome else None,
        "outcome": outcome.to_dict() if outcome else None,
        "plan": parts.plan,
        "exit": parts.exit,
        "started": iso(parts.started),
        "finished": iso(time.time()),
        "duration_s": round(time.time() - parts.started, 3),
        "collection_errors": parts.collection_errors,
        "relaxed_safety": parts.relaxed_safety,
        "comparisons": parts.comparisons,
        "tests": parts.tests,
        "timeline": parts.timeline,
        **parts.gates,
        "artifacts": parts.artifacts,
    }
    evidence.update(parts.additions)
    return evidence
