"""The database check: can we connect and run ``SELECT 1``?"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..rollback.results import CheckResult
from ..rollback.urls import SECRET_QUERY, redact_url
from ._common import format_ms, to_ms

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

_POSTGRES_DRIVERS = {"psycopg2", "psycopg"}
_SECRET_WORDS = ("pass", "secret", "token")


class _Refused(Exception):
    """The check cannot even try to connect; the message says why."""


def check_database(url: str, *, timeout: float, name: str = "database") -> CheckResult:
    """Passed when a fresh connection to ``url`` answers ``SELECT 1``.

    The password never appears in the result. For SQLite the database file must exist
    (it is opened read-write, never created), and its header must be readable.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        measured = {"url": redact_url(url), "dialect": None, "elapsed_ms": 0.0}
        return CheckResult(name, "failed", f"not a database URL: {redact_url(url)}", measured)
    shown = _shown(parsed)
    start = time.perf_counter()
    problem = _problem_selecting_one(parsed, timeout)
    took = time.perf_counter() - start
    measured = {"url": shown, "dialect": parsed.get_backend_name(), "elapsed_ms": to_ms(took)}
    if problem is not None:
        return CheckResult(name, "failed", f"{shown}: {problem}", measured)
    summary = f"SELECT 1 on {shown} answered in {format_ms(took)}"
    return CheckResult(name, "passed", summary, measured)


def _problem_selecting_one(parsed: URL, timeout: float) -> str | None:
    """None when ``SELECT 1`` worked, else why it did not."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        _select_one(parsed, timeout)
    except _Refused as exc:
        return str(exc)
    except (SQLAlchemyError, ImportError, OSError, ValueError) as exc:
        return _reason(exc, _secrets(parsed))
    return None


def _secrets(parsed: URL) -> list[str]:
    """The password and any secret-looking query values (``?password=...``)."""
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if any(word in key.lower() for word in _SECRET_WORDS):
            found.extend([value] if isinstance(value, str) else value)
    return [secret for secret in found if secret]


def _shown(parsed: URL) -> str:
    """The URL as the result shows it: password and secret query values as ``***``."""
    return SECRET_QUERY.sub(r"\1***", parsed.render_as_string(hide_password=True))


def _select_one(parsed: URL, timeout: float) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    backend = parsed.get_backend_name()
    target = _sqlite_read_write(parsed) if backend == "sqlite" else parsed
    engine = create_engine(target, poolclass=NullPool, connect_args=_connect_args(parsed, timeout))
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1")).scalar_one()
            if backend == "sqlite":
                # SELECT 1 never reads the file; this reads its header and schema.
                connection.execute(text("SELECT count(*) FROM sqlite_master")).scalar_one()
    finally:
        engine.dispose()


def _connect_args(parsed: URL, timeout: float) -> dict[str, Any]:
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"timeout": timeout}
    if backend == "postgresql" and parsed.get_driver_name() in _POSTGRES_DRIVERS:
        return {"connect_timeout": max(1, int(timeout))}
    return {}


def _sqlite_read_write(parsed: URL) -> URL:
    """The same database opened with ``mode=rw``, so that SQLite never creates the file."""
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return parsed
    if not os.path.exists(database):
        raise _Refused(f"database file {os.path.abspath(database)} does not exist")
    query = {**parsed.query, "mode": "rw", "uri": "true"}
    return parsed.set(database="file:" + quote(os.path.abspath(database)), query=query)


def _reason(exc: BaseException, secrets: list[str]) -> str:
    """One line saying why the connection failed, without SQLAlchemy's SQL and links."""
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    if isinstance(exc, NoSuchModuleError):
        text = f"unknown database dialect ({exc})"
    elif isinstance(exc, ImportError):
        text = f"database driver not installed ({exc})"
    elif isinstance(exc, DBAPIError) and exc.orig is not None:
        text = str(exc.orig) or type(exc.orig).__name__
    else:
        text = str(exc) or type(exc).__name__
    line = " ".join(text.split())
    for secret in secrets:
        line = line.replace(secret, "***")
    return line
