"""The HTML report's timeline: one row per runbook step and one per phase, in readable words.

evidence.json's timeline has a row for every journaled step and every test. The report folds a
phase's tests (preflight, baseline, verify, watch...) into one row, keeps each runbook step (the
rollback and its driver's steps with their own durations), and writes details as ``key: value``
text. A phase's time leaves out the runbook steps that ran inside it: the rollback runs in the
setup of verify's first test, and is not verify's time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# Outcomes in the order a phase's counts are told.
OUTCOME_ORDER = ("passed", "failed", "error", "xfailed", "skipped")
BASELINE_WORDS = "measured before"
MAX_LISTED = 20  # items of a phase named in its row; the results table has every one
Span = tuple[datetime, datetime]


@dataclass(frozen=True)
class Row:
    """One line of the timeline: a runbook step ("step", "substep" under the rollback) or a phase."""

    at: str | None
    what: str
    status: str
    duration_s: float | None
    detail: tuple[str, ...]
    kind: str

    def event(self) -> dict[str, Any]:
        """The row as the timeline picture takes it."""
        return {"at": self.at, "what": self.what, "status": self.status, "duration_s": self.duration_s}


def rows(events: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]]) -> list[Row]:
    """The runbook's steps and the tests' phases, in time order (rows without a time last)."""
    test_ids = {test["nodeid"] for test in tests}
    steps = [event for event in events if event["what"] not in test_ids]
    driver = {str(s) for e in steps if e["what"] == "rollback" for s in e["detail"].get("steps") or []}
    step_rows = [_step_row(event, driver) for event in steps]
    phases: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for test in tests:
        phases.setdefault((test.get("gate") or "", test.get("target")), []).append(test)
    phase_rows = [
        _phase_row(gate, target, members, _busy(step_rows, gate)) for (gate, target), members in phases.items()
    ]
    ordered = sorted(step_rows + phase_rows, key=lambda r: (r.at is None, _parse(r.at) or _EPOCH, r.kind == "phase"))
    return ordered


def _step_row(event: dict[str, Any], driver: set[str]) -> Row:
    what = str(event["what"])
    # The outcome is journaled when the runbook ends; its time is the rollback row's.
    duration = None if what == "outcome" else event.get("duration_s")
    kind = "substep" if what in driver else "step"
    detail = tuple(line for key, value in event["detail"].items() if (line := readable_line(key, value)))
    return Row(event.get("at"), what, str(event["status"]), duration, detail, kind)


def _phase_row(gate: str, target: str | None, tests: list[dict[str, Any]], busy: list[Span]) -> Row:
    spans = [span for test in tests if (span := _own_span(test, busy)) is not None]
    at: str | None = None
    duration: float | None = None
    if spans:
        start, stop = min(s for s, _ in spans), max(e for _, e in spans)
        at = start.isoformat(timespec="milliseconds")
        duration = round(max(0.0, (stop - start).total_seconds() - _overlap(busy, start, stop)), 3)
    name = gate or "other tests"
    what = f"{name} ({target})" if target else name
    return Row(at, what, _phase_status(gate, tests), duration, _phase_detail(gate, tests), "phase")


def _busy(step_rows: list[Row], gate: str) -> list[Span]:
    """The runbook's steps that are not the phase's own (a watch journals its rounds as steps)."""
    own = (f"{gate}-", f"{gate}:")
    return [
        span
        for row in step_rows
        if row.what != gate and not row.what.startswith(own) and (span := _span(row.at, row.duration_s)) is not None
    ]


def _own_span(test: dict[str, Any], busy: list[Span]) -> Span | None:
    """A test's time, starting after any runbook step that ran inside it (a fixture's rollback)."""
    start = _parse(test.get("start"))
    if start is None:
        return None
    stop = _parse(test.get("stop")) or start + timedelta(seconds=float(test.get("duration_s") or 0.0))
    inside = [min(end, stop) for begin, end in busy if start <= begin <= stop]
    return max([start, *inside]), stop


def _overlap(busy: Iterable[Span], start: datetime, stop: datetime) -> float:
    """Seconds of [start, stop] covered by the runbook's steps (nested steps counted once)."""
    clipped = sorted((max(b, start), min(e, stop)) for b, e in busy if e > start and b < stop)
    total, reach = 0.0, start
    for begin, end in clipped:
        begin = max(begin, reach)
        if end > begin:
            total += (end - begin).total_seconds()
            reach = end
    return total


def _phase_status(gate: str, tests: list[dict[str, Any]]) -> str:
    outcomes = {test["outcome"] for test in tests}
    if outcomes & {"failed", "error"}:
        return "failed"
    if outcomes == {"skipped"}:
        return "skipped"
    if "xfailed" in outcomes:
        return "measured" if gate == "baseline" else "passed"
    return "passed"


def _outcome_words(gate: str, test: dict[str, Any]) -> str:
    if test["outcome"] == "xfailed" and gate == "baseline":
        return f"{BASELINE_WORDS}: {(test.get('check') or {}).get('status', 'failed')}"
    return str(test["outcome"])


def _phase_detail(gate: str, tests: list[dict[str, Any]]) -> tuple[str, ...]:
    """The counts, then one line per test that did not pass: its name and its message."""
    words = [_outcome_words(gate, test) for test in tests]
    rank = {outcome: index for index, outcome in enumerate(OUTCOME_ORDER)}
    counts: dict[str, int] = {}
    for _, said in sorted(zip(tests, words, strict=True), key=lambda pair: rank.get(pair[0]["outcome"], 9)):
        counts[said] = counts.get(said, 0) + 1
    lines = [", ".join(f"{count} {said}" for said, count in counts.items())]
    for test, said in zip(tests, words, strict=True):
        if test["outcome"] != "passed":
            message = str(test.get("message") or "").strip().splitlines()
            name = str(test["nodeid"]).rsplit("::", 1)[-1]
            lines.append(f"{name}: {said}" + (f": {_unprefixed(message[0])}" if message else ""))
    if len(lines) > MAX_LISTED + 1:
        lines[MAX_LISTED + 1 :] = [f"and {len(lines) - MAX_LISTED - 1} more: see the results table below"]
    return tuple(lines)


def _unprefixed(message: str) -> str:
    """A baseline's message without the words its row already says ("baseline measured: failed: ")."""
    for prefix in ("baseline measured: failed: ", "baseline measured: inconclusive: ", "baseline measured: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


# -- details as words ------------------------------------------------------------------------------


def readable_line(key: str, value: object) -> str:
    """``timeout_s=30.0`` as ``timeout: 30 s``; lists and mappings as words, never Python's repr.

    Empty values (None, "", [], {}) say nothing and give "".
    """
    if _empty(value):
        return ""
    name = key.replace("_", " ")
    if key.endswith("_s") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{name[:-2]}: {value:g} s"
    if (key == "command" or key.endswith("_command")) and isinstance(value, list):
        return f"{name}: {' '.join(str(part) for part in value)}"
    return f"{name}: {readable(value)}"


def readable(value: object) -> str:
    """A value from the journal as plain words: ``a, b`` for lists, ``k: v, ...`` for mappings."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{str(k).replace('_', ' ')}: {readable(v)}" for k, v in value.items() if not _empty(v))
    if isinstance(value, (list, tuple)):
        separator = "; " if any(isinstance(item, (dict, list, tuple)) for item in value) else ", "
        return separator.join(readable(item) for item in value if not _empty(item))
    if isinstance(value, str):
        return " / ".join(line for line in value.splitlines() if line.strip()) or value
    return str(value)


def _empty(value: object) -> bool:
    return value is None or (isinstance(value, (str, list, tuple, dict)) and not value)


def _parse(at: object) -> datetime | None:
    if not isinstance(at, str):
        return None
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        return None


def _span(at: str | None, duration: float | None) -> Span | None:
    start = _parse(at)
    return None if start is None else (start, start + timedelta(seconds=float(duration or 0.0)))


_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
