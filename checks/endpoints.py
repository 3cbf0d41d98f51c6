"""The endpoint check: does a critical endpoint answer with an expected status?"""

from __future__ import annotations

from collections.abc import Sequence

import requests

from ..rollback.results import CheckResult, CheckStatus
from ._common import format_ms, format_statuses, to_ms
from .http import Probe, probe, url_path

BODY_EXCERPT = 200


def check_endpoint(
    session: requests.Session,
    url: str,
    *,
    method: str = "GET",
    expect_status: Sequence[int] = (200,),
    timeout: float,
    name: str | None = None,
) -> CheckResult:
    """Passed when one request to ``url`` answers with a status in ``expect_status``."""
    seen = probe(session, url, method=method, timeout=timeout)
    check_name = name if name is not None else f"endpoint[{url_path(url)}]"
    measured = {
        "method": seen.method,
        "url": url,
        "status": seen.status,
        "expected_status": list(expect_status),
        "elapsed_ms": to_ms(seen.elapsed),
        "body_excerpt": seen.body[:BODY_EXCERPT],
    }
    status: CheckStatus = "passed" if seen.ok_transport and seen.status in expect_status else "failed"
    return CheckResult(check_name, status, _summary(seen, expect_status), measured)


def _summary(seen: Probe, expect_status: Sequence[int]) -> str:
    if not seen.ok_transport:
        return f"{seen.method} {seen.url}: {seen.error}"
    answered = f"{seen.method} {url_path(seen.url)} answered {seen.status}"
    if seen.status not in expect_status:
        return f"{answered}, expected {format_statuses(expect_status)}"
    return f"{answered} in {format_ms(seen.elapsed)}"
