"""The incident decision: roll back, consider it, or fix forward.

Inputs are what the engineer says about the incident (severity, data impact, time to fix) and
what preflight found (database migrations between the two versions). The matrix of the product
brief names four rows; every other combination follows the rules below, written out as a table
in docs/incident.md. Plain Python: the plugin records and enforces the result.

1. Severity ``low``: forward fix, whatever else is true (the brief's row).
2. Data impact ``major``: consider, never an automatic rollback. Rolling the code back does not
   repair the data, and what the bad version wrote may not be readable by the old one: a person
   must weigh it. The run goes on; the report says it was a judgement call.
3. Otherwise each severity has a bar for the time to fix: critical 30 min, high 60 min,
   medium 2 h. Longer than the bar (or unknown: no fix in sight) gives the severity's verdict:
   critical and high roll back, medium considers. Within the bar: a fix is close, so high and
   medium fix forward; critical considers (every minute costs, a rollback takes minutes too).
4. Migrations present between the versions ("prefer forward fix") move the verdict one step
   towards forward fix: rollback -> consider -> forward fix. Unknown migrations change nothing,
   and the decision says they were not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low")
DATA_IMPACTS = ("none", "minor", "major")

ROLLBACK = "rollback"
CONSIDER = "consider"
FORWARD_FIX = "forward-fix"
NOT_ASSESSED = "not-assessed"

# Time-to-fix bars per severity, in seconds: a fix expected later than this is "no fix soon".
BARS = {"critical": 30 * 60.0, "high": 60 * 60.0, "medium": 2 * 3600.0}
# The verdict above the bar and within it.
ABOVE_BAR = {"critical": ROLLBACK, "high": ROLLBACK, "medium": CONSIDER}
WITHIN_BAR = {"critical": CONSIDER, "high": FORWARD_FIX, "medium": FORWARD_FIX}
_TOWARDS_FORWARD_FIX = {ROLLBACK: CONSIDER, CONSIDER: FORWARD_FIX, FORWARD_FIX: FORWARD_FIX}

MEANINGS = {
    ROLLBACK: "roll back",
    CONSIDER: "consider: a judgement call, taken by whoever ran this rollback",
    FORWARD_FIX: "fix forward: a rollback is not the answer here",
    NOT_ASSESSED: "not assessed (no --severity / --data-impact given)",
}


@dataclass(frozen=True)
class DecisionInputs:
    severity: str | None = None
    data_impact: str | None = None
    # Seconds; None when not given (no fix in sight).
    time_to_fix: float | None = None
    # True / False as preflight found them; None when nobody checked.
    migrations_present: bool | None = None

    @property
    def assessed(self) -> bool:
        return self.severity is not None and self.data_impact is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "data_impact": self.data_impact,
            "time_to_fix_s": self.time_to_fix,
            "time_to_fix": None if self.time_to_fix is None else _human(self.time_to_fix),
            "migrations_present": self.migrations_present,
        }


@dataclass(frozen=True)
class Decision:
    verdict: str
    # The rule that decided, in words ("critical, data impact none, fix in 2.0 h > 30 min: roll back").
    rule: str
    inputs: DecisionInputs

    @property
    def refuses(self) -> bool:
        """A forward-fix verdict refuses the rollback (unless overridden with --force)."""
        return self.verdict == FORWARD_FIX

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "meaning": MEANINGS[self.verdict],
            "rule": self.rule,
            "inputs": self.inputs.to_dict(),
        }


def decide(inputs: DecisionInputs) -> Decision:
    """The verdict for ``inputs`` by the rules in this module's docstring."""
    if not inputs.assessed:
        return Decision(NOT_ASSESSED, "no --severity / --data-impact given: the run goes on", inputs)
    severity, impact = inputs.severity, inputs.data_impact
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r}: accepted: {', '.join(SEVERITIES)}")
    if impact not in DATA_IMPACTS:
        raise ValueError(f"data impact {impact!r}: accepted: {', '.join(DATA_IMPACTS)}")
    if severity == "low":
        verdict, why = FORWARD_FIX, "severity low: fix forward"
    elif impact == "major":
        verdict, why = CONSIDER, "data impact major: a rollback does not repair data; a person weighs it"
    else:
        bar = BARS[severity]
        fix = inputs.time_to_fix
        if fix is None:
            verdict = ABOVE_BAR[severity]
            why = f"{severity}, data impact {impact}, time to fix unknown (no fix in sight)"
        elif fix > bar:
            verdict = ABOVE_BAR[severity]
            why = f"{severity}, data impact {impact}, fix in {_human(fix)} > {_human(bar)}"
        else:
            verdict = WITHIN_BAR[severity]
            why = f"{severity}, data impact {impact}, fix in {_human(fix)} <= {_human(bar)}"
    if inputs.migrations_present:
        moved = _TOWARDS_FORWARD_FIX[verdict]
        if moved != verdict:
            why += f" ({verdict}); migrations present between the versions: prefer forward fix"
        else:
            why += "; migrations present between the versions"
        verdict = moved
    elif inputs.migrations_present is None:
        why += "; migrations between the versions: unknown (not checked)"
    else:
        why += "; no migrations between the versions"
    return Decision(verdict, f"{why} -> {MEANINGS[verdict].split(':')[0]}", inputs)


def _human(seconds: float) -> str:
    """``2 h``, ``45 min``, ``90 s``: how people say a time to fix."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:g} s"
