"""A feature plugin: gates around deploys, the watch after a rollback, and ``last-verified``.

- ``--gate verify --rollback-on-failure [VERSION]``: when the deploy's verify gate fails, the
  item ``rollback-on-failure`` rolls the target back through the runbook (preflight findings,
  plan, the driver's steps), then ``reverify-*`` items verify again, expecting the rollback's
  target. Both verify rounds are items: the report shows them side by side.
- ``--rollback-watch 5m``: after a verified rollback, ``watch-NN`` items repeat every verify
  check once per interval over the soak period; the first round that does not pass fails the
  watch (flapping, a late crash) and the rounds after it are skipped, saying why.
- ``--rollback-to last-verified``: resolved before the run starts (rollback/history.py); the
  item ``preflight-last-verified`` says which run proved the version and when.
These items are runbook items with phases of their own after ``verify``, so they run in the
runbook's process, in order, under xdist too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import exit_codes
from .fixtures import config_service, recorded_outcome, runbook_for
from .items import (
    PHASE_KEY,
    SPEC_KEY,
    RunbookItem,
    check_specs,
    make_item,
    record_result,
)
from .phase import PhaseChecks
from .state import MODE_GATE_VERIFY, MODE_ROLLBACK, RUN_KEY, HarnessRun

if TYPE_CHECKING:
    from ..rollback.results import CheckResult
    from ..rollback.runbook import RollbackOutcome

ON_FAILURE = "rollback-on-failure"
REVERIFY = "reverify"
WATCH = "watch"
LAST_VERIFIED = "last-verified"
WATCH_PROGRESS_EVERY = 5.0
MAX_WATCH_ROUNDS = 1000


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback")
    group.addoption(
        "--rollback-on-failure",
        dest="rollback_on_failure",
        nargs="?",
        const="previous",
        metavar="VERSION",
        help="With --gate verify: when the gate fails, roll back to VERSION (default: previous, or "
        "last-verified) and verify again",
    )
    group.addoption(
        "--rollback-watch",
        dest="rollback_watch",
        metavar="DURATION",
        help="After a verified rollback, repeat the verify checks over DURATION (e.g. 5m) to catch "
        "flapping or a late crash",
    )
    group.addoption(
        "--rollback-watch-interval",
        dest="rollback_watch_interval",
        metavar="DURATION",
        help="Time between two watch rounds (default: [watch] interval in the config, else 30s)",
    )


@dataclass
class GateRun:
    """This module's state for one run, in ``config.stash[GATES_KEY]``."""

    on_failure: str | None = None
    watch_s: float | None = None
    interval_s: float = 30.0
    # --rollback-to / --rollback-on-failure last-verified: the run that proved the version.
    last_verified: dict[str, Any] | None = None
    # In the process that runs the items.
    auto_status: str | None = None
    reverify_passed: int = 0
    reverify_failed: bool = False
    watch_started: float | None = None
    watch_failed_round: int | None = None

    @property
    def rounds(self) -> int:
        if self.watch_s is None:
            return 0
        return max(1, min(MAX_WATCH_ROUNDS, math.ceil(self.watch_s / self.interval_s - 1e-9)))


GATES_KEY = pytest.StashKey[GateRun]()


# -- options --------------------------------------------------------------------------------


def _seconds(flag: str, value: str) -> float:
    from ..rollback.durations import TIMEOUT_ACCEPTED, parse_timeout

    try:
        return parse_timeout(value)
    except ValueError:
        raise pytest.UsageError(f"{flag} {value!r}: expected {TIMEOUT_ACCEPTED}") from None


def pytest_rollback_check_options(config: pytest.Config, mode: str | None) -> None:
    """Usage errors for options that would do nothing or mean something else; before any change."""
    option = config.option
    on_failure = option.rollback_on_failure
    if on_failure is not None:
        if mode != MODE_GATE_VERIFY:
            raise pytest.UsageError(
                "--rollback-on-failure belongs to a deploy gate: use it with --gate verify "
                "(and --expect-version VERSION, the version just deployed)"
            )
        if not on_failure.strip() or "/" in on_failure or "\\" in on_failure or on_failure.startswith(("~", ".")):
            raise pytest.UsageError(
                f"--rollback-on-failure {on_failure!r} is not a version: give a release name such as v1.2.9, "
                "'previous' or 'last-verified' (put test paths before the option)"
            )
    if option.rollback_watch_interval is not None and option.rollback_watch is None:
        raise pytest.UsageError("--rollback-watch-interval needs --rollback-watch DURATION")
    if option.rollback_watch is None:
        return
    watch = _seconds("--rollback-watch", option.rollback_watch)
    if option.rollback_watch_interval is not None:
        interval = _seconds("--rollback-watch-interval", option.rollback_watch_interval)
        if interval > watch:
            raise pytest.UsageError(
                f"--rollback-watch-interval {option.rollback_watch_interval} is longer than the watch "
                f"({option.rollback_watch}): give an interval at most the watch's duration"
            )
    if mode == MODE_ROLLBACK and option.rollback_dry_run:
        raise pytest.UsageError("--rollback-watch watches a rollback, which --rollback-dry-run never does: drop one")
    if mode != MODE_ROLLBACK and on_failure is None:
        raise pytest.UsageError(
            "--rollback-watch watches a rollback: use it with --rollback-to VERSION, or with --gate verify "
            "--rollback-on-failure"
        )
    del watch


def pytest_rollback_config_loaded(
    config: pytest.Config, harness_config: Any, target_spec: Any, report_base: Path
) -> None:
    """``last-verified`` in --rollback-to or --rollback-on-failure becomes the version it names.

    Before the run starts: an unknown answer is a usage error (nothing is changed); the proof is
    kept for preflight and the evidence.
    """
    option = config.option
    flag = "--rollback-to" if option.rollback_to == LAST_VERIFIED else None
    if flag is None and option.rollback_on_failure == LAST_VERIFIED:
        flag = "--rollback-on-failure"
    if flag is None:
        return
    if target_spec is None:
        raise pytest.UsageError(f"{flag} {LAST_VERIFIED} needs one target: choose it with --rollback-target NAME")
    from ..rollback.history import find_last_verified

    configured = harness_config.settings.history.reports_dir
    folder = (harness_config.base_dir / Path(configured).expanduser()).resolve() if configured else report_base
    service = harness_config.settings.service.name
    key = _signing_key(harness_config)  # [reports.signing]: only runs signed with it are trusted
    search = find_last_verified(folder, service, target_spec.name, trusted=None if key is None else key.public)
    if search.proof is None:
        raise pytest.UsageError(search.refusal(service, target_spec.name).replace("--rollback-to", flag, 1))
    proof = search.proof.to_dict()
    proof.update(asked=f"{flag} {LAST_VERIFIED}", searched=str(folder), untrusted=search.untrusted)
    config.stash[_PROOF_KEY] = proof
    if flag == "--rollback-to":
        option.rollback_to = search.proof.version
    else:
        option.rollback_on_failure = search.proof.version


_PROOF_KEY = pytest.StashKey[dict[str, Any]]()


def _signing_key(harness_config: Any) -> Any:
    """The configured signing key (its public half vouches for earlier runs); a bad one is a usage error."""
    import os

    from ..rollback.errors import ConfigError
    from ..rollback.signing import configured_key

    try:
        return configured_key(harness_config, os.environ)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(trylast=True)
def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    """After the harness made the run: this module's phases and state."""
    option = config.option
    gates = GateRun(on_failure=option.rollback_on_failure, last_verified=config.stash.get(_PROOF_KEY, None))
    if option.rollback_watch is not None:
        gates.watch_s = _seconds("--rollback-watch", option.rollback_watch)
        interval = option.rollback_watch_interval
        gates.interval_s = (
            _seconds("--rollback-watch-interval", interval) if interval else run.config.settings.watch.interval
        )
    phases: list[str] = []
    if gates.on_failure is not None:
        phases += [ON_FAILURE, REVERIFY]
    if gates.watch_s is not None:
        phases.append(WATCH)
    run.extra_phases = tuple(phases)
    config.stash[GATES_KEY] = gates


# -- items ----------------------------------------------------------------------------------

ROUND_KEY = pytest.StashKey[int]()


def _gate_item(parent: pytest.Collector, name: str, func: Callable[..., None], phase: str, key: str) -> pytest.Item:
    """A runbook item of one of this module's phases (no gate mark: its phases are the runbook's own)."""
    item = RunbookItem.from_parent(parent, name=name, callobj=func)
    item.stash[PHASE_KEY] = phase
    item.stash[SPEC_KEY] = key
    return item


def pytest_rollback_extra_items(parent: pytest.Collector, run: HarnessRun) -> list[pytest.Item]:
    """The items of this module's phases for the run (plugins/items.py yields them)."""
    gates = parent.config.stash.get(GATES_KEY, None)
    if gates is None:
        return []
    items: list[pytest.Item] = []
    if gates.last_verified is not None and "preflight" in run.phases:
        items.append(make_item(parent, "preflight-last-verified", _run_last_verified, "preflight", LAST_VERIFIED))
    if gates.on_failure is not None:
        items.append(_gate_item(parent, ON_FAILURE, _run_rollback_on_failure, ON_FAILURE, ON_FAILURE))
        for spec in check_specs(run):
            items.append(_gate_item(parent, f"{REVERIFY}-{spec.key}", _run_reverify, REVERIFY, spec.key))
    for number in range(1, gates.rounds + 1):
        item = _gate_item(parent, f"{WATCH}-{number:02d}", _run_watch_round, WATCH, f"{WATCH}-{number:02d}")
        item.stash[ROUND_KEY] = number
        items.append(item)
    return items


def _state(request: pytest.FixtureRequest) -> tuple[HarnessRun, GateRun]:
    return request.config.stash[RUN_KEY], request.config.stash[GATES_KEY]


def _run_last_verified(request: pytest.FixtureRequest) -> None:
    run, gates = _state(request)
    proof = gates.last_verified
    assert proof is not None
    summary = (
        f"{proof['asked']}: {proof['version']}, verified by run {proof['run_id']} at {proof['verified_at']} "
        f"({proof['how']}; evidence matches its manifest"
        + (f", signed by the configured key {proof['signed_by']})" if proof.get("signed_by") else ")")
    )
    if proof["untrusted"]:
        summary += f"; not trusted: {'; '.join(proof['untrusted'][:3])}"
    run.progress(summary)
    run.journal.record("last-verified", "resolved", **{k: v for k, v in proof.items() if k != "untrusted"})
    record_result(request, {"name": LAST_VERIFIED, "status": "passed", "summary": summary, "measured": proof})


def _run_rollback_on_failure(request: pytest.FixtureRequest) -> None:
    from ..rollback.runbook import STATUS_ALREADY_AT_TARGET, STATUS_ROLLED_BACK

    run, gates = _state(request)
    assert gates.on_failure is not None
    if not run.verify_failed:
        why = (
            "the deploy passed its verify gate: nothing to roll back"
            if run.verify_passed
            else "the deploy's verify gate did not run: nothing to judge, nothing rolled back"
        )
        record_result(request, {"name": ON_FAILURE, "status": "skipped", "summary": why, "measured": {}})
        pytest.skip(why)
    run.progress(f"the deploy failed its verify gate: rolling back to {gates.on_failure} (--rollback-on-failure)")
    outcome = _auto_rollback(run, gates.on_failure)
    run.journal.record_after("outcome", outcome.status, **{k: v for k, v in outcome.to_dict().items() if k != "status"})
    gates.auto_status = outcome.status
    ok = outcome.status in (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET)
    run.progress(f"{ON_FAILURE}: {outcome.message}")
    record_result(
        request,
        {"name": ON_FAILURE, "status": "passed" if ok else "failed", "summary": outcome.message, "measured": {}},
    )
    if not ok:
        pytest.fail(outcome.message, pytrace=False)


def _auto_rollback(run: HarnessRun, requested: str) -> RollbackOutcome:
    """The runbook after a failed deploy gate: preflight, plan, the rollback. Raises nothing."""
    from ..rollback.runbook import STATUS_REFUSED, RollbackOutcome
    from ..rollback.versions import PREVIOUS, same_version

    run.requested = requested
    runbook = runbook_for(run)
    findings = runbook.preflight()
    for finding in findings.values():
        verdict = "ok" if finding.ok else ("FAILED" if finding.checked else "not checked")
        run.progress(f"{ON_FAILURE}: preflight {finding.name}: {verdict}: {finding.message}")
    refusals = [f"{f.name}: {f.message}" for f in runbook.refusals() if f.checked]
    live, target = runbook.from_version, runbook.to_version
    deployed = run.expect_version
    if requested == PREVIOUS and deployed is not None and live is not None and not same_version(live, deployed):
        # The deploy did not land: 'previous' of what runs now would go one release too far.
        refusals.append(
            f"deploy-landed: the platform runs {live}, not the deployed {deployed}: 'previous' would roll back past "
            f"it; name the version: --rollback-on-failure VERSION"
        )
    if refusals:
        return RollbackOutcome(STATUS_REFUSED, "preflight refused the rollback: " + "; ".join(refusals), live, target)
    plan = runbook.plan()
    run.journal.record("plan", "planned", steps=plan, resumes=None, **{"from": live, "to": target})
    run.progress(f"rollback plan for {config_service(run)}: {live} -> {target}")
    for number, step in enumerate(plan, 1):
        run.progress(f"  {number}. {step}")
    run.journal.record("confirmation", "given", how="--rollback-on-failure: the gate's standing consent")
    return runbook.execute()


class _AfterRollbackChecks(PhaseChecks):
    """The verify checks, again: reverify settles as verify does; a watch round is its own settle."""

    def _settle_seconds(self) -> float:
        return self.run.config.settings.service.settle if self.phase == REVERIFY else 0.0


def _verify_specs(run: HarnessRun) -> list[Any]:
    """The verify checks the user kept selected (all of them without -k / -m)."""
    selected = run.selected_checks.get("verify")
    specs = check_specs(run)
    return [spec for spec in specs if spec.key in selected] if selected else specs


def _run_reverify(request: pytest.FixtureRequest) -> None:
    from ..rollback.results import CheckResult
    from ..rollback.runbook import STATUS_ALREADY_AT_TARGET, STATUS_ROLLED_BACK

    run, gates = _state(request)
    if gates.auto_status not in (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET):
        pytest.skip(
            "no automatic rollback to verify: "
            + ("the deploy passed its verify gate" if gates.auto_status is None else "it did not complete")
        )
    if REVERIFY not in run.phase_checks:
        run.phase_checks[REVERIFY] = _AfterRollbackChecks(run, REVERIFY, _verify_specs(run))
    key = request.node.stash[SPEC_KEY]
    result: CheckResult = run.phase_checks[REVERIFY].result(key)
    if key == "version":
        measured = {**result.measured, "expected_from": "the automatic rollback's target (--rollback-on-failure)"}
        result = CheckResult(result.name, result.status, result.summary, measured)
    record_result(request, result.to_dict())
    if not result.passed:
        gates.reverify_failed = True
        prefix = "inconclusive (not passed): " if result.status == "inconclusive" else ""
        pytest.fail(prefix + result.summary, pytrace=False)
    gates.reverify_passed += 1


def _watch_blocked(run: HarnessRun, gates: GateRun) -> str | None:
    """Why there is nothing to watch (the rollback was not done and verified), or None."""
    from ..rollback.runbook import STATUS_ALREADY_AT_TARGET, STATUS_ROLLED_BACK

    done = (STATUS_ROLLED_BACK, STATUS_ALREADY_AT_TARGET)
    if run.mode == MODE_GATE_VERIFY:
        if gates.auto_status is None:
            return "no rollback to watch: the deploy passed its verify gate (or it did not run)"
        if gates.auto_status not in done:
            return "no rollback to watch: the automatic rollback did not complete"
        if gates.reverify_failed or not gates.reverify_passed:
            return "not watched: verify after the automatic rollback did not pass"
        return None
    outcome = recorded_outcome(run)
    if outcome is None or outcome.status not in done:
        return "no rollback to watch: " + (outcome.message if outcome is not None else "none was done")
    if run.verify_failed or not run.verify_passed:
        return "not watched: the verify gate did not pass"
    return None


def _run_watch_round(request: pytest.FixtureRequest) -> None:
    from ..rollback.journal import utc_now

    run, gates = _state(request)
    number, rounds = request.node.stash[ROUND_KEY], gates.rounds
    name = f"{WATCH}-{number:02d}"
    blocked = _watch_blocked(run, gates)
    if blocked is not None:
        pytest.skip(blocked)
    if gates.watch_failed_round is not None:
        pytest.skip(f"the watch already failed at round {gates.watch_failed_round}")
    if gates.watch_started is None:
        gates.watch_started = time.monotonic()
        run.progress(f"watch: {rounds} round{'s' if rounds != 1 else ''}, one every {gates.interval_s:g} s")
        # Statuses outside the journal's step states: the watch is not a step a rerun resumes.
        run.journal.record(WATCH, "watching", rounds=rounds, interval_s=gates.interval_s, duration_s=gates.watch_s)
    _wait_for_round(run, gates.watch_started + number * gates.interval_s, number, rounds)
    at = utc_now()
    checks = _AfterRollbackChecks(run, WATCH, _verify_specs(run))
    results = {spec.key: checks.result(spec.key) for spec in checks.specs}
    bad = {key: result for key, result in results.items() if not result.passed}
    if bad:
        summary = f"round {number}/{rounds}: " + "; ".join(f"{key}: {r.status}: {r.summary}" for key, r in bad.items())
    else:
        summary = f"round {number}/{rounds}: {len(results)} checks passed"
    measured = {
        "round": number,
        "of": rounds,
        "at": at,
        "checks": {key: {"status": r.status, "summary": r.summary} for key, r in results.items()},
    }
    record_result(
        request, {"name": name, "status": "failed" if bad else "passed", "summary": summary, "measured": measured}
    )
    run.journal.record(name, "not passed" if bad else "passed", summary=summary)
    run.progress(f"watch: {summary}")
    if bad:
        gates.watch_failed_round = number
        pytest.fail(f"watch failed: {summary}", pytrace=False)


def _wait_for_round(run: HarnessRun, due: float, number: int, rounds: int) -> None:
    """Sleep until the round is due, saying so now and then; Ctrl-C ends the wait (and the run)."""
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return
        if left > WATCH_PROGRESS_EVERY:
            run.progress(f"watch: round {number}/{rounds} in {left:.0f} s")
        time.sleep(min(left, WATCH_PROGRESS_EVERY))


def pytest_rollback_actions_verified(run: HarnessRun, config: pytest.Config) -> bool | None:
    """The automatic rollback was done and verify after it passed (the actions' finish asks)."""
    gates = config.stash.get(GATES_KEY, None)
    return gates is not None and gates.reverify_passed > 0 and not gates.reverify_failed


# -- the controller: exit code, headline, evidence ------------------------------------------


def _tests_of(tests: dict[str, dict[str, Any]], gate: str) -> list[dict[str, Any]]:
    return [t for t in tests.values() if t["gate"] == gate]


def _failed(tests: list[dict[str, Any]]) -> bool:
    return any(t["outcome"] in ("failed", "error") for t in tests)


def _passed(tests: list[dict[str, Any]]) -> bool:
    return any(t["outcome"] == "passed" for t in tests)


def exit_code(run: HarnessRun, tests: dict[str, dict[str, Any]], code: int) -> int:
    """The harness's exit code, told apart for a deploy rolled back on its own and for a watch."""
    if code in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR, pytest.ExitCode.USAGE_ERROR):
        return code
    auto = _tests_of(tests, ON_FAILURE)
    if auto and auto[0]["outcome"] != "skipped":
        if auto[0]["outcome"] != "passed":
            return exit_codes.AUTO_ROLLBACK_FAILED
        reverify = _tests_of(tests, REVERIFY)
        if _failed(reverify) or not _passed(reverify):
            return exit_codes.AUTO_ROLLBACK_UNVERIFIED
        return exit_codes.WATCH_FAILED if _failed(_tests_of(tests, WATCH)) else exit_codes.DEPLOY_ROLLED_BACK
    if code in (exit_codes.OK, pytest.ExitCode.TESTS_FAILED) and _failed(_tests_of(tests, WATCH)):
        return exit_codes.WATCH_FAILED
    return code


def comparison_sides(tests: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Which gate is "before" and which "after" in the report's comparison of each check."""
    if any(t["gate"] == REVERIFY and t["check"] for t in tests.values()):
        return {"verify": "before", REVERIFY: "after"}  # the failed deploy, then the rollback
    return {"baseline": "before", "verify": "after"}


def _watch_words(tests: dict[str, dict[str, Any]], gates: GateRun, code: int | None) -> str | None:
    rounds = _tests_of(tests, WATCH)
    if gates.watch_s is None:
        return None
    ran = [t for t in rounds if t["outcome"] in ("passed", "failed", "error")]
    failed = [t for t in ran if t["outcome"] != "passed"]
    if failed:
        check = failed[0]["check"] or {}
        return f"watch FAILED: {check.get('summary') or failed[0]['message']}"
    if code == pytest.ExitCode.INTERRUPTED and len(ran) < gates.rounds:
        return f"watch INTERRUPTED after {len(ran)} of {gates.rounds} rounds"
    if ran and len(ran) == gates.rounds:
        return f"watched {gates.rounds} rounds over {gates.rounds * gates.interval_s:g} s: all passed"
    return None


def headline(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]], code: int | None, base: str
) -> str:
    """``base`` (report.py's headline), told the whole story when this module's phases ran."""
    gates = config.stash.get(GATES_KEY, None)
    if gates is None or code == pytest.ExitCode.USAGE_ERROR:
        return base
    service = run.config.settings.service.name
    interrupted = code == pytest.ExitCode.INTERRUPTED
    auto = _tests_of(tests, ON_FAILURE)
    deploy = f"{service}: deploy gate FAILED" + (f" for {run.expect_version}" if run.expect_version else "")
    if gates.on_failure is not None and not auto and interrupted:
        steps = {
            step: state
            for step, state in run.journal.step_states().items()
            if not step.startswith(("preflight:", "notify")) and step != "rollback"
        }
        if steps:  # cut short inside the automatic rollback: say how far each step got
            done = ", ".join(f"{step} {state}" for step, state in steps.items())
            return f"{service}: INTERRUPTED: the automatic rollback did not finish: {done}"
    if auto and auto[0]["outcome"] != "skipped":
        outcome = recorded_outcome(run)
        if auto[0]["outcome"] != "passed":
            return f"{deploy}; the automatic rollback did NOT happen or failed: {auto[0]['message']}"
        moved = outcome.message if outcome is not None else "rolled back"
        reverify = _tests_of(tests, REVERIFY)
        if interrupted and not _failed(reverify):
            return f"{service}: INTERRUPTED: {deploy.split(': ', 1)[1]}; {moved} automatically; NOT verified after it"
        if _failed(reverify) or not _passed(reverify):
            return f"{deploy}; {moved} automatically, but verify after the rollback FAILED"
        words = f"{deploy}; {moved} automatically and verified"
        watch = _watch_words(tests, gates, code)
        return f"{words}; {watch}" if watch else words
    watch = _watch_words(tests, gates, code)
    if watch is None:
        return base
    if code == pytest.ExitCode.INTERRUPTED and "INTERRUPTED" in watch:
        return f"{service}: INTERRUPTED during the watch: rolled back and verified before it; {watch}"
    return f"{base}; {watch}"


def evidence(run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """This module's part of evidence.json: the auto-rollback, the watch, last-verified."""
    gates = config.stash.get(GATES_KEY, None)
    if gates is None:
        return {}
    section: dict[str, Any] = {"last_verified": gates.last_verified}
    if gates.on_failure is not None:
        auto = _tests_of(tests, ON_FAILURE)
        section["rollback_on_failure"] = {
            "requested": gates.on_failure,
            "consent": "--rollback-on-failure",
            "deploy_verify": [_round_entry(t) for t in _tests_of(tests, "verify")],
            "rollback": _round_entry(auto[0]) if auto else None,
            "reverify": [_round_entry(t) for t in _tests_of(tests, REVERIFY)],
        }
    if gates.watch_s is not None:
        section["watch"] = {
            "duration_s": gates.watch_s,
            "interval_s": gates.interval_s,
            "rounds_planned": gates.rounds,
            "rounds": [_round_entry(t) for t in _tests_of(tests, WATCH)],
        }
    return section


def _round_entry(test: dict[str, Any]) -> dict[str, Any]:
    check = test.get("check") or {}
    return {
        "name": test["nodeid"].rpartition("::")[2],
        "outcome": test["outcome"],
        "summary": check.get("summary") or test["message"],
        "start": test["start"],
        "measured": check.get("measured") or {},
    }


def summary_html(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    """The report's sections for both verify rounds and for each watch round (everything escaped)."""
    parts: list[str] = []

    def table(title: str, element: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        body = "".join(
            f"<tr><td>{h(r['name'])}</td><td>{h(r['outcome'])}</td><td>{h(r['summary'])}</td></tr>" for r in rows
        )
        parts.append(
            f'<h3>{h(title)}</h3><table id="{element}"><tr><th>Check</th><th>Outcome</th><th>Result</th></tr>'
            f"{body}</table>"
        )

    auto = evidence.get("rollback_on_failure")
    if auto:
        table("Verify after the deploy", "rollback-deploy-verify", auto["deploy_verify"])
        table(
            f"Rollback on failure (to {auto['requested']})",
            "rollback-on-failure",
            [auto["rollback"]] if auto["rollback"] else [],
        )
        table("Verify after the automatic rollback", "rollback-reverify", auto["reverify"])
    watch = evidence.get("watch")
    if watch:
        title = f"Watch: {watch['rounds_planned']} rounds, one every {watch['interval_s']:g} s"
        table(title, "rollback-watch", watch["rounds"])
    proof = evidence.get("last_verified")
    if proof:
        parts.append(
            f"<p>{h(proof['asked'])}: {h(proof['version'])}, verified by run {h(proof['run_id'])} at "
            f"{h(proof['verified_at'])}.</p>"
        )
    return parts


# -- the harness's hooks for the report (plugins/hookspecs.py) -------------------------------------


def pytest_rollback_exit_code(run: HarnessRun, tests: dict[str, dict[str, Any]], code: int) -> int | None:
    return exit_code(run, tests, code)


def pytest_rollback_headline(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]], code: int | None, base: str
) -> str | None:
    return headline(run, config, tests, code, base)


def pytest_rollback_comparison_sides(tests: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    return comparison_sides(tests)


def pytest_rollback_evidence(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return evidence(run, config, tests)


def pytest_rollback_html_sections(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    return summary_html(evidence, h)
