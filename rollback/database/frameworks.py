"""Rails and Django migration state, read only: what the database has applied, and what a
release's migration files expect. The harness never downgrades these (their own tools do:
``bin/rails db:migrate VERSION=...``, ``manage.py migrate APP NAME``); it reports the state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .alembic_state import MigrationError, connect, shown_url

_RAILS_FILE = re.compile(r"^(\d{3,})_\w+\.rb$")
_DJANGO_FILE = re.compile(r"^(\d{4}_\w+)\.py$")


@dataclass(frozen=True)
class AppliedState:
    """Migrations the database has applied that a release does not have, and the reverse."""

    applied: int
    newer_than_release: list[str]
    missing_from_database: list[str]

    @property
    def differs(self) -> bool:
        return bool(self.newer_than_release or self.missing_from_database)


def applied_migrations(tool: str, url: str, timeout: float) -> set[str]:
    """``{"20240101120000"}`` for Rails, ``{"shop.0002_coupons"}`` for Django."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    query = "SELECT version FROM schema_migrations" if tool == "rails" else "SELECT app, name FROM django_migrations"
    try:
        with connect(url, timeout) as connection:
            rows = connection.execute(text(query)).all()
    except (SQLAlchemyError, OSError) as exc:
        table = "schema_migrations" if tool == "rails" else "django_migrations"
        orig = getattr(exc, "orig", None) or exc
        raise MigrationError(f"cannot read {table} of {shown_url(url)}: {' '.join(str(orig).split())}") from None
    if tool == "rails":
        return {str(row[0]) for row in rows}
    return {f"{row[0]}.{row[1]}" for row in rows}


def release_migrations(tool: str, folder: Path) -> set[str]:
    """The migrations a release ships: ``db/migrate/<version>_*.rb`` or ``<app>/migrations/0001_*.py``."""
    if not folder.is_dir():
        raise MigrationError(f"{folder} does not exist")
    found: set[str] = set()
    if tool == "rails":
        for path in folder.rglob("*.rb"):
            match = _RAILS_FILE.match(path.name)
            if match:
                found.add(match.group(1))
        return found
    for path in folder.rglob("migrations/*.py"):
        match = _DJANGO_FILE.match(path.name)
        if match:
            found.add(f"{path.parent.parent.name}.{match.group(1)}")
    return found


def compare(tool: str, url: str, timeout: float, release_folder: Path) -> AppliedState:
    applied = applied_migrations(tool, url, timeout)
    shipped = release_migrations(tool, release_folder)
    return AppliedState(len(applied), sorted(applied - shipped), sorted(shipped - applied))
