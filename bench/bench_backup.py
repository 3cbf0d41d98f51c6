"""Verified backups against bare ones, as ratios measured in the same invocation.

    .venv/bin/python bench/bench_backup.py [--rounds N] [--pg-url URL] [--mib M]

1. SQLite: take_backup (online backup API in steps, PRAGMA integrity_check, fsync, SHA-256) against
   one bare ``sqlite3.Connection.backup`` call, on a database of about M MiB.
2. PostgreSQL (with --pg-url, a database the URL's role owns and that this script may fill):
   take_backup (size estimate, pg_dump -Fc, pg_restore --list, a full read, fsync, SHA-256) against a
   bare ``pg_dump -Fc``, on a table of about M MiB it creates there (``bench_backup``, dropped after).
Medians of N rounds; the ratio is take_backup / bare (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollback_harness.rollback.database.backup import _libpq_uri, _parse, take_backup  # noqa: E402


def median_seconds(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_sqlite(work: Path, rounds: int, mib: int) -> tuple[float, float]:
    database = work / "app.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE t (x BLOB)")
    connection.executemany("INSERT INTO t VALUES (?)", [(os.urandom(1000),) for _ in range(mib * 1000)])
    connection.commit()
    connection.close()
    counter = iter(range(1_000_000))

    def bare() -> None:
        source = sqlite3.connect(database)
        target = sqlite3.connect(work / f"bare-{next(counter)}.db")
        source.backup(target)
        target.close()
        source.close()

    return median_seconds(bare, rounds), median_seconds(lambda: take_backup(f"sqlite:///{database}", work), rounds)


def bench_postgres(work: Path, rounds: int, mib: int, url: str) -> tuple[float, float]:
    import psycopg

    source = _parse(url, None)
    libpq = source.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_backup")
        connection.execute("CREATE TABLE bench_backup (id int, note text)")
        connection.execute(
            "INSERT INTO bench_backup SELECT i, md5(i::text) || md5(random()::text) FROM generate_series(1, %s) i",
            (mib * 10_000,),
        )
    env = {**os.environ, **({"PGPASSWORD": source.password} if source.password else {})}
    counter = iter(range(1_000_000))
    pg_dump = shutil.which("pg_dump") or "pg_dump"

    def bare() -> None:
        target = work / f"bare-{next(counter)}.dump"
        subprocess.run(
            [pg_dump, "--format=custom", f"--file={target}", f"--dbname={_libpq_uri(source.url)}"],
            env=env,
            check=True,
            timeout=600,
        )

    try:
        return median_seconds(bare, rounds), median_seconds(lambda: take_backup(url, work, timeout=600), rounds)
    finally:
        with psycopg.connect(libpq, autocommit=True) as connection:
            connection.execute("DROP TABLE IF EXISTS bench_backup")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--pg-url", default=None)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    try:
        (work / "sqlite").mkdir()
        bare, ours = bench_sqlite(work / "sqlite", options.rounds, options.mib)
        print(f"sqlite   {options.mib} MiB: bare {bare:.2f} s, take_backup {ours:.2f} s, ratio {ours / bare:.2f}")
        if options.pg_url:
            (work / "pg").mkdir()
            bare, ours = bench_postgres(work / "pg", options.rounds, options.mib, options.pg_url)
            print(f"postgres {options.mib} MiB: bare {bare:.2f} s, take_backup {ours:.2f} s, ratio {ours / bare:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
