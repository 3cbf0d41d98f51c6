"""The evidence schema (shipped as rollback/evidence.schema.json, copied to docs/) describes the evidence.json
of real runs: success, refused, failed, dry run. tests/conftest.py validates every other test's evidence too."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from deployments import Deployment, read_evidence

from rollback_harness.plugins import incident, state
from rollback_harness.rollback import decision, fleet, runbook
from rollback_harness.rollback.evidence import evidence_schema

pytestmark = pytest.mark.integration

SCHEMA = evidence_schema()
DOCS_COPY = Path(__file__).parents[2] / "docs" / "evidence.schema.json"
INCIDENT = ("--severity=critical", "--data-impact=minor", "--time-to-fix=90m", "--incident-id=INC-77", "--reason=r")


def break_restart(demo: Deployment) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)


def add_logs_check(demo: Deployment) -> None:
    demo.update_config(logs=[{"files": [str(demo.layout.app_log)], "window": "0s"}])


SCENARIOS = {
    "success": (("--rollback-to=v1.2.9", "--rollback-yes", *INCIDENT), add_logs_check, 0, "rolled-back"),
    "refused": (
        ("--rollback-to=v1.2.9", "--rollback-yes", "--severity=low", "--data-impact=none"),
        None,
        10,
        "preflight-refused",
    ),
    "failed": (("--rollback-to=v1.2.9", "--rollback-yes", *INCIDENT), break_restart, 12, "rollback-failed"),
    "dry-run": (("--rollback-to=v1.2.9", "--rollback-dry-run"), None, 0, "dry-run"),
    "verify-gate": (("--gate=verify", "--expect-version=v1.3.0", "--incident-id=INC-8"), None, 13, None),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_real_evidence_matches_the_published_schema(pytester: pytest.Pytester, demo: Deployment, scenario: str) -> None:
    args, prepare, code, status = SCENARIOS[scenario]
    if prepare is not None:
        prepare(demo)
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))
    assert result.ret == code, result.stdout.str()

    evidence = read_evidence(pytester.path / "reports")
    jsonschema.validate(evidence, SCHEMA)
    assert (evidence["outcome"] or {}).get("status") == status


def test_the_schema_catches_a_broken_decision() -> None:
    evidence = {"schema": "rollback-evidence/1", "decision": {"verdict": "maybe"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(evidence, SCHEMA)
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_docs_copy_is_the_shipped_schema() -> None:
    shipped = resources.files("rollback_harness.rollback").joinpath("evidence.schema.json").read_text("utf-8")
    assert DOCS_COPY.read_text("utf-8") == shipped, "copy rollback/evidence.schema.json to docs/"
    assert json.loads(shipped) == SCHEMA


def test_every_enum_holds_the_codes_values() -> None:
    defs = SCHEMA["$defs"]
    statuses = {value for name, value in vars(runbook).items() if name.startswith("STATUS_")}
    assert set(defs["outcome"]["properties"]["status"]["enum"]) == statuses | {fleet.STATUS_PARTIAL}
    assert set(defs["test"]["properties"]["gate"]["enum"]) == {*state.PHASE_ORDER, None}
    assert set(SCHEMA["properties"]["mode"]["enum"]) == {
        state.MODE_ROLLBACK,
        state.MODE_GATE_PREFLIGHT,
        state.MODE_GATE_VERIFY,
    }
    verdicts = {decision.ROLLBACK, decision.CONSIDER, decision.FORWARD_FIX, decision.NOT_ASSESSED}
    assert set(defs["decision"]["properties"]["verdict"]["enum"]) == verdicts
    inputs = defs["decision"]["properties"]["inputs"]["properties"]
    assert set(inputs["severity"]["enum"]) == {*incident.SEVERITIES, None}
    assert set(inputs["data_impact"]["enum"]) == {*incident.DATA_IMPACTS, None}
