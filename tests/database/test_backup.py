"""Backups that work: taken, verified, and restored into a fresh database with equal row counts.

Real PostgreSQL 15 (127.0.0.1:5432, throwaway databases made per test) and real SQLite files.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from rollback_harness.rollback.database.backup import (
    Backup,
    BackupFailed,
    RestoreFailed,
    backup_findings,
    restore,
    take_backup,
)

NAME = re.compile(r"^pre-rollback-\d{8}-\d{6}(-\d+)?\.(dump|sqlite3)$")


def _assert_verified(backup: Backup, engine: str) -> None:
    assert backup.engine == engine
    assert backup.verified is True
    assert NAME.match(backup.path.name), backup.path.name
    assert backup.path.is_file() and backup.path.stat().st_size == backup.size > 0
    assert oct(backup.path.stat().st_mode & 0o777) == oct(0o600)
    assert not list(backup.path.parent.glob("*.incomplete*"))
    data = backup.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["path"] == str(backup.path) and data["restore_command"] == backup.restore_command


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_sqlite_backup_is_verified_and_restores_with_equal_row_counts(
    tmp_path: Path, databases: Any, wal: bool
) -> None:
    live = tmp_path / "app.db"
    url = databases.fill_sqlite(live, wal=wal)

    backup = take_backup(url, tmp_path / "backups")

    _assert_verified(backup, "sqlite")
    assert backup.verification.startswith("PRAGMA integrity_check: ok")
    assert backup.restore_command[-2:] == [str(backup.path), str(live)]
    fresh = tmp_path / "fresh.db"
    restore(backup, f"sqlite:///{fresh}")
    assert databases.sqlite_row_counts(fresh) == databases.sqlite_row_counts(live) == databases.rows
    # The backup is one self-contained file, whatever the live database's journal mode.
    assert open(backup.path, "rb").read(20)[18:20] == b"\x01\x01"


def test_sqlite_restore_command_run_by_hand_puts_the_rows_back(tmp_path: Path, databases: Any) -> None:
    live = tmp_path / "app.db"
    url = databases.fill_sqlite(live)
    backup = take_backup(url, tmp_path / "backups")
    with sqlite3.connect(live) as connection:  # the downgrade that went wrong
        connection.execute("DROP TABLE orders")
        connection.execute("DELETE FROM customers")

    done = subprocess.run(backup.restore_command, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    assert databases.sqlite_row_counts(live) == databases.rows


def test_postgres_backup_is_verified_and_restores_into_a_fresh_database_with_equal_row_counts(
    tmp_path: Path, databases: Any, new_pg_database: Any
) -> None:
    source = new_pg_database()
    databases.fill_pg(source)

    backup = take_backup(source, tmp_path / "backups", timeout=120)

    _assert_verified(backup, "postgresql")
    assert backup.path.read_bytes()[:5] == b"PGDMP"
    assert "pg_restore --list" in backup.verification and "3 with table data" in backup.verification
    fresh = new_pg_database()
    restore(backup, fresh, timeout=120)
    assert databases.pg_row_counts(fresh) == databases.pg_row_counts(source) == databases.rows


def test_postgres_restore_command_as_recorded_restores_with_pgpassword(
    tmp_path: Path, databases: Any, new_pg_database: Any
) -> None:
    """The command in the evidence, run as a person would: PGPASSWORD in the environment."""
    source = new_pg_database()
    databases.fill_pg(source)
    backup = take_backup(source, tmp_path / "backups", timeout=120)
    databases.pg_execute(source, "DROP TABLE orders; DELETE FROM customers; INSERT INTO audit_log (note) VALUES ('x')")
    parsed = make_url(source)
    assert parsed.password and parsed.password not in " ".join(backup.restore_command)

    done = subprocess.run(
        backup.restore_command,
        env={**os.environ, "PGPASSWORD": parsed.password},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert databases.pg_row_counts(source) == databases.rows


def test_restore_refuses_a_backup_changed_since_it_was_taken(tmp_path: Path, databases: Any) -> None:
    live = tmp_path / "app.db"
    backup = take_backup(databases.fill_sqlite(live), tmp_path / "backups")
    with backup.path.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"tampered")

    with pytest.raises(RestoreFailed, match="changed since it was taken"):
        restore(backup, f"sqlite:///{tmp_path / 'fresh.db'}")
    assert not (tmp_path / "fresh.db").exists()


def test_restore_refuses_another_engine(tmp_path: Path, databases: Any, pg_url: str) -> None:
    backup = take_backup(databases.fill_sqlite(tmp_path / "app.db"), tmp_path / "backups")

    with pytest.raises(RestoreFailed, match="sqlite backup cannot be restored into postgresql"):
        restore(backup, pg_url)


def test_backups_are_never_overwritten(tmp_path: Path, databases: Any) -> None:
    url = databases.fill_sqlite(tmp_path / "app.db")
    first = take_backup(url, tmp_path / "backups")
    second = take_backup(url, tmp_path / "backups")
    named = take_backup(url, tmp_path / "backups", name="before-v1.2.9")

    assert len({first.path, second.path, named.path}) == 3
    assert named.path.name == "before-v1.2.9.sqlite3"
    with pytest.raises(BackupFailed, match="already exists; a backup is never overwritten"):
        take_backup(url, tmp_path / "backups", name="before-v1.2.9")
    assert first.sha256 == second.sha256 == named.sha256


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused(tmp_path: Path, databases: Any, name: str) -> None:
    url = databases.fill_sqlite(tmp_path / "app.db")

    with pytest.raises(BackupFailed, match="is not a plain file name"):
        take_backup(url, tmp_path / "backups", name=name)
    assert list((tmp_path / "backups").iterdir()) == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@127.0.0.1/db", "a 'mysql' database; backups support postgresql, sqlite"),
        ("sqlite://", "name the database by its file path"),
        ("not a url", "not a database URL"),
    ],
    ids=["mysql", "sqlite-memory", "garbage"],
)
def test_urls_that_cannot_be_backed_up_are_refused_by_name(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(BackupFailed, match=re.escape(message)):
        take_backup(url, tmp_path / "backups")


def test_a_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(BackupFailed, match="does not exist"):
        take_backup(f"sqlite:///{tmp_path / 'missing.db'}", tmp_path / "backups")
    assert not (tmp_path / "missing.db").exists()


def test_findings_all_ok_for_a_reachable_database(tmp_path: Path, databases: Any, new_pg_database: Any) -> None:
    source = new_pg_database()
    databases.fill_pg(source)

    findings = backup_findings(source, tmp_path / "later" / "backups")

    assert [f.name for f in findings] == ["backup-source", "backup-tools", "backup-destination", "backup-space"]
    assert all(f.ok and f.checked for f in findings), findings
    assert "it will be created" in findings[2].message
    assert not (tmp_path / "later").exists()  # preflight changes nothing


def test_findings_name_what_is_wrong(tmp_path: Path, pg_url: str) -> None:
    down = make_url(pg_url).set(port=1).render_as_string(hide_password=False)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")

    findings = {f.name: f for f in backup_findings(down, not_a_folder, timeout=20)}

    assert not findings["backup-source"].ok and "refused" in findings["backup-source"].message.lower()
    assert not findings["backup-destination"].ok and "is not a folder" in findings["backup-destination"].message
    assert not findings["backup-space"].checked
    assert "harness-test-pw" not in str(findings)
