"""The harness's terminal output follows pytest's: -q and -qq shorten it; progress lines stand alone."""

from __future__ import annotations

import os

import pytest

# A symlink deployment whose service does not answer; a dry run needs nothing more.
DOWN = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"
timeout = "1s"

[targets.web]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


@pytest.fixture
def dry_run(pytester: pytest.Pytester) -> tuple[str, ...]:
    pytester.path.joinpath("rollback.toml").write_text(DOWN)
    for version in ("v1.2.9", "v1.3.0"):
        pytester.path.joinpath("releases", version).mkdir(parents=True)
    os.symlink("releases/v1.3.0", pytester.path / "current")
    return ("-p", "no:cacheprovider", "--rollback-to", "v1.2.9", "--rollback-dry-run")


def test_default_verbosity_shows_the_before_and_after_table(
    pytester: pytest.Pytester, dry_run: tuple[str, ...]
) -> None:
    result = pytester.runpytest(*dry_run)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*= rollback =*", "shop: dry run: nothing was changed", "version", "  before: *"])


def test_quiet_keeps_the_verdict_and_the_evidence_path(pytester: pytest.Pytester, dry_run: tuple[str, ...]) -> None:
    result = pytester.runpytest(*dry_run, "-q")

    assert result.ret == 0
    result.stdout.fnmatch_lines(["*= rollback =*", "shop: dry run: nothing was changed", "exit code 0: success"])
    result.stdout.no_fnmatch_line("  before: *")
    # Progress lines start their own line, never glued onto the progress dots.
    result.stdout.fnmatch_lines(
        ["[[]rollback[]] baseline: running 2 checks against http://127.0.0.1:9*"]
    )  # version, census
    result.stdout.fnmatch_lines(["[[]rollback[]] rollback plan for shop: v1.3.0 -> v1.2.9"])
    result.stdout.no_fnmatch_line("*?[[]rollback[]]*")


def test_very_quiet_is_one_line(pytester: pytest.Pytester, dry_run: tuple[str, ...]) -> None:
    result = pytester.runpytest(*dry_run, "-qq")

    assert result.ret == 0
    result.stdout.fnmatch_lines(["rollback: shop: dry run: nothing was changed (exit code 0)"])
    result.stdout.no_fnmatch_line("*= rollback =*")
    result.stdout.no_fnmatch_line("evidence: *")
