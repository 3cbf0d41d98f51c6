"""Every question the evidence reporter asks the features, in one place: each one hook call.

plugins/report.py, report_evidence.py, report_html.py and report_terminal.py ask the features
(gates, incident, fleet, notifications...) for their parts of the exit code, the headline,
evidence.json, the HTML report and the terminal summary only through the functions here. Each
calls one of the harness's hooks (plugins/hookspecs.py) and puts the features' answers together;
the report never imports a feature. The pictures are the report's own (plugins/pictures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from . import pictures
from .state import HarnessRun

Escape = Callable[[object], str]
WriteGuarded = Callable[[str, Callable[[], object]], bool]
# Without a feature saying otherwise: the baseline is "before", verify "after".
DEFAULT_SIDES = {"baseline": "before", "verify": "after"}


def _merged(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The features' dicts as one, in the hook's call order (``tryfirst`` first)."""
    merged: dict[str, Any] = {}
    for answer in answers:
        merged.update(answer)
    return merged


def _joined(answers: Sequence[Sequence[Any]]) -> list[Any]:
    return [part for answer in answers for part in answer]


# -- the exit code, the headline and the session's end ---------------------------------------------


def exit_code(run: HarnessRun, tests: dict[str, dict[str, Any]], code: int) -> int:
    """The exit code, told apart by a feature's phases (a deploy rolled back on its own, a watch)."""
    told: int | None = run.hook.pytest_rollback_exit_code(run=run, tests=tests, code=code)
    return code if told is None else told


def headline(
    run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]], code: int | None, base: str
) -> str:
    """The headline ``base``, told the whole story when a feature's phases ran."""
    told: str | None = run.hook.pytest_rollback_headline(run=run, config=config, tests=tests, code=code, base=base)
    return base if told is None else told


def unfinished_steps(run: HarnessRun) -> dict[str, str]:
    """Steps the features track (a fleet's targets' steps), for a headline of a rollback cut short."""
    return _merged(run.hook.pytest_rollback_unfinished_steps(run=run))


def session_end(run: HarnessRun, config: pytest.Config, headline_text: str, code: int) -> None:
    """The last word to the outside (the webhooks), bounded, just before the evidence is written."""
    run.hook.pytest_rollback_session_end(config=config, run=run, headline=headline_text, exit_code=code)


# -- evidence.json and the files beside it ---------------------------------------------------------


def evidence_head(run: HarnessRun, config: pytest.Config) -> dict[str, Any]:
    """The first keys of evidence.json: the incident and its decision."""
    return _merged(run.hook.pytest_rollback_evidence_head(run=run, config=config))


def relaxed(run: HarnessRun, config: pytest.Config) -> list[dict[str, str]]:
    """Relaxed safety the features add (a --force that overrode a forward-fix decision)."""
    return _joined(run.hook.pytest_rollback_relaxed(run=run, config=config))


def comparison_sides(run: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Which gate is "before" and which "after" in each check's comparison."""
    told: dict[str, str] | None = run.hook.pytest_rollback_comparison_sides(tests=tests)
    return dict(DEFAULT_SIDES) if told is None else told


def evidence_sections(run: HarnessRun, config: pytest.Config, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The features' sections of evidence.json: notifications, the auto-rollback, the watch, last-verified."""
    return _merged(run.hook.pytest_rollback_evidence(run=run, config=config, tests=tests))


def artifacts(run: HarnessRun, config: pytest.Config) -> dict[str, str | None]:
    """The features' files in evidence.json's artifacts (incident.md, status.md)."""
    return _merged(run.hook.pytest_rollback_artifacts(run=run, config=config))


def evidence_tail(run: HarnessRun, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """evidence.json's last keys: a fleet's targets, a target's hosts."""
    return _merged(run.hook.pytest_rollback_evidence_tail(run=run, tests=tests))


def write_files(run: HarnessRun, config: pytest.Config, evidence: dict[str, Any], write_guarded: WriteGuarded) -> None:
    """The features' own files beside the evidence, built from it (incident.md, status.md)."""
    run.hook.pytest_rollback_write_files(run=run, config=config, evidence=evidence, write=write_guarded)


def manifest_written(run: HarnessRun, config: pytest.Config, manifest: Path, write_guarded: WriteGuarded) -> None:
    """The features' files about the manifest just written (its signature), each through ``write_guarded``."""
    run.hook.pytest_rollback_manifest_written(run=run, config=config, manifest=manifest, write=write_guarded)


def remove_empty_folders(run: HarnessRun) -> None:
    """The features' folders that nothing was written to, before the manifest lists the run folder."""
    run.hook.pytest_rollback_remove_empty_folders(run=run)


# -- the HTML report -------------------------------------------------------------------------------


def html_head(run: HarnessRun, evidence: dict[str, Any], h: Escape) -> str:
    """The report's opening sections: the decision and every input."""
    return "".join(_joined(run.hook.pytest_rollback_html_head(evidence=evidence, h=h)))


def latency_pictures(comparisons: Sequence[dict[str, Any]], clean: Callable[[str], str]) -> list[str]:
    """The latency samples before and after, after the comparison table."""
    return pictures.latency_pictures(comparisons, clean)


def html_sections(run: HarnessRun, evidence: dict[str, Any], h: Escape) -> list[str]:
    """The features' sections (auto-rollback, watch, notifications), before the timeline."""
    return _joined(run.hook.pytest_rollback_html_sections(evidence=evidence, h=h))


def timeline_svg(events: Sequence[dict[str, Any]], clean: Callable[[str], str]) -> str:
    """The timeline as a picture, above its table."""
    return pictures.timeline_svg(events, clean)


def html_tail(
    run: HarnessRun, evidence: dict[str, Any], h: Escape, cell: Callable[[dict[str, Any] | None], str]
) -> list[str]:
    """A section per target of a fleet (and the hosts of a target on several hosts), after the timeline."""
    return _joined(run.hook.pytest_rollback_html_tail(evidence=evidence, h=h, cell=cell))


# -- the terminal summary --------------------------------------------------------------------------


def terminal_head(run: HarnessRun, evidence: dict[str, Any]) -> list[str]:
    """The summary's first lines: the decision and its inputs."""
    return _joined(run.hook.pytest_rollback_terminal_head(evidence=evidence))


def terminal_lines(run: HarnessRun, evidence: dict[str, Any]) -> list[str]:
    """Per target (and per host) where it stands, after the comparisons."""
    return _joined(run.hook.pytest_rollback_terminal_lines(evidence=evidence))
