"""The version check: which version does the live service report?"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
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


@dataclass
class _Answers:
    """What the version endpoint answered so far, and the current run of matching answers."""

    attempts: int = 0
    streak: int = 0
    streak_version: str | None = None
    flaps: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    last_answer: str | None = None
    fastest: float | None = None
    versions: set[str] = field(default_factory=set)

    def record(self, version: str | None, problem: str | None, matches: bool, elapsed: float) -> None:
        answer = problem if problem is not None else str(version)
        if problem is None:
            self.versions.add(answer)
        self.attempts += 1
        self.counts[answer] += 1
        if self.last_answer is not None and answer != self.last_answer:
            self.flaps += 1
        self.last_answer = answer
        if not matches:
            self.streak = 0
        elif self.streak and version != self.streak_version:
            self.streak = 1  # another version, each matching nothing but itself (no expectation)
        else:
            self.streak += 1
        self.streak_version = version if matches else None
        if matches and (self.fastest is None or elapsed < self.fastest):
            self.fastest = elapsed


def check_version(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    json_field: str | None = None,
    expected: str | None = None,
    consecutive: int = 1,
    interval: float = 0.2,
    deadline: float | None = None,
    name: str = "version",
) -> CheckResult:
    """Passed when the service reports the same version ``consecutive`` times in a row, and it
    equals ``expected`` if given: a fleet that answers two versions alternately fails.

    Gives up after ``3 * consecutive`` answers, or as soon as the run of matching answers can
    no longer be completed within ``deadline`` seconds (default ``consecutive * (timeout +
    interval) + timeout``). Versions are compared as exact strings after stripping
    whitespace: "v1.2.9" is not "1.2.9".
    """
    if consecutive < 1:
        raise ValueError(f"consecutive must be at least 1, got {consecutive}")
    budget = deadline if deadline is not None else consecutive * (timeout + interval) + timeout
    start = time.monotonic()
    answers = _Answers()
    while True:
        seen = probe(session, url, timeout=timeout, deadline=start + budget)
        version, problem = _version_or_problem(seen, json_field)
        matches = problem is None and (expected is None or same_version(version, expected))
        answers.record(version, problem, matches, seen.elapsed)
        if answers.streak >= consecutive:
            break
        remaining = consecutive - answers.streak
        earliest_end = time.monotonic() + remaining * (interval + (answers.fastest or 0.0))
        if answers.attempts >= 3 * consecutive or earliest_end > start + budget:
            break
        time.sleep(interval)
    measured = {
        "version": version,
        "expected": expected,
        "status": seen.status,
        "elapsed_ms": to_ms(seen.elapsed),
        "attempts": answers.attempts,
        "consecutive": consecutive,
        "answers": dict(answers.counts),
        "flaps": answers.flaps,
    }
    if answers.streak >= consecutive:
        suffix = " as expected" if expected is not None else ""
        return CheckResult(name, "passed", f"live version {version}{suffix}", measured)
    summary = _failed_summary(answers, consecutive, expected, f"{seen.method} {url}", problem)
    return CheckResult(name, "failed", summary, measured)


def _failed_summary(
    answers: _Answers, consecutive: int, expected: str | None, request: str, last_problem: str | None
) -> str:
    versions = [answer for answer in answers.counts if answer in answers.versions]
    listing = ", ".join(f"{answer} {count}x" for answer, count in answers.counts.items())
    tally = f"got {listing} in {answers.attempts} attempts"
    if len(versions) > 1:
        flaps = f"{answers.flaps} change{'' if answers.flaps == 1 else 's'}"
        return f"version not stable: needed {consecutive} matching answers in a row, {tally} ({flaps})"
    if not versions:
        return f"{request}: {last_problem}"
    (version,) = versions
    if expected is not None and not same_version(version, expected):
        mixed = f" ({tally})" if len(answers.counts) > 1 else ""
        return f"live version {version}, expected {expected}{mixed}"
    return f"live version {version}, but not {consecutive} times in a row: {tally}"


def _version_or_problem(seen: Probe, json_field: str | None) -> tuple[str | None, str | None]:
    if seen.ok_transport and seen.status is not None and not 200 <= seen.status < 300:
        return None, f"answered {seen.status}"
    return read_version(seen, json_field)
