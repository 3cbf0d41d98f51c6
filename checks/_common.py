"""Small helpers shared by the checks."""

from __future__ import annotations

from collections.abc import Sequence


def to_ms(seconds: float) -> float:
    """Seconds as milliseconds rounded to 0.1, the unit every ``measured`` dict uses."""
    return round(seconds * 1000, 1)


def format_ms(seconds: float) -> str:
    """A duration for a summary line: "812 ms", "4.2 ms"."""
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def format_statuses(statuses: Sequence[int]) -> str:
    """Accepted statuses for a summary line: "200" or "200 or 204"."""
    return " or ".join(str(status) for status in statuses)


def on_all(total: int) -> str:
    """ "on all 59 answers", or "on its only answer" where one was all that was asked for."""
    return "on its only answer" if total == 1 else f"on all {total} answers"
