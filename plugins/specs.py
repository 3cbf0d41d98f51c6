"""Definitions the runbook's items, phases and features share, kept below all of them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rollback.results import CheckResult
    from .state import HarnessRun


@dataclass(frozen=True)
class CheckSpec:
    """A check as configured: ``key`` is the same in every phase (``latency[/]``)."""

    key: str
    run: Callable[[HarnessRun, str], CheckResult]
    # Reads what the phase's other probes left behind (a log check): runs once they are done.
    after_others: bool = False
    # A latency check's samples in flight at once (its ``concurrency``); 0 for every other check.
    connections: int = 0
