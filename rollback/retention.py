"""Retention of run folders: ``[reports] keep = N`` keeps the newest N runs of a target.

Only folders this harness wrote and finished are candidates: a folder directly in the report
folder (not a link) holding ``evidence.json`` of this harness's schema for the same service and
target, and a manifest that lists every file in it. A run still in progress (no manifest yet), a
crashed one, another tool's folder, or one someone added files to, is never removed.

Runs that changed the target (a rollback that went ahead, whatever its result) and runs that
changed nothing (dry runs, refusals, gates, "already at target") are counted apart, N of each: a
gate run every few minutes never pushes the evidence of the last real rollback out.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import run_files

SCHEMA = "rollback-evidence/1"
# Outcomes after which the target is known to be as it was before the run.
UNCHANGED_OUTCOMES = frozenset({"dry-run", "preflight-refused", "not-confirmed", "already-at-target"})


@dataclass(frozen=True)
class RunFolder:
    path: Path
    service: str | None
    target: str | None
    changed_target: bool
    started: str


@dataclass
class Pruned:
    """What a pruning pass removed, and what it could not remove."""

    keep: int
    group: str
    removed: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What to tell the person at the terminal; nothing when nothing happened."""
        lines = []
        if self.removed:
            names = ", ".join(p.name for p in self.removed)
            lines.append(
                f"removed {len(self.removed)} old run folder{'s' if len(self.removed) != 1 else ''} of {self.group} "
                f"([reports] keep = {self.keep}) from {self.removed[0].parent}: {names}"
            )
        for path, reason in self.failed:
            lines.append(f"could not prune old run folders: {path}: {reason}")
        return lines


def read_run_folder(path: Path) -> RunFolder | None:
    """The facts retention needs about a finished run folder of ours; None for anything else."""
    if path.is_symlink() or not path.is_dir():
        return None
    try:
        evidence: Any = json.loads((path / run_files.EVIDENCE).read_text(encoding="utf-8"))
        manifest = (path / run_files.MANIFEST).read_text(encoding="utf-8")
        listed = {line.partition("  ")[2] for line in manifest.splitlines() if line}
    except (OSError, ValueError):
        return None
    if not isinstance(evidence, dict) or evidence.get("schema") != SCHEMA:
        return None
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir()}
    if present - listed - {run_files.MANIFEST, run_files.SIGNATURE}:
        return None  # files the harness did not write: someone keeps something here
    service = evidence.get("service") or {}
    target = evidence.get("target") or {}
    outcome = evidence.get("outcome") or {}
    unchanged = (
        evidence.get("mode") != "rollback"
        or evidence.get("dry_run") is True
        or outcome.get("status") in UNCHANGED_OUTCOMES
    )
    return RunFolder(
        path=path,
        service=service.get("name") if isinstance(service, dict) else None,
        target=target.get("name") if isinstance(target, dict) else None,
        changed_target=not unchanged,
        started=str(evidence.get("started") or ""),
    )


def prune_runs(current: Path, keep: int) -> Pruned:
    """Removes the oldest run folders beside ``current`` beyond the newest ``keep`` of its kind.

    ``current`` (the run that just wrote its evidence) counts as one of the kept and is never
    removed; nothing happens when it is not a finished run folder of ours.
    """
    this = read_run_folder(current)
    if this is None:
        return Pruned(keep=keep, group=f"{current.name} (not a finished run folder: nothing pruned)")
    kind = "runs that changed the target" if this.changed_target else "runs that changed nothing"
    group = f"{this.service}" + (f" / target {this.target}" if this.target else "") + f", {kind}"
    pruned = Pruned(keep=keep, group=group)
    try:
        siblings = [p for p in current.parent.iterdir() if p.resolve() != current.resolve()]
    except OSError as exc:
        pruned.failed.append((current.parent, exc.strerror or str(exc)))
        return pruned
    same = [
        run
        for run in (read_run_folder(p) for p in siblings)
        if run is not None
        and (run.service, run.target, run.changed_target) == (this.service, this.target, this.changed_target)
    ]
    # Newest first by start time, then by folder name (run ids begin with the time); the current
    # run takes one of the places.
    same.sort(key=lambda run: (run.started, run.path.name), reverse=True)
    for run in reversed(same[keep - 1 :]):  # oldest first
        try:
            shutil.rmtree(run.path)
        except OSError as exc:
            pruned.failed.append((run.path, exc.strerror or str(exc)))
        else:
            pruned.removed.append(run.path)
    return pruned
