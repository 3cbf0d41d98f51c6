"""A feature plugin: the database's options and its ``migration`` check (docs/database.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .specs import CheckSpec
from .state import MODE_GATE_VERIFY, HarnessRun

if TYPE_CHECKING:
    from ..rollback.results import CheckResult


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback")
    group.addoption(
        "--rollback-db",
        dest="rollback_db",
        action="store_true",
        help="Downgrade the database schema to the target's revision too, after a verified backup",
    )
    group.addoption(
        "--rollback-allow-data-loss",
        "--allow-data-loss",
        dest="rollback_allow_data_loss",
        action="store_true",
        help="Permit a database downgrade that drops tables, columns or data (recorded in the evidence)",
    )


def pytest_rollback_check_options(config: pytest.Config, mode: str | None) -> None:
    if mode is None:
        run_options(config, mode)  # a usage error when its options are given alone


def pytest_rollback_run_settings(config: pytest.Config, mode: str) -> dict[str, Any]:
    return {"options": run_options(config, mode)}


def pytest_rollback_check_specs(run: HarnessRun) -> list[CheckSpec]:
    """The ``migration`` check, right after the built-in ``database`` check."""
    database = run.config.settings.database
    if database is not None and (database.migrations is not None or database.critical_tables):
        return [CheckSpec("migration", migration_probe)]
    return []


def run_options(config: pytest.Config, mode: str | None) -> dict[str, Any]:
    """The options the database action reads; a usage error where they would do nothing."""
    given = {"--rollback-db": config.option.rollback_db, "--allow-data-loss": config.option.rollback_allow_data_loss}
    for flag, value in given.items():
        if value and mode is None:
            raise pytest.UsageError(f"{flag} needs --rollback-to VERSION: it applies to a rollback")
        if value and mode == MODE_GATE_VERIFY:
            raise pytest.UsageError(
                f"{flag} applies to a rollback; --rollback-gate verify changes nothing: drop {flag}"
            )
    return {
        "rollback_db": bool(config.option.rollback_db),
        "allow_data_loss": bool(config.option.rollback_allow_data_loss),
    }


def migration_probe(run: HarnessRun, phase: str) -> CheckResult:
    """The ``migration`` check: in verify, the revision the target expects (or the one kept)."""
    from ..checks.migrations import check_migration
    from ..rollback.database.migrations import MigrationSource

    database = run.config.settings.database
    assert database is not None
    source = MigrationSource(run.config, run.target_spec)
    expected, problem = (None, None) if phase != "verify" else _expected(run, source)
    return check_migration(
        source.url,
        timeout=database.timeout,
        expected=expected,
        expected_problem=problem,
        critical_tables=database.critical_tables,
        version_table=source.version_table,
        tool=source.tool if database.migrations is not None else None,
    )


def _expected(run: HarnessRun, source: Any) -> tuple[str | None, str | None]:
    """The revision verify expects, or why it is not known."""
    from ..rollback.database.alembic_state import MigrationError

    if source.settings is None or source.tool != "alembic":
        return None, None
    action = _database_action(run)
    if action is not None and action.assessment is not None and not action.will_downgrade:
        # The app went back alone (backward compatible): the schema was to stay as it was.
        return action.assessment.database_revision, None
    version = run.runbook.to_version if run.rolls_back and run.runbook is not None else run.verify_expects
    if version is None:
        return None, "the version to expect is not known, so neither is its revision"
    try:
        return source.expected_revision(version), None
    except MigrationError as exc:
        return None, f"the revision {version} expects is not known: {exc}"


def _database_action(run: HarnessRun) -> Any:
    if run.runbook is None:
        return None
    return next((action for action in run.runbook.actions if action.name == "database"), None)
