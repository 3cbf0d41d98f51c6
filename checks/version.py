"""The version check: which version does every replica behind the service report?

Verify judges every answer it got: one answer from another version fails, however many right
ones came before or after it (docs/configuration.md, `[verify]`, has the table of answers per share).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from ..rollback.results import CheckResult
from ..rollback.sampling import answers_needed, judge_answers
from ..rollback.versions import same_version
from ._common import on_all, to_ms
from .answers import Gathered, flaps, gather
from .http import Probe


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
    except RecursionError:
        return None, "body is JSON nested too deeply to read"
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


DEFAULT_DETECT_SHARE = 0.05
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Sampling:
    """How many answers a check gathers, and how: derived from what it must be able to detect."""

    detect_share: float = DEFAULT_DETECT_SHARE
    confidence: float = DEFAULT_CONFIDENCE
    concurrency: int = 2
    pause: float = 0.005
    # At least this many answers whatever the share asks ([service.version] consecutive of old configs).
    at_least: int = 1
    # Exactly this many answers, judging nothing about the other replicas (--rollback-fast's
    # baseline: a record of what was live before, not a verdict); ``why`` says so in the summary.
    fixed: int | None = None
    why: str = ""

    @property
    def answers(self) -> int:
        if self.fixed is not None:
            return self.fixed
        return max(self.at_least, answers_needed(self.detect_share, self.confidence))

    def claim(self, what: str = "wrong") -> str:
        """What the answers rule out, for a summary's parenthesis."""
        return self.why if self.fixed is not None else f"rules out {self.describe(what)}"

    def default_budget(self, timeout: float) -> float:
        """Seconds for the whole check: time for every answer even if each takes almost the timeout.

        A slow but right service is judged, not called inconclusive; a service that does not answer
        ends the gathering at its first timeout (checks/answers.py), so this is rarely reached.
        """
        rounds = -(-self.answers // max(1, self.concurrency))
        return max(10.0, 2 * timeout, rounds * (timeout + self.pause))

    def gather(
        self,
        session: requests.Session,
        url: str,
        *,
        timeout: float,
        deadline: float | None,
        rng: random.Random | None,
        method: str = "GET",
        decisive: Callable[[Probe], bool] | None = None,
    ) -> tuple[Gathered, float]:
        """The answers this sampling asks for (checks/answers.py), within ``deadline`` seconds
        (None: ``default_budget(timeout)``); and that budget, for the summary."""
        budget = deadline if deadline is not None else self.default_budget(timeout)
        gathered = gather(
            session,
            url,
            count=self.answers,
            timeout=timeout,
            deadline=time.monotonic() + budget,
            concurrency=self.concurrency,
            pause=self.pause,
            method=method,
            rng=rng,
            decisive=decisive,
        )
        return gathered, budget

    def describe(self, what: str = "wrong") -> str:
        """ "1 wrong answer in 20 at 95% confidence": what ``answers`` can catch."""
        return f"1 {what} answer in {1 / self.detect_share:.3g} at {self.confidence * 100:.4g}% confidence"

    def to_dict(self) -> dict[str, Any]:
        fixed = {"fixed": self.why} if self.fixed is not None else {}
        return {
            **fixed,
            "needed": self.answers,
            "detect_share": self.detect_share,
            "confidence": self.confidence,
            "concurrency": self.concurrency,
        }


DEFAULT_SAMPLING = Sampling()


def check_version(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    json_field: str | None = None,
    expected: str | None = None,
    old: str | None = None,
    sampling: Sampling = DEFAULT_SAMPLING,
    deadline: float | None = None,
    name: str = "version",
    rng: random.Random | None = None,
) -> CheckResult:
    """Passed when every one of ``sampling.answers`` answers is ``expected`` (or, without an
    expectation, one and the same version); one other answer fails it.

    The answers are gathered concurrently, each on a new connection (checks/answers.py), so a
    replica left on ``old`` behind a balancer is asked too. Fewer answers than needed within
    ``deadline`` seconds (default ``sampling.default_budget(timeout)``), none of them wrong, is
    inconclusive: not enough to rule out a stuck replica. Versions are compared after stripping
    whitespace and a leading "v": "v1.2.9" is "1.2.9".
    """
    gathered, budget = sampling.gather(session, url, timeout=timeout, deadline=deadline, rng=rng)
    answers: list[str] = []
    versions: set[str] = set()
    problem: str | None = None
    for seen in gathered.probes:
        version, problem = _version_or_problem(seen, json_field)
        answers.append(problem if problem is not None else str(version))
        if version is not None:
            versions.add(version)
    counts = Counter(answers)
    if expected is not None:
        right = sum(count for answer, count in counts.items() if answer in versions and same_version(answer, expected))
    else:
        right = counts.most_common(1)[0][1] if versions else 0
    wrong = len(answers) - right
    decision = judge_answers(right, wrong, sampling.answers)
    last = gathered.probes[-1] if gathered.probes else None
    common = counts.most_common(1)[0][0] if answers else None
    measured = {
        "version": common if common in versions else None,
        "expected": expected,
        "status": last.status if last else None,
        "elapsed_ms": to_ms(gathered.elapsed),
        "attempts": len(answers),
        "answers": dict(counts.most_common()),
        "flaps": flaps(answers),
        "last_answer": answers[-1] if answers else None,
        **sampling.to_dict(),
    }
    request = f"{last.method if last else 'GET'} {url}"
    summary = _summary(decision, counts, versions, expected, old, sampling, gathered, request, problem, budget)
    return CheckResult(name, decision, summary, measured)


def _tally(counts: Counter[str], versions: set[str], total: int) -> str:
    """ "v1.2.9 on 54 of 59 answers, v1.3.0 on 5": versions as they are, problems quoted."""
    parts = []
    for index, (answer, count) in enumerate(counts.most_common()):
        shown = answer if answer in versions else repr(answer)
        parts.append(f"{shown} on {count} of {total} answers" if index == 0 else f"{shown} on {count}")
    return ", ".join(parts)


def _summary(
    decision: str,
    counts: Counter[str],
    versions: set[str],
    expected: str | None,
    old: str | None,
    sampling: Sampling,
    gathered: Gathered,
    request: str,
    last_problem: str | None,
    budget: float,
) -> str:
    total = sum(counts.values())
    suffix = " as expected" if expected is not None else ""
    version = counts.most_common(1)[0][0] if counts else None
    if decision == "passed":
        return f"live version {version}{suffix} {on_all(total)} ({sampling.claim()})"
    if decision == "inconclusive" and version is None:
        return f"no answer within {budget:g}s: {sampling.answers} are needed to rule out {sampling.describe()}"
    if decision == "inconclusive":
        return (
            f"live version {version}{suffix} on all {total} answers, but {sampling.answers} are needed to rule out "
            f"{sampling.describe()}: the rest did not arrive within {budget:g}s"
        )
    tally = _tally(counts, versions, total)
    stopped = f"; stopped at the first request that got no answer: {last_problem}" if gathered.stopped_early else ""
    if not versions:
        return f"{request}: {last_problem}" + (f" ({tally})" if len(counts) > 1 else "")
    if expected is None:
        if len(versions) > 1:
            return f"version not stable: {tally}{stopped}"
        return f"not every request got a version: {tally}{stopped}"
    matching = [version for version in versions if same_version(version, expected)]
    if not matching:
        version = next(answer for answer, _ in counts.most_common() if answer in versions)
        mixed = f" ({tally})" if len(counts) > 1 else ""
        return f"live version {version}, expected {expected}{mixed}{stopped}"
    others = [version for version in versions if not same_version(version, expected)]
    if others:
        on_old = old is not None and any(same_version(version, old) for version in others)
        which = "the old version" if on_old else "another version"
        return f"a replica is still on {which}: {tally}{stopped}"
    return f"not every answer was a version: {tally}{stopped}"


def _version_or_problem(seen: Probe, json_field: str | None) -> tuple[str | None, str | None]:
    if seen.ok_transport and seen.status is not None and not 200 <= seen.status < 300:
        return None, f"answered {seen.status}"
    return read_version(seen, json_field)
