"""The interface every action around the platform step implements (see actions/__init__.py)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from ..targets.base import Finding, TargetContext

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec
    from ..journal import Journal


class Action(ABC):
    """Work done around the driver's steps, journaled step by step.

    Journal step names are ``"<name>:<step>"`` (``database:backup``, ``traffic:drain``).

    Idempotence contract (a run killed half way is finished by the next one): ``before`` and
    ``after`` look at the live state first and skip, journaling "skipped" with the reason, what is
    already in place. Raise ``HarnessError`` (or a subclass) with a message that names what failed
    and how things stand; the runbook then calls ``undo`` on every action that started.
    """

    name: ClassVar[str]
    # before() runs in ascending order, after() and finish() in descending order.
    # CDN 1, load balancer 5, traffic 10, feature flags 20, config 30, database 40 (closest to the
    # platform step).
    order: ClassVar[int] = 50

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        self.config = config
        self.spec = spec
        self.context = context

    @classmethod
    @abstractmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        """True when ``config`` asks for this action on target ``spec``. Reads the config only."""

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        """The names of the preflight findings ``preflight`` returns, known from the config alone."""
        return ()

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        """One Finding per name in ``finding_names``; a finding that is not ok refuses the run. Changes nothing."""
        return []

    @abstractmethod
    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        """What ``before`` and ``after`` would do, in words a person can check: (before, after)."""

    def pending(self) -> bool:
        """After preflight: work is left even if the platform is already on the target (a run killed
        after the platform step, before this action's after()). The runbook then runs the actions."""
        return False

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        """Before the driver's steps (drain traffic, back up, ...)."""
        return None

    def after(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        """After the driver's steps, once the target is ready, before verify."""
        return None

    def undo(self, journal: Journal) -> None:
        """The rollback failed after this action started: put back what it changed, where that is
        safe, and journal it; what cannot be put back is said in the raised error."""
        return None

    def finish(self, journal: Journal, verified: bool) -> None:
        """After the verify gate: ``verified`` True when it passed (restore traffic, reset flags)."""
        return None

    def preflight_detail(self) -> dict[str, Any]:
        """What ``preflight`` asked outside systems and their answers (e.g. ``aws_calls``), for the
        journal's ``NAME:preflight`` step, whether preflight passed or refused; {} when nothing."""
        return {}

    def left_over(self) -> str | None:
        """What an earlier run left in place that after() and finish() put right (maintenance still
        on, servers still drained), as read in preflight; None when nothing. A run that finds the
        target already at the version then still runs this action's after() and finish()."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for the evidence (plain builtins, no secrets)."""
        return {"action": self.name}
