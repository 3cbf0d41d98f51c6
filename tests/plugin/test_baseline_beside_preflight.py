"""The baseline's answers are gathered while preflight judges; the rest of the baseline waits for it.

Both only read, and the rollback waits for both: time to restore shrinks by what preflight takes
(issue 19). What shares preflight's driver (the census), what other traffic would skew (latency
samples) and everything else start only once preflight is done.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.plugins.phase import PhaseChecks
from rollback_harness.plugins.specs import CheckSpec
from rollback_harness.rollback.results import CheckResult

DEADLINE_S = 10.0


def fake_run() -> Any:
    from types import SimpleNamespace

    service = SimpleNamespace(base_url="http://127.0.0.1:9", settle=0.0)
    settings = SimpleNamespace(service=service, verify=SimpleNamespace(latency_connections=None))
    return SimpleNamespace(progress=lambda line: None, config=SimpleNamespace(settings=settings))


def test_only_the_answer_checks_start_before_preflight_is_done() -> None:
    started: list[str] = []
    lock = threading.Lock()

    def check(name: str) -> Any:
        def run(run: object, phase: str) -> CheckResult:
            with lock:
                started.append(name)
            return CheckResult(name, "passed", name)

        return run

    keys = ["version", "replicas", "health", "endpoint[/a]", "latency[/]", "database", "logs[app]"]
    specs = [CheckSpec(key, check(key), after_others=key.startswith("logs")) for key in keys]
    phase = PhaseChecks(run=fake_run(), phase="baseline", specs=specs)
    preflight_done = threading.Event()
    phase.start(after=preflight_done)

    answers = ("version", "health", "endpoint[/a]")
    for key in answers:  # these finish while preflight is still judging
        assert phase._futures[key].result(timeout=DEADLINE_S).passed
    with lock:
        assert sorted(started) == sorted(answers), "only the service's answers may run beside preflight"

    preflight_done.set()
    for key in keys:
        assert phase.result(key).passed
    assert sorted(started) == sorted(keys)  # each ran exactly once
    assert started.index("latency[/]") > max(started.index(key) for key in ("replicas", "database"))


# The harness run, in process: preflight is held until the baseline's version check has been asked
# for (or DEADLINE_S), and the baseline's latency check notes whether preflight had ended.
CONFTEST = """
import threading, time
from rollback_harness.plugins import probes
from rollback_harness.rollback import runbook_preflight

SEEN = {"baseline_version_during_preflight": False, "latency_after_preflight": None}
asked = threading.Event()
preflight_over = threading.Event()
saved = {}


def pytest_configure(config):
    saved["version"], saved["latency"] = probes.version, probes.latency
    saved["preflight"] = runbook_preflight.PreflightFindings.preflight

    def version(run, phase):
        if phase == "baseline":
            asked.set()
        return saved["version"](run, phase)

    def latency(*args):
        check = saved["latency"](*args)

        def run(run, phase):
            if phase == "baseline":
                SEEN["latency_after_preflight"] = preflight_over.is_set()
            return check(run, phase)

        return run

    def preflight(self):
        if self._findings is None:
            SEEN["baseline_version_during_preflight"] = asked.wait({deadline})
        try:
            return saved["preflight"](self)
        finally:
            preflight_over.set()

    probes.version, probes.latency = version, latency
    runbook_preflight.PreflightFindings.preflight = preflight


def pytest_unconfigure(config):
    probes.version, probes.latency = saved["version"], saved["latency"]
    runbook_preflight.PreflightFindings.preflight = saved["preflight"]
    import json, pathlib
    pathlib.Path("seen.json").write_text(json.dumps(SEEN))
"""


@pytest.mark.integration
def test_a_rollback_gathers_the_baseline_answers_while_preflight_judges(
    pytester: pytest.Pytester, demo: Deployment
) -> None:
    import json

    pytester.makeconftest(CONFTEST.replace("{deadline}", str(DEADLINE_S)))
    args = demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    result = pytester.runpytest(*args)

    assert result.ret == 0, result.stdout.str()
    assert demo.live_version() == "v1.2.9"
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen == {"baseline_version_during_preflight": True, "latency_after_preflight": True}
    result.stdout.fnmatch_lines(["*baseline: running * checks against *, the service's answers beside preflight*"])
    evidence = read_evidence(pytester.path / "reports")
    before = {t["check"]["name"]: t["check"] for t in evidence["tests"] if t.get("check") and t["gate"] == "baseline"}
    assert before["version"]["measured"]["version"] == "v1.3.0"  # measured before anything changed
    assert before["replicas"]["status"] == "passed"
