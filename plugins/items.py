"""The runbook's own test items: one per preflight finding and one per check and phase.

They hang under a ``RunbookFile`` node named after the config file, so their ids read
``rollback.toml::verify-latency[/]``. Each item runs a plain function from checks/ and records
what it measured in ``user_properties`` (plain builtins, so xdist can carry them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..rollback.results import CheckResult
from .fixtures import runbook_for
from .phase import PhaseChecks
from .specs import CheckSpec
from .state import MODE_GATE_VERIFY, RUN_KEY, TARGET_KEY, HarnessRun, run_for

CHECK_PROPERTY = "rollback_check"
GATE_PROPERTY = "rollback_gate"
# A fleet's items name their target (plugins/fleet.py).
TARGET_PROPERTY = "rollback_target"


class RunbookFile(pytest.File):
    """The config file, seen as the collector of the runbook's items."""

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        run = self.config.stash[RUN_KEY]
        hook = self.config.hook
        nodes = hook.pytest_rollback_collect_runbook(parent=self, run=run)
        if nodes is not None:  # a fleet: a node per target, its items under it
            yield from nodes
            return
        yield from runbook_items(self, run)
        for extra in hook.pytest_rollback_extra_items(parent=self, run=run):
            yield from extra


def runbook_items(parent: pytest.Collector, run: HarnessRun, target: str | None = None) -> Iterator[pytest.Item]:
    """The runbook's items of ``run``; in a fleet, ``target`` names the target they belong to."""
    if "preflight" in run.phases:
        from ..rollback.runbook import preflight_finding_names

        for name in preflight_finding_names(run.config, run.target_spec):
            yield make_item(parent, f"preflight-{name}", _run_preflight, "preflight", name, target)
        for extra in parent.config.hook.pytest_rollback_preflight_items(parent=parent, run=run, target=target):
            yield from extra
    specs = check_specs(run)
    for phase in ("baseline", "verify"):
        if phase in run.phases:
            runner = _run_baseline if phase == "baseline" else _run_verify
            for spec in specs:
                yield make_item(parent, f"{phase}-{spec.key}", runner, phase, spec.key, target)


class RunbookItem(pytest.Function):
    """A runbook step: reported by its name, not by a Python location."""

    def reportinfo(self) -> tuple[Any, int, str]:
        # Line 0: pytest needs a number to place skips; the config file is the location.
        return self.path, 0, self.name


SPEC_KEY = pytest.StashKey[str]()
# How long the item's check itself ran: its call reports that (plugins/harness.py), not its wait.
OWN_SECONDS_KEY = pytest.StashKey[float]()
PHASE_KEY = pytest.StashKey[str]()


def make_item(
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
        specs.append(CheckSpec(key, _probe("latency", latency, key), connections=latency.concurrency))
    if settings.database is not None:
        specs.append(CheckSpec("database", _probe("database")))
    if run.hook is not None:  # None: a run made by hand (bench/), with no features
        for extra in run.hook.pytest_rollback_check_specs(run=run):
            specs.extend(extra)
    return specs


def _phase_result(request: pytest.FixtureRequest, phase: str) -> CheckResult:
    """This item's result; the phase's first item starts all the phase's checks at once."""
    run = run_for(request.config, request.node)
    root = request.config.stash[RUN_KEY]
    if run is not root:
        request.config.hook.pytest_rollback_member_phase(root=root, run=run, phase=phase)
    checks = phase_checks_for(run, phase)
    key = request.node.stash[SPEC_KEY]
    result: CheckResult = checks.result(key)
    if key in checks.own_seconds:
        request.node.stash[OWN_SECONDS_KEY] = checks.own_seconds[key]
    return result


def phase_checks_for(run: HarnessRun, phase: str) -> PhaseChecks:
    """The phase's checks of ``run`` (the selected ones), made once."""
    if phase not in run.phase_checks:
        selected = run.selected_checks.get(phase, [])
        specs = [spec for spec in check_specs(run) if spec.key in selected]
        run.phase_checks[phase] = PhaseChecks(run, phase, specs)
    checks: PhaseChecks = run.phase_checks[phase]
    return checks


def remember_selected(items: list[pytest.Item], run: HarnessRun) -> None:
    """After -k/-m deselection: which checks each phase will report, so only those run."""
    for item in items:
        if SPEC_KEY in item.stash and item.stash[PHASE_KEY] in ("baseline", "verify"):
            owner = run_for(item.config, item)
            owner.selected_checks.setdefault(item.stash[PHASE_KEY], []).append(item.stash[SPEC_KEY])


def record_result(request: pytest.FixtureRequest, result: dict[str, Any]) -> None:
    # user_properties reach every report writer (JUnit XML among them): no secrets in them.
    # JSON text: JUnit XML writes a property's value with str(), which would be a Python repr.
    redacted = request.config.stash[RUN_KEY].redactor.data(result)
    request.node.user_properties.append((CHECK_PROPERTY, json.dumps(redacted, default=str)))


def _run_preflight(request: pytest.FixtureRequest) -> None:
    run = run_for(request.config, request.node)
    root = request.config.stash[RUN_KEY]
    if run is not root:
        request.config.hook.pytest_rollback_member_phase(root=root, run=run, phase="preflight")
    preflight_done = _baseline_beside_preflight(run) if run is root else None
    try:
        finding = runbook_for(run).preflight()[request.node.stash[SPEC_KEY]]
    finally:
        if preflight_done is not None:
            preflight_done.set()
    status = "passed" if finding.ok else ("failed" if finding.checked else "not-checked")
    record_result(request, {"name": finding.name, "status": status, "summary": finding.message, "measured": {}})
    if not finding.checked:
        pytest.skip(finding.message)
    if not finding.ok:
        pytest.fail(f"refused: {finding.message}", pytrace=False)


def _baseline_beside_preflight(run: HarnessRun) -> threading.Event | None:
    """Start the baseline's answers now, while preflight judges (the first preflight item only).

    Both only read, and the rollback waits for both: time to restore shrinks by what preflight
    takes. The returned event, set once preflight is done, holds back the rest of the baseline
    (plugins/phase.py). None when the baseline is not run or already started.
    """
    if "baseline" not in run.phases or "baseline" in run.phase_checks or not run.selected_checks.get("baseline"):
        return None
    preflight_done = threading.Event()
    phase_checks_for(run, "baseline").start(after=preflight_done)
    return preflight_done


def _run_baseline(request: pytest.FixtureRequest) -> None:
    """Evidence of the live version before the rollback: recorded, never blocking.

    A failed or inconclusive measurement is an expected failure, not a pass: every report
    (terminal, JUnit XML, HTML) shows it as such, and the exit code is not touched.
    """
    lock = runbook_for(run_for(request.config, request.node)).preflight()["target-lock"]
    if not lock.ok:  # another run is acting on the target: its restart is not our "before"
        pytest.skip(f"not measured: {lock.message}")
    result = _phase_result(request, "baseline")
    record_result(request, result.to_dict())
    _skip_if_not_counted(result)
    if not result.passed:
        pytest.xfail(f"baseline measured: {result.status}: {result.summary}")


def _run_verify(request: pytest.FixtureRequest, rollback_outcome: object) -> None:
    run = run_for(request.config, request.node)
    if run is not request.config.stash[RUN_KEY]:
        request.config.hook.pytest_rollback_member_verify(run=run)  # failed, or not started
    if run.mode == MODE_GATE_VERIFY:
        expect_from_platform(run)
    result = _phase_result(request, "verify")
    if request.node.stash[SPEC_KEY] in ("version", "replicas"):
        result = _with_expectation(run, result)
    record_result(request, result.to_dict())
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
