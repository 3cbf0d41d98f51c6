"""Config to check calls: each function here runs one configured check for a run and phase."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import requests

from ..checks.database import check_database
from ..checks.endpoints import check_endpoint
from ..checks.health import check_health
from ..checks.http import join_url, make_session, probe
from ..checks.latency import LatencyThresholds, check_latency
from ..checks.version import DEFAULT_SAMPLING, Sampling, check_version, read_version
from ..rollback.census import CHECK_NAME as CENSUS_CHECK
from ..rollback.census import judge_census
from ..rollback.config import EndpointConfig, LatencyConfig
from ..rollback.errors import HarnessError
from ..rollback.results import CheckResult
from ..rollback.targets import create_target
from ..rollback.targets.base import Target, TargetContext
from .state import MODE_GATE_VERIFY, HarnessRun

# In a replicas result's measured: the platform has no census; the item says so as a skip.
NOT_COUNTED = "not_counted"

Probe = Callable[[HarnessRun, str], CheckResult]


_sessions = threading.local()


def http_session(run: HarnessRun) -> requests.Session:
    """This thread's session for the run's probes (a requests.Session is not shared across threads)."""
    sessions: dict[str, requests.Session] = getattr(_sessions, "by_run", None) or {}
    _sessions.by_run = sessions
    if run.run_id not in sessions:
        sessions[run.run_id] = make_session(verify_tls=run.config.settings.service.verify_tls)
    return sessions[run.run_id]


def url(run: HarnessRun, path: str) -> str:
    return join_url(run.config.settings.service.base_url, path)


def expected_version(run: HarnessRun, phase: str) -> str | None:
    """What the version check expects: the target after a rollback; in a verify gate,
    ``--rollback-expect-version``, else what the platform says is deployed (plugins/items.py)."""
    if phase in ("reverify", "watch"):  # after the rollback plugins/gates.py started or watches
        return run.runbook.to_version if run.runbook is not None else None
    if phase != "verify":
        return None
    if run.mode == MODE_GATE_VERIFY:
        return run.verify_expects
    return run.runbook.to_version if run.runbook is not None else None


def service_version(run: HarnessRun, timeout: float | None = None) -> str | None:
    """The version the service answers now, or None; used while waiting for readiness.

    ``timeout`` caps the probe below ``service.timeout``: a readiness wait passes the time it
    has left, so one slow probe cannot carry the wait past its deadline.
    """
    service = run.config.settings.service
    budget = service.timeout if timeout is None else max(0.0, min(service.timeout, timeout))
    if budget <= 0:
        return None
    answer = probe(http_session(run), url(run, service.version.path), timeout=budget)
    if answer.error is not None:
        _last_answers[run.run_id] = answer.error
        return None
    if answer.status != 200:
        _last_answers[run.run_id] = f"answered {answer.status}"
        return None
    version, problem = read_version(answer, service.version.json_field)
    _last_answers[run.run_id] = version if version is not None else problem
    return version


# What each run's service last answered at its version path, in words: "answered 503" where
# service_version() can only say None (read by the readiness waits' messages).
_last_answers: dict[str, str | None] = {}


def last_answer(run: HarnessRun) -> str | None:
    return _last_answers.get(run.run_id)


# --rollback-fast: the baseline is a record of what was live, one probe per check, so that the
# restore starts sooner; preflight and verify are measured in full (issue 19).
FAST_BASELINE = "--rollback-fast: one answer before the rollback, a record of what was live, not a verdict"


def fast_baseline(run: HarnessRun, phase: str) -> bool:
    return run.fast and phase == "baseline"


def sampling(run: HarnessRun, phase: str, at_least: int, pause: float) -> Sampling:
    """How many answers a version or health check gathers: [verify] decides, at least ``at_least``."""
    verify = run.config.settings.verify
    return Sampling(
        detect_share=verify.detect_share,
        confidence=verify.confidence,
        concurrency=verify.concurrency,
        pause=pause,
        at_least=at_least,
        fixed=1 if fast_baseline(run, phase) else None,
        why=FAST_BASELINE,
    )


def old_version(run: HarnessRun, phase: str) -> str | None:
    """The version a replica left behind would answer: what the rollback started from."""
    if run.runbook is None or phase == "baseline":
        return None
    return run.runbook.from_version


def version(run: HarnessRun, phase: str) -> CheckResult:
    service = run.config.settings.service
    return check_version(
        http_session(run),
        url(run, service.version.path),
        timeout=service.timeout,
        json_field=service.version.json_field,
        expected=expected_version(run, phase),
        old=old_version(run, phase),
        sampling=sampling(run, phase, service.version.consecutive, service.version.interval),
    )


def health(run: HarnessRun, phase: str) -> CheckResult:
    settings = run.config.settings
    assert settings.health is not None
    return check_health(
        http_session(run),
        url(run, settings.health.path),
        timeout=settings.service.timeout,
        expect_status=settings.health.expect_status,
        sampling=sampling(run, phase, settings.health.consecutive, settings.health.interval),
    )


def settle_probe(key: str) -> Probe:
    """The check run again, in full, after verify's settle time ("version", "replicas", "health")."""
    checks: dict[str, Probe] = {"version": version, "replicas": replicas, "health": health}
    return checks[key]


# The baseline asks a critical endpoint once: what it answered before is a record, not a verdict,
# and a slow bad release would make many answers cost the restore seconds (issue 19).
ONE_BASELINE_ANSWER = "one answer before the rollback: a record of what it answered, not a verdict"


def endpoint(config: EndpointConfig, name: str) -> Probe:
    def run_endpoint(run: HarnessRun, phase: str) -> CheckResult:
        asked = sampling(run, phase, 1, DEFAULT_SAMPLING.pause)
        if phase == "baseline" and asked.fixed is None:
            asked = dataclasses.replace(asked, fixed=1, why=ONE_BASELINE_ANSWER)
        return check_endpoint(
            http_session(run),
            url(run, config.path),
            method=config.method,
            expect_status=config.expect_status,
            timeout=run.config.settings.service.timeout,
            name=name,
            sampling=asked,
        )

    return run_endpoint


def latency(config: LatencyConfig, name: str) -> Probe:
    def run_latency(run: HarnessRun, phase: str) -> CheckResult:
        service = run.config.settings.service
        kept: list[float] = []
        compare = config.compare_to_baseline and phase == "verify"
        baseline = run.latency_baselines.get(name) if compare else None
        once = fast_baseline(run, phase)
        result = check_latency(
            url(run, config.path),
            samples=1 if once else config.samples,
            concurrency=1 if once else config.concurrency,
            timeout=service.timeout,
            min_samples=1 if once else config.required_samples,
            thresholds=LatencyThresholds(
                p50=config.p50, p95=config.p95, p99=config.p99, max_error_rate=config.max_error_rate
            ),
            method=config.method,
            verify_tls=service.verify_tls,
            expect_status=config.expect_status,
            confidence=config.confidence,
            max_samples=1 if once else config.sample_budget,
            baseline=baseline,
            baseline_tolerance=config.baseline_tolerance,
            samples_out=kept,
            name=name,
            # Before the rollback, a version that fails its latency is measured in a few samples, not
            # all of them (the restore waits for it); not when verify compares with these samples.
            stop_at_failure=phase == "baseline" and not config.compare_to_baseline,
        )
        if once:  # one sample is a record, not a distribution to judge or to compare verify's with
            return _one_sample(result)
        if phase == "baseline":
            run.latency_baselines[name] = kept
        if compare and not baseline:
            why = "--rollback-fast took one sample" if run.fast else "the baseline phase took no samples"
            note = f"; not compared with a baseline: {why}"
            return CheckResult(result.name, result.status, result.summary + note, result.measured)
        return result

    return run_latency


def _one_sample(result: CheckResult) -> CheckResult:
    """--rollback-fast's baseline latency: what the one sample saw; a failed one still fails."""
    measured = result.measured
    if not measured.get("succeeded"):
        return CheckResult(result.name, result.status, f"{result.summary} ({FAST_BASELINE})", measured)
    summary = f"one sample: {measured.get('max_ms')} ms; no percentile judged ({FAST_BASELINE})"
    return CheckResult(result.name, "inconclusive", summary, measured)


def database(run: HarnessRun, phase: str) -> CheckResult:
    settings = run.config.settings
    assert settings.database is not None
    database_url = run.config.database_url()
    assert database_url is not None
    return check_database(database_url, timeout=settings.database.timeout)


def target_context(run: HarnessRun) -> TargetContext:
    """What a driver needs from the run when no runbook made one (a verify gate)."""
    return TargetContext(
        name=run.config.settings.service.name,
        base_dir=run.config.base_dir,
        progress=run.progress,
        service_version=lambda timeout=None: service_version(run, timeout),
        last_answer=lambda: last_answer(run),
    )


def _counting_target(run: HarnessRun) -> Target | None:
    """The driver that counts this run's replicas: the rollback's own, else one made for it."""
    if run.runbook is not None:
        return run.runbook.target
    if run.target_spec is None:
        return None
    if run.census_target is None:
        run.census_target = create_target(run.target_spec, target_context(run))
    target: Target = run.census_target
    return target


def replicas(run: HarnessRun, phase: str) -> CheckResult:
    """The platform's census of the target's replicas, judged against the version expected."""
    spec = run.target_spec
    where = f"target {spec.name} ({spec.kind})" if spec is not None else "no single target"
    try:
        target = _counting_target(run)
        census = target.census() if target is not None else None
    except HarnessError as exc:
        summary = f"{where}: the platform could not be read to count replicas: {exc}"
        return CheckResult(CENSUS_CHECK, "failed", summary, {"census": None})
    if census is None:
        summary = (
            f"{where}: this platform cannot count its replicas; verify judged the service's answers alone"
            if target is not None
            else "no single target to count replicas on (several are configured): pass --rollback-target NAME"
        )
        return CheckResult(CENSUS_CHECK, "passed", summary, {"census": None, NOT_COUNTED: True})
    return judge_census(census, expected_version(run, phase))
