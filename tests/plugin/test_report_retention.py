"""[reports] keep = N as users see it: old run folders go after a run, with a line saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from deployments import Deployment

pytestmark = pytest.mark.integration


def runs_oldest_first(reports: Path) -> list[str]:
    """Run folders by start time (two runs can start within one second: names alone do not order them)."""
    started = {
        p.name: json.loads((p / "evidence.json").read_text())["started"]
        for p in reports.iterdir()
        if (p / "evidence.json").is_file()
    }
    return sorted(started, key=started.__getitem__)


def test_keep_prunes_old_run_folders_after_a_run(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    demo.update_config(reports={"keep": 2})
    notes = reports / "incident-notes"
    notes.mkdir(parents=True)
    (notes / "notes.md").write_text("not the harness's")
    args = demo.harness_args(reports, "--gate", "preflight", "--rollback-to", "v1.2.9")

    first = pytester.runpytest(*args)
    second = pytester.runpytest(*args)
    kept_before = runs_oldest_first(reports)
    third = pytester.runpytest(*args)

    assert (first.ret, second.ret, third.ret) == (0, 0, 0), third.stdout.str()
    assert "old run folder" not in first.stdout.str() + second.stdout.str()
    third.stdout.fnmatch_lines(
        [
            "[[]rollback[]] removed 1 old run folder of demo / target app, runs that changed nothing "
            f"([[]reports[]] keep = 2) from {reports}: {kept_before[0]}"
        ]
    )
    folders = runs_oldest_first(reports)
    assert len(folders) == 2 and folders[0] == kept_before[1]
    assert all((reports / name / "evidence.json").is_file() for name in folders)
    assert (notes / "notes.md").read_text() == "not the harness's"


def test_without_keep_every_run_is_kept(pytester: pytest.Pytester, demo: Deployment) -> None:
    reports = pytester.path / "reports"
    args = demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-dry-run", "-k", "preflight")

    results = [pytester.runpytest(*args) for _ in range(3)]

    assert [r.ret for r in results] == [0, 0, 0]
    assert len(list(reports.iterdir())) == 3
