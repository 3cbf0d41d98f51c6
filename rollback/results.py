"""Result types shared by the engine, the checks and the plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CheckStatus = Literal["passed", "failed", "inconclusive"]


@dataclass(frozen=True)
class CheckResult:
    """What one check found.

    ``measured`` holds plain builtins only (str, int, float, bool, None, lists and dicts of
    them): it travels through JSON evidence and between xdist workers.
    """

    name: str
    status: CheckStatus
    summary: str
    measured: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "summary": self.summary,
            "measured": dict(self.measured),
        }
