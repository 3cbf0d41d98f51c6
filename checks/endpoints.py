"""The endpoint check: does a critical endpoint answer with an expected status, every time?

One good answer says the endpoint can answer well, not that every replica behind it does: a replica
whose database connection broke answers 500 to one request in ten and 200 to the rest. So a GET,
HEAD or OPTIONS endpoint is asked as often as the version and health checks ask (``Sampling``:
enough answers to catch a failing share of ``detect_share`` at ``confidence``), each request on a
connection of its own, and one unexpected answer fails it; gathering stops there. A POST, PUT,
PATCH or DELETE is sent once: repeating it could change data, and the summary says so.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence

import requests

from ..rollback.results import CheckResult, CheckStatus
from ..rollback.sampling import judge_answers
from ._common import format_ms, format_statuses, on_all, to_ms
from .answers import Gathered
from .http import Probe, probe, url_path
from .version import Sampling

BODY_EXCERPT = 200
# Methods that do not change anything on the server (RFC 9110 "safe"): these may be asked many times.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_endpoint(
    session: requests.Session,
    url: str,
    *,
    method: str = "GET",
    expect_status: Sequence[int] = (200,),
    timeout: float,
    name: str | None = None,
    sampling: Sampling | None = None,
    deadline: float | None = None,
    rng: random.Random | None = None,
) -> CheckResult:
    """Passed when every answer has a status in ``expect_status``; one other answer fails it.

    ``sampling`` None: one request. A method that is not safe is sent once whatever ``sampling``
    asks. Fewer answers than ``sampling`` needs within ``deadline`` seconds (default
    ``sampling.default_budget(timeout)``), all good, is inconclusive.
    """
    method = method.upper()
    check_name = name if name is not None else f"endpoint[{url_path(url)}]"
    unsafe = method not in SAFE_METHODS
    if sampling is None or unsafe or sampling.answers == 1:
        seen = probe(session, url, method=method, timeout=timeout)
        result = _judged(check_name, url, method, [seen], expect_status, sampling, None, None)
        if unsafe and sampling is not None and sampling.answers > 1:
            note = f" (sent once: repeating a {method} could change data)"
            return CheckResult(result.name, result.status, result.summary + note, result.measured)
        return result
    gathered, budget = sampling.gather(
        session,
        url,
        timeout=timeout,
        deadline=deadline,
        rng=rng,
        method=method,
        decisive=lambda seen: seen.status not in expect_status,
    )
    return _judged(check_name, url, method, gathered.probes, expect_status, sampling, gathered, budget)


def _problem(seen: Probe, expect_status: Sequence[int]) -> str | None:
    if not seen.ok_transport:
        return seen.error
    if seen.status not in expect_status:
        return f"answered {seen.status}"
    return None


def _judged(
    name: str,
    url: str,
    method: str,
    answers: list[Probe],
    expect_status: Sequence[int],
    sampling: Sampling | None,
    gathered: Gathered | None,
    budget: float | None,
) -> CheckResult:
    wrong = [seen for seen in answers if _problem(seen, expect_status) is not None]
    needed = sampling.answers if sampling is not None and gathered is not None else 1
    decision: CheckStatus = judge_answers(len(answers) - len(wrong), len(wrong), needed) if answers else "inconclusive"
    shown = wrong[0] if wrong else (answers[-1] if answers else None)
    measured: dict[str, object] = {
        "method": method,
        "url": url,
        "status": shown.status if shown else None,
        "expected_status": list(expect_status),
        "elapsed_ms": to_ms(shown.elapsed) if shown else None,
        "body_excerpt": shown.body[:BODY_EXCERPT] if shown else "",
    }
    if gathered is not None and sampling is not None:
        outcomes = Counter(_problem(seen, expect_status) or f"answered {seen.status}" for seen in answers)
        measured.update(
            attempts=len(answers),
            passes=len(answers) - len(wrong),
            failures=len(wrong),
            answers=dict(outcomes.most_common()),
            median_ms=to_ms(statistics.median(seen.elapsed for seen in answers)) if answers else None,
            stopped_early=gathered.stopped_early,
            **sampling.to_dict(),
        )
    elif sampling is not None:
        measured.update(sampling.to_dict())
    return CheckResult(
        name, decision, _summary(decision, answers, wrong, expect_status, sampling, gathered, budget), measured
    )


def _summary(
    decision: str,
    answers: list[Probe],
    wrong: list[Probe],
    expect_status: Sequence[int],
    sampling: Sampling | None,
    gathered: Gathered | None,
    budget: float | None,
) -> str:
    if not answers:  # the gathering's deadline passed before the first answer
        return f"no answer within {budget:g}s"
    first = wrong[0] if wrong else answers[0]
    where = f"{first.method} {url_path(first.url)}"
    if gathered is None or sampling is None:  # one answer
        if not first.ok_transport:
            return f"{first.method} {first.url}: {first.error}"
        if wrong:
            return f"{where} answered {first.status}, expected {format_statuses(expect_status)}"
        return f"{where} answered {first.status} in {format_ms(first.elapsed)}"
    statuses = ", ".join(str(status) for status in sorted({seen.status for seen in answers if seen.status}))
    if decision == "passed":
        median = format_ms(statistics.median(seen.elapsed for seen in answers))
        return f"{where} answered {statuses} {on_all(len(answers))}, median {median} ({sampling.claim('failing')})"
    if decision == "inconclusive":
        return (
            f"{where} answered {statuses} on all {len(answers)} answers, but {sampling.answers} are needed to "
            f"rule out {sampling.describe('failing')}: the rest did not arrive within {budget:g}s"
        )
    problem = (
        f"{first.method} {first.url}: {first.error}"
        if not first.ok_transport
        else f"{where} answered {first.status}, expected {format_statuses(expect_status)}"
    )
    good = len(answers) - len(wrong)
    if good == 0:
        return problem
    stopped = "; stopped at the first wrong answer" if gathered.stopped_early else ""
    return f"{problem} on {len(wrong)} of {len(answers)} answers ({good} answered as expected: flapping){stopped}"
