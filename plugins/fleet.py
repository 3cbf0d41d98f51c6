"""Fleet runs: ``--rollback-target all`` (or ``a,b``) rolls back several targets of one config.

Each target gets a run of its own (``HarnessRun.fleet``): its own folder under the run folder
(``targets/NAME/``), journal, runbook, lock and checks, and its items under a node named after
it (``rollback.toml::web::verify-version``). What is shared is decided once for the fleet: one
plan and one confirmation, then ``rollback/fleet.py`` runs the runbooks, ``--rollback-parallel``
at a time; one summary and one report, with a section per target.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ..rollback import run_files
from .fixtures import RunLockUnavailable, held_run_lock, not_attempted, recorded_outcome, runbook_for, session_of
from .ini import target_option
from .items import check_specs, runbook_items
from .phase import PhaseChecks
from .state import MODE_ROLLBACK, RUN_KEY, HarnessRun

if TYPE_CHECKING:
    from ..rollback.config import HarnessConfig, TargetSpec
    from ..rollback.runbook import RollbackOutcome

ALL = "all"
TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64
PREFLIGHT_THREADS = 16
TARGETS_DIR = run_files.TARGETS


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback")
    group.addoption(
        "--rollback-parallel",
        dest="rollback_parallel",
        type=int,
        metavar="N",
        help=f"How many targets of a fleet (--rollback-target all, or a comma list) roll back at once "
        f"(default: {DEFAULT_PARALLEL})",
    )


def is_fleet_request(value: str | None) -> bool:
    """``all`` or a comma list: a fleet run; one name: a run on one target, as before."""
    return value is not None and (value.strip() == ALL or "," in value)


def fleet_names(value: str, config: HarnessConfig) -> list[str]:
    """The targets ``--rollback-target`` names, in config order; a ConfigError names bad ones."""
    from ..rollback.errors import ConfigError

    known = sorted(config.targets)
    names = known if value.strip() == ALL else [name.strip() for name in value.split(",")]
    if any(not name for name in names):
        raise ConfigError(f"--rollback-target {value!r}: an empty name in the list; write names as a,b,c")
    unknown = [name for name in names if name not in config.targets]
    if unknown:
        raise ConfigError(
            f"--rollback-target {value!r}: no such target {', '.join(repr(n) for n in unknown)} in {config.path}; "
            f"known: {', '.join(known)} (or 'all')"
        )
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"--rollback-target {value!r}: {', '.join(twice)} named more than once")
    odd = [name for name in names if not TARGET_NAME.match(name)]
    if odd:
        # The name becomes a node of the test ids and a folder of the run: no '::', '/' or markup.
        raise ConfigError(
            f"{config.path}: targets.{odd[0]!r}: a fleet's target names are letters, digits, '.', '_' and '-' "
            "(they name its items and its folder); rename the table"
        )
    return names


def check_usage(config: pytest.Config, mode: str | None, fleet: bool) -> int:
    """Usage errors of the fleet options; the parallelism to use."""
    parallel = config.option.rollback_parallel
    if parallel is not None and not fleet:
        raise pytest.UsageError(
            "--rollback-parallel applies to a fleet: pass --rollback-target all (or a comma list of targets)"
        )
    if parallel is not None and not 1 <= parallel <= MAX_PARALLEL:
        raise pytest.UsageError(f"--rollback-parallel {parallel}: expected a number from 1 to {MAX_PARALLEL}")
    if fleet and mode != MODE_ROLLBACK:
        raise pytest.UsageError(
            "--rollback-target all (or a list) rolls a fleet back and needs --rollback-to VERSION; "
            "a gate checks one target: pass --rollback-target NAME"
        )
    if fleet and getattr(config.option, "rollback_watch", None):
        raise pytest.UsageError(
            "--rollback-watch watches one target: pass --rollback-target NAME (a fleet is not watched yet)"
        )
    if fleet and (config.option.rollback_to or "").strip() == "last-verified":
        raise pytest.UsageError(
            "--rollback-to last-verified reads one target's history: pass --rollback-target NAME, "
            "or name the version for the whole fleet"
        )
    return parallel or DEFAULT_PARALLEL


# The fleet this run asked for, between the hooks of pytest_configure: names, then how many at once.
_NAMES_KEY = pytest.StashKey[list[str]]()
_PARALLEL_KEY = pytest.StashKey[int]()


def pytest_rollback_check_options(config: pytest.Config, mode: str | None) -> None:
    if mode is not None:
        config.stash[_PARALLEL_KEY] = check_usage(config, mode, is_fleet_request(target_option(config)))


def pytest_rollback_fleet_targets(config: pytest.Config, harness_config: HarnessConfig) -> list[str] | None:
    selection = target_option(config)
    if selection is None or not is_fleet_request(selection):
        return None
    names = fleet_names(selection, harness_config)
    config.stash[_NAMES_KEY] = names
    return names


@pytest.hookimpl(tryfirst=True)  # before the other features look at run.fleet
def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    names = config.stash.get(_NAMES_KEY, None)
    if names is not None:
        attach(run, names, config.stash.get(_PARALLEL_KEY, DEFAULT_PARALLEL))


def pytest_rollback_remove_empty_folders(run: HarnessRun) -> None:
    remove_empty_folders(run)


def pytest_rollback_unfinished_steps(run: HarnessRun) -> dict[str, str]:
    return steps_of_targets(run)


def pytest_rollback_evidence_tail(run: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return evidence_additions(run, tests)


def pytest_rollback_html_tail(evidence: dict[str, Any], h: Any, cell: Any) -> list[str]:
    return html_sections(evidence, h, cell)


def pytest_rollback_terminal_lines(evidence: dict[str, Any]) -> list[str]:
    return terminal_lines(evidence)


def pytest_rollback_collect_runbook(parent: pytest.Collector, run: HarnessRun) -> list[Any] | None:
    if not run.is_fleet:
        return None
    return [TargetNode.from_parent(parent, name=name) for name in run.fleet]


def pytest_rollback_member_phase(root: HarnessRun, run: HarnessRun, phase: str) -> None:
    if root.is_fleet:
        if phase == "preflight":
            preflight_all(root)  # every target's preflight at once
        else:
            start_phase(root, phase)  # every target's checks of the phase at once


def pytest_rollback_member_verify(run: HarnessRun) -> None:
    require_rolled_back(run)  # this target's own outcome: failed, or not started


def pytest_rollback_perform(run: HarnessRun, config: pytest.Config) -> RollbackOutcome | None:
    return perform_fleet_rollback(run, config) if run.is_fleet else None


def attach(run: HarnessRun, names: list[str], parallel: int) -> None:
    """Give ``run`` one run per target, each in its own folder under the run folder."""
    for name in names:
        spec = run.config.targets[name]
        child = HarnessRun(
            mode=run.mode,
            config=_target_config(run.config, spec),
            target_spec=spec,
            requested=run.requested,
            expect_version=None,
            dry_run=run.dry_run,
            assume_yes=run.assume_yes,
            fast=run.fast,
            run_id=run.run_id,
            run_dir=run.run_dir / TARGETS_DIR / name,
            is_worker=run.is_worker,
        )
        child.progress = _prefixed(run, name)
        child.hook = run.hook
        run.fleet[name] = child
    run.fleet_parallel = parallel


def _target_config(config: HarnessConfig, spec: TargetSpec) -> HarnessConfig:
    """The config as the target's checks see it: ``[targets.NAME.checks]`` replaces ``[service]``."""
    if spec.checks is None:
        return config
    return dataclasses.replace(config, settings=config.settings.model_copy(update={"service": spec.checks}))


def _prefixed(run: HarnessRun, name: str) -> Any:
    def progress(message: str) -> None:
        run.progress(f"{name}: {message}")

    return progress


def remove_empty_folders(run: HarnessRun) -> None:
    """The targets' folders, when nothing was written in them (a listing, a usage error)."""
    for child in run.fleet.values():
        _rmdir(child.run_dir)
    if run.fleet:
        _rmdir(run.run_dir / TARGETS_DIR)


def _rmdir(folder: Any) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


class TargetNode(pytest.Collector):
    """A fleet's target: its runbook items hang under it (``rollback.toml::web::verify-version``)."""

    def collect(self) -> Iterator[pytest.Item]:
        run = self.config.stash[RUN_KEY]
        yield from runbook_items(self, run.fleet[self.name], self.name)


# -- running every target's phase at once ------------------------------------------------------

_preflight_lock = threading.Lock()


def preflight_all(run: HarnessRun) -> None:
    """Every target's preflight, concurrently, the first time any target's preflight item runs.

    A preflight that raises here is left to its own items, which ask again and report it.
    Unlike a single run, a fleet does not start its baselines' answers beside preflight: measured
    slower on 2 cores (bench/README.md, "Fleet of 20").
    """

    with _preflight_lock:
        if run.phase_checks.get("preflight") is not None:
            return
        run.phase_checks["preflight"] = "started"
        slots = threading.BoundedSemaphore(PREFLIGHT_THREADS)

        def judge(child: HarnessRun) -> None:
            with slots:
                try:
                    runbook_for(child).preflight()
                except Exception:
                    return

        threads = [threading.Thread(target=judge, args=(child,), daemon=True) for child in run.fleet.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)


def start_phase(run: HarnessRun, phase: str) -> None:
    """Start the phase's checks of every target at once (each target's own run keeps them)."""

    with _preflight_lock:
        for child in run.fleet.values():
            if phase in child.phase_checks:
                continue
            if phase == "verify" and not _rolled_back(child):
                continue  # its items fail or skip on its outcome; nothing to probe
            selected = child.selected_checks.get(phase, [])
            specs = [spec for spec in check_specs(child) if spec.key in selected]
            checks = PhaseChecks(child, phase, specs)
            child.phase_checks[phase] = checks
            checks.start()


def _rolled_back(child: HarnessRun) -> bool:
    from ..rollback.fleet import SUCCESS

    outcome = recorded_outcome(child)
    return outcome is not None and outcome.status in SUCCESS


def require_rolled_back(child: HarnessRun) -> None:
    """A target's verify item judges its own target: failed fails, not started skips."""
    from ..rollback.fleet import STATUS_NOT_STARTED, SUCCESS

    outcome = recorded_outcome(child)
    name = child.target_spec.name if child.target_spec else "target"
    if outcome is None:
        pytest.fail(f"{name}: no rollback outcome was recorded for this target", pytrace=False)
    if outcome.status == STATUS_NOT_STARTED:
        pytest.skip(f"{name}: {outcome.message}")
    if outcome.status not in SUCCESS:
        pytest.fail(f"{name}: {outcome.message}", pytrace=False)


# -- the fleet's rollback ------------------------------------------------------------------------


def perform_fleet_rollback(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    """Once per run: every target's preflight passed, one plan, one confirmation, then the fleet."""
    from ..rollback.fleet import outcome_record

    try:
        with held_run_lock(run):
            done = recorded_outcome(run)
            if done is not None:
                return done
            outcome = _decide_and_act(run, config)
            run.journal.record_after("outcome", outcome.status, **outcome_record(outcome))
            return outcome
    except RunLockUnavailable as exc:
        return not_attempted(run, str(exc), None, None)


def _decide_and_act(run: HarnessRun, config: pytest.Config) -> RollbackOutcome:
    from ..rollback.session import Fleet, roll_back_fleet

    preflight_all(run)
    fleet = Fleet(
        runbooks={name: runbook_for(child) for name, child in run.fleet.items()},
        journals={name: child.journal for name, child in run.fleet.items()},
        parallel=run.fleet_parallel,
    )
    users = [f"{nodeid} failed" for nodeid in run.preflight_failures]
    return roll_back_fleet(session_of(run, config), fleet, users)


# -- the report ------------------------------------------------------------------------------------


def evidence_additions(run: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The evidence's ``targets`` (a fleet) and ``hosts`` (a target on several hosts); nothing else,
    so that a run on one target on this machine writes the evidence it always wrote."""
    if not run.is_fleet:
        hosts = host_states(run.journal.entries())
        return {"hosts": hosts} if hosts else {}
    return {
        "parallel": run.fleet_parallel,
        "targets": [_target_evidence(name, child, tests) for name, child in run.fleet.items()],
    }


def _target_evidence(name: str, child: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    from ..rollback.fleet import target_state

    entries = child.journal.entries()
    outcome = recorded_outcome(child)
    described = next((e for e in entries if e["step"] == "target"), {})
    plan = next((e for e in reversed(entries) if e["step"] == "plan"), None)
    own = [t for t in tests.values() if t.get("target") == name]
    verify = _verify(own)
    counts: dict[str, int] = {}
    for test in own:
        counts[test["outcome"]] = counts.get(test["outcome"], 0) + 1
    spec = child.target_spec
    steps = ", ".join(f"{step} {state}" for step, state in _driver_steps(child).items())
    return {
        **{k: v for k, v in described.items() if k not in ("ts", "step", "status")},
        "name": name,
        "kind": spec.kind if spec else None,
        "checks_base_url": child.config.settings.service.base_url,
        "state": target_state(outcome, verify) if outcome or not steps else f"did NOT finish: {steps}",
        "status": outcome.status if outcome else None,
        "verify": verify,
        "from_version": outcome.from_version if outcome else None,
        "to_version": outcome.to_version if outcome else None,
        "outcome": outcome.to_dict() if outcome else None,
        "plan": plan["steps"] if plan else [],
        "hosts": host_states(entries),
        "tests": counts,
        "journal": f"{TARGETS_DIR}/{name}/{child.journal.path.name}",
    }


def _driver_steps(child: HarnessRun) -> dict[str, str]:
    """What the target's journal says its steps got to (the outcome is not written yet: cut short)."""
    return {
        step: state
        for step, state in child.journal.step_states().items()
        if not step.startswith("preflight:") and step != "rollback" and "@" not in step
    }


def steps_of_targets(run: HarnessRun) -> dict[str, str]:
    return {
        f"{name}: {step}": state for name, child in run.fleet.items() for step, state in _driver_steps(child).items()
    }


def _verify(tests: list[dict[str, Any]]) -> str | None:
    verify = [t for t in tests if t["gate"] == "verify"]
    if any(t["outcome"] in ("failed", "error") for t in verify):
        return "failed"
    if verify and all(t["outcome"] == "passed" for t in verify):
        return "passed"
    return None


def host_states(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each host's steps (journaled as ``STEP@HOST``) and where it stands, in the order named."""
    described = next((e for e in entries if e["step"] == "target"), {})
    names = [str(host) for host in described.get("hosts", [])]
    steps: dict[str, dict[str, str]] = {name: {} for name in names}
    for entry in entries:
        step, _, host = str(entry["step"]).rpartition("@")
        if step and host and entry.get("status") in ("started", "done", "failed", "interrupted", "skipped"):
            steps.setdefault(host, {})[step] = entry["status"]
    return {host: {"state": _host_words(done), "steps": done} for host, done in steps.items()}


def _host_words(steps: dict[str, str]) -> str:
    if not steps:
        return "not started: nothing was changed on it"
    for step, status in steps.items():
        if status == "failed":
            return f"failed at {step}"
        if status in ("started", "interrupted"):
            return f"cut short at {step} ({'in flight' if status == 'started' else 'interrupted'})"
    return "done: " + ", ".join(f"{step} {status}" for step, status in steps.items())


def terminal_lines(evidence: dict[str, Any]) -> list[str]:
    """Per target (and per host) where it stands, for the terminal summary."""
    lines = []
    for target in evidence.get("targets", []):
        lines.append(f"target {target['name']}: {target['state']}")
        lines.extend(f"  host {host}: {state['state']}" for host, state in target["hosts"].items())
    lines.extend(f"host {host}: {state['state']}" for host, state in evidence.get("hosts", {}).items())
    return lines


def html_sections(evidence: dict[str, Any], h: Any, cell: Any) -> list[str]:
    """A section per target of a fleet (and the hosts of a target on several hosts)."""
    parts = []
    if evidence.get("hosts"):
        parts.append("<h3>Hosts</h3>" + _hosts_table(evidence["hosts"], h))
    for target in evidence.get("targets", []):
        name = h(target["name"])
        body = [
            f'<section class="rollback-target" id="rollback-target-{name}">',
            f"<h3>Target {name} ({h(target['kind'])})</h3>",
            f"<p>{h(target['state'])}</p>",
            f"<p>Checks against {h(target['checks_base_url'])}; journal {h(target['journal'])}.</p>",
        ]
        if target["plan"]:
            body.append("<ol>" + "".join(f"<li>{h(step)}</li>" for step in target["plan"]) + "</ol>")
        steps = (target["outcome"] or {}).get("steps") or {}
        if steps:
            body.append(
                "<table><tr><th>Step</th><th>State</th></tr>"
                + "".join(f"<tr><td>{h(step)}</td><td>{h(state)}</td></tr>" for step, state in steps.items())
                + "</table>"
            )
        if target["hosts"]:
            body.append(_hosts_table(target["hosts"], h))
        rows = [c for c in evidence["comparisons"] if str(c["check"]).startswith(f"{target['name']}: ")]
        if rows:
            body.append(
                "<table><tr><th>Check</th><th>Before (baseline)</th><th>After (verify)</th></tr>"
                + "".join(
                    f"<tr><td>{h(c['check'])}</td><td>{cell(c['before'])}</td><td>{cell(c['after'])}</td></tr>"
                    for c in rows
                )
                + "</table>"
            )
        body.append("</section>")
        parts.append("".join(body))
    return parts


def _hosts_table(hosts: dict[str, dict[str, Any]], h: Any) -> str:
    rows = "".join(f"<tr><td>{h(host)}</td><td>{h(state['state'])}</td></tr>" for host, state in hosts.items())
    return f'<table class="rollback-hosts"><tr><th>Host</th><th>State</th></tr>{rows}</table>'
