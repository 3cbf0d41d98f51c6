"""The state of one harness run, shared by the hooks and fixtures through ``config.stash``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..rollback import run_files

if TYPE_CHECKING:
    # Imported lazily: an installed but inert plugin must not slow every pytest run.
    from ..rollback.config import HarnessConfig, TargetSpec
    from ..rollback.evidence import Redactor
    from ..rollback.journal import Journal
    from ..rollback.runbook import Runbook

MODE_ROLLBACK = "rollback"
MODE_GATE_PREFLIGHT = "gate-preflight"
MODE_GATE_VERIFY = "gate-verify"

PHASES = ("preflight", "baseline", "verify")
# Once the xdist_group the gates carried; report.py still strips it from node ids.
XDIST_GROUP = "rollback-runbook"
# Items sort by phase; tests with no gate run after the gates, in their own order.
# After verify, the phases of plugins/gates.py: the automatic rollback of a failed deploy gate,
# verify again after it, and the watch.
PHASE_ORDER = {"preflight": 0, "baseline": 1, "verify": 2, "rollback-on-failure": 3, "reverify": 4, "watch": 5}
UNGATED_ORDER = 6


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


@dataclass
class HarnessRun:
    mode: str
    config: HarnessConfig
    target_spec: TargetSpec | None
    requested: str | None
    expect_version: str | None
    dry_run: bool
    assume_yes: bool
    run_id: str
    run_dir: Path
    is_worker: bool
    # --rollback-fast: the driver's emergency mode (TargetContext.fast).
    fast: bool = False
    # --rollback-break-lock RUN_ID: break that run's lock on the target (plugins/locks.py).
    break_lock: str | None = None
    # Options the actions read by name (TargetContext.options), e.g. allow_data_loss.
    options: dict[str, Any] = field(default_factory=dict)
    journal: Journal = field(init=False)
    # Everything the run writes or prints passes through it: secrets never leave the process.
    redactor: Redactor = field(init=False)
    runbook: Runbook | None = None
    # Per phase: the checks that collection selected, and their concurrent runner.
    selected_checks: dict[str, list[str]] = field(default_factory=dict)
    phase_checks: dict[str, Any] = field(default_factory=dict)
    # Successful latency samples (seconds) of the baseline phase, per check, for verify to compare.
    latency_baselines: dict[str, list[float]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None
    # Filled on the process that runs the items.
    preflight_failures: list[str] = field(default_factory=list)
    # A verify gate without --rollback-expect-version: what the platform says is deployed (read
    # where the gates run), where the expectation came from, or why there is none.
    platform_version: str | None = None
    expect_source: str | None = None
    expect_problem: str | None = None
    # The driver a verify gate without a rollback counts replicas with (plugins/probes.py).
    census_target: Any = None
    started: float = field(default_factory=time.time)
    # Verify gates seen by this process: the driver's cleanup runs only after a verified rollback.
    verify_passed: int = 0
    verify_failed: bool = False
    # What the actions could not finish after verify (traffic not restored, the CDN not invalidated):
    # never a plain success (exit 23).
    finish_problems: list[str] = field(default_factory=list)
    # "SIGTERM" when a signal other than Ctrl-C interrupted the run (plugins/harness.py).
    terminated_by: str | None = None
    # A fleet run (--rollback-target all, or a list): one run per target, each with its own folder,
    # journal, runbook and checks (plugins/fleet.py). Empty in a run on one target.
    fleet: dict[str, HarnessRun] = field(default_factory=dict)
    # --rollback-parallel: how many targets of a fleet roll back at once.
    fleet_parallel: int = 1
    # Phases plugins/gates.py adds to this run (rollback-on-failure, reverify, watch).
    extra_phases: tuple[str, ...] = ()
    # The rollback's own time in this process, taken out of the setup it ran in (the first verify
    # item's): its steps are their own rows in the timeline, not that item's duration.
    rollback_wall_s: float = 0.0
    # pytest's hook caller (config.hook): how the core asks the features for their part (plugins/hookspecs.py).
    hook: Any = None

    def __post_init__(self) -> None:
        from ..rollback.evidence import Redactor
        from ..rollback.journal import Journal

        self.redactor = Redactor(self.config.secrets)
        self.journal = Journal(self.run_dir / run_files.JOURNAL, redact=self.redactor.data)

    @property
    def phases(self) -> tuple[str, ...]:
        if self.mode == MODE_GATE_PREFLIGHT:
            return ("preflight",)
        if self.mode == MODE_GATE_VERIFY:
            return ("verify", *self.extra_phases)
        return PHASES + self.extra_phases

    @property
    def verify_expects(self) -> str | None:
        """The version a verify gate expects: the command line's, else the platform's."""
        return self.expect_version or self.platform_version

    @property
    def rolls_back(self) -> bool:
        return self.mode == MODE_ROLLBACK

    @property
    def is_fleet(self) -> bool:
        return bool(self.fleet)

    def members(self) -> list[HarnessRun]:
        """This run, then each target's run of a fleet."""
        return [self, *self.fleet.values()]


RUN_KEY = pytest.StashKey[HarnessRun]()
# On a fleet's items: the target they belong to (a key of ``HarnessRun.fleet``).
TARGET_KEY = pytest.StashKey[str]()


def run_for(config: pytest.Config, node: pytest.Item | pytest.Collector) -> HarnessRun:
    """The run an item belongs to: its target's in a fleet, else the run itself."""
    run = config.stash[RUN_KEY]
    target = node.stash.get(TARGET_KEY, None)
    return run.fleet[target] if target is not None and target in run.fleet else run
