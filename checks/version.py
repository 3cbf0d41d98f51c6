"""The version check: which version does the live service report?"""

from __future__ import annotations

import json
from typing import Any

import requests

from rollback_harness.checks._common import to_ms
from rollback_harness.checks.http import Probe, probe
from rollback_harness.rollback.results import CheckResult
from rollback_harness.rollback.versions import same_version


def read_version(probe: Probe, json_field: str | None) -> tuple[str | None, str | None]:
    """Return ``(version, problem)`` read from the probe's body; exactly one is None.

    Without ``json_field`` the whole body, stripped, is the version. With it, the body is
    JSON and ``json_field`` a dotted path into it ("build.version"; list items by index).
    """
    if not probe.ok_transport:
        return None, probe.error
    if not json_field:
        text = probe.body.strip()
        return (text, None) if text else (None, "body is empty")
    try:
        document: Any = json.loads(probe.body)
    except ValueError:
        return None, "body is not JSON"
    return _follow(document, json_field)


def _follow(document: Any, json_field: str) -> tuple[str | None, str | None]:
    value = document
    for key in json_field.split("."):
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None, f"field {json_field!r} missing"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None, f"field {json_field!r} is not a string (got {type(value).__name__})"
    text = str(value).strip()
    return (text, None) if text else (None, f"field {json_field!r} is empty")


def check_version(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    json_field: str | None = None,
    expected: str | None = None,
    name: str = "version",
) -> CheckResult:
    """Passed when the service reports a version, and it equals ``expected`` if given.

    Versions are compared as exact strings after stripping whitespace: "v1.2.9" is not "1.2.9".
    """
    seen = probe(session, url, timeout=timeout)
    version, problem = _version_or_problem(seen, json_field)
    measured = {
        "version": version,
        "expected": expected,
        "status": seen.status,
        "elapsed_ms": to_ms(seen.elapsed),
    }
    if problem is not None:
        return CheckResult(name, "failed", f"{seen.method} {url}: {problem}", measured)
    if expected is not None and not same_version(version, expected):
        return CheckResult(name, "failed", f"live version {version}, expected {expected}", measured)
    suffix = " as expected" if expected is not None else ""
    return CheckResult(name, "passed", f"live version {version}{suffix}", measured)


def _version_or_problem(seen: Probe, json_field: str | None) -> tuple[str | None, str | None]:
    if seen.ok_transport and seen.status is not None and not 200 <= seen.status < 300:
        return None, f"answered {seen.status}"
    return read_version(seen, json_field)
