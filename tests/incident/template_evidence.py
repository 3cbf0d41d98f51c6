"""Evidence for the write-up tests: a failed rollback whose target sent markup, and a verified one."""

from __future__ import annotations

import copy
from typing import Any

VERIFIED: dict[str, Any] = {
    "incident": {"id": "INC-7", "reason": "checkout returns 500 since v1.3.0"},
    "decision": {
        "verdict": "rollback",
        "rule": "critical, data impact none, fix in 2 h > 30 min: rollback",
        "inputs": {
            "severity": "critical",
            "data_impact": "none",
            "time_to_fix_s": 7200,
            "time_to_fix": "2 h",
            "migrations_present": False,
        },
        "enforced": True,
        "forced": False,
        "reason": None,
    },
    "run_id": "INC-7-20261203-020000-abcdef",
    "mode": "rollback",
    "headline": "shop: rolled back from v1.3.0 to v1.2.9; verified",
    "service": {"name": "shop"},
    "target": {"name": "app", "kind": "swarm"},
    "requested": "previous",
    "expect_version": None,
    "from_version": "v1.3.0",
    "to_version": "v1.2.9",
    "outcome": {"status": "rolled-back", "message": "rolled back"},
    "exit": {"code": 0, "meaning": "success"},
    "started": "2026-12-03T02:00:00.000+00:00",
    "finished": "2026-12-03T02:01:30.250+00:00",
    "duration_s": 90.25,
    "comparisons": [
        {
            "check": "endpoint[/api/orders]",
            "before": {"status": "failed", "summary": "GET /api/orders answered 500"},
            "after": {"status": "passed", "summary": "GET /api/orders answered 200"},
        },
        {
            "check": "latency[/]",
            "before": {
                "status": "failed",
                "measured": {"p50_ms": 401.2, "p95_ms": 405, "p99_ms": 409, "error_rate": 0},
            },
            "after": {"status": "passed", "measured": {"p50_ms": 2.1, "p95_ms": 3, "p99_ms": 4, "error_rate": 0}},
        },
        {
            "check": "logs[app]",
            "before": {"status": "failed", "measured": {"counts": {"error": 12, "warn": 1}, "lines": 40}},
            "after": {"status": "passed", "measured": {"counts": {"error": 0, "warn": 0}, "lines": 8}},
        },
        {
            "check": "metrics[/metrics]",
            "before": {"status": "failed", "measured": {"series": {"errors_total": {"value": 7}}}},
            "after": None,
        },
    ],
    "timeline": [
        {"at": "2026-12-03T02:00:01.500+00:00", "what": "preflight", "status": "passed", "duration_s": 1.25},
        {"at": "2026-12-03T02:00:10.000+00:00", "what": "swarm-rollback", "status": "done", "duration_s": 75.0},
        {"at": "2026-12-03T02:01:29.000+00:00", "what": "verify", "status": "passed", "duration_s": 180.0},
    ],
    "tests": [{"nodeid": "rollback::verify-health", "outcome": "passed", "message": None}],
}


def failed_with_markup() -> dict[str, Any]:
    """A failed rollback; the target's words hold Markdown and HTML, the decision was forced."""
    evidence = copy.deepcopy(VERIFIED)
    evidence.update(
        incident={"id": None, "reason": "orders *vanish* | see <b>INC</b> `x` [here](http://e) &amp;"},
        headline="shop|x: rollback failed",
        service={"name": "shop <script>alert(1)</script>"},
        target=None,
        from_version="v1.3.0`rm`",
        to_version=None,
        outcome={"status": "failed", "message": "task *stuck*\nin Pending"},
        exit={"code": 12, "meaning": "rollback failed or not attempted: see the report for what was done"},
        started=None,
        duration_s=None,
        tests=[
            {"nodeid": "rollback::verify-endpoint[/api/orders]", "outcome": "failed", "message": "answered 500 <i>"},
            {"nodeid": "rollback::verify-census", "outcome": "error", "message": ""},
        ],
    )
    evidence["decision"] = {**evidence["decision"], "forced": True, "reason": "vendor *fix* late", "enforced": False}
    evidence["decision"]["inputs"] = {**evidence["decision"]["inputs"], "migrations_present": None}
    return evidence
