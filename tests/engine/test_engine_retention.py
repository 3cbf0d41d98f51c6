"""[reports] keep = N: the newest N run folders of a target stay, older ones of ours go, nothing else."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollback_harness.rollback.evidence import write_manifest
from rollback_harness.rollback.retention import prune_runs


def make_run(
    reports: Path,
    minute: int,
    *,
    service: str = "shop",
    target: str | None = "web",
    mode: str = "gate-preflight",
    status: str | None = None,
    dry_run: bool = False,
    manifest: bool = True,
) -> Path:
    """A finished run folder as the harness leaves it: evidence.json, a journal, a manifest."""
    folder = reports / f"20261126-10{minute:02d}00-abcdef"
    folder.mkdir(parents=True)
    evidence: dict[str, Any] = {
        "schema": "rollback-evidence/1",
        "mode": mode,
        "dry_run": dry_run,
        "service": {"name": service, "base_url": "http://127.0.0.1:9"},
        "target": {"name": target, "kind": "symlink"} if target else None,
        "outcome": {"status": status} if status else None,
        "started": f"2026-11-26T10:{minute:02d}:00.000+00:00",
    }
    (folder / "evidence.json").write_text(json.dumps(evidence))
    (folder / "journal.jsonl").write_text("{}\n")
    if manifest:
        write_manifest(folder)
    return folder


def names(reports: Path) -> list[str]:
    return sorted(p.name for p in reports.iterdir())


def test_keeps_the_newest_and_removes_the_oldest_first(tmp_path: Path) -> None:
    old = [make_run(tmp_path, minute) for minute in (1, 2, 3, 4)]
    current = make_run(tmp_path, 5)

    pruned = prune_runs(current, keep=2)

    assert pruned.removed == old[:3]  # oldest first
    assert names(tmp_path) == [old[3].name, current.name]
    (line,) = pruned.lines()
    assert line.startswith(
        "removed 3 old run folders of shop / target web, runs that changed nothing ([reports] keep = 2)"
    )
    assert old[0].name in line


def test_nothing_to_remove_says_nothing(tmp_path: Path) -> None:
    make_run(tmp_path, 1)
    current = make_run(tmp_path, 2)

    pruned = prune_runs(current, keep=2)

    assert pruned.removed == [] and pruned.lines() == []
    assert len(names(tmp_path)) == 2


def test_the_current_run_is_never_removed_even_if_it_sorts_oldest(tmp_path: Path) -> None:
    newer = make_run(tmp_path, 9)
    current = make_run(tmp_path, 1)  # a clock that went back

    pruned = prune_runs(current, keep=1)

    assert pruned.removed == [newer]
    assert names(tmp_path) == [current.name]


def test_only_finished_folders_of_ours_for_the_same_service_and_target_are_touched(tmp_path: Path) -> None:
    other_target = make_run(tmp_path, 1, target="api")
    other_service = make_run(tmp_path, 2, service="billing")
    gate_without_target = make_run(tmp_path, 3, mode="gate-verify", target=None)
    unfinished = make_run(tmp_path, 4, manifest=False)  # in progress, or crashed: kept
    added_to = make_run(tmp_path, 5)
    (added_to / "postmortem-notes.md").write_text("keep me")
    not_ours = tmp_path / "20261126-100600-abcdef"
    not_ours.mkdir()
    (not_ours / "evidence.json").write_text('{"schema": "someone-else/1"}')
    broken = tmp_path / "20261126-100700-abcdef"
    broken.mkdir()
    (broken / "evidence.json").write_text("{not json")
    linked = tmp_path / "latest"
    linked.symlink_to(make_run(tmp_path / "elsewhere", 8), target_is_directory=True)
    (tmp_path / "stray-file.txt").write_text("x")
    current = make_run(tmp_path, 9)

    pruned = prune_runs(current, keep=1)

    assert pruned.removed == [] and pruned.lines() == []
    for kept in (other_target, other_service, gate_without_target, unfinished, added_to, not_ours, broken, linked):
        assert kept.exists(), kept
    assert (tmp_path / "elsewhere").is_dir() and len(list((tmp_path / "elsewhere").iterdir())) == 1


def test_runs_that_changed_the_target_are_counted_apart(tmp_path: Path) -> None:
    rollback = make_run(tmp_path, 1, mode="rollback", status="rolled-back")
    failed = make_run(tmp_path, 2, mode="rollback", status="rollback-failed")
    interrupted = make_run(tmp_path, 3, mode="rollback", status=None)  # cut short: may have changed it
    dry_run = make_run(tmp_path, 4, mode="rollback", dry_run=True, status="dry-run")
    refused = make_run(tmp_path, 5, mode="rollback", status="preflight-refused")
    gates = [make_run(tmp_path, minute) for minute in (6, 7)]
    current = make_run(tmp_path, 8, mode="gate-preflight")

    pruned = prune_runs(current, keep=2)

    assert pruned.removed == [dry_run, refused, gates[0]]
    assert names(tmp_path) == [p.name for p in (rollback, failed, interrupted, gates[1], current)]


def test_a_real_rollback_prunes_older_real_rollbacks_only(tmp_path: Path) -> None:
    first = make_run(tmp_path, 1, mode="rollback", status="rolled-back")
    gate = make_run(tmp_path, 2)
    current = make_run(tmp_path, 3, mode="rollback", status="already-at-target")
    real = make_run(tmp_path, 4, mode="rollback", status="rolled-back")

    assert prune_runs(current, keep=1).removed == [gate]  # already at target changed nothing
    assert prune_runs(real, keep=1).removed == [first]


def test_a_folder_that_is_not_a_finished_run_prunes_nothing(tmp_path: Path) -> None:
    make_run(tmp_path, 1)
    unfinished = make_run(tmp_path, 2, manifest=False)

    assert prune_runs(unfinished, keep=1).removed == []
    assert len(names(tmp_path)) == 2


@pytest.mark.parametrize("keep", [0, -1, "all", 2.5])
def test_keep_must_be_a_positive_whole_number(tmp_path: Path, keep: object) -> None:
    from rollback_harness.rollback.config import load_config
    from rollback_harness.rollback.errors import ConfigError

    path = tmp_path / "rollback.toml"
    value = json.dumps(keep)
    path.write_text(
        '[service]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\n'
        f"[reports]\nkeep = {value}\n"
        '[targets.web]\nkind = "symlink"\nreleases_dir = "r"\ncurrent_link = "c"\n'
    )

    with pytest.raises(ConfigError, match=r"reports\.keep = "):
        load_config(path)


def test_keep_is_read_from_the_config(tmp_path: Path) -> None:
    from rollback_harness.rollback.config import load_config

    path = tmp_path / "rollback.toml"
    path.write_text(
        '[service]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\n[reports]\nkeep = 20\n'
        '[targets.web]\nkind = "symlink"\nreleases_dir = "r"\ncurrent_link = "c"\n'
    )

    assert load_config(path).settings.reports.keep == 20
    path.write_text(path.read_text().replace("[reports]\nkeep = 20\n", ""))
    assert load_config(path).settings.reports.keep is None
