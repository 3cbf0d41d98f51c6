"""Config rollback from git: ``git restore --source <tag> -- <paths>`` in a deployment repository.

``ConfigRollback`` is the work itself, shared by the ``[config_rollback]`` action (beside any
platform target, rollback/actions/config.py) and by the ``kind = "config"`` target below (config
alone). What it promises (RELIABILITY.md scenario 17):

* preflight resolves the tag to a commit and reads HEAD; it refuses an unknown tag (listing the
  tags there are), paths the tag does not hold, and a tree that differs from HEAD in those paths
  (modified, deleted or untracked files) unless it already equals the tag (a run cut short);
* just before writing it reads the tag, HEAD and the files again: anything that moved since
  preflight is a Conflict and nothing is written; it restores from the commit SHA, not the name;
* it records HEAD and the tag's SHA, and every file it changed (blob before and after), checks
  afterwards that the files equal the tag's, and keeps the files' bytes so that ``undo`` puts them
  back exactly as they were;
* restart hooks are argument lists with a total deadline each (rollback/targets/command.py).

Pathspecs are literal (``git --literal-pathspecs``): a ``*`` in a configured path is a file name.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from ..commands import program_finding, run_command
from ..config import ConfigRollbackConfig
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import sort_versions, version_problem
from .base import Finding, Target, TargetContext, wait_for_version
from .command import BoundedDuration, substitute

STEP_RESTORE, STEP_RESTART, STEP_WAIT = "restore-config", "restart", "wait-ready"
SHOWN_FILES = 10  # files named in a message; the journal lists all of them


@dataclass
class Snapshot:
    """The files under the restored paths as they were before a restore: bytes and mode, or absent."""

    files: dict[str, tuple[bytes, int] | None] = field(default_factory=dict)


class ConfigRollback:
    """Restore configured paths of a git work tree from a version's tag. Plain git, as argument lists."""

    def __init__(self, settings: ConfigRollbackConfig, base_dir: Path, progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.repo = base_dir / settings.repo
        self.progress = progress
        # Read at preflight, compared just before writing.
        self.tag_sha: dict[str, str] = {}
        self.head_sha: str | None = None
        self.state_at_preflight: dict[str, str] | None = None
        self.snapshot: Snapshot | None = None
        self.restored_from: str | None = None

    # -- names -----------------------------------------------------------------------------

    @property
    def paths(self) -> list[str]:
        env = [self.settings.env_file] if self.settings.env_file else []
        return [*self.settings.paths, *(p for p in env if p not in self.settings.paths)]

    def tag_for(self, version: str) -> str:
        return self.settings.tag.replace("{version}", version)

    def version_of(self, tag: str) -> str | None:
        prefix, _, suffix = self.settings.tag.partition("{version}")
        if not (tag.startswith(prefix) and tag.endswith(suffix)) or len(tag) <= len(prefix) + len(suffix):
            return None
        version = tag[len(prefix) : len(tag) - len(suffix)]
        return version if version_problem(version) is None else None

    # -- git -------------------------------------------------------------------------------

    def git(self, *args: str, ok: Sequence[int] = (0,)) -> tuple[int, str]:
        argv = ["git", "--literal-pathspecs", "-c", "core.quotepath=off", *args]
        run = run_command(argv, cwd=self.repo, timeout=self.settings.git_timeout, output_limit=16 * 1024 * 1024)
        if run.returncode not in ok:
            raise RollbackFailed(f"{shlex.join(argv)} exited {run.returncode} in {self.repo}: {run.output[-500:]}")
        return run.returncode, run.output

    def _git_bytes(self, *args: str) -> str:
        """Output of a git command whose output must not be stripped (``-z`` lists)."""
        argv = ["git", "--literal-pathspecs", *args]
        try:
            done = subprocess.run(
                argv, cwd=self.repo, capture_output=True, timeout=self.settings.git_timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise RollbackFailed(f"{shlex.join(argv)} did not finish within {self.settings.git_timeout} s") from None
        if done.returncode != 0:
            raise RollbackFailed(
                f"{shlex.join(argv)} exited {done.returncode} in {self.repo}: {done.stderr.decode(errors='replace')}"
            )
        return done.stdout.decode("utf-8", errors="surrogateescape")

    def check_repo(self) -> None:
        if not self.repo.is_dir():
            raise RollbackFailed(f"config_rollback.repo {self.repo} does not exist")
        code, top = self.git("rev-parse", "--show-toplevel", ok=(0, 128))
        if code != 0:
            raise RollbackFailed(f"config_rollback.repo {self.repo} is not a git work tree: {top}")
        if Path(top).resolve() != self.repo.resolve():
            raise RollbackFailed(f"config_rollback.repo {self.repo} must be the top of its work tree, which is {top}")

    def head(self) -> str:
        return self.git("rev-parse", "--verify", "HEAD^{commit}")[1]

    def resolve_tag(self, tag: str) -> str | None:
        code, sha = self.git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", ok=(0, 1))
        return sha if code == 0 and sha else None

    def tags(self) -> list[str]:
        return [line for line in self.git("tag", "--list")[1].splitlines() if line]

    def versions(self) -> list[str]:
        found = (self.version_of(tag) for tag in self.tags())
        return sort_versions(v for v in found if v is not None)

    def tree_state(self, sha: str) -> dict[str, str]:
        """path -> "<mode> <blob>" of every file under the paths in commit ``sha``."""
        state = {}
        for record in self._git_bytes("ls-tree", "-r", "-z", "--full-tree", sha, "--", *self.paths).split("\0"):
            if not record:
                continue
            meta, _, path = record.partition("\t")
            mode, kind, blob = meta.split()
            if kind == "blob":
                state[path] = f"{_mode(mode)} {blob}"
        return state

    def worktree_state(self) -> dict[str, str]:
        """path -> "<mode> <blob>" of every file under the paths on disk (tracked or untracked, not ignored)."""
        listed = self._git_bytes("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *self.paths)
        names = sorted({name for name in listed.split("\0") if name})
        present = [name for name in names if os.path.lexists(self.repo / name)]
        regular = [name for name in present if not (self.repo / name).is_symlink()]
        state = {}
        if regular:
            blobs = self._hash_objects(regular)
            for name, blob in zip(regular, blobs, strict=True):
                executable = os.stat(self.repo / name).st_mode & stat.S_IXUSR
                state[name] = f"{'100755' if executable else '100644'} {blob}"
        for name in present:
            if name not in state:
                state[name] = f"120000 {self._blob_id(os.fsencode(os.readlink(self.repo / name)))}"
        return state

    def _hash_objects(self, names: list[str]) -> list[str]:
        argv = ["git", "hash-object", "--stdin-paths"]
        done = subprocess.run(
            argv,
            cwd=self.repo,
            input="\n".join(names).encode("utf-8", errors="surrogateescape") + b"\n",
            capture_output=True,
            timeout=self.settings.git_timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RollbackFailed(f"git hash-object failed in {self.repo}: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode().split()

    def _blob_id(self, data: bytes) -> str:
        algorithm = self.git("rev-parse", "--show-object-format")[1] or "sha1"
        return hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()

    # -- preflight -------------------------------------------------------------------------

    def judge(self, version: str) -> tuple[Finding, Finding]:
        """(tag finding, clean-tree finding) for restoring ``version``'s tag; reads only."""
        tag = self.tag_for(version)
        self.check_repo()
        sha = self.resolve_tag(tag)
        if sha is None:
            listing = ", ".join(self.tags()[-20:]) or "none"
            return (
                Finding("config-tag", False, f"no tag {tag} in {self.repo}; tags there: {listing}"),
                Finding("config-clean", False, "not checked: the tag does not exist", checked=False),
            )
        self.tag_sha[version] = sha
        target = self.tree_state(sha)
        missing = [path for path in self.paths if not any(_under(name, path) for name in target)]
        if missing:
            return (
                Finding("config-tag", False, f"tag {tag} ({sha[:12]}) holds nothing under {', '.join(missing)}"),
                Finding("config-clean", False, "not checked: the tag lacks configured paths", checked=False),
            )
        self.head_sha = self.head()
        tag_ok = Finding(
            "config-tag", True, f"tag {tag} is commit {sha}; HEAD is {self.head_sha}; paths {', '.join(self.paths)}"
        )
        now = self.worktree_state()
        self.state_at_preflight = now
        head_state = self.tree_state(self.head_sha)
        if now == head_state:
            return tag_ok, Finding("config-clean", True, f"{', '.join(self.paths)} match HEAD {self.head_sha[:12]}")
        if now == target:
            return tag_ok, Finding("config-clean", True, f"{', '.join(self.paths)} already match tag {tag}")
        foreign = [
            (path, change)
            for path, change in _changes(head_state, now)
            if now.get(path) != target.get(path)  # neither HEAD's nor the tag's: someone's edit
        ]
        if not foreign:
            # A restore cut short (killed mid-way): every file is HEAD's or the tag's.
            partly = _listing(_changes(head_state, now))
            return tag_ok, Finding(
                "config-clean", True, f"{', '.join(self.paths)} partly match tag {tag} already ({partly})"
            )
        return tag_ok, Finding(
            "config-clean",
            False,
            f"{self.repo} has local changes in {', '.join(self.paths)} (not in HEAD {self.head_sha[:12]} nor tag "
            f"{tag}): {_listing(foreign)}; commit or discard them (git -C {shlex.quote(str(self.repo))} status) first",
        )

    def hook_findings(self) -> list[Finding]:
        findings = [program_finding("config-commands", "git", self.repo, "git")]
        findings += [
            program_finding("config-commands", hook[0], self.repo, "restart") for hook in self.settings.restart
        ]
        return findings

    # -- the writes ------------------------------------------------------------------------

    def plan(self, version: str) -> list[str]:
        tag = self.tag_for(version)
        sha = self.tag_sha.get(version, "?")
        lines = [f"git -C {self.repo} restore --source {tag} ({sha[:12]}) -- {' '.join(self.paths)}"]
        lines += [f"restart hook: {shlex.join(substitute(hook, version))}" for hook in self.settings.restart]
        return lines

    def restore(self, version: str, journal: Journal, step_name: str) -> bool:
        """Restore the paths from ``version``'s tag; False when they already matched it (nothing written)."""
        tag = self.tag_for(version)
        expected_sha = self.tag_sha.get(version)
        with journal.step(step_name, repo=str(self.repo), tag=tag, paths=self.paths) as step:
            sha = self.resolve_tag(tag)
            head = self.head()
            step.detail.update(tag_sha=sha, head_sha=head)
            if expected_sha is not None and sha != expected_sha:
                raise Conflict(
                    f"tag {tag} in {self.repo} moved after preflight: it was {expected_sha}, it is now {sha or 'gone'} "
                    "(history rewritten or the tag re-pointed); nothing was restored"
                )
            if sha is None:
                raise RollbackFailed(f"no tag {tag} in {self.repo}")
            if self.head_sha is not None and head != self.head_sha:
                raise Conflict(
                    f"HEAD of {self.repo} moved after preflight: it was {self.head_sha}, it is now {head}; "
                    "nothing was restored"
                )
            before = self.worktree_state()
            if self.state_at_preflight is not None and before != self.state_at_preflight:
                moved = _listing(_changes(self.state_at_preflight, before))
                raise Conflict(f"files in {self.repo} changed after preflight: {moved}; nothing was restored")
            target = self.tree_state(sha)
            if before == target:
                step.detail["note"] = f"already match tag {tag}"
                step.detail["files"] = []
                return False
            self.snapshot = self._take_snapshot(set(before) | set(target))
            self.restored_from = head
            self.git("restore", "--source", sha, "--worktree", "--", *self.paths)
            after = self.worktree_state()
            changes = _changes(before, after)
            step.detail["files"] = [
                {"path": path, "change": change, "before": before.get(path), "after": after.get(path)}
                for path, change in changes
            ]
            step.detail["way_back"] = self.way_back(head)
            if after != target:
                raise RollbackFailed(
                    f"after git restore, {self.repo} still differs from tag {tag}: {_listing(_changes(target, after))}"
                )
            self.progress(f"config: restored {len(changes)} file(s) in {self.repo} from tag {tag}")
        return True

    def run_hooks(self, version: str, journal: Journal, step_name: str) -> None:
        """Every restart hook in order, as one journal step (a resumed run runs them all again)."""
        if not self.settings.restart:
            return
        hooks = [substitute(hook, version) for hook in self.settings.restart]
        with journal.step(step_name, commands=hooks) as step:
            step.detail["runs"] = runs = []
            for argv in hooks:
                run = run_command(argv, cwd=self.repo, timeout=self.settings.restart_timeout)
                runs.append(run.record())
                if run.returncode != 0:
                    raise RollbackFailed(
                        f"restart hook exited {run.returncode}: {shlex.join(argv)}: {run.output[-500:]}"
                    )

    def undo(self, journal: Journal, step_name: str) -> bool:
        """Put the files back exactly as they were before ``restore``; False when nothing was restored."""
        snapshot = self.snapshot
        if snapshot is None:
            return False
        with journal.step(step_name, repo=str(self.repo), to_head=self.restored_from) as step:
            put_back = []
            for name, content in sorted(snapshot.files.items()):
                path = self.repo / name
                if content is None:
                    if os.path.lexists(path):
                        path.unlink()
                        put_back.append({"path": name, "change": "removed"})
                    continue
                data, mode = content
                _write_atomically(path, data, mode)
                put_back.append({"path": name, "change": "written back"})
            step.detail["files"] = put_back
        self.snapshot = None
        return True

    def _take_snapshot(self, names: set[str]) -> Snapshot:
        snapshot = Snapshot()
        for name in sorted(names):
            path = self.repo / name
            if path.is_symlink():
                snapshot.files[name] = (os.fsencode(os.readlink(path)), -1)
            elif path.is_file():
                snapshot.files[name] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
            else:
                snapshot.files[name] = None
        return snapshot

    def state_token(self) -> str:
        """HEAD plus the files' blobs: any commit, checkout or edit in the paths changes it."""
        try:
            state = self.worktree_state()
            head = self.head()
        except RollbackFailed as exc:
            return f"(unreadable: {exc})"
        digest = hashlib.sha256("\n".join(f"{k} {v}" for k, v in sorted(state.items())).encode()).hexdigest()
        return f"{head} {digest}"

    def way_back(self, head: str) -> str:
        return (
            f"git -C {shlex.quote(str(self.repo))} restore --source {head} -- {' '.join(map(shlex.quote, self.paths))}"
        )

    def describe(self) -> dict[str, Any]:
        return {
            "repo": str(self.repo),
            "paths": self.paths,
            "tag": self.settings.tag,
            "restart": self.settings.restart,
            "head_sha": self.head_sha,
            "tag_shas": dict(self.tag_sha),
        }


def _mode(mode: str) -> str:
    return "100755" if mode == "100755" else ("120000" if mode == "120000" else "100644")


def _under(name: str, path: str) -> bool:
    path = path.rstrip("/")
    return name == path or name.startswith(path + "/") or path in ("", ".")


def _changes(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str]]:
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            changes.append((path, "added"))
        elif path not in after:
            changes.append((path, "deleted"))
        elif before[path] != after[path]:
            changes.append((path, "modified"))
    return changes


def _listing(changes: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{path} ({change})" for path, change in changes[:SHOWN_FILES])
    more = f" and {len(changes) - SHOWN_FILES} more" if len(changes) > SHOWN_FILES else ""
    return (shown or "none") + more


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.rollback-{os.getpid()}")
    if os.path.lexists(temporary):
        temporary.unlink()
    if mode == -1:
        os.symlink(os.fsdecode(data), temporary)
    else:
        temporary.write_bytes(data)
        os.chmod(temporary, mode)
    os.replace(temporary, path)


class ConfigTargetSettings(ConfigRollbackConfig):
    """``kind = "config"``: config rollback alone, with the service's answer as readiness."""

    # Wait until the service answers the target this many times in a row (after the hooks).
    ready_timeout: BoundedDuration = 120.0
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    # False: no wait (a config that does not change what the version endpoint answers).
    wait_for_version: bool = True


class ConfigTarget(Target):
    """Config alone: the live version is the newest tag whose files equal the work tree's."""

    kind = "config"
    settings_model = ConfigTargetSettings
    settings: ConfigTargetSettings

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        super().__init__(settings, context)
        self.work = ConfigRollback(self.settings, context.base_dir, context.progress)

    def live_version(self) -> str:
        work = self.work
        work.check_repo()
        now = work.worktree_state()
        matching = [v for v in reversed(work.versions()) if work.tree_state(work.tag_for(v)) == now]
        if not matching:
            raise RollbackFailed(
                f"the files under {', '.join(work.paths)} in {work.repo} match no tag "
                f"({work.settings.tag}): local edits, or a state no version was tagged with"
            )
        head_tags = set(work.git("tag", "--points-at", "HEAD")[1].splitlines())
        on_head = [v for v in matching if work.tag_for(v) in head_tags]
        return (on_head or matching)[0]

    def history(self) -> list[str]:
        return self.work.versions()

    def deployable(self, version: str) -> list[Finding]:
        tag, clean = self.work.judge(version)
        return [Finding("target-deployable", f.ok, f.message) for f in (tag, clean)]

    def command_findings(self) -> list[Finding]:
        return [Finding("target-deployable", f.ok, f.message) for f in self.work.hook_findings()]

    def observe(self) -> str:
        return self.work.state_token()

    def steps(self) -> list[str]:
        restart = [STEP_RESTART] if self.settings.restart else []
        return [STEP_RESTORE, *restart, STEP_WAIT]

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        restore, *hooks = self.work.plan(version)
        lines = [restore] if STEP_RESTORE in steps else []
        lines += hooks if STEP_RESTART in steps else []
        if STEP_WAIT in steps and self.settings.wait_for_version:
            lines.append(f"wait until the service answers {version} {self.settings.ready_consecutive} times in a row")
        return lines

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        if STEP_RESTORE in steps:
            if expected_state is not None and self.work.state_token() != expected_state:
                raise Conflict(f"{self.work.repo} changed after preflight (HEAD or files); nothing was restored")
            self.work.restore(version, journal, STEP_RESTORE)
        if STEP_RESTART in steps:
            self.work.run_hooks(version, journal, STEP_RESTART)

    def wait_ready(self, version: str, journal: Journal) -> None:
        if not self.settings.wait_for_version:
            with journal.step(STEP_WAIT, note="not waited: wait_for_version = false"):
                return
        wait_for_version(
            self.context,
            version,
            journal,
            timeout=self.settings.ready_timeout,
            consecutive=self.settings.ready_consecutive,
        )

    def way_back(self, version: str) -> str | None:
        sha = self.work.resolve_tag(self.work.tag_for(version))
        head = self.work.restored_from
        return self.work.way_back(head or sha or self.work.tag_for(version))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.work.describe()}
