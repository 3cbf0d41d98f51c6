"""The interface every platform driver implements."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from ..census import Census
from ..durations import format_duration
from ..errors import RollbackFailed
from ..journal import Journal
from ..versions import same_version

STEP_WAIT = "wait-ready"
# Seconds between version probes while waiting for readiness (no answer in a row yet).
POLL_INTERVAL = 0.05


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
    # Called as ``service_version(timeout=seconds)`` to bound one probe by the time left.
    service_version: Callable[..., str | None]
    # The service's last answer in words where service_version() said None ("answered 503",
    # "connection refused"): a wait that gives up says what it saw, not "none".
    last_answer: Callable[[], str | None] = lambda: None
    # --rollback-fast: the emergency mode; a driver that has one says in plan() what it trades.
    fast: bool = False
    # Run options actions read (--rollback-db, --allow-data-loss, ...): plain builtins by name.
    options: Mapping[str, Any] = field(default_factory=dict)


class Target(ABC):
    """A deployment that can be rolled back.

    Drivers are dry-run aware by construction: the engine asks ``plan`` in a dry run and only
    calls ``rollback`` for real. ``rollback`` must be idempotent: a step whose effect is already in
    place is recorded as such and not done twice.

    Concurrency contract: preflight reads ``observe()``, an opaque token of the live state (the
    link's text here, a resourceVersion on Kubernetes, a service's version index on Swarm). Just
    before each write, ``rollback`` compares the live token with that ``expected_state`` and raises
    ``Conflict`` when another deploy changed it in between: nothing is overwritten blindly.

    Resume contract: ``steps()`` names the journal steps a rollback takes, in order; the engine
    passes ``rollback`` the ones still to do when it finishes a run that was cut short.
    """

    kind: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    # True: ``--rollback-to revision:N`` names a target here (resolved by ``resolve_revision``).
    accepts_revisions: ClassVar[bool] = False

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        self.settings = settings
        self.context = context

    @classmethod
    def create(cls, settings: BaseModel, context: TargetContext) -> Target:
        """The driver for ``settings``: this class, unless its settings pick a variant of it."""
        return cls(settings, context)

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
    def observe(self) -> str:
        """An opaque token of the live state; it changes whenever anyone changes the target."""

    @abstractmethod
    def steps(self) -> list[str]:
        """The journal step names a rollback takes, in order (``wait_ready``'s step last)."""

    @abstractmethod
    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        """The steps ``rollback`` would take (all, or only ``steps``), in words a person can check."""

    @abstractmethod
    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        """Put ``version`` live, journaling every step.

        ``expected_state`` is what ``observe()`` returned at preflight: a live state that differs
        just before a write raises ``Conflict``. ``steps`` limits the run to those steps (the
        engine finishing a run that was cut short); None means all of them.
        """

    @abstractmethod
    def wait_ready(self, version: str, journal: Journal) -> None:
        """Wait, bounded and with progress, until ``version`` serves."""

    def census(self) -> Census | None:
        """Every replica of the target and the version each runs, read from the platform now.

        None: this platform cannot count its replicas (verify then judges by answers alone, and
        says so). Reads only; raise RollbackFailed when the platform cannot be read.
        """
        return None

    def previous_refusal(self) -> str | None:
        """Why ``--rollback-to previous`` names no version here now, or None (the default: history decides).

        For a platform whose "previous" is its own (Swarm's PreviousSpec): a refusal with the reason.
        """
        return None

    def resolve_revision(self, revision: int) -> tuple[str, str]:
        """``(version, explanation)`` of revision ``revision``; raise RollbackFailed when there is none.

        Only drivers whose ``accepts_revisions`` is True are asked; a rollback to that version then
        goes to exactly that revision.
        """
        raise NotImplementedError(f"a {self.kind!r} target has no revisions")

    def command_findings(self) -> list[Finding]:
        """Preflight: every command the driver will run exists and can be run. Changes nothing."""
        return []

    def way_back(self, version: str) -> str | None:
        """How a person puts ``version`` live again by hand (a command line), if the driver knows."""
        return None

    def lock_path(self) -> Path | None:
        """Where runs against this target take their lock; None: beside the config file.

        A driver names a place every engineer's run shares, next to the thing rolled back.
        """
        return None

    def cleanup(self, journal: Journal) -> None:
        """The runbook's cleanup, called only after a rollback that verify passed (e.g. remove the
        replaced image). Journals what it does; raises HarnessError when it fails. Nothing by default."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts about the target for the evidence (plain builtins, no secrets)."""
        return {"kind": self.kind}


def wait_for_version(
    context: TargetContext, version: str, journal: Journal, *, timeout: float, consecutive: int, step: str = STEP_WAIT
) -> None:
    """Bounded wait until the service answers ``version`` ``consecutive`` times in a row, with progress."""
    with journal.step(step, version=version, timeout_s=timeout, consecutive=consecutive) as handle:
        started = time.monotonic()
        deadline = started + timeout
        next_report = started + 2.0
        seen: str | None = None
        in_a_row = answers = flaps = 0
        while True:
            left = deadline - time.monotonic()
            if left > 0:
                # One probe never outlasts the deadline: it gets the time that is left.
                seen = context.service_version(timeout=left)
                answers += 1
                if same_version(seen, version):
                    in_a_row += 1
                else:
                    flaps += 1 if in_a_row else 0  # it answered the target, then not: reported
                    in_a_row = 0
                if in_a_row >= consecutive:
                    handle.detail.update(waited_s=round(time.monotonic() - started, 3), answers=answers, flaps=flaps)
                    return
            now = time.monotonic()
            if now >= deadline:
                streak = f" ({in_a_row} of {consecutive} matching answers in a row)" if in_a_row else ""
                raise RollbackFailed(
                    f"{context.name} did not answer {version} within {format_duration(timeout)}; "
                    f"last answer: {seen or context.last_answer() or 'none'}{streak}"
                )
            if now >= next_report:
                context.progress(
                    f"waiting for {context.name} to answer {version}: {format_duration(now - started)} "
                    f"of {format_duration(timeout)}, last answer {seen or context.last_answer() or 'none'}"
                )
                next_report = now + 2.0
            if not in_a_row:
                # Nothing to subscribe to: the service's answer is the event. A probe costs
                # milliseconds, so polling often finds the new version as soon as it serves.
                # (In a streak: ask again at once; a round-robin shows itself just as well.)
                time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))
