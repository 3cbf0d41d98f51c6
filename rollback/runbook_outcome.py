"""What the rollback phase of a run did: the outcome and its status words.

Apart from the runbook so that whatever reads an outcome (reports, the fleet, the evidence)
needs none of the machinery that produces it; ``rollback/runbook.py`` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .journal import utc_now


@dataclass
class RollbackOutcome:
    """What the rollback phase did. ``status`` is one of the STATUS_* values below."""

    status: str
    message: str
    from_version: str | None
    to_version: str | None
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    duration_s: float | None = None
    # The run whose unfinished rollback this one finished, if any.
    resumed_from: str | None = None
    # Each driver step and what happened to it in this run: done / failed / in flight / not started /
    # done earlier (by the run resumed from).
    steps: dict[str, str] = field(default_factory=dict)
    # After a failure or conflict: the live state read again (platform, service answer).
    now: dict[str, Any] = field(default_factory=dict)
    # After a failure or conflict: how to put the version from before back by hand.
    way_back: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


STATUS_ROLLED_BACK = "rolled-back"
STATUS_ALREADY_AT_TARGET = "already-at-target"
STATUS_DRY_RUN = "dry-run"
STATUS_REFUSED = "preflight-refused"
STATUS_NOT_CONFIRMED = "not-confirmed"
STATUS_FAILED = "rollback-failed"
STATUS_CONFLICT = "conflict"
