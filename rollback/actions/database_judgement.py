"""The ``database-migrations`` preflight finding: whether the schema change between the live
version and the target lets the rollback go ahead, and with what (docs/database.md).

Kept apart from the action: the judgement reads only the assessment and three switches (a
downgrade asked for, a backward-compatible schema, data loss allowed), never the database.
"""

from __future__ import annotations

from ..database.lint import CANNOT_TELL as LINT_CANNOT_TELL
from ..database.lint import DESTRUCTIVE, IRREVERSIBLE
from ..database.migrations import (
    CANNOT_TELL,
    DESTRUCTIVE_DOWNGRADE,
    IRREVERSIBLE_DOWNGRADE,
    NONE,
    UNREADABLE_DOWNGRADE,
    Assessment,
)
from ..targets.base import Finding

MIGRATIONS_FINDING = "database-migrations"
_TOOL_HINTS = {
    "rails": "Rails downgrades with `bin/rails db:migrate VERSION=<the target's last migration>`",
    "django": "Django downgrades with `python manage.py migrate <app> <the target's last migration>`",
}


def judge_migrations(
    found: Assessment, *, downgrade_asked: bool, backward_compatible: bool, allow_data_loss: bool
) -> Finding:
    """The migrations finding: passes when there is nothing to undo, the app may go back alone, or
    the downgrade asked for can run (losing data only with ``allow_data_loss``)."""
    where = f"{found.from_version} -> {found.to_version}"
    if found.state == NONE:
        return Finding(
            MIGRATIONS_FINDING,
            True,
            f"no migrations between {where}: the database is at {found.database_revision}, "
            f"{found.to_version} expects {found.target_revision}",
        )
    app_alone = (
        f"the app goes back alone and the schema stays at {found.database_revision} "
        "(database.backward_compatible = true)"
    )
    if found.state == CANNOT_TELL:
        text = f"cannot tell whether migrations lie between {where}: {found.why}"
        if not downgrade_asked and backward_compatible:
            return Finding(MIGRATIONS_FINDING, True, f"{text}; {app_alone}")
        return Finding(MIGRATIONS_FINDING, False, f"{text}. Fix the migrations config (docs/database.md)")
    between = (
        f"migrations between {where}: the database is at {found.database_revision}, {found.to_version} expects "
        f"{found.target_revision or found.why}"
    )
    if found.steps:
        between += f" ({len(found.steps)} revision(s) to undo: {found.revisions()})"
    if not downgrade_asked:
        if backward_compatible:
            return Finding(MIGRATIONS_FINDING, True, f"{between}; {app_alone}")
        return Finding(
            MIGRATIONS_FINDING,
            False,
            f"{between}; no database rollback was asked for and the config does not say the schema is backward "
            f"compatible. Recommended: a forward fix. Otherwise pass --rollback-db to downgrade the schema too, "
            f"or set database.backward_compatible = true if {found.to_version} runs on the newer schema",
        )
    return _judge_downgrade(found, between, allow_data_loss=allow_data_loss)


def _judge_downgrade(found: Assessment, between: str, *, allow_data_loss: bool) -> Finding:
    """A downgrade was asked for: refused when it cannot run, or when it may lose data unallowed."""
    if found.state == IRREVERSIBLE_DOWNGRADE:
        return _irreversible(found, between)
    if found.state == DESTRUCTIVE_DOWNGRADE:
        return _destructive(found, between, allow_data_loss=allow_data_loss)
    if found.state == UNREADABLE_DOWNGRADE:
        return _unreadable(found, between, allow_data_loss=allow_data_loss)
    return Finding(MIGRATIONS_FINDING, True, f"reversible downgrade needed: {between}")


def _irreversible(found: Assessment, between: str) -> Finding:
    """Always refused: the listing of what cannot be undone, or the tool's own way for non-Alembic."""
    listed = found.listing(IRREVERSIBLE) or f" {found.why}"
    how = (
        listed
        if found.tool == "alembic"
        else f"\n  the harness downgrades Alembic migrations only; {_TOOL_HINTS[found.tool]}"
    )
    return Finding(
        MIGRATIONS_FINDING,
        False,
        f"irreversible downgrade: {between}; it cannot be run:{how}\nRecommended: a forward fix, "
        "or restore a backup by hand",
    )


def _destructive(found: Assessment, between: str, *, allow_data_loss: bool) -> Finding:
    """Data would be lost: refused unless allowed, and the listing says what."""
    listed = found.listing(DESTRUCTIVE)
    unread = found.listing(LINT_CANNOT_TELL)
    if unread:
        listed += f"\nand operations whose effect the lint cannot tell (they may lose data too):{unread}"
    if not allow_data_loss:
        return Finding(
            MIGRATIONS_FINDING,
            False,
            f"destructive downgrade needed: {between}; data would be lost:{listed}\nRefused without "
            "--allow-data-loss (a verified backup is taken first); or fix forward",
        )
    return Finding(
        MIGRATIONS_FINDING,
        True,
        f"destructive downgrade needed, allowed by --allow-data-loss: {between}; data that will be lost:{listed}",
    )


def _unreadable(found: Assessment, between: str, *, allow_data_loss: bool) -> Finding:
    """The lint cannot tell what some operations do: treated as a destructive downgrade would be."""
    listed = found.listing(LINT_CANNOT_TELL)
    if not allow_data_loss:
        return Finding(
            MIGRATIONS_FINDING,
            False,
            f"cannot tell whether the downgrade loses data: {between}; the lint (which reads the scripts, "
            f"never runs them) cannot tell what these do:{listed}\nRefused without "
            "--rollback-allow-data-loss (--allow-data-loss; a verified backup is taken first), as a "
            'destructive downgrade would be; or write the operations out (op.drop_table("name")), '
            "or fix forward",
        )
    return Finding(
        MIGRATIONS_FINDING,
        True,
        f"cannot tell whether the downgrade loses data, allowed by --rollback-allow-data-loss: {between}; "
        f"operations that may lose data:{listed}",
    )
