"""The ``migration`` check: the database's schema revision, the one expected, critical tables.

In baseline it shows the live revision (nothing expected); in verify the revision must equal the
target's, and every listed critical table must exist. Connecting is bounded by ``timeout``.
"""

from __future__ import annotations

import time

from ..rollback.results import CheckResult
from ._common import format_ms, to_ms


def check_migration(
    url: str,
    *,
    timeout: float,
    expected: str | None = None,
    expected_problem: str | None = None,
    critical_tables: list[str] | tuple[str, ...] = (),
    version_table: str = "alembic_version",
    tool: str | None = "alembic",
    name: str = "migration",
) -> CheckResult:
    """Passed when the database answers, is at ``expected`` (when given) and has every critical table.

    ``expected_problem`` says why the expected revision is unknown where one is needed (verify):
    the result is then inconclusive, never passed. ``tool`` None: no revision is read.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from ..rollback.database import alembic_state, frameworks
    from ..rollback.database.alembic_state import MigrationError

    shown = alembic_state.shown_url(url)
    measured: dict[str, object] = {
        "url": shown,
        "tool": tool,
        "expected": expected,
        "critical_tables": list(critical_tables),
    }
    start = time.perf_counter()
    try:
        if tool == "alembic":
            revision: str | None = alembic_state.database_revision(url, timeout, version_table)
        elif tool in ("rails", "django"):
            revision = f"{len(frameworks.applied_migrations(tool, url, timeout))} applied"
        else:
            revision = None
        tables = alembic_state.table_names(url, timeout)
    except (MigrationError, SQLAlchemyError, OSError, ImportError) as exc:
        measured["elapsed_ms"] = to_ms(time.perf_counter() - start)
        return CheckResult(name, "failed", f"{shown}: {_without_password(str(exc), url)}", measured)
    took = time.perf_counter() - start
    missing = [table for table in critical_tables if table not in tables]
    measured.update({"revision": revision, "tables_missing": missing, "elapsed_ms": to_ms(took)})
    at = f"{shown} is at revision {revision or 'none'}" if tool else f"{shown} answered"
    problems = []
    if expected is not None and revision != expected:
        problems.append(f"expected {expected}")
    if missing:
        problems.append(f"critical table(s) missing: {', '.join(missing)}")
    if problems:
        return CheckResult(name, "failed", f"{at}; {'; '.join(problems)}", measured)
    tables_ok = f"; {len(critical_tables)} critical table(s) present" if critical_tables else ""
    if expected_problem is not None:
        return CheckResult(name, "inconclusive", f"{at}{tables_ok}, but {expected_problem}", measured)
    matched = ", as expected" if expected is not None else ""
    return CheckResult(name, "passed", f"{at}{matched}{tables_ok} (read in {format_ms(took)})", measured)


def _without_password(text: str, url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text
