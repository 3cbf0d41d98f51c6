"""Backups that work: taken, verified, and restored into a fresh database with equal row counts.

Real PostgreSQL 15 (127.0.0.1:5432, throwaway databases made per test) and real SQLite files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from rollback_harness.rollback.database import backup as backup_module
from rollback_harness.rollback.database.backup import (
    Backup,
    BackupFailed,
    RestoreFailed,
    backup_findings,
    restore,
    take_backup,
)

pytestmark = pytest.mark.integration
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
    with pytest.raises(RestoreFailed, match="not a database URL"):
        restore(backup, "nonsense")


def test_backups_are_never_overwritten(tmp_path: Path, databases: Any) -> None:
    url = databases.fill_sqlite(tmp_path / "app.db")
    first = take_backup(url, tmp_path / "backups")
    second = take_backup(url, tmp_path / "backups")
    named = take_backup(url, tmp_path / "backups", name="before-v1.2.9")

    assert len({first.path, second.path, named.path}) == 3
    assert named.path.name == "before-v1.2.9.sqlite3"
    with pytest.raises(BackupFailed, match="already exists; a backup is never overwritten"):
        take_backup(url, tmp_path / "backups", name="before-v1.2.9")
    # A partial file nobody writes any more (its backup was killed) is swept, then the name is free.
    (tmp_path / "backups" / "interrupted.sqlite3.incomplete").write_bytes(b"half")
    resumed = take_backup(url, tmp_path / "backups", name="interrupted")
    assert resumed.path.name == "interrupted.sqlite3"
    assert not (tmp_path / "backups" / "interrupted.sqlite3.incomplete").exists()
    assert first.sha256 == second.sha256 == named.sha256 == resumed.sha256


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


def _write_pairs_until(stop: threading.Event, write: Callable[[int], None], pause: float = 0.005) -> int:
    """Writes pair after pair (one row in each of two tables, one transaction) until ``stop``."""
    count = 0
    while not stop.is_set():
        write(count)
        count += 1
        stop.wait(pause)
    return count


@pytest.mark.parametrize(
    ("journal_mode", "pause"),
    [("wal", 0.005), ("wal", 0.0), ("delete", 0.0)],
    ids=["wal-writes-every-5ms", "wal-writes-without-pause", "rollback-journal-writes-without-pause"],
)
def test_sqlite_backup_of_a_database_being_written_is_one_consistent_state(
    tmp_path: Path, journal_mode: str, pause: float
) -> None:
    """Two tables written in the same transactions always hold equal counts; so must the backup.

    Written without a pause, a database used to be copied over and over (the backup API starts
    again after every write between two of its steps) until the timeout. In WAL mode the copy now
    holds one snapshot from the start; in the other modes it takes a read lock once the copy kept
    starting over, and the writer waits for the copy, then goes on."""
    live = tmp_path / "app.db"
    setup = sqlite3.connect(live)
    setup.execute(f"PRAGMA journal_mode={journal_mode}")
    setup.executescript("CREATE TABLE a (x BLOB); CREATE TABLE b (x BLOB);")
    setup.executemany("INSERT INTO a VALUES (?)", [(os.urandom(2000),) for _ in range(3000)])
    setup.executemany("INSERT INTO b VALUES (?)", [(os.urandom(2000),) for _ in range(3000)])
    setup.commit()
    setup.close()
    writer = sqlite3.connect(live, check_same_thread=False, timeout=30)

    def write(_: int) -> None:
        with writer:
            writer.execute("INSERT INTO a VALUES (randomblob(2000))")
            writer.execute("INSERT INTO b VALUES (randomblob(2000))")

    stop = threading.Event()
    said: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        writes = pool.submit(_write_pairs_until, stop, write, pause)
        try:
            backup = take_backup(f"sqlite:///{live}", tmp_path / "backups", timeout=60, progress=said.append)
        finally:
            stop.set()
        assert writes.result() > 0
    writer.close()

    copy = sqlite3.connect(f"file:{backup.path}?mode=ro", uri=True)
    counts = [copy.execute(f"SELECT count(*) FROM {table}").fetchone()[0] for table in ("a", "b")]
    copy.close()
    assert counts[0] == counts[1] >= 3000
    if journal_mode == "wal":  # a snapshot from the start: never the read lock that makes writers wait
        assert not any("under a read lock" in line for line in said), said
        assert backup.note is None and "note" not in backup.to_dict()
    if backup.note is not None:  # the evidence says the application's commits waited, and for how long
        assert "under a read lock" in backup.note and "commits waited" in backup.note, backup.note
        assert backup.to_dict()["note"] == backup.note


def test_sqlite_backup_waits_out_a_lock_taken_as_the_copy_starts(
    tmp_path: Path, monkeypatch: Any, databases: Any
) -> None:
    """Another connection locks the database (a long commit) between the size estimate and the
    copy, for longer than one busy wait (1 s): the copy waits for it within the backup's timeout,
    instead of failing at its first statement with SQLite's bare "database is locked"."""
    live = tmp_path / "app.db"
    databases.fill_sqlite(live)
    holder = sqlite3.connect(live, isolation_level=None, check_same_thread=False)
    released = threading.Event()

    def release() -> None:
        holder.execute("COMMIT")
        released.set()

    measure_space = backup_module._free_and_reserve

    def lock_then_measure(folder: Path) -> tuple[int, int]:
        holder.execute("BEGIN EXCLUSIVE")
        threading.Timer(2.5, release).start()  # the scenario: a commit holding the lock 2.5 s
        return measure_space(folder)

    monkeypatch.setattr(backup_module, "_free_and_reserve", lock_then_measure)
    backup = take_backup(f"sqlite:///{live}", tmp_path / "backups", timeout=60)
    assert released.is_set()  # nothing could be read while the lock was held: the copy waited for it
    _assert_verified(backup, "sqlite")
    holder.close()


def test_postgres_backup_of_a_database_being_written_is_one_snapshot(
    tmp_path: Path, databases: Any, new_pg_database: Any
) -> None:
    import psycopg

    source = new_pg_database()
    databases.pg_execute(
        source,
        "CREATE TABLE a (id int); CREATE TABLE b (id int);"
        "INSERT INTO a SELECT generate_series(1, 20000); INSERT INTO b SELECT generate_series(1, 20000);",
    )
    writer = psycopg.connect(make_url(source).set(drivername="postgresql").render_as_string(hide_password=False))

    def write(count: int) -> None:
        with writer.transaction():
            writer.execute("INSERT INTO a VALUES (%s)", (count,))
            writer.execute("INSERT INTO b VALUES (%s)", (count,))

    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        writes = pool.submit(_write_pairs_until, stop, write)
        try:
            backup = take_backup(source, tmp_path / "backups", timeout=120)
        finally:
            stop.set()
        assert writes.result() > 0
    writer.close()

    fresh = new_pg_database()
    restore(backup, fresh, timeout=120)
    counts = databases.pg_row_counts(fresh)
    assert counts["a"] == counts["b"] >= 20000


def test_findings_refuse_a_pg_dump_older_than_the_server(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_dump refuses a newer server; preflight says so before any change (a PATH shim plays 14)."""
    shims = tmp_path / "old-client"
    shims.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        target = shutil.which(name)
        assert target is not None
        script = (
            f'#!/bin/sh\nif [ "$1" = --version ]; then echo "{name} (PostgreSQL) 14.10"; exit 0; fi\n'
            f'exec "{target}" "$@"\n'
        )
        (shims / name).write_text(script)
        (shims / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")

    findings = {f.name: f for f in backup_findings(pg_url, tmp_path / "backups")}

    assert findings["backup-source"].ok
    assert not findings["backup-tools"].ok
    assert "is version 14, older than the server (15)" in findings["backup-tools"].message


def test_restore_into_a_server_that_is_down_fails_with_the_reason(
    tmp_path: Path, databases: Any, pg_url: str, new_pg_database: Any
) -> None:
    source_url = databases.fill_sqlite(tmp_path / "app.db")
    sqlite_backup = take_backup(source_url, tmp_path / "backups")
    with pytest.raises(RestoreFailed, match="folder does not exist"):
        restore(sqlite_backup, f"sqlite:///{tmp_path / 'missing' / 'app.db'}")

    pg_backup = take_backup(new_pg_database(), tmp_path / "pg-backups", timeout=120)
    closed = make_url(pg_url).set(port=1).render_as_string(hide_password=False)
    with pytest.raises(RestoreFailed, match=r"(?i)pg_restore into .* failed: .*refused"):
        restore(pg_backup, closed, timeout=20)
