"""JUnit XML carries each check's measurements as JSON, the same facts as evidence.json."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from deployments import Deployment, read_evidence, run_dir

pytestmark = pytest.mark.integration


def test_check_properties_are_json_equal_to_the_evidence(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--gate", "verify", "--expect-version", "v1.3.0"))

    assert result.ret == 13, result.stdout.str()  # v1.3.0 is the demo's bad release: verify fails
    evidence = read_evidence(reports)
    checks = {t["nodeid"].split("::")[-1]: t["check"] for t in evidence["tests"] if t["check"] is not None}
    tree = ET.parse(run_dir(reports) / "junit.xml")
    properties = {
        case.get("name"): prop.get("value")
        for case in tree.iter("testcase")
        for prop in case.iter("property")
        if prop.get("name") == "rollback_check"
    }

    assert set(properties) == set(checks) and "verify-version" in properties
    for name, text in properties.items():
        assert json.loads(text) == checks[name], name  # JSON text, not a Python repr
    assert json.loads(properties["verify-version"])["measured"]["version"] == "v1.3.0"
    gates = {prop.get("value") for prop in tree.iter("property") if prop.get("name") == "rollback_gate"}
    assert gates == {"verify"}
