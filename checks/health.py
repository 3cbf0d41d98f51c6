"""The health check: every answer gathered must be healthy; one unhealthy answer fails it.

A streak of healthy answers says the service can answer well, not that it always does: an
instance that fails one request in ten is still failing after three good answers in a row. So
verify gathers enough answers to catch an unhealthy share of ``detect_share`` (checks/answers.py,
rollback/sampling.py) and names a mix of healthy and unhealthy answers "flapping", with counts.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import requests

from ..rollback.results import CheckResult
from ..rollback.sampling import judge_answers
from ._common import format_statuses, on_all, to_ms
from .answers import Gathered, flaps
from .http import Probe, url_path
from .version import DEFAULT_SAMPLING, Sampling

HEALTHY = "healthy"


def check_health(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    expect_status: Sequence[int] = (200,),
    sampling: Sampling = DEFAULT_SAMPLING,
    deadline: float | None = None,
    name: str = "health",
    rng: random.Random | None = None,
) -> CheckResult:
    """Passed when all ``sampling.answers`` answers have an accepted status; any other fails.

    Fewer answers than needed within ``deadline`` seconds (default
    ``sampling.default_budget(timeout)``), all healthy, is inconclusive.
    """
    gathered, budget = sampling.gather(session, url, timeout=timeout, deadline=deadline, rng=rng)
    answers = [_problem(seen, expect_status) or HEALTHY for seen in gathered.probes]
    counts = Counter(answers)
    healthy = counts[HEALTHY]
    decision = judge_answers(healthy, len(answers) - healthy, sampling.answers)
    last = gathered.probes[-1] if gathered.probes else None
    last_problem = next((answer for answer in reversed(answers) if answer != HEALTHY), None)
    measured = {
        "attempts": len(answers),
        "url": url,
        "passes": healthy,
        "failures": len(answers) - healthy,
        "answers": dict(counts.most_common()),
        "flaps": flaps([answer == HEALTHY for answer in answers]),
        "last_status": last.status if last else None,
        "last_error": last_problem,
        "elapsed_ms": to_ms(gathered.elapsed),
        **sampling.to_dict(),
    }
    summary = _summary(decision, url, counts, sampling, gathered, budget)
    return CheckResult(name, decision, summary, measured)


def _problem(seen: Probe, expect_status: Sequence[int]) -> str | None:
    if not seen.ok_transport:
        return seen.error
    if seen.status not in expect_status:
        return f"answered {seen.status}, expected {format_statuses(expect_status)}"
    return None


def _summary(
    decision: str, url: str, counts: Counter[str], sampling: Sampling, gathered: Gathered, budget: float
) -> str:
    where = f"GET {url_path(url)}"
    total = sum(counts.values())
    healthy = counts[HEALTHY]
    if decision == "passed":
        return f"{where} healthy {on_all(total)} ({sampling.claim('unhealthy')})"
    if decision == "inconclusive":
        return (
            f"{where} healthy on all {total} answers, but {sampling.answers} are needed to rule out "
            f"{sampling.describe('unhealthy')}: the rest did not arrive within {budget:g}s"
        )
    problems = ", ".join(f"{answer} x{count}" for answer, count in counts.most_common() if answer != HEALTHY)
    stopped = "; stopped at the first request that got no answer" if gathered.stopped_early else ""
    if healthy:
        unhealthy = total - healthy
        return f"{where} flapping: {unhealthy} of {total} answers unhealthy ({problems}), {healthy} healthy{stopped}"
    return f"{where} not healthy: {total} of {total} answers unhealthy ({problems}){stopped}"
