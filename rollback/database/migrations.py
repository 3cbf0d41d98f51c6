"""Migration awareness: which revision the database is at, which one each release expects, and
what lies between them (judged by reading the downgrade scripts, never by running them).

Used by the database action's preflight and by the ``migration`` check (checks/migrations.py).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import alembic_state
from .alembic_state import MigrationError, Step
from .lint import CANNOT_TELL as LINT_CANNOT_TELL
from .lint import DESTRUCTIVE, IRREVERSIBLE, LintIssue

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from ..config import DatabaseConfig, HarnessConfig, MigrationsConfig, TargetSpec

# What preflight says about the schema between the live version and the target.
NONE = "no-migrations"
REVERSIBLE = "reversible"
DESTRUCTIVE_DOWNGRADE = "destructive"
IRREVERSIBLE_DOWNGRADE = "irreversible"
# The lint cannot read what a downgrade does (getattr(op, ...), a helper, SQL built at run time):
# it may lose data, so it needs the same permission as a destructive one.
UNREADABLE_DOWNGRADE = "unreadable"
CANNOT_TELL = "cannot-tell"


@dataclass
class Assessment:
    """The schema between two versions, as preflight found it."""

    state: str
    from_version: str | None
    to_version: str
    tool: str
    database_revision: str | None = None
    target_revision: str | None = None
    steps: list[Step] = field(default_factory=list)
    issues: list[LintIssue] = field(default_factory=list)
    why: str = ""  # for CANNOT_TELL: the reason
    # Where the scripts that downgrade live (the live release's), for the downgrade itself.
    scripts_location: Path | None = None

    @property
    def migrations_present(self) -> bool | None:
        if self.state == CANNOT_TELL:
            return None
        return self.state != NONE

    def revisions(self) -> str:
        return ", ".join(f"{step.revision} ({step.message})" if step.message else step.revision for step in self.steps)

    def listing(self, *kinds: str) -> str:
        """The issues of ``kinds`` (all when none given), one per line (file:line (revision): what)."""
        return "".join(f"\n  - {issue.describe()}" for issue in self.issues if not kinds or issue.kind in kinds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "tool": self.tool,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "database_revision": self.database_revision,
            "target_revision": self.target_revision,
            "migrations_present": self.migrations_present,
            "downgrade_steps": [{"from": s.revision, "to": s.down_to, "script": s.path} for s in self.steps],
            "issues": [issue.to_dict() for issue in self.issues],
            "why": self.why,
        }


class MigrationSource:
    """Where a config says the migrations are, and what they say."""

    def __init__(self, config: HarnessConfig, spec: TargetSpec | None) -> None:
        assert config.settings.database is not None
        self.config = config
        self.spec = spec
        self.database: DatabaseConfig = config.settings.database
        self.settings: MigrationsConfig | None = self.database.migrations
        url = config.database_url()
        assert url is not None
        self.url = url
        self._git_checkouts: dict[str, Path] = {}

    @property
    def tool(self) -> str:
        return self.settings.tool if self.settings is not None else "alembic"

    @property
    def version_table(self) -> str:
        return self.settings.version_table if self.settings is not None else "alembic_version"

    def release_folder(self, version: str) -> Path:
        """``releases/<version>`` of a symlink target."""
        releases = getattr(self.spec.settings, "releases_dir", None) if self.spec is not None else None
        if releases is None:
            kind = self.spec.kind if self.spec is not None else "none chosen"
            raise MigrationError(
                f"database.migrations.release_path needs release folders (a symlink target; this one is {kind}): "
                "use script_location and a revisions table instead"
            )
        return self.config.base_dir / Path(releases) / version

    def location(self, version: str | None) -> Path:
        """The folder of Alembic scripts that ``version`` ships (or the one shared folder)."""
        settings = self.settings
        if settings is None:
            raise MigrationError(
                "no [database.migrations] table: the harness cannot see which revision a release expects"
            )
        if settings.release_path is not None or settings.git_repo is not None:
            if version is None:
                raise MigrationError("the live version is not known, so neither are its migration scripts")
            if settings.git_repo is not None:
                return self._from_git(settings.git_repo, settings.git_path, version)
            assert settings.release_path is not None
            return self.release_folder(version) / settings.release_path
        if settings.script_location is not None:
            return self.config.base_dir / settings.script_location
        raise MigrationError("database.migrations names neither release_path nor script_location")

    def _from_git(self, repo: str, path: str, version: str) -> Path:
        """``path`` as tag ``version`` of the migrations repository has it, extracted once per run."""
        folder = self._git_checkouts.get(version)
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="rollback-migrations-"))
            weakref.finalize(self, shutil.rmtree, folder, True)
            _git_extract(self.config.base_dir / repo, version, path, folder, self.database.timeout)
            self._git_checkouts[version] = folder
        return folder / path

    def scripts(self, version: str | None) -> ScriptDirectory:
        return alembic_state.scripts(self.location(version))

    def expected_revision(self, version: str) -> str | None:
        """The revision ``version`` expects: the revisions table's, else its release's head."""
        settings = self.settings
        if settings is not None:
            for name, revision in settings.revisions.items():
                if name == version or name.lstrip("v") == version.lstrip("v"):
                    return revision
        if settings is not None and settings.release_path is None and settings.git_repo is None:
            raise MigrationError(
                f"{version} is not in database.migrations.revisions, and one shared script folder cannot say "
                f'which revision {version} expects: add {version} = "<revision>" there'
            )
        return alembic_state.head_revision(self.scripts(version))

    def database_revision(self) -> str | None:
        return alembic_state.database_revision(self.url, self.database.timeout, self.version_table)

    def assess(self, from_version: str | None, to_version: str) -> Assessment:
        """What lies between the database's revision and ``to_version``'s. Changes nothing."""
        found = Assessment(CANNOT_TELL, from_version, to_version, self.tool)
        try:
            if self.tool != "alembic":
                return self._assess_framework(found)
            found.database_revision = self.database_revision()
            found.target_revision = self.expected_revision(to_version)
            if found.database_revision == found.target_revision:
                found.state = NONE
                return found
            if found.database_revision is None:
                found.why = (
                    f"the database has no {self.version_table} revision, the target expects {found.target_revision}"
                )
                return found
            live = self.location(from_version)
            found.scripts_location = live
            directory = alembic_state.scripts(live)
            if directory.get_revision(found.database_revision) is None:
                raise MigrationError(f"revision {found.database_revision} is not among the scripts in {live}")
            if found.target_revision is not None and directory.get_revision(found.target_revision) is None:
                raise MigrationError(
                    f"the target's revision {found.target_revision} is not among the scripts in {live}: "
                    "the live release cannot downgrade to it"
                )
            found.steps = alembic_state.downgrade_path(directory, found.database_revision, found.target_revision)
        except MigrationError as exc:
            found.state = CANNOT_TELL
            found.why = str(exc)
            return found
        except Exception as exc:  # Alembic's own errors for a revision it cannot resolve, and the like
            found.state = CANNOT_TELL
            found.why = f"{type(exc).__name__}: {exc}"
            return found
        if not found.steps:
            found.why = (
                f"the database is at {found.database_revision}, which is below the target's {found.target_revision}"
            )
            return found
        found.issues = alembic_state.lint_path(found.steps)
        kinds = {issue.kind for issue in found.issues}
        found.state = (
            IRREVERSIBLE_DOWNGRADE
            if IRREVERSIBLE in kinds
            else DESTRUCTIVE_DOWNGRADE
            if DESTRUCTIVE in kinds
            else UNREADABLE_DOWNGRADE
            if LINT_CANNOT_TELL in kinds
            else REVERSIBLE
        )
        return found

    def _assess_framework(self, found: Assessment) -> Assessment:
        from . import frameworks

        assert self.settings is not None
        folder = self.location_for_framework(found.to_version)
        state = frameworks.compare(self.tool, self.url, self.database.timeout, folder)
        found.database_revision = f"{state.applied} applied"
        if not state.differs:
            found.state = NONE
            return found
        # Present, but the harness does not downgrade them: reported, judged like an irreversible path.
        found.state = IRREVERSIBLE_DOWNGRADE
        found.why = (
            f"applied but not in {found.to_version}: {', '.join(state.newer_than_release) or 'none'}; "
            f"in {found.to_version} but not applied: {', '.join(state.missing_from_database) or 'none'}"
        )
        return found

    def location_for_framework(self, version: str) -> Path:
        assert self.settings is not None
        if self.settings.release_path is not None:
            return self.release_folder(version) / self.settings.release_path
        raise MigrationError(
            f"database.migrations.tool = {self.tool!r} needs release_path (the migrations each release ships)"
        )


def _git_extract(repo: Path, tag: str, path: str, into: Path, timeout: float) -> None:
    """``git archive`` of ``path`` at ``refs/tags/<tag>``, unpacked into ``into`` (argument lists only)."""
    command = ["git", "-C", str(repo), "archive", "--format=tar", f"refs/tags/{tag}", "--", path]
    try:
        done = subprocess.run(command, capture_output=True, timeout=max(30.0, timeout), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MigrationError(f"cannot read tag {tag} of {repo}: {exc}") from None
    if done.returncode != 0:
        error = " ".join(done.stderr.decode(errors="replace").split())
        raise MigrationError(f"tag {tag} of the migrations repository {repo} has no {path}: {error}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(into, filter="data")
        else:  # pragma: no cover - Python before 3.10.12 / 3.11.4; git archive writes plain files
            archive.extractall(into)
