"""checks.database against real SQLite files, and URLs that cannot work."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from _checks_server import closed_port

from rollback_harness.checks.database import check_database


def _make_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE releases (version TEXT)")
    connection.close()


def test_sqlite_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    _make_database(path)
    result = check_database(f"sqlite:///{path}", timeout=2.0)
    assert (result.name, result.status) == ("database", "passed")
    assert result.summary.startswith(f"SELECT 1 on sqlite:///{path} answered in ")
    assert result.measured["url"] == f"sqlite:///{path}"
    assert result.measured["dialect"] == "sqlite"
    assert json.loads(json.dumps(result.measured)) == result.measured


def test_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    result = check_database(f"sqlite:///{path}", timeout=2.0, name="db")
    assert (result.name, result.status) == ("db", "failed")
    assert result.summary == f"sqlite:///{path}: database file {path} does not exist"
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database, only text " * 20)
    result = check_database(f"sqlite:///{path}", timeout=2.0)
    assert result.status == "failed"
    assert result.summary.endswith("file is not a database")


def test_unreachable_server_fails_without_showing_the_password() -> None:
    port = closed_port()
    url = f"postgresql://rollback:s3cret-pw@127.0.0.1:{port}/app?sslpassword=key-pw"
    result = check_database(url, timeout=1.0)
    assert result.status == "failed"
    shown = f"postgresql://rollback:***@127.0.0.1:{port}/app?sslpassword=***"
    assert result.summary.startswith(shown + ": ")
    assert result.measured["url"] == shown
    assert "\n" not in result.summary
    everything = result.summary + json.dumps(result.measured)
    assert "s3cret-pw" not in everything
    assert "key-pw" not in everything
    assert result.measured["dialect"] == "postgresql"


def test_malformed_url_fails_without_showing_the_password() -> None:
    result = check_database("postgres//rollback:s3cret-pw@db/app", timeout=1.0)
    assert result.status == "failed"
    assert result.summary == "not a database URL: postgres//***@db/app"
    assert "s3cret-pw" not in json.dumps(result.measured)


def test_unknown_dialect_fails() -> None:
    result = check_database("nosuchdb://u@h/app", timeout=1.0)
    assert result.status == "failed"
    assert "unknown database dialect" in result.summary
