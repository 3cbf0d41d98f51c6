"""Fixtures for the backup tests: throwaway PostgreSQL databases and SQLite files with known rows."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from rollback_harness.checks.database import check_database

DEFAULT_URL = "postgresql+psycopg://harness:harness-test-pw@127.0.0.1:5432/harness"
# Rows per table in the test databases; different counts catch a table restored into another's place.
ROWS = {"customers": 120, "orders": 345, "audit_log": 7}


def superuser_psql(sql: str, *, database: str = "postgres") -> None:
    """Run ``sql`` as the postgres superuser (su postgres -c psql); the tests run as root."""
    su = shutil.which("su")
    if su is None or os.geteuid() != 0:
        pytest.skip("making a PostgreSQL database or role needs root (su postgres -c psql)")
    done = subprocess.run(
        [su, "postgres", "-c", f"psql -qAt -v ON_ERROR_STOP=1 -d {database}"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("HARNESS_TEST_PG_URL", DEFAULT_URL)
    result = check_database(url, timeout=5)
    if not result.passed:
        pytest.fail(
            f"PostgreSQL is not reachable ({result.summary}): run scripts/start-postgres.sh as root, "
            "or point HARNESS_TEST_PG_URL at a server",
            pytrace=False,
        )
    return url


@pytest.fixture
def new_pg_database(pg_url: str) -> Iterator[Callable[[], str]]:
    """Makes empty databases owned by the test role; each is dropped (even with open sessions) after."""
    made: list[str] = []
    owner = make_url(pg_url).username

    def make() -> str:
        name = f"harness_bk_{uuid.uuid4().hex[:12]}"
        superuser_psql(f'CREATE DATABASE "{name}" OWNER "{owner}";')
        made.append(name)
        return make_url(pg_url).set(database=name).render_as_string(hide_password=False)

    yield make
    for name in made:
        superuser_psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


class Databases:
    """Helpers the backup tests share (the ``databases`` fixture), for PostgreSQL and SQLite."""

    rows = ROWS

    @staticmethod
    def superuser_psql(sql: str) -> None:
        superuser_psql(sql)

    @staticmethod
    def pg_execute(url: str, sql: str) -> None:
        _pg_execute(url, sql)

    @staticmethod
    def fill_pg(url: str) -> None:
        _fill_pg(url)

    @staticmethod
    def pg_row_counts(url: str) -> dict[str, int]:
        return _pg_row_counts(url)

    @staticmethod
    def fill_sqlite(path: Path, *, wal: bool = False, padding: int = 0) -> str:
        return _fill_sqlite(path, wal=wal, padding=padding)

    @staticmethod
    def sqlite_row_counts(path: Path) -> dict[str, int]:
        return _sqlite_row_counts(path)


@pytest.fixture
def databases() -> type[Databases]:
    return Databases


def _pg_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _fill_pg(url: str) -> None:
    """Three tables with ROWS rows each, a foreign key, an index and a sequence."""
    _pg_execute(
        url,
        """
        CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
        CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric);
        CREATE INDEX orders_customer ON orders(customer_id);
        CREATE TABLE audit_log (at timestamptz DEFAULT now(), note text);
        """
        + f"""
        INSERT INTO customers (name) SELECT 'customer ' || i FROM generate_series(1, {ROWS["customers"]}) i;
        INSERT INTO orders (customer_id, total)
            SELECT 1 + i % {ROWS["customers"]}, i * 1.5 FROM generate_series(1, {ROWS["orders"]}) i;
        INSERT INTO audit_log (note) SELECT 'note ' || i FROM generate_series(1, {ROWS["audit_log"]}) i;
        """,
    )


def _pg_row_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(_libpq(url), autocommit=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            ).fetchall()
        ]
        return {
            table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])  # type: ignore[index]
            for table in tables
        }


def _fill_sqlite(path: Path, *, wal: bool = False, padding: int = 0) -> str:
    """A SQLite database with ROWS rows per table (``padding`` bytes of blob per order); its URL."""
    connection = sqlite3.connect(path)
    try:
        if wal:
            connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(
            """
            CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), blob BLOB);
            CREATE INDEX orders_customer ON orders(customer_id);
            CREATE TABLE audit_log (note TEXT);
            """
        )
        connection.executemany(
            "INSERT INTO customers (name) VALUES (?)", [(f"c{i}",) for i in range(ROWS["customers"])]
        )
        connection.executemany(
            "INSERT INTO orders (customer_id, blob) VALUES (?, ?)",
            [(1 + i % ROWS["customers"], os.urandom(padding)) for i in range(ROWS["orders"])],
        )
        connection.executemany("INSERT INTO audit_log VALUES (?)", [(f"n{i}",) for i in range(ROWS["audit_log"])])
        connection.commit()
    finally:
        connection.close()
    return f"sqlite:///{path}"


def _sqlite_row_counts(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]) for table in tables}
    finally:
        connection.close()
