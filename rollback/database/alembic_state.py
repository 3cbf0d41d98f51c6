"""Alembic, read and driven through its own API (ScriptDirectory, MigrationContext, Operations).

The harness runs the revision scripts against the configured database itself, not through the
project's ``env.py``: an ``env.py`` may read its URL from somewhere else (an environment variable
naming another database), and the harness must act on the database it checked and backed up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import HarnessError
from .lint import LintIssue, lint_downgrade

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection


class MigrationError(HarnessError):
    """Alembic could not read or run the migrations; the message says what and where."""


@contextmanager
def connect(url: str, timeout: float, *, lock_timeout: float | None = None) -> Iterator[Connection]:
    """A fresh connection (no pool) whose connect waits at most ``timeout`` seconds.

    ``lock_timeout``: on PostgreSQL, a statement waiting longer for a lock (a DDL statement behind
    the app's open transaction) fails instead of waiting for ever.
    """
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        args = {"timeout": timeout}
    elif parsed.get_backend_name() == "postgresql":
        args = {"connect_timeout": max(1, int(timeout))}
        if lock_timeout is not None:
            args["options"] = f"-c lock_timeout={max(1, int(lock_timeout * 1000))}"
    engine = create_engine(parsed, poolclass=NullPool, connect_args=args)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def shown_url(url: str) -> str:
    """The URL as every message shows it: no password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the configured database"


def database_revision(url: str, timeout: float, version_table: str = "alembic_version") -> str | None:
    """The revision the database is at (None: no version table, or an empty one).

    Raises MigrationError when it cannot be read, or when the database carries several heads.
    """
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with connect(url, timeout) as connection:
            heads = MigrationContext.configure(connection, opts={"version_table": version_table}).get_current_heads()
    except (SQLAlchemyError, OSError) as exc:
        raise MigrationError(f"cannot read {version_table} of {shown_url(url)}: {_one_line(exc)}") from None
    if len(heads) > 1:
        raise MigrationError(f"{shown_url(url)} is at several heads ({', '.join(heads)}): branched history")
    return heads[0] if heads else None


def table_names(url: str, timeout: float) -> list[str]:
    from sqlalchemy import inspect

    with connect(url, timeout) as connection:
        return sorted(inspect(connection).get_table_names())


def scripts(location: Path) -> ScriptDirectory:
    """The Alembic scripts in ``location`` (the folder holding ``versions/``)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if not (location / "versions").is_dir():
        raise MigrationError(f"{location} holds no Alembic versions/ folder")
    try:
        directory = ScriptDirectory(str(location))
        directory.get_heads()  # reads every script: a broken one fails here, in preflight
    except CommandError as exc:
        raise MigrationError(f"cannot read the Alembic scripts in {location}: {exc}") from None
    except Exception as exc:  # a script that does not import
        raise MigrationError(f"cannot read the Alembic scripts in {location}: {type(exc).__name__}: {exc}") from None
    return directory


def head_revision(directory: ScriptDirectory) -> str | None:
    heads = directory.get_heads()
    if len(heads) > 1:
        raise MigrationError(f"{directory.dir} has several heads ({', '.join(heads)}): branched history")
    return heads[0] if heads else None


@dataclass(frozen=True)
class Step:
    """One revision of a downgrade: from ``revision`` down to ``down_to``."""

    revision: str
    down_to: str | None
    path: str
    message: str


def downgrade_path(directory: ScriptDirectory, current: str, target: str | None) -> list[Step]:
    """The revisions to undo, newest first, to go from ``current`` down to ``target``.

    Raises MigrationError when ``target`` is not below ``current`` in these scripts.
    """
    from alembic.util import CommandError

    try:
        found = list(directory.iterate_revisions(current, target or "base"))
    except CommandError as exc:
        raise MigrationError(f"no downgrade path from {current} to {target or 'base'}: {exc}") from None
    path = []
    for script in found:
        if target is not None and script.revision == target:
            continue
        down = script.down_revision
        if isinstance(down, (tuple, list)):
            raise MigrationError(f"revision {script.revision} merges {', '.join(down)}: branched history")
        path.append(Step(script.revision, down, str(script.path), script.doc or ""))
    return path


def lint_path(steps: list[Step]) -> list[LintIssue]:
    issues = []
    for step in steps:
        issues.extend(lint_downgrade(Path(step.path), step.revision))
    return issues


def downgrade(
    url: str,
    directory: ScriptDirectory,
    steps: list[Step],
    *,
    timeout: float,
    version_table: str,
    on_step: Callable[[Step], Any],
) -> None:
    """Run each step's ``downgrade()`` in turn, the version table moved after each.

    ``on_step(step)`` returns a context manager wrapping the step (the journal's). A statement that
    waits more than ``timeout`` for a lock fails (PostgreSQL's lock_timeout; SQLite's busy timeout). Each revision
    is one transaction where the database has transactional DDL (PostgreSQL); on SQLite a
    revision that fails half way may leave part of its changes.
    """
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    with connect(url, timeout, lock_timeout=timeout) as connection:
        for step in steps:
            script = directory.get_revision(step.revision)
            assert script is not None
            with on_step(step):
                with connection.begin():
                    context = MigrationContext.configure(connection, opts={"version_table": version_table})
                    with Operations.context(context):
                        script.module.downgrade()
                    context.stamp(directory, step.down_to or "base")


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    return " ".join(text.split()) or type(exc).__name__
