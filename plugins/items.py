"""The runbook's own test items: one per preflight finding and one per check and phase.

They hang under a ``RunbookFile`` node named after the config file, so their ids read
``rollback.toml::verify-latency[/]``. Each item runs a plain function from checks/ and records
what it measured in ``user_properties`` (plain builtins, so xdist can carry them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ..rollback.results import CheckResult
from .state import MODE_GATE_VERIFY, RUN_KEY, TARGET_KEY, HarnessRun, run_for

CHECK_PROPERTY = "rollback_check"
GATE_PROPERTY = "rollback_gate"
# A fleet's items name their target (plugins/fleet.py).
TARGET_PROPERTY = "rollback_target"


@dataclass(frozen=True)
class CheckSpec:
    """A check as configured: ``key`` is the same in every phase (``latency[/]``)."""

    key: str
    run: Callable[[HarnessRun, str], CheckResult]


class RunbookFile(pytest.File):
    """The config file, seen as the collector of the runbook's items."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        run = self.config.stash[RUN_KEY]
        if run.is_fleet:
            from .fleet import TargetNode

            for name in run.fleet:
                yield TargetNode.from_parent(self, name=name)
            return
        yield from runbook_items(self, run)
        from .gates import collect_gate_items

        yield from collect_gate_items(self)


def runbook_items(parent: pytest.Collector, run: HarnessRun, target: str | None = None) -> Iterator[pytest.Item]:
    """The runbook's items of ``run``; in a fleet, ``target`` names the target they belong to."""
    from . import incident

    if "preflight" in run.phases:
        from ..rollback.runbook import preflight_finding_names

        for name in preflight_finding_names(run.config, run.target_spec):
            yield _item(parent, f"preflight-{name}", _run_preflight, "preflight", name, target)
        if incident.decision_wanted(parent.config):
            yield _item(parent, "preflight-decision", incident.decision_item, "preflight", "decision", target)
    specs = check_specs(run)
    for phase in ("baseline", "verify"):
        if phase in run.phases:
            runner = _run_baseline if phase == "baseline" else _run_verify
            for spec in specs:
                yield _item(parent, f"{phase}-{spec.key}", runner, phase, spec.key, target)


class RunbookItem(pytest.Function):
    """A runbook step: reported by its name, not by a Python location."""

    def reportinfo(self) -> tuple[Any, int, str]:
        # Line 0: pytest needs a number to place skips; the config file is the location.
        return self.path, 0, self.name


SPEC_KEY = pytest.StashKey[str]()
PHASE_KEY = pytest.StashKey[str]()


def _item(
    parent: pytest.Collector, name: str, func: Callable[..., None], phase: str, key: str, target: str | None = None
) -> pytest.Item:
    item = RunbookItem.from_parent(parent, name=name, callobj=func)
    item.stash[PHASE_KEY] = phase
    item.stash[SPEC_KEY] = key
    if target is not None:
        item.stash[TARGET_KEY] = target
        item.user_properties.append((TARGET_PROPERTY, target))
    item.add_marker(pytest.mark.gate(phase))
    return item


def _probe(name: str, *args: Any) -> Callable[[HarnessRun, str], CheckResult]:
    """``probes.<name>`` (or ``probes.<name>(*args)``), imported when the check runs: collecting
    the items (``--co``, every xdist worker) never pays for requests and the check modules."""

    def run_probe(run: HarnessRun, phase: str) -> CheckResult:
        from . import probes

        found = getattr(probes, name)
        check: Callable[[HarnessRun, str], CheckResult] = found(*args) if args else found
        return check(run, phase)

    return run_probe


def check_specs(run: HarnessRun) -> list[CheckSpec]:
    """Every configured check, in a fixed order (xdist needs the same order on every worker)."""
    from . import incident

    settings = run.config.settings
    specs = [CheckSpec("version", _probe("version"))]
    if run.target_spec is not None:
        specs.append(CheckSpec("replicas", _probe("replicas")))
    if settings.health is not None:
        specs.append(CheckSpec("health", _probe("health")))
    # Paths become test ids, shown everywhere: a ${SECRET} in a path is redacted there too.
    for endpoint in settings.endpoints:
        key = f"endpoint[{run.redactor.text(endpoint.path)}]"
        specs.append(CheckSpec(key, _probe("endpoint", endpoint, key)))
    for latency in settings.latency:
        key = f"latency[{run.redactor.text(latency.path)}]"
        specs.append(CheckSpec(key, _probe("latency", latency, key)))
    if settings.database is not None:
        specs.append(CheckSpec("database", _probe("database")))
        if settings.database.migrations is not None or settings.database.critical_tables:
            from .database import migration_probe

            specs.append(CheckSpec("migration", migration_probe))
    return specs + incident.check_specs(run)


def _phase_result(request: pytest.FixtureRequest, phase: str) -> CheckResult:
    """This item's result; the phase's first item starts all the phase's checks at once."""
    from .phase import PhaseChecks

    run = run_for(request.config, request.node)
    if run is not request.config.stash[RUN_KEY]:
        from .fleet import start_phase

        start_phase(request.config.stash[RUN_KEY], phase)  # every target's checks of the phase at once
    if phase not in run.phase_checks:
        selected = run.selected_checks.get(phase, [])
        specs = [spec for spec in check_specs(run) if spec.key in selected]
        run.phase_checks[phase] = PhaseChecks(run, phase, specs)
    result: CheckResult = run.phase_checks[phase].result(request.node.stash[SPEC_KEY])
    return result


def remember_selected(items: list[pytest.Item], run: HarnessRun) -> None:
    """After -k/-m deselection: which checks each phase will report, so only those run."""
    for item in items:
        if SPEC_KEY in item.stash and item.stash[PHASE_KEY] in ("baseline", "verify"):
            owner = run_for(item.config, item)
            owner.selected_checks.setdefault(item.stash[PHASE_KEY], []).append(item.stash[SPEC_KEY])


def _record(request: pytest.FixtureRequest, result: dict[str, Any]) -> None:
    # user_properties reach every report writer (JUnit XML among them): no secrets in them.
    # JSON text: JUnit XML writes a property's value with str(), which would be a Python repr.
    redacted = request.config.stash[RUN_KEY].redactor.data(result)
    request.node.user_properties.append((CHECK_PROPERTY, json.dumps(redacted, default=str)))


def _run_preflight(request: pytest.FixtureRequest) -> None:
    from .fixtures import runbook_for

    run = run_for(request.config, request.node)
    if run is not request.config.stash[RUN_KEY]:
        from .fleet import preflight_all

        preflight_all(request.config.stash[RUN_KEY])  # every target's preflight at once
    finding = runbook_for(run).preflight()[request.node.stash[SPEC_KEY]]
    status = "passed" if finding.ok else ("failed" if finding.checked else "not-checked")
    _record(request, {"name": finding.name, "status": status, "summary": finding.message, "measured": {}})
    if not finding.checked:
        pytest.skip(finding.message)
    if not finding.ok:
        pytest.fail(f"refused: {finding.message}", pytrace=False)


def _run_baseline(request: pytest.FixtureRequest) -> None:
    """Evidence of the live version before the rollback: recorded, never blocking.

    A failed or inconclusive measurement is an expected failure, not a pass: every report
    (terminal, JUnit XML, HTML) shows it as such, and the exit code is not touched.
    """
    from .fixtures import runbook_for

    lock = runbook_for(run_for(request.config, request.node)).preflight()["target-lock"]
    if not lock.ok:  # another run is acting on the target: its restart is not our "before"
        pytest.skip(f"not measured: {lock.message}")
    result = _phase_result(request, "baseline")
    _record(request, result.to_dict())
    _skip_if_not_counted(result)
    if not result.passed:
        pytest.xfail(f"baseline measured: {result.status}: {result.summary}")


def _run_verify(request: pytest.FixtureRequest, rollback_outcome: object) -> None:
    run = run_for(request.config, request.node)
    if run is not request.config.stash[RUN_KEY]:
        from .fleet import require_rolled_back

        require_rolled_back(run)  # this target's own outcome: failed, or not started
    if run.mode == MODE_GATE_VERIFY:
        expect_from_platform(run)
    result = _phase_result(request, "verify")
    if request.node.stash[SPEC_KEY] in ("version", "replicas"):
        result = _with_expectation(run, result)
    _record(request, result.to_dict())
    _skip_if_not_counted(result)
    if result.status == "inconclusive":
        pytest.fail(f"inconclusive (not passed): {result.summary}", pytrace=False)
    if not result.passed:
        pytest.fail(result.summary, pytrace=False)


def _skip_if_not_counted(result: CheckResult) -> None:
    """A platform without a census: the replicas item says so as a skip, neither pass nor fail."""
    if result.measured.get("not_counted"):
        pytest.skip(result.summary)


def expect_from_platform(run: HarnessRun) -> None:
    """A verify gate without ``--rollback-expect-version`` expects what the platform says is live.

    Read once, in the process that runs the gates, before the phase's checks start.
    """
    if run.expect_source is not None or run.expect_problem is not None:
        return
    if run.expect_version is not None:
        run.expect_source = "--rollback-expect-version"
        return
    spec = run.target_spec
    if spec is None:
        run.expect_problem = "no target chosen to ask (several are configured): pass --rollback-target NAME"
        return
    from ..rollback.errors import HarnessError
    from ..rollback.targets import create_target
    from . import probes

    where = f"target {spec.name} ({spec.kind})"
    try:
        run.census_target = create_target(spec, probes.target_context(run))
        run.platform_version = run.census_target.live_version()
    except HarnessError as exc:
        run.expect_problem = f"{where} cannot say which version is deployed: {exc}"
        return
    run.expect_source = f"{where}: the version the platform says is deployed"


def _with_expectation(run: HarnessRun, result: CheckResult) -> CheckResult:
    """The version check's result, saying what it was compared with and where that came from."""
    source = run.expect_source if run.mode == MODE_GATE_VERIFY else "the rollback's target (--rollback-to)"
    measured = {**result.measured, "expected_from": source}
    if run.expect_problem is not None and result.passed:
        summary = f"{result.summary}, but there is nothing to compare it with: {run.expect_problem}"
        measured["expected_from"] = None
        return CheckResult(result.name, "inconclusive", summary, measured)
    return CheckResult(result.name, result.status, result.summary, measured)
