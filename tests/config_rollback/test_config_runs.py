"""Config rollback through `pytest --rollback-to`: as the [config_rollback] action beside the demo's
symlink target, and alone as a kind = "config" target whose git repository is the release folder
the demo app reads its release.json from (a real app restarted under supervisord)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from config_repos import files, git, make_config_repo, status
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration

HOOK = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"]


def hook_calls(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def step_detail(evidence: dict[str, Any], what: str) -> dict[str, Any]:
    (event,) = [e for e in evidence["timeline"] if e["what"] == what]
    assert isinstance(event["detail"], dict)
    return {"status": event["status"], **event["detail"]}


@pytest.fixture
def beside(demo: Deployment) -> tuple[Path, Path]:
    """The demo with a [config_rollback] section: its repository and the restart hook's marker."""
    repo = make_config_repo(demo.layout.root / "config-repo")
    marker = demo.layout.root / "config-hook.txt"
    demo.update_config(
        config_rollback={
            "repo": "config-repo",
            "paths": ["config/"],
            "env_file": "app.env",
            "restart": [[*HOOK, str(marker), "{version}"]],
        }
    )
    return repo, marker


def run(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))


def test_the_config_is_restored_from_the_tag_beside_the_platform_rollback(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    repo, marker = beside
    head = git(repo, "rev-parse", "HEAD")

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        ["*preflight-config-tag PASSED*", "*preflight-config-clean PASSED*", "*preflight-config-commands PASSED*"]
    )
    assert demo.linked_version() == "v1.2.9"
    assert files(repo) == {
        "app.env": "MODE=b\n",
        "config/app.toml": "level = 2\n",
        "config/old.toml": "legacy = true\n",
    }
    assert hook_calls(marker) == ["v1.2.9"]
    evidence = read_evidence(pytester.path / "reports")
    restored = step_detail(evidence, "config:restore")
    assert restored["status"] == "done"
    assert restored["head_sha"] == head and restored["tag_sha"] == git(repo, "rev-parse", "v1.2.9^{commit}")
    assert {f["path"] for f in restored["files"]} == {
        "app.env",
        "config/app.toml",
        "config/new.toml",
        "config/old.toml",
    }
    done = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    assert done.index("config:restore") < done.index("config:restart") < done.index("switch-link")
    assert any(line.startswith("config: git -C") for line in evidence["plan"])


def test_a_failed_platform_step_puts_the_config_files_back(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    repo, marker = beside
    before = files(repo)
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 12, result.stdout.str()
    assert files(repo) == before and status(repo) == ""
    # The hook ran on the restored files, then again on the files put back (the version from before).
    assert hook_calls(marker) == ["v1.2.9", "v1.3.0"]
    evidence = read_evidence(pytester.path / "reports")
    assert step_detail(evidence, "config:undo")["status"] == "done"


def test_a_dirty_config_tree_refuses_the_run_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    repo, marker = beside
    (repo / "config" / "app.toml").write_text("level = 'hand edited'\n")

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*config-clean*local changes*config/app.toml (modified)*"])
    assert (repo / "config" / "app.toml").read_text() == "level = 'hand edited'\n"
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0 and hook_calls(marker) == []


def test_an_unknown_tag_refuses_the_run_listing_the_tags(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    repo, _ = beside
    git(repo, "tag", "-d", "v1.2.9")

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*no tag v1.2.9 in *; tags there: v1.2.8, v1.3.0*"])
    assert demo.linked_version() == "v1.3.0"


def test_a_shell_string_as_a_restart_hook_is_a_config_error(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    data = demo.config()
    data["config_rollback"]["restart"] = "systemctl restart app && echo done"
    demo.write_config(data)

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "config_rollback.restart" in output and "a shell string is not accepted" in output
    assert "Traceback" not in output


# -- kind = "config": config alone ---------------------------------------------------------------


@pytest.fixture
def config_alone(demo: Deployment) -> Path:
    """The live release folder made a git repository: one tagged commit per release's release.json."""
    live = demo.layout.releases_dir / "v1.3.0"
    versions: dict[str, dict[str, str | None]] = {
        version: {
            "release.json": (demo.layout.releases_dir / version / "release.json").read_text(),
            "app.py": (live / "app.py").read_text(),
        }
        for version in ("v1.2.8", "v1.2.9", "v1.3.0")
    }
    stash = demo.layout.root / "stash"
    shutil.move(live, stash)
    repo = make_config_repo(live, versions)
    restart = demo.config()["targets"]["app"]["restart"]
    data = demo.config()
    data["targets"] = {
        "app": {"kind": "config", "repo": "releases/v1.3.0", "paths": ["release.json"], "restart": restart}
    }
    demo.write_config(data)
    return repo


def test_a_config_target_alone_rolls_back_to_the_previous_tag_and_the_app_serves_it(
    pytester: pytest.Pytester, demo: Deployment, config_alone: Path
) -> None:
    head = git(config_alone, "rev-parse", "HEAD")

    result = run(pytester, demo, "--rollback-to", "previous", "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*preflight-live-version PASSED*", "*rollback plan for demo: v1.3.0 -> v1.2.9*"])
    assert json.loads((config_alone / "release.json").read_text())["version"] == "v1.2.9"
    assert demo.live_version() == "v1.2.9" and demo.restarts() == 1
    evidence = read_evidence(pytester.path / "reports")
    restored = step_detail(evidence, "restore-config")
    assert restored["head_sha"] == head
    assert [f["path"] for f in restored["files"]] == ["release.json"]
    assert evidence["target"]["kind"] == "config"


def test_a_config_target_already_at_the_tag_changes_nothing(
    pytester: pytest.Pytester, demo: Deployment, config_alone: Path
) -> None:
    first = pytester.runpytest(*demo.harness_args(pytester.path / "first", "--rollback-to", "v1.2.9", "--rollback-yes"))
    assert first.ret == 0, first.stdout.str()
    restored = (config_alone / "release.json").stat().st_mtime_ns

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*already at target v1.2.9*"])
    assert (config_alone / "release.json").stat().st_mtime_ns == restored and demo.restarts() == 1


def test_a_config_target_with_edited_files_cannot_tell_its_version(
    pytester: pytest.Pytester, demo: Deployment, config_alone: Path
) -> None:
    (config_alone / "release.json").write_text('{"version": "hand-made"}\n')

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*match no tag*"])
    assert (config_alone / "release.json").read_text() == '{"version": "hand-made"}\n'


def test_a_dry_run_shows_the_restore_in_the_plan_and_changes_nothing(
    pytester: pytest.Pytester, demo: Deployment, beside: tuple[Path, Path]
) -> None:
    repo, marker = beside
    before = files(repo)

    result = run(pytester, demo, "--rollback-to", "v1.2.9", "--rollback-dry-run", "-n", "2")

    assert result.ret == 0, result.stdout.str()
    tag_sha = git(repo, "rev-parse", "v1.2.9^{commit}")
    result.stdout.fnmatch_lines(
        [f"*config: git -C *config-repo restore --source v1.2.9 ({tag_sha[:12]}) -- config/ app.env*"]
    )
    assert files(repo) == before and hook_calls(marker) == [] and demo.linked_version() == "v1.3.0"
