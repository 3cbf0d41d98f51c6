"""ConfigRollback against real git repositories: restore from a tag with both SHAs and every
file recorded, refusals before any write (dirty tree, unknown tag, a tag or HEAD that moved since
preflight), undo that puts the files back exactly, and config errors for shell strings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from config_repos import files, git, make_config_repo, status

from rollback_harness.rollback.config import ConfigRollbackConfig
from rollback_harness.rollback.errors import Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.config import ConfigRollback

pytestmark = pytest.mark.integration


def work_on(repo: Path, **settings: Any) -> ConfigRollback:
    model = ConfigRollbackConfig.model_validate({"repo": str(repo), "paths": ["config/"], **settings})
    return ConfigRollback(model, repo.parent, lambda message: None)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_config_repo(tmp_path / "deploy-config")


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.jsonl")


def entries(journal: Journal, step: str, state: str = "done") -> list[dict[str, Any]]:
    return [e for e in journal.entries() if e["step"] == step and e["status"] == state]


def test_restore_puts_the_tags_files_in_place_and_records_both_shas_file_by_file(repo: Path, journal: Journal) -> None:
    work = work_on(repo, env_file="app.env")
    head, tag_sha = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", "v1.2.9^{commit}")

    tag, clean = work.judge("v1.2.9")
    assert tag.ok and clean.ok, (tag, clean)
    assert tag_sha in tag.message and head in tag.message

    assert work.restore("v1.2.9", journal, "config:restore") is True

    assert files(repo) == {
        "app.env": "MODE=b\n",
        "config/app.toml": "level = 2\n",
        "config/old.toml": "legacy = true\n",
    }
    (done,) = entries(journal, "config:restore")
    assert done["tag_sha"] == tag_sha and done["head_sha"] == head
    changes = {f["path"]: f["change"] for f in done["files"]}
    assert changes == {
        "app.env": "modified",
        "config/app.toml": "modified",
        "config/new.toml": "deleted",
        "config/old.toml": "added",
    }
    modified = next(f for f in done["files"] if f["path"] == "config/app.toml")
    assert modified["before"].endswith(git(repo, "rev-parse", "HEAD:config/app.toml"))
    assert modified["after"].endswith(git(repo, "rev-parse", "v1.2.9:config/app.toml"))
    assert git(repo, "rev-parse", "HEAD") == head  # no commit, no checkout: only the files


def test_a_second_run_sees_the_files_already_restored_and_writes_nothing(repo: Path, journal: Journal) -> None:
    first = work_on(repo)
    first.judge("v1.2.9")
    first.restore("v1.2.9", journal, "config:restore")
    before = (repo / "config" / "app.toml").stat().st_mtime_ns

    again = work_on(repo)
    _, clean = again.judge("v1.2.9")

    assert clean.ok and "already match tag v1.2.9" in clean.message
    assert again.restore("v1.2.9", journal, "config:restore") is False
    assert entries(journal, "config:restore")[-1]["note"] == "already match tag v1.2.9"
    assert (repo / "config" / "app.toml").stat().st_mtime_ns == before


def test_a_restore_cut_short_half_way_is_finished_by_the_next_run(repo: Path, journal: Journal) -> None:
    # What a kill in the middle of git restore leaves: one file is the tag's, the others HEAD's.
    git(repo, "restore", "--source", "v1.2.9", "--", "config/app.toml")
    work = work_on(repo)

    _, clean = work.judge("v1.2.9")

    assert clean.ok and "partly match tag v1.2.9 already (config/app.toml (modified))" in clean.message
    assert work.restore("v1.2.9", journal, "config:restore") is True
    assert files(repo)["config/old.toml"] == "legacy = true\n" and "config/new.toml" not in files(repo)


@pytest.mark.parametrize("change", ["modified", "untracked", "deleted"])
def test_a_dirty_tree_in_the_paths_is_refused_naming_the_files(repo: Path, change: str) -> None:
    if change == "modified":
        (repo / "config" / "app.toml").write_text("level = 99\n")
    elif change == "untracked":
        (repo / "config" / "extra.toml").write_text("x = 1\n")
    else:
        (repo / "config" / "app.toml").unlink()
    before = files(repo)

    tag, clean = work_on(repo).judge("v1.2.9")

    assert tag.ok and not clean.ok
    assert "local changes" in clean.message and "commit or discard them" in clean.message
    expected = {"modified": "config/app.toml (modified)", "untracked": "config/extra.toml (added)"}
    assert expected.get(change, "config/app.toml (deleted)") in clean.message
    assert files(repo) == before


def test_a_change_outside_the_paths_does_not_count(repo: Path) -> None:
    (repo / "README").write_text("notes\n")

    _, clean = work_on(repo).judge("v1.2.9")

    assert clean.ok, clean.message


def test_an_unknown_tag_is_refused_listing_the_tags_there_are(repo: Path) -> None:
    tag, clean = work_on(repo).judge("v9.9.9")

    assert not tag.ok and not clean.checked
    assert "no tag v9.9.9" in tag.message and "v1.2.8, v1.2.9, v1.3.0" in tag.message


def test_a_tag_template_names_the_tag(repo: Path) -> None:
    git(repo, "tag", "config-v1.2.9", "v1.2.9")

    work = work_on(repo, tag="config-{version}")

    assert work.judge("v1.2.9")[0].ok
    assert work.versions() == ["v1.2.9"]


def test_a_path_the_tag_does_not_hold_is_refused(repo: Path) -> None:
    tag, _ = work_on(repo, paths=["config/", "secrets/"]).judge("v1.2.9")

    assert not tag.ok and "holds nothing under secrets/" in tag.message


def test_a_tag_moved_after_preflight_is_a_conflict_and_nothing_is_written(repo: Path, journal: Journal) -> None:
    work = work_on(repo)
    assert all(f.ok for f in work.judge("v1.2.9"))
    git(repo, "tag", "-f", "v1.2.9", "v1.2.8")  # history rewritten: the tag now names another commit
    before = files(repo)

    with pytest.raises(Conflict, match=r"tag v1\.2\.9 .* moved after preflight"):
        work.restore("v1.2.9", journal, "config:restore")

    assert files(repo) == before and status(repo) == ""


def test_head_moved_after_preflight_is_a_conflict(repo: Path, journal: Journal) -> None:
    work = work_on(repo)
    work.judge("v1.2.9")
    (repo / "config" / "app.toml").write_text("level = 4\n")
    git(repo, "commit", "-q", "-am", "a deploy landed")

    with pytest.raises(Conflict, match=r"HEAD of .* moved after preflight"):
        work.restore("v1.2.9", journal, "config:restore")

    assert (repo / "config" / "app.toml").read_text() == "level = 4\n"


def test_files_edited_after_preflight_are_a_conflict(repo: Path, journal: Journal) -> None:
    work = work_on(repo)
    work.judge("v1.2.9")
    (repo / "config" / "app.toml").write_text("level = 5\n")

    with pytest.raises(Conflict, match=r"config/app.toml \(modified\)"):
        work.restore("v1.2.9", journal, "config:restore")

    assert (repo / "config" / "app.toml").read_text() == "level = 5\n"


def test_undo_puts_every_file_back_exactly_as_it_was(repo: Path, journal: Journal) -> None:
    (repo / "config" / "app.toml").chmod(0o640)  # git sees no change (both are 100644); undo keeps it
    before = files(repo)
    work = work_on(repo, env_file="app.env")
    work.judge("v1.2.8")
    work.restore("v1.2.8", journal, "config:restore")
    assert files(repo) != before

    assert work.undo(journal, "config:undo") is True

    assert files(repo) == before and status(repo) == ""
    assert (repo / "config" / "app.toml").stat().st_mode & 0o777 == 0o640
    (undone,) = entries(journal, "config:undo")
    assert {f["path"]: f["change"] for f in undone["files"]}["config/old.toml"] == "removed"


def test_restart_hooks_run_as_argument_lists_with_the_version(repo: Path, journal: Journal, tmp_path: Path) -> None:
    marker = tmp_path / "hook.txt"
    hook = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')", str(marker)]
    work = work_on(repo, restart=[[*hook, "{version}"], [*hook, "second; rm -rf /"]])

    work.run_hooks("v1.2.9", journal, "config:restart")

    assert marker.read_text() == "v1.2.9\nsecond; rm -rf /\n"  # no shell ever saw the text
    (done,) = entries(journal, "config:restart")
    assert [run["command"][-1] for run in done["runs"]] == ["v1.2.9", "second; rm -rf /"]


def test_a_restart_hook_past_its_deadline_is_killed_and_fails(repo: Path, journal: Journal) -> None:
    work = work_on(repo, restart=[[sys.executable, "-c", "import time; time.sleep(60)"]], restart_timeout="1s")

    with pytest.raises(RollbackFailed, match=r"did not finish within 1\.0 s"):
        work.run_hooks("v1.2.9", journal, "config:restart")

    assert entries(journal, "config:restart", "failed")


def test_a_restart_hook_that_fails_says_its_exit_code_and_output(repo: Path, journal: Journal) -> None:
    work = work_on(repo, restart=[[sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]])

    with pytest.raises(RollbackFailed, match=r"restart hook exited 3: .*bad config"):
        work.run_hooks("v1.2.9", journal, "config:restart")


def test_not_a_git_work_tree_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "config").mkdir(parents=True)

    with pytest.raises(RollbackFailed, match="is not a git work tree"):
        work_on(plain).judge("v1.2.9")


def test_a_worktree_of_the_repository_works_too(repo: Path, journal: Journal, tmp_path: Path) -> None:
    other = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", str(other), "v1.3.0")
    work = work_on(other)

    assert all(f.ok for f in work.judge("v1.2.9"))
    work.restore("v1.2.9", journal, "config:restore")

    assert (other / "config" / "app.toml").read_text() == "level = 2\n"
    assert (repo / "config" / "app.toml").read_text() == "level = 3\n"
