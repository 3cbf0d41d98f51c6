"""A password holding @ / : % never reaches a command line, a message or the evidence.

The PostgreSQL tools run through small shims first on PATH that write down their argv (and
whether PGPASSWORD was set), then exec the real tool: the argv checked is the one really run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy.engine import make_url

from rollback_harness.rollback.database.backup import BackupFailed, RestoreFailed, restore, take_backup

pytestmark = pytest.mark.integration
PASSWORD = "p@ss/w:rd%40#q?x"
FORMS = (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), quote_plus(PASSWORD), PASSWORD.partition("@")[2])


@pytest.fixture
def special_database(pg_url: str, databases: Any) -> Iterator[tuple[str, str]]:
    """A role whose password holds @ / : % # ?, owning a database of its own: (role, database)."""
    role = f"harness_bk_pw_{uuid.uuid4().hex[:8]}"
    database = f"{role}_db"
    databases.superuser_psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}';")
    databases.superuser_psql(f'CREATE DATABASE "{database}" OWNER "{role}";')
    try:
        yield role, database
    finally:
        databases.superuser_psql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE);')
        databases.superuser_psql(f"DROP ROLE IF EXISTS {role};")


@pytest.fixture
def argv_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Shims for pg_dump, pg_restore and psql first on PATH; each logs its argv to the returned file."""
    log = tmp_path / "argv.log"
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("pg_dump", "pg_restore", "psql"):
        real = shutil.which(name)
        if real is None:
            pytest.skip(f"{name} is not installed")
        shim = shims / name
        shim.write_text(
            f'#!/bin/sh\nprintf "%s\\n" "=== $0 PGPASSWORD=${{PGPASSWORD:+set}}" "$@" >> "{log}"\nexec "{real}" "$@"\n'
        )
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    return log


def _assert_secret_free(text: str) -> None:
    assert not [form for form in FORMS if form in text], text


@pytest.mark.parametrize("given", ["in-the-url", "as-password"])
def test_password_never_in_argv_message_or_evidence(
    tmp_path: Path, pg_url: str, special_database: tuple[str, str], argv_log: Path, databases: Any, given: str
) -> None:
    role, database = special_database
    base = make_url(pg_url).set(username=role, database=database, password=None)
    with_password = base.set(password=PASSWORD).render_as_string(hide_password=False)
    assert "p%40ss" in with_password  # the URL form: percent-encoded
    databases.fill_pg(with_password)
    if given == "in-the-url":
        backup = take_backup(with_password, tmp_path / "backups", timeout=120)
    else:
        backup = take_backup(base.render_as_string(hide_password=False), tmp_path / "backups", password=PASSWORD)

    fresh = f"{database}_restored"
    databases.superuser_psql(f'CREATE DATABASE "{fresh}" OWNER "{role}";')
    try:
        restore(backup, base.set(database=fresh).render_as_string(hide_password=False), password=PASSWORD)
        assert (
            databases.pg_row_counts(base.set(database=fresh, password=PASSWORD).render_as_string(hide_password=False))
            == databases.rows
        )
    finally:
        databases.superuser_psql(f'DROP DATABASE IF EXISTS "{fresh}" WITH (FORCE);')

    logged = argv_log.read_text()
    calls = [line.split()[1] for line in logged.splitlines() if line.startswith("=== ")]
    assert {"pg_dump", "pg_restore", "psql"} <= {Path(call).name for call in calls}
    # Every run got the password, and only through its environment.
    assert logged.count("PGPASSWORD=set") == len(calls)
    _assert_secret_free(logged)
    _assert_secret_free(json.dumps(backup.to_dict()))
    _assert_secret_free(repr(backup))
    assert f"{role}@127.0.0.1" in " ".join(backup.restore_command)


def test_password_never_in_failure_messages(
    tmp_path: Path, pg_url: str, special_database: tuple[str, str], argv_log: Path
) -> None:
    role, database = special_database
    base = make_url(pg_url).set(username=role, database=database, password=PASSWORD)
    wrong_database = base.set(database="no_such_database").render_as_string(hide_password=False)
    wrong_password = base.set(password=PASSWORD + "x").render_as_string(hide_password=False)

    messages = []
    for url in (wrong_database, wrong_password):
        with pytest.raises(BackupFailed) as failed:
            take_backup(url, tmp_path / "backups", timeout=30)
        messages.append(str(failed.value))
    assert "does not exist" in messages[0] and "password authentication failed" in messages[1]
    assert all("***@127.0.0.1" in message for message in messages), messages
    _assert_secret_free("\n".join(messages))
    _assert_secret_free(argv_log.read_text())


def test_password_never_in_a_restore_failure(
    tmp_path: Path, pg_url: str, special_database: tuple[str, str], databases: Any
) -> None:
    role, database = special_database
    url = make_url(pg_url).set(username=role, database=database, password=PASSWORD)
    backup = take_backup(url.render_as_string(hide_password=False), tmp_path / "backups", timeout=120)

    with pytest.raises(RestoreFailed) as failed:
        restore(backup, url.set(database="no_such_database").render_as_string(hide_password=False))

    assert "pg_restore into" in str(failed.value) and "does not exist" in str(failed.value)
    _assert_secret_free(str(failed.value))


def test_a_secret_query_parameter_is_refused_rather_than_put_on_a_command_line(tmp_path: Path, pg_url: str) -> None:
    url = make_url(pg_url).update_query_dict({"sslpassword": PASSWORD}).render_as_string(hide_password=False)

    with pytest.raises(BackupFailed, match=r"would get \?sslpassword= on their command line") as failed:
        take_backup(url, tmp_path / "backups")

    _assert_secret_free(str(failed.value))
    assert not (tmp_path / "backups").exists()
