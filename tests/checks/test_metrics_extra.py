"""``prometheus_client`` is the optional extra ``metrics``: without it a [[metrics]] check fails naming what to install.

The missing (or broken) install is simulated in this process by putting ``None`` in
``sys.modules`` for the module (monkeypatched, so it is undone after each test): Python then
refuses the import with the ModuleNotFoundError an uninstalled package gives. That is not an
environment without the package, but it goes through the same ``import`` statement the check runs.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.checks.http import make_session
from rollback_harness.checks.metrics import Threshold, check_metrics, parser_missing

INSTALL = "install it with: pip install 'pytest-rollback-harness[metrics]'"
# Port 9 (discard) on loopback: nothing listens, so a request made anyway would fail as refused.
UNREACHABLE = "http://127.0.0.1:9/metrics"


def simulate_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus_client as if not installed: ``None`` in sys.modules (see the module docstring), no submodules."""
    for name in [m for m in sys.modules if m.startswith("prometheus_client.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)


def run_check() -> tuple[str, str, dict[str, object]]:
    with make_session() as session:
        result = check_metrics(session, UNREACHABLE, thresholds=[Threshold("up", min=1)], timeout=2.0)
    return result.status, result.summary, result.measured


def test_installed_parser_is_found() -> None:
    assert parser_missing() is None


def test_missing_prometheus_client_fails_the_check_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_missing(monkeypatch)

    status, summary, measured = run_check()

    assert status == "failed"
    message = f"the metrics check needs the Python module 'prometheus_client', which is not installed; {INSTALL}"
    assert summary == f"/metrics: {message}"
    assert measured == {"url": UNREACHABLE, "error": message}  # failed before any request: not "refused"


def test_an_installed_but_unusable_client_says_upgrade(monkeypatch: pytest.MonkeyPatch) -> None:
    """A prometheus_client without its parser module (too old, half installed): simulated with ``None`` too."""
    monkeypatch.setitem(sys.modules, "prometheus_client", types.ModuleType("prometheus_client"))
    monkeypatch.setitem(sys.modules, "prometheus_client.parser", None)

    status, summary, _ = run_check()

    assert status == "failed"
    assert summary.startswith("/metrics: the metrics check cannot import its parser (")
    assert summary.endswith("install it with: pip install --upgrade 'pytest-rollback-harness[metrics]'")


@pytest.mark.integration
def test_a_rollback_run_reports_it_as_a_failed_check_not_a_traceback(
    pytester: pytest.Pytester, demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process pytester run shares this process's sys.modules, so the simulation holds there too."""
    config = demo.config()
    config["metrics"] = [{"path": "/metrics", "series": [{"select": "up", "min": 1}]}]
    demo.write_config(config)
    simulate_missing(monkeypatch)

    reports = pytester.path / "reports"
    # The verify gate runs the checks against the live demo; the HTML report is not what this is about.
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-gate=verify", "-p", "no:html"))

    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    assert "ModuleNotFoundError" not in output
    assert "/metrics: the metrics check needs the Python module 'prometheus_client'" in output
    [test] = [t for t in read_evidence(reports)["tests"] if t["nodeid"].endswith("verify-metrics[/metrics]")]
    assert test["outcome"] == "failed"
    assert test["message"].endswith(INSTALL)


def test_the_make_install_brings_the_extra() -> None:
    """`make` installs -e '.[all,demo,test]'; `all` (which `test` includes) must hold `metrics`."""
    import tomllib
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project["optional-dependencies"]
    assert not any(Requirement(r).name == "prometheus-client" for r in project["dependencies"])

    def expand(names: set[str], seen: set[str]) -> set[str]:
        wanted: set[str] = set()
        for extra in names - seen:
            seen.add(extra)
            for line in extras[extra]:
                requirement = Requirement(line)
                if requirement.name == project["name"]:
                    wanted |= expand(set(requirement.extras), seen)
                else:
                    wanted.add(requirement.name)
        return wanted

    assert extras["metrics"] == ["prometheus-client>=0.17"]
    assert "prometheus-client" in expand({"all", "demo", "test"}, set())
