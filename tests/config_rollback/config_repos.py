"""Real git repositories for the config rollback tests: one tagged commit per version."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT = "/usr/bin/git"
IDENTITY = ["-c", "user.name=Harness Test", "-c", "user.email=harness@example.invalid", "-c", "commit.gpgsign=false"]

# version -> files under the repository (None: the file is absent in that version).
VERSIONS: dict[str, dict[str, str | None]] = {
    "v1.2.8": {"config/app.toml": "level = 1\n", "config/old.toml": "legacy = true\n", "app.env": "MODE=a\n"},
    "v1.2.9": {"config/app.toml": "level = 2\n", "config/old.toml": "legacy = true\n", "app.env": "MODE=b\n"},
    "v1.3.0": {"config/app.toml": "level = 3\n", "config/new.toml": "fresh = true\n", "app.env": "MODE=c\n"},
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run([GIT, *IDENTITY, *args], cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout.strip()


def make_config_repo(repo: Path, versions: dict[str, dict[str, str | None]] | None = None) -> Path:
    """A repository with one commit per version, each tagged with its version; HEAD on the last."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for version, files in (versions or VERSIONS).items():
        for name in list(_tracked(repo)):
            if name not in files:
                git(repo, "rm", "-q", name)
        for name, text in files.items():
            if text is None:
                continue
            path = repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            git(repo, "add", name)
        git(repo, "commit", "-q", "-m", f"config for {version}")
        git(repo, "tag", version)
    return repo


def _tracked(repo: Path) -> list[str]:
    return [line for line in git(repo, "ls-files").splitlines() if line]


def files(repo: Path) -> dict[str, str]:
    """Every file of the work tree (outside .git) and its text."""
    return {
        str(path.relative_to(repo)): path.read_text()
        for path in sorted(repo.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(repo).parts
    }


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")
