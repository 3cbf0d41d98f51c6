"""The harness's own hooks: how the core (options, collection, phases, the rollback, evidence, exit
code) asks its features (gates and watch, fleet, incident, locks, database, notifications) for
their part, without importing them. pytest-xdist's ``newhooks.py`` is the model.

Registered in ``pytest_addhooks`` (plugins/harness.py). A feature is a plugin module listed in
plugins/features.py that implements some of these; a hook nobody implements costs nothing.
Every hook is called with keyword arguments, as pluggy requires. Results of a hook that is not
``firstresult`` come back as a list, the implementation registered last first (``tryfirst`` /
``trylast`` order them where the order shows, e.g. in the evidence).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ..rollback.config import HarnessConfig, TargetSpec
    from ..rollback.runbook import RollbackOutcome
    from .specs import CheckSpec
    from .state import HarnessRun

# -- configuration: before any change, usage errors first ------------------------------------------


def pytest_rollback_check_options(config: pytest.Config, mode: str | None) -> None:
    """Raise ``pytest.UsageError`` for a feature's options that would do nothing or mean something
    else in this ``mode`` (None: no harness run). Called before the config file is read."""


@pytest.hookspec(firstresult=True)
def pytest_rollback_fleet_targets(config: pytest.Config, harness_config: HarnessConfig) -> list[str] | None:
    """The names of the targets this run rolls back as a fleet; None for a run on one target.
    A ``ConfigError`` becomes a usage error."""


def pytest_rollback_config_loaded(
    config: pytest.Config, harness_config: HarnessConfig, target_spec: TargetSpec | None, report_base: Path
) -> None:
    """The config file is read and the target chosen; options may be resolved against them
    (e.g. ``--rollback-to last-verified``). A ``pytest.UsageError`` stops the run unchanged."""


@pytest.hookspec(firstresult=True)
def pytest_rollback_run_id(config: pytest.Config, default: str) -> str | None:
    """The run's id (it names the run folder) when a feature has one to give; else ``default``."""


def pytest_rollback_run_settings(config: pytest.Config, mode: str) -> dict[str, Any]:
    """Fields of the new ``HarnessRun`` a feature's options set (e.g. ``break_lock``, ``options``)."""
    return {}


def pytest_rollback_run_made(config: pytest.Config, run: HarnessRun) -> None:
    """The run exists and is in ``config.stash``: a feature sets up its own state and phases."""


def pytest_rollback_remove_empty_folders(run: HarnessRun) -> None:
    """Remove the folders the feature made in the run folder that hold nothing (a listing, a usage
    error, or before the manifest lists the run folder)."""


# -- collection and the runbook's items ---------------------------------------------------------------


@pytest.hookspec(firstresult=True)
def pytest_rollback_collect_runbook(parent: pytest.Collector, run: HarnessRun) -> list[Any] | None:
    """The nodes of the runbook file instead of its own items (a fleet: one node per target)."""


def pytest_rollback_extra_items(parent: pytest.Collector, run: HarnessRun) -> list[pytest.Item]:
    """Items of a feature's own phases after the runbook's (the watch, the rollback on failure)."""
    return []


def pytest_rollback_preflight_items(parent: pytest.Collector, run: HarnessRun, target: str | None) -> list[Any]:
    """A feature's preflight items, after the driver's findings (the decision)."""
    return []


def pytest_rollback_check_specs(run: HarnessRun) -> list[CheckSpec]:
    """A feature's checks, after the built-in ones; the same on every xdist worker."""
    return []


def pytest_rollback_phase_starting(run: HarnessRun, phase: str) -> None:
    """A check phase (``baseline``, ``verify``) of ``run`` is about to start its probes: a feature
    takes its marks now (where its logs end), so what the probes cause is counted."""


def pytest_rollback_member_phase(root: HarnessRun, run: HarnessRun, phase: str) -> None:
    """An item of ``run``, one member of ``root`` (a fleet's target), is about to run ``phase``
    (``preflight``, ``baseline``, ``verify``): a chance to start every member's phase at once."""


def pytest_rollback_member_verify(run: HarnessRun) -> None:
    """A member's verify item is about to judge its target: ``pytest.skip``/``pytest.fail`` when the
    member was not rolled back."""


# -- the rollback --------------------------------------------------------------------------------------


def pytest_rollback_refusals(run: HarnessRun, config: pytest.Config) -> list[str]:
    """Reasons this rollback must not start, said as ``name: why``."""
    return []


@pytest.hookspec(firstresult=True)
def pytest_rollback_perform(run: HarnessRun, config: pytest.Config) -> RollbackOutcome | None:
    """Perform the run's rollback another way (a fleet's); None: the core rolls one target back."""


@pytest.hookspec(firstresult=True)
def pytest_rollback_actions_verified(run: HarnessRun, config: pytest.Config) -> bool | None:
    """Whether the rollback a gate run made was verified (the actions' finish asks); None: not known here."""


# -- the end: exit code, headline, evidence, renderers ------------------------------------------------


@pytest.hookspec(firstresult=True)
def pytest_rollback_exit_code(run: HarnessRun, tests: dict[str, dict[str, Any]], code: int) -> int | None:
    """The harness's exit code when a feature's phases tell a different story than ``code``."""


def pytest_rollback_unfinished_steps(run: HarnessRun) -> dict[str, str]:
    """Steps of a feature's own (a fleet's targets: ``"web: switch-link"``) and their last state, for a
    headline of a run cut short."""
    return {}


@pytest.hookspec(firstresult=True)
def pytest_rollback_headline(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]], code: int | None, base: str
) -> str | None:
    """The run's one-line headline when a feature's phases tell more than ``base``."""


@pytest.hookspec(firstresult=True)
def pytest_rollback_comparison_sides(tests: dict[str, dict[str, Any]]) -> dict[str, str] | None:
    """Which gate is "before" and which "after" in the report's comparison of each check."""


def pytest_rollback_session_end(config: pytest.Config, run: HarnessRun, headline: str, exit_code: int) -> None:
    """The verdict is known and the evidence not yet written: last words to the outside (bounded)."""


def pytest_rollback_evidence_head(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    """A run's evidence fields that come first (the decision and its inputs)."""
    return {}


def pytest_rollback_evidence(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """A feature's sections of the run's evidence.json, after the timeline."""
    return {}


def pytest_rollback_evidence_tail(run: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """evidence.json's last keys (a fleet's targets, a target's hosts)."""
    return {}


def pytest_rollback_artifacts(run: HarnessRun, config: pytest.Config) -> dict[str, str | None]:
    """Files a feature writes into the run folder, by role (listed in the evidence)."""
    return {}


def pytest_rollback_relaxed(run: HarnessRun, config: pytest.Config) -> list[dict[str, str]]:
    """Safety a feature's options relaxed for this run (said in the evidence)."""
    return []


def pytest_rollback_write_files(
    run: HarnessRun, config: pytest.Config, evidence: dict[str, Any], write: Callable[..., Any]
) -> None:
    """Write a feature's own files from the final evidence through ``write`` (bounded, redacted)."""


def pytest_rollback_manifest_written(
    run: HarnessRun, config: pytest.Config, manifest: Path, write: Callable[..., Any]
) -> None:
    """The manifest of the run folder is written, last of all: a feature's files about it (its
    signature) through ``write`` (as in ``pytest_rollback_write_files``); a failure there ends the
    run with exit code 22 when it would have been 0. Such a file is not listed in the manifest."""


def pytest_rollback_html_head(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    """The HTML summary's opening sections, before the verdict (the decision); escaped with ``h``."""
    return []


def pytest_rollback_html_sections(evidence: dict[str, Any], h: Callable[[object], str]) -> list[str]:
    """HTML sections after the comparisons, before the timeline; everything escaped with ``h``."""
    return []


def pytest_rollback_html_tail(
    evidence: dict[str, Any], h: Callable[[object], str], cell: Callable[[dict[str, Any] | None], str]
) -> list[str]:
    """HTML sections after the timeline (a section per target of a fleet)."""
    return []


def pytest_rollback_terminal_head(evidence: dict[str, Any]) -> list[str]:
    """The terminal summary's first lines (the decision)."""
    return []


def pytest_rollback_terminal_lines(evidence: dict[str, Any]) -> list[str]:
    """Lines for the terminal summary after the comparisons (where each target stands)."""
    return []
