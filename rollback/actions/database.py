"""The database around a rollback: migrations judged in preflight, a verified backup, and the
downgrade through Alembic's API, journaled revision by revision (docs/database.md).

Order: the app first, then the backup, then the downgrade (all of the database's work in
``after()``, once the target app serves). Migrations are almost always additive (a new column, a
new table), and the old app runs on the newer schema, while the new app does not run on the older
one: app first keeps the window in which code and schema disagree on the safe side, and a failed
platform step leaves the schema untouched. The backup is taken right before the downgrade, after
the bad version stopped, so it holds everything that version wrote (a backup taken before the
platform step would miss what it wrote during the restart); a failed backup stops the run before
the downgrade, with the app already back on the backward-compatible schema.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..database import alembic_state
from ..database.alembic_state import MigrationError, Step
from ..database.migrations import (
    DESTRUCTIVE_DOWNGRADE,
    NONE,
    REVERSIBLE,
    UNREADABLE_DOWNGRADE,
    Assessment,
    MigrationSource,
)
from ..errors import HarnessError, RollbackFailed
from ..targets.base import Finding, TargetContext
from .base import Action
from .database_judgement import MIGRATIONS_FINDING, judge_migrations

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec
    from ..database.backup import Backup
    from ..journal import Journal

# Run options (TargetContext.options) this action reads.
OPTION_ROLLBACK_DB = "rollback_db"  # --rollback-db
OPTION_ALLOW_DATA_LOSS = "allow_data_loss"  # --allow-data-loss
BACKUP_FINDING = "database-backup"


class DatabaseAction(Action):
    name: ClassVar[str] = "database"
    order: ClassVar[int] = 40

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        super().__init__(config, spec, context)
        self.source = MigrationSource(config, spec)
        assert config.settings.database is not None
        self.database = config.settings.database
        # Filled by preflight: True / False, or None when it cannot tell (the decision matrix reads it).
        self.migrations_present: bool | None = None
        self.assessment: Assessment | None = None
        self.backup: Backup | None = None
        # Where the downgrade got to, for undo() and the failure message.
        self.reached: str | None = None

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        database = config.settings.database
        return database is not None and (database.migrations is not None or database.rollback)

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return (MIGRATIONS_FINDING, BACKUP_FINDING)

    # -- options -------------------------------------------------------------------------------

    @property
    def downgrade_asked(self) -> bool:
        return bool(self._options().get(OPTION_ROLLBACK_DB)) or self.database.rollback

    @property
    def allow_data_loss(self) -> bool:
        return bool(self._options().get(OPTION_ALLOW_DATA_LOSS))

    def _options(self) -> dict[str, Any]:
        return dict(getattr(self.context, "options", None) or {})

    @property
    def will_downgrade(self) -> bool:
        """Preflight passed with a downgrade to do."""
        found = self.assessment
        if found is None or not self.downgrade_asked:
            return False
        may_lose_data = found.state in (DESTRUCTIVE_DOWNGRADE, UNREADABLE_DOWNGRADE)
        return found.state == REVERSIBLE or (may_lose_data and self.allow_data_loss)

    def pending(self) -> bool:
        found = self.assessment
        return self.will_downgrade and found is not None and found.database_revision != found.target_revision

    # -- preflight -----------------------------------------------------------------------------

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        found = self.source.assess(from_version, to_version)
        self.assessment = found
        self.migrations_present = found.migrations_present
        migrations = judge_migrations(
            found,
            downgrade_asked=self.downgrade_asked,
            backward_compatible=self.database.backward_compatible,
            allow_data_loss=self.allow_data_loss,
        )
        return [migrations, self._backup_finding()]

    def _backup_finding(self) -> Finding:
        if not self.will_downgrade:
            return Finding(BACKUP_FINDING, True, "no downgrade planned: no backup needed")
        from ..database.backup import backup_findings

        url, password = self._url_and_password()
        found = backup_findings(url, self._backup_dir(), password=password)
        bad = [f for f in found if not f.ok]
        return Finding(BACKUP_FINDING, not bad, "; ".join(f.message for f in (bad or found)) or "backup possible")

    # -- plan ----------------------------------------------------------------------------------

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        found = self.assessment
        if found is None or found.state == NONE:
            return [], []
        if not self.will_downgrade:
            return [f"leave the database schema at {found.database_revision} (backward compatible)"], []
        lost = "; ".join(issue.describe() for issue in found.issues)
        loss = f" (data loss allowed by --allow-data-loss: {lost})" if found.issues else ""
        after = [
            f"back up the database to {self._backup_dir()}/pre-rollback-<time> and verify the backup",
            f"downgrade the database {found.database_revision} -> {found.target_revision} "
            f"({len(found.steps)} revision(s): {', '.join(step.revision for step in found.steps)}){loss}",
        ]
        return [], after

    # -- rollback ------------------------------------------------------------------------------

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        found = self.assessment
        if found is None:
            return
        journal.record(
            "database:assessment",
            "recorded",
            allow_data_loss=self.allow_data_loss,
            downgrade_asked=self.downgrade_asked,
            backward_compatible=self.database.backward_compatible,
            **found.to_dict(),
        )

    def _back_up(self, current: str, journal: Journal) -> None:
        """A verified backup of the database at revision ``current``, right before the downgrade."""
        from ..database.backup import take_backup

        url, password = self._url_and_password()
        self.context.progress(f"database: backing up {alembic_state.shown_url(url)} before the downgrade")
        try:
            with journal.step("database:backup", revision=current) as step:
                self.backup = take_backup(
                    url,
                    self._backup_dir(),
                    password=password,
                    timeout=self._backup_timeout(),
                    progress=self.context.progress,
                )
                step.detail.update(self.backup.to_dict())
        except HarnessError as exc:
            raise RollbackFailed(
                f"{exc}; so the schema was not downgraded: it stays at revision {current}, which the app "
                "now running was rolled back onto (run again to retry the backup and the downgrade)"
            ) from None
        self.context.progress(f"database: backup {self.backup.path} verified ({self.backup.verification})")
        if self.backup.note is not None:
            self.context.progress(f"database: backup: {self.backup.note}")

    def after(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        found = self.assessment
        if found is None or not self.will_downgrade:
            return
        target = found.target_revision
        current = self.source.database_revision()
        self.reached = current
        if current == target:
            reason = f"the database is already at {target}"
            journal.record("database:backup", "skipped", reason=reason)
            journal.record("database:downgrade", "skipped", reason=reason)
            return
        if current is None:
            raise RollbackFailed(f"the database has no revision now; it was at {found.database_revision}")
        self._back_up(current, journal)
        location = found.scripts_location
        assert location is not None
        directory = alembic_state.scripts(location)
        steps = alembic_state.downgrade_path(directory, current, target)
        try:
            alembic_state.downgrade(
                self.source.url,
                directory,
                steps,
                timeout=self.database.timeout,
                version_table=self.source.version_table,
                on_step=lambda step: self._journaled(journal, step),
            )
        except Exception as exc:
            raise RollbackFailed(self._half_way(exc)) from None
        self.reached = target

    @contextmanager
    def _journaled(self, journal: Journal, step: Step) -> Iterator[None]:
        self.context.progress(f"database: downgrading {step.revision} -> {step.down_to or 'base'}")
        with journal.step("database:downgrade", script=step.path, **{"from": step.revision, "to": step.down_to}):
            yield
        self.reached = step.down_to

    def _half_way(self, exc: BaseException) -> str:
        error = str(exc) if isinstance(exc, HarnessError) else _one_line(exc)
        try:
            now: str | None = self.source.database_revision()
        except MigrationError as read_error:
            now = f"unknown ({read_error})"
        self.reached = now
        return f"database downgrade failed: {error}; the database is at revision {now}; " + self.restore_words()

    def restore_words(self) -> str:
        if self.backup is None:
            return "no backup was taken by this run"
        return f"to restore the backup taken before: `{shlex.join(self.backup.restore_command)}`"

    def undo(self, journal: Journal) -> None:
        """The schema is never put back automatically: a restore overwrites what was written since."""
        if self.backup is None:
            return
        found = self.assessment
        before = found.database_revision if found is not None else None
        if self.reached in (None, before):
            journal.record("database:undo", "skipped", reason="the database was not changed by this run")
            return
        journal.record(
            "database:undo",
            "skipped",
            reason=f"the database is left at revision {self.reached}; restoring is a decision for a person",
            restore_command=self.backup.restore_command,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "action": self.name,
            "url": alembic_state.shown_url(self.source.url),
            "tool": self.source.tool,
            "downgrade_asked": self.downgrade_asked,
            "allow_data_loss": self.allow_data_loss,
            "backward_compatible": self.database.backward_compatible,
            "critical_tables": list(self.database.critical_tables),
        }

    # -- helpers -------------------------------------------------------------------------------

    def _backup_dir(self) -> Path:
        return self.config.base_dir / self.database.backup_dir

    def _backup_timeout(self) -> float:
        return max(300.0, self.database.timeout)

    def _url_and_password(self) -> tuple[str, str | None]:
        """The URL without its password, and the password (the backup tools get it apart)."""
        from sqlalchemy.engine import make_url

        parsed = make_url(self.source.url)
        password = parsed.password
        bare = parsed.set(password=None).render_as_string(hide_password=False)
        return bare, str(password) if password is not None else None


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return f"{type(orig or exc).__name__}: {' '.join(text.split())}"
