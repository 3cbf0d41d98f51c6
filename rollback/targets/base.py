"""The interface every platform driver implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from rollback_harness.rollback.journal import Journal


@dataclass(frozen=True)
class Finding:
    """One preflight fact about a target: ok, or a reason to refuse."""

    name: str
    ok: bool
    message: str
    # False when an earlier finding made this one impossible to judge.
    checked: bool = True


@dataclass(frozen=True)
class TargetContext:
    """What the engine hands a driver besides its own settings."""

    name: str
    base_dir: Path
    progress: Callable[[str], None]
    # Reads the version the service itself answers now (None when it does not answer).
    service_version: Callable[[], str | None]


class Target(ABC):
    """A deployment that can be rolled back.

    Drivers are dry-run aware by construction: the engine asks ``plan`` in a dry run and only
    calls ``rollback`` for real. ``rollback`` must be idempotent: a step whose effect is already in
    place is recorded as such and not done twice.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        self.settings = settings
        self.context = context

    @abstractmethod
    def live_version(self) -> str:
        """The version the platform runs now; raise RollbackFailed when it cannot tell."""

    @abstractmethod
    def history(self) -> list[str]:
        """Versions this target can go back to, oldest first."""

    @abstractmethod
    def deployable(self, version: str) -> list[Finding]:
        """Preflight findings about deploying ``version`` here. Changes nothing."""

    @abstractmethod
    def plan(self, version: str) -> list[str]:
        """The steps ``rollback`` would take, in words a person can check."""

    @abstractmethod
    def rollback(self, version: str, journal: Journal) -> None:
        """Put ``version`` live, journaling every step."""

    @abstractmethod
    def wait_ready(self, version: str, journal: Journal) -> None:
        """Wait, bounded and with progress, until ``version`` serves."""

    def lock_path(self) -> Path | None:
        """Where runs against this target take their lock; None: beside the config file.

        A driver names a place every engineer's run shares, next to the thing rolled back.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """Facts about the target for the evidence (plain builtins, no secrets)."""
        return {"kind": self.kind}
