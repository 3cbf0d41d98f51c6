"""Rollbacks across schema migrations, end to end: the demo app under supervisord, a real database
(SQLite, and PostgreSQL 15) migrated by real Alembic scripts that each release ships."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

# Imported before any in-process pytester run, so that its sys.modules snapshot keeps one copy
# (a second import of the PostgreSQL dialect re-registers its functions, with a warning each).
import alembic.operations
import alembic.runtime.migration
import alembic.script  # noqa: F401
import pytest
import sqlalchemy.dialects.postgresql.psycopg  # noqa: F401
from alembic_projects import BASE, DESTRUCTIVE, FAILING, IRREVERSIBLE, REVERSIBLE, Revision, upgrade_to, write_project
from deployments import Deployment, read_evidence
from mounts import small_tmpfs
from sqlalchemy.engine import make_url

import rollback_harness.rollback.actions.database
import rollback_harness.rollback.database.backup  # noqa: F401
from rollback_harness.rollback.database.alembic_state import database_revision, table_names

pytestmark = pytest.mark.integration

OLD = [BASE]


def migrate(demo: Deployment, url: str, new: list[Revision], **database: Any) -> None:
    """Each release ships its migrations (v1.3.0 ``new``, the others only BASE); ``url`` is at v1.3.0's head."""
    releases = demo.layout.releases_dir
    for release in sorted(p.name for p in releases.iterdir()):
        write_project(releases / release / "migrations", new if release == "v1.3.0" else OLD)
    upgrade_to(url, releases / "v1.3.0" / "migrations", new[-1].id)
    settings = {"url": url, "timeout": "5s", "critical_tables": ["orders"], **database}
    settings.setdefault("migrations", {"release_path": "migrations"})
    demo.update_config(database=settings)


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "-rA", *args)
    )


def timeline(pytester: pytest.Pytester) -> list[tuple[str, str]]:
    evidence = read_evidence(pytester.path / "reports")
    return [(e["what"], e["status"]) for e in evidence["timeline"] if not e["what"].startswith("rollback.toml")]


def check(pytester: pytest.Pytester, item: str) -> dict[str, Any]:
    evidence = read_evidence(pytester.path / "reports")
    [found] = [t["check"] for t in evidence["tests"] if t["nodeid"].endswith(f"::{item}")]
    return dict(found)


def backups(demo: Deployment) -> list[Path]:
    folder = demo.layout.root / "backups"
    return sorted(folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


# -- SQLite ------------------------------------------------------------------------------------


def test_reversible_downgrade_backs_up_downgrades_and_verifies_on_sqlite(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True)

    result = rollback(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    found = check(pytester, "preflight-database-migrations")["summary"]
    assert found.startswith("reversible downgrade needed") and f"1 revision(s) to undo: {REVERSIBLE.id}" in found
    assert database_revision(sqlite_url, 5) == BASE.id
    order = [what for what, status in timeline(pytester) if status == "done"]
    # The app first; then, once it serves the target, the backup and the downgrade.
    assert order.index("switch-link") < order.index("wait-ready") < order.index("database:backup")
    assert order.index("database:backup") < order.index("database:downgrade")
    assert check(pytester, "baseline-migration")["measured"]["revision"] == REVERSIBLE.id
    after = check(pytester, "verify-migration")
    assert after["status"] == "passed" and after["measured"]["revision"] == BASE.id
    [backup] = backups(demo)
    assert backup.name.startswith("pre-rollback-")
    with sqlite3.connect(backup) as copy:  # the backup holds the schema from before the downgrade
        assert copy.execute("SELECT version_num FROM alembic_version").fetchall() == [(REVERSIBLE.id,)]


def test_destructive_downgrade_is_refused_without_allow_data_loss(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE, DESTRUCTIVE], rollback=True)

    result = rollback(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    script = demo.layout.releases_dir / "v1.3.0" / "migrations" / "versions" / f"{DESTRUCTIVE.id}.py"
    result.stdout.fnmatch_lines(
        [
            "*destructive downgrade needed*",
            f"*{script}:17 ({DESTRUCTIVE.id}): drop_table: drops table coupons*",
            f"*{script}:18 ({DESTRUCTIVE.id}): drop_column: drops column orders.note*",
            "*Refused without --allow-data-loss*",
        ]
    )
    assert database_revision(sqlite_url, 5) == DESTRUCTIVE.id and "coupons" in table_names(sqlite_url, 5)
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0 and backups(demo) == []


def test_destructive_downgrade_with_allow_data_loss_backs_up_first_and_is_recorded(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE, DESTRUCTIVE], rollback=True)

    result = rollback(pytester, demo, "--allow-data-loss")

    assert result.ret == 0, result.stdout.str()
    assert database_revision(sqlite_url, 5) == BASE.id and "coupons" not in table_names(sqlite_url, 5)
    steps = [e for e in read_evidence(pytester.path / "reports")["timeline"] if e["what"] == "database:downgrade"]
    assert [(s["detail"]["from"], s["detail"]["to"], s["status"]) for s in steps] == [
        (DESTRUCTIVE.id, REVERSIBLE.id, "done"),
        (REVERSIBLE.id, BASE.id, "done"),
    ]
    evidence = read_evidence(pytester.path / "reports")
    assert {"setting": "--allow-data-loss", "effect": "a database downgrade that drops data was permitted"} in evidence[
        "relaxed_safety"
    ]
    [assessment] = [e for e in evidence["timeline"] if e["what"] == "database:assessment"]
    assert assessment["detail"]["allow_data_loss"] is True and assessment["detail"]["state"] == "destructive"
    done = [what for what, status in timeline(pytester) if status == "done"]
    assert done.index("database:backup") < done.index("database:downgrade")
    [backup] = backups(demo)
    with sqlite3.connect(backup) as copy:
        assert ("coupons",) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()


def test_migrations_without_a_database_rollback_are_refused_with_a_forward_fix(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE])

    result = rollback(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*no database rollback was asked for*Recommended: a forward fix*--rollback-db*"])
    assert demo.linked_version() == "v1.3.0" and database_revision(sqlite_url, 5) == REVERSIBLE.id


def test_rollback_db_option_asks_for_the_downgrade(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE])

    result = rollback(pytester, demo, "--rollback-db")

    assert result.ret == 0, result.stdout.str()
    assert database_revision(sqlite_url, 5) == BASE.id


def test_backward_compatible_schema_rolls_the_app_back_alone(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE, DESTRUCTIVE], backward_compatible=True)

    result = rollback(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    found = check(pytester, "preflight-database-migrations")["summary"]
    assert f"the app goes back alone and the schema stays at {DESTRUCTIVE.id}" in found
    assert demo.linked_version() == "v1.2.9"
    assert database_revision(sqlite_url, 5) == DESTRUCTIVE.id and backups(demo) == []
    after = check(pytester, "verify-migration")  # the schema kept, as the config said
    assert after["status"] == "passed" and after["measured"]["expected"] == DESTRUCTIVE.id


def test_cannot_tell_refuses_and_says_why(pytester: pytest.Pytester, demo: Deployment, sqlite_url: str) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True, migrations={"release_path": "db/alembic"})

    result = rollback(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*cannot tell whether migrations lie between v1.3.0 -> v1.2.9*db/alembic*"])
    assert demo.linked_version() == "v1.3.0"


def test_irreversible_downgrade_is_refused_even_with_allow_data_loss(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, IRREVERSIBLE], rollback=True)

    result = rollback(pytester, demo, "--allow-data-loss")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*irreversible downgrade*",
            "*.py:16 (d4000000split): raises NotImplementedError*",
            "*a forward fix*",
        ]
    )
    assert database_revision(sqlite_url, 5) == IRREVERSIBLE.id


def test_no_migrations_between_the_versions(pytester: pytest.Pytester, demo: Deployment, sqlite_url: str) -> None:
    migrate(demo, sqlite_url, [BASE], rollback=True)

    result = rollback(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    assert check(pytester, "preflight-database-migrations")["summary"].startswith("no migrations between v1.3.0")
    assert backups(demo) == [] and "database:downgrade" not in dict(timeline(pytester))


def test_critical_table_missing_fails_verify(pytester: pytest.Pytester, demo: Deployment, sqlite_url: str) -> None:
    migrate(demo, sqlite_url, [BASE], rollback=True, critical_tables=["orders", "payments"])

    result = rollback(pytester, demo)

    assert result.ret == 13, result.stdout.str()
    after = check(pytester, "verify-migration")
    assert after["status"] == "failed" and after["measured"]["tables_missing"] == ["payments"]
    result.stdout.fnmatch_lines(["FAILED rollback.toml::verify-migration*"])


def test_verify_gate_alone_compares_with_the_deployed_release(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE])

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--gate", "verify", "-k", "migration", "-rA")
    )

    assert result.ret == 0, result.stdout.str()
    assert f"at revision {REVERSIBLE.id}, as expected" in check(pytester, "verify-migration")["summary"]


# -- PostgreSQL --------------------------------------------------------------------------------


def test_reversible_downgrade_on_postgresql(
    pytester: pytest.Pytester, demo: Deployment, new_pg_database: Callable[[], str]
) -> None:
    url = new_pg_database()
    migrate(demo, url, [BASE, REVERSIBLE, DESTRUCTIVE], rollback=True)

    result = rollback(pytester, demo, "--allow-data-loss")

    assert result.ret == 0, result.stdout.str()
    assert database_revision(url, 5) == BASE.id and "coupons" not in table_names(url, 5)
    [backup] = backups(demo)
    assert backup.suffix == ".dump"
    assert check(pytester, "verify-migration")["status"] == "passed"


def test_a_downgrade_failing_half_way_says_where_it_stopped_and_how_to_restore(
    pytester: pytest.Pytester, demo: Deployment, new_pg_database: Callable[[], str]
) -> None:
    url = new_pg_database()
    migrate(demo, url, [BASE, FAILING, REVERSIBLE], rollback=True)

    result = rollback(pytester, demo, "--allow-data-loss")

    assert result.ret == 12, result.stdout.str()
    # REVERSIBLE was undone; FAILING's transaction rolled back whole (PostgreSQL has transactional DDL).
    assert database_revision(url, 5) == FAILING.id
    outcome = read_evidence(pytester.path / "reports")["outcome"]
    assert f"the database is at revision {FAILING.id}" in outcome["message"]
    [backup] = backups(demo)
    assert "to restore the backup taken before: `" in outcome["message"] and str(backup) in outcome["message"]
    steps = [e for e in read_evidence(pytester.path / "reports")["timeline"] if e["what"] == "database:downgrade"]
    assert [(s["detail"]["from"], s["status"]) for s in steps] == [(REVERSIBLE.id, "done"), (FAILING.id, "failed")]


def superuser_psql(sql: str) -> None:
    su = shutil.which("su")
    if su is None or os.geteuid() != 0:
        pytest.skip("making a PostgreSQL role needs root (su postgres -c psql)")
    done = subprocess.run(
        [su, "postgres", "-c", "psql -qAt -v ON_ERROR_STOP=1"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


SPECIAL_PASSWORD = "p@ss/w:rd%40#q?x"
SPECIAL_ROLE = "harness_migration_pw"


@pytest.fixture
def special_database(pg_url: str) -> Iterator[str]:
    """A database owned by a role whose password holds @ / : % # ?; its URL without the password."""
    name = "harness_migration_special"
    superuser_psql(
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE); DROP ROLE IF EXISTS {SPECIAL_ROLE}; "
        f"CREATE ROLE {SPECIAL_ROLE} LOGIN PASSWORD '{SPECIAL_PASSWORD}';"
    )
    superuser_psql(f"CREATE DATABASE {name} OWNER {SPECIAL_ROLE};")
    url = make_url(pg_url).set(username=SPECIAL_ROLE, password=None, database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        superuser_psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE); DROP ROLE IF EXISTS {SPECIAL_ROLE};")


def test_password_key_with_url_characters_works_and_never_shows(
    pytester: pytest.Pytester, demo: Deployment, special_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", SPECIAL_PASSWORD)
    with_password = make_url(special_database).set(password=SPECIAL_PASSWORD).render_as_string(hide_password=False)
    migrate(demo, with_password, [BASE, REVERSIBLE], rollback=True)
    demo.update_config(database={**demo.config()["database"], "url": special_database, "password": "${DB_PASSWORD}"})

    result = rollback(pytester, demo, "-v")

    assert result.ret == 0, result.stdout.str()
    assert database_revision(with_password, 5) == BASE.id
    texts = {"terminal": result.stdout.str() + result.stderr.str()}
    for artifact in (pytester.path / "reports").rglob("*"):
        if artifact.is_file():
            texts[artifact.name] = artifact.read_text(errors="replace")
    assert {"evidence.json", "junit.xml", "report.html", "journal.jsonl"} <= set(texts)
    for form in (SPECIAL_PASSWORD, quote(SPECIAL_PASSWORD, safe=""), SPECIAL_PASSWORD.partition("@")[2]):
        assert not [name for name, text in texts.items() if form in text], form


def test_dry_run_plans_the_backup_and_the_downgrade_and_changes_nothing(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True)

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-dry-run")
    )

    result.stdout.fnmatch_lines(
        [
            "*point */current at releases/v1.2.9*",
            "*. back up the database to */backups/pre-rollback-<time> and verify the backup",
            f"*downgrade the database {REVERSIBLE.id} -> {BASE.id} (1 revision(s): {REVERSIBLE.id})",
        ]
    )
    assert database_revision(sqlite_url, 5) == REVERSIBLE.id and backups(demo) == []


def test_a_backup_that_cannot_be_written_refuses_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    (demo.layout.root / "not-a-folder").write_text("a file where the backups would go\n")
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True, backup_dir="not-a-folder")

    result = rollback(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*preflight-database-backup*"])
    assert demo.linked_version() == "v1.3.0" and database_revision(sqlite_url, 5) == REVERSIBLE.id


def test_database_options_do_nothing_in_a_verify_gate(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--gate", "verify", "--allow-data-loss"))

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--allow-data-loss applies to a rollback*drop --allow-data-loss*"])


def test_with_xdist_the_migration_check_sees_the_runbooks_target(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True)

    result = pytester.runpytest_subprocess(
        *demo.harness_args(pytester.path / "reports", "-n", "2", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    assert database_revision(sqlite_url, 5) == BASE.id
    after = check(pytester, "verify-migration")
    assert after["status"] == "passed" and after["measured"]["expected"] == BASE.id


def test_a_backup_that_fails_after_the_app_step_stops_before_the_downgrade(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str, tmp_path: Path
) -> None:
    """Preflight found room for the backup; the disk fills during the restart: no downgrade follows."""
    with small_tmpfs(tmp_path / "backup-disk", size="20m") as disk:
        migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True, backup_dir=str(disk))
        data = demo.config()
        restart = data["targets"]["app"]["restart"]
        filler = f'head -c 64000000 /dev/zero > {disk / "filler"}; exec "$@"'
        data["targets"]["app"]["restart"] = ["sh", "-c", filler, "sh", *restart]
        demo.write_config(data)

        result = rollback(pytester, demo)

        assert result.ret == 12, result.stdout.str()
        assert demo.linked_version() == "v1.2.9"  # the app went back first
        assert database_revision(sqlite_url, 5) == REVERSIBLE.id  # the schema was not touched
        assert [p.name for p in disk.iterdir()] == ["filler"]  # no backup, not even a partial one
        states = dict(timeline(pytester))
        assert states["database:backup"] == "failed" and "database:downgrade" not in states
        message = read_evidence(pytester.path / "reports")["outcome"]["message"]
        assert f"the schema was not downgraded: it stays at revision {REVERSIBLE.id}" in message, message


def test_a_failed_platform_step_leaves_the_schema_alone(
    pytester: pytest.Pytester, demo: Deployment, sqlite_url: str
) -> None:
    migrate(demo, sqlite_url, [BASE, REVERSIBLE], rollback=True)
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = rollback(pytester, demo)

    assert result.ret == 12, result.stdout.str()
    # The platform step failed before the database's turn: no backup, no downgrade.
    assert database_revision(sqlite_url, 5) == REVERSIBLE.id and backups(demo) == []
    states = dict(timeline(pytester))
    assert "database:backup" not in states and "database:downgrade" not in states


def test_a_downgrade_blocked_by_a_lock_fails_within_its_timeout(
    pytester: pytest.Pytester, demo: Deployment, new_pg_database: Callable[[], str]
) -> None:
    import psycopg

    url = new_pg_database()
    migrate(demo, url, [BASE, REVERSIBLE], rollback=True, timeout="2s")
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as holder:  # an open transaction that read orders: DDL on it must wait
        holder.execute("SELECT count(*) FROM orders")
        started = time.monotonic()
        result = rollback(pytester, demo)
        took = time.monotonic() - started

    assert result.ret == 12, result.stdout.str()
    assert took < 60  # bounded by the lock timeout, not by the lock holder
    outcome = read_evidence(pytester.path / "reports")["outcome"]["message"]
    assert "lock timeout" in outcome and f"the database is at revision {REVERSIBLE.id}" in outcome
    assert database_revision(url, 5) == REVERSIBLE.id


def test_a_rerun_after_a_failed_downgrade_finishes_it_without_touching_the_platform_again(
    pytester: pytest.Pytester, demo: Deployment, new_pg_database: Callable[[], str]
) -> None:
    import psycopg

    url = new_pg_database()
    migrate(demo, url, [BASE, REVERSIBLE], rollback=True, timeout="2s")
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as holder:
        holder.execute("SELECT count(*) FROM orders")
        first = rollback(pytester, demo, "--rollback-report-dir", str(pytester.path / "first"))
    assert first.ret == 12, first.stdout.str()
    assert demo.linked_version() == "v1.2.9" and database_revision(url, 5) == REVERSIBLE.id

    again = rollback(pytester, demo)

    assert again.ret == 0, again.stdout.str()
    assert database_revision(url, 5) == BASE.id
    assert demo.restarts() == 1  # the platform steps were done once, by the first run
    states = dict(timeline(pytester))
    assert states["database:downgrade"] == "done" and states["switch-link"] == "skipped"
    assert check(pytester, "verify-migration")["status"] == "passed"


def test_database_options_alone_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing():\n    pass\n")

    result = pytester.runpytest("--rollback-db")

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--rollback-db needs --rollback-to VERSION*"])
