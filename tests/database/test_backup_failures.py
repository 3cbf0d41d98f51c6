"""Backups that fail: the disk fills, the database stops answering or goes away, the deadline passes.

Each ends in BackupFailed naming what failed, within a bound, with no file left that looks like a
backup (nothing with a backup's final name; the ``*.incomplete`` file removed).

"Mid-dump" is made deterministic without touching the shared server's availability: a test session
holds ``LOCK TABLE ONLY parted IN ACCESS EXCLUSIVE MODE`` on a partitioned table of a throwaway
database, so pg_dump (already connected, inside its snapshot, reading the catalog) waits on that
lock; the size estimate before it never touches that table. Stopping a server process is done only
on a throwaway cluster of our own (initdb on a free loopback port), never on 127.0.0.1:5432.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from mounts import fill, small_tmpfs
from sqlalchemy.engine import make_url

from rollback_harness.rollback.database import backup as backup_module
from rollback_harness.rollback.database.backup import Backup, BackupFailed, take_backup

pytestmark = pytest.mark.integration
# "Did not hang": generous bounds on a shared, noisy machine, far below a hung wait.
BOUND = 30.0


def _leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` other than a test's own filler."""
    if not folder.exists():
        return []
    return sorted(path.name for path in folder.iterdir() if path.name not in {"filler", "lost+found"})


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def locked_source(new_pg_database: Callable[[], str], databases: Any) -> Iterator[tuple[str, Any]]:
    """A filled throwaway database and an open session ready to lock its partitioned table."""
    import psycopg

    url = new_pg_database()
    databases.fill_pg(url)
    databases.pg_execute(
        url,
        "CREATE TABLE parted (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);"
        "INSERT INTO parted SELECT generate_series(0, 99);",
    )
    holder = psycopg.connect(_libpq(url))
    try:
        yield url, holder
    finally:
        holder.close()


def _lock(holder: Any) -> None:
    holder.execute("LOCK TABLE ONLY parted IN ACCESS EXCLUSIVE MODE")


def _blocked_pg_dump(url: str, future: Future[Backup]) -> int:
    """The server pid of the pg_dump session waiting on our lock (polled with a deadline)."""
    import psycopg

    database = make_url(url).database
    deadline = time.monotonic() + BOUND
    with psycopg.connect(_libpq(url), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            if future.done():
                future.result()  # raises what take_backup raised
                pytest.fail("take_backup finished while pg_dump should have been waiting on the lock")
            row = watcher.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = 'pg_dump' "
                "AND wait_event_type = 'Lock'",
                (database,),
            ).fetchone()
            if row:
                return int(row[0])
            time.sleep(0.05)
    pytest.fail("pg_dump never reached the locked table")


def _in_thread(call: Callable[[], Backup]) -> tuple[ThreadPoolExecutor, Future[Backup]]:
    pool = ThreadPoolExecutor(max_workers=1)
    return pool, pool.submit(call)


# --- the disk fills ---------------------------------------------------------------------------


def test_postgres_disk_full_mid_dump_fails_and_leaves_nothing(tmp_path: Path, locked_source: tuple[str, Any]) -> None:
    """Real ENOSPC: the space check passes, then the disk fills while pg_dump is running."""
    url, holder = locked_source
    with small_tmpfs(tmp_path / "disk", size="24m") as disk:
        _lock(holder)
        pool, future = _in_thread(lambda: take_backup(url, disk / "backups", timeout=120))
        try:
            _blocked_pg_dump(url, future)
            fill(disk)
            holder.rollback()  # pg_dump goes on, and finds no room
            with pytest.raises(BackupFailed) as failed:
                future.result(timeout=BOUND)
        finally:
            holder.rollback()
            pool.shutdown(wait=True)
        assert "pg_dump" in str(failed.value) and "No space left on device" in str(failed.value)
        assert _leftovers(disk / "backups") == []


def test_too_little_free_space_is_refused_before_writing(tmp_path: Path, databases: Any) -> None:
    """Room for the copy is not enough: 16 MiB (or 2% of the file system) must stay free after it."""
    url = databases.fill_sqlite(tmp_path / "app.db", padding=2048)
    size = (tmp_path / "app.db").stat().st_size
    assert 500_000 < size < 2_000_000
    with small_tmpfs(tmp_path / "small", size="8m") as small:
        with pytest.raises(BackupFailed, match="not enough free space") as failed:
            take_backup(url, small / "backups")
        assert "nothing was written" in str(failed.value) and "16.0 MiB left free after it" in str(failed.value)
        assert _leftovers(small / "backups") == []
    with small_tmpfs(tmp_path / "large-enough", size="20m") as large_enough:
        backup = take_backup(url, large_enough / "backups")
        assert backup.size == size


_UNDER_A_FILE_SIZE_LIMIT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from rollback_harness.rollback.database.backup import BackupFailed, take_backup
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        take_backup(sys.argv[1], Path(sys.argv[2]), timeout=60)
    except BackupFailed as exc:
        print("BackupFailed:", exc)
        sys.exit(3)
    print("no error")
    """
)


def test_sqlite_write_error_mid_backup_fails_and_leaves_nothing(tmp_path: Path, databases: Any) -> None:
    """A file-size limit (RLIMIT_FSIZE) makes a write fail part way through the online backup."""
    url = databases.fill_sqlite(tmp_path / "app.db", padding=4096)
    assert (tmp_path / "app.db").stat().st_size > 1_000_000

    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, url, str(tmp_path / "backups"), "262144"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 3, done.stdout + done.stderr
    assert "SQLite online backup" in done.stdout and "failed" in done.stdout
    assert _leftovers(tmp_path / "backups") == []


def test_postgres_write_error_mid_dump_names_pg_dump_stderr(
    tmp_path: Path, databases: Any, new_pg_database: Callable[[], str]
) -> None:
    url = new_pg_database()
    databases.fill_pg(url)
    databases.pg_execute(url, "INSERT INTO audit_log (note) SELECT md5(random()::text) FROM generate_series(1, 50000)")

    done = subprocess.run(
        [sys.executable, "-c", _UNDER_A_FILE_SIZE_LIMIT, url, str(tmp_path / "backups"), "65536"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 3, done.stdout + done.stderr
    # subprocess restores SIGXFSZ's default action in pg_dump, so the limit kills it.
    assert "pg_dump was killed by SIGXFSZ (File size limit exceeded)" in done.stdout
    assert _leftovers(tmp_path / "backups") == []


# --- the database stops answering or goes away -----------------------------------------------


def test_postgres_connection_terminated_mid_dump(tmp_path: Path, locked_source: tuple[str, Any]) -> None:
    url, holder = locked_source
    _lock(holder)
    pool, future = _in_thread(lambda: take_backup(url, tmp_path / "backups", timeout=120))
    try:
        pid = _blocked_pg_dump(url, future)
        holder.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(BackupFailed) as failed:
            future.result(timeout=BOUND)
    finally:
        holder.rollback()
        pool.shutdown(wait=True)
    message = str(failed.value)
    assert message.startswith("pg_dump of ") and "terminating connection" in message
    assert _leftovers(tmp_path / "backups") == []


def test_postgres_lock_never_granted_ends_at_the_deadline_with_progress(
    tmp_path: Path, locked_source: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, holder = locked_source
    monkeypatch.setattr(backup_module, "PROGRESS_EVERY", 0.5)
    lines: list[str] = []
    _lock(holder)
    started = time.monotonic()
    try:
        with pytest.raises(BackupFailed) as failed:
            take_backup(url, tmp_path / "backups", timeout=4, progress=lines.append)
    finally:
        holder.rollback()
    assert time.monotonic() - started < BOUND
    assert "pg_dump of " in str(failed.value)
    assert lines and all(line.startswith("pg_dump of ") and "timeout 4 s" in line for line in lines), lines
    assert _leftovers(tmp_path / "backups") == []


def test_sqlite_locked_database_ends_at_the_deadline_with_progress(
    tmp_path: Path, databases: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup_module, "PROGRESS_EVERY", 0.5)
    lines: list[str] = []
    import sqlite3

    url = databases.fill_sqlite(tmp_path / "app.db")
    writer = sqlite3.connect(tmp_path / "app.db", isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        with pytest.raises(BackupFailed, match="stayed locked") as failed:
            take_backup(url, tmp_path / "backups", timeout=2, progress=lines.append)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert time.monotonic() - started < BOUND
    assert "2 s timeout" in str(failed.value)
    assert lines and "is locked by another connection, waiting" in lines[0], lines
    assert _leftovers(tmp_path / "backups") == []


def test_nothing_listening_fails_fast(tmp_path: Path, pg_url: str) -> None:
    closed = make_url(pg_url).set(port=1).render_as_string(hide_password=False)

    with pytest.raises(BackupFailed, match=r"(?i)refused"):
        take_backup(closed, tmp_path / "backups", timeout=20)
    assert _leftovers(tmp_path / "backups") == []


def test_a_server_that_accepts_but_never_answers_ends_at_the_deadline(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(BackupFailed) as failed:
            take_backup(f"postgresql://nobody:pw@127.0.0.1:{port}/db", tmp_path / "backups", timeout=3)
    assert time.monotonic() - started < BOUND
    assert "timeout" in str(failed.value)
    assert _leftovers(tmp_path / "backups") == []


# --- a throwaway cluster we may stop ---------------------------------------------------------

CLUSTER_PASSWORD = "throwaway-pw"


def _pg_bin(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).is_file():
            return str(folder / name)
    pytest.skip(f"{name} is not installed (/usr/lib/postgresql/*/bin)")


def _as_postgres(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["su", "postgres", "-c", " ".join(_quote(part) for part in command)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"postgresql+psycopg://postgres:{CLUSTER_PASSWORD}@127.0.0.1:{port}/postgres"

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _as_postgres([_pg_bin("pg_ctl"), "-D", str(self.folder / "data"), *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self.pg_ctl("-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")
        assert done.returncode == 0, done.stdout + done.stderr + (self.folder / "log").read_text(errors="replace")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster of this test's own on a free loopback port, removed afterwards."""
    if os.geteuid() != 0 or shutil.which("su") is None:
        pytest.skip("a throwaway PostgreSQL cluster needs root (initdb runs as the postgres user)")
    folder = Path(tempfile.mkdtemp(prefix="harness-bk-cluster-"))
    shutil.chown(folder, "postgres")
    (folder / "pw").write_text(CLUSTER_PASSWORD)
    shutil.chown(folder / "pw", "postgres")
    made = _as_postgres(
        [
            _pg_bin("initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            "--pwfile",
            str(folder / "pw"),
        ]
    )
    assert made.returncode == 0, made.stdout + made.stderr
    result = Cluster(folder, _free_port())
    try:
        result.start()
        yield result
    finally:
        for pid in _postgres_pids(folder):
            os.kill(pid, signal.SIGCONT)
        result.pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _postgres_pids(folder: Path) -> list[int]:
    postmaster = folder / "data" / "postmaster.pid"
    if not postmaster.exists():
        return []
    parent = int(postmaster.read_text().split()[0])
    found = [parent]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                found.append(int(entry.name))
    return found


def test_postgres_server_stops_answering_mid_dump_ends_at_the_deadline(
    tmp_path: Path, cluster: Cluster, databases: Any
) -> None:
    """The backend serving pg_dump is frozen (SIGSTOP) mid-dump: our deadline kills pg_dump."""
    import psycopg

    databases.fill_pg(cluster.url)
    databases.pg_execute(
        cluster.url,
        "CREATE TABLE parted (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);",
    )
    with psycopg.connect(_libpq(cluster.url)) as holder:
        _lock(holder)
        started = time.monotonic()
        pool, future = _in_thread(lambda: take_backup(cluster.url, tmp_path / "backups", timeout=8))
        try:
            pid = _blocked_pg_dump(cluster.url, future)
            os.kill(pid, signal.SIGSTOP)
            holder.rollback()  # the lock is granted, but the frozen backend never answers
            with pytest.raises(BackupFailed) as failed:
                future.result(timeout=BOUND)
        finally:
            holder.rollback()
            pool.shutdown(wait=True)
    assert time.monotonic() - started < BOUND
    message = str(failed.value)
    assert "did not finish within the 8 s timeout" in message and "pg_dump was killed" in message
    assert _leftovers(tmp_path / "backups") == []
    assert not _running_pg_dump(tmp_path / "backups")


def test_postgres_server_shut_down_mid_dump(tmp_path: Path, cluster: Cluster, databases: Any) -> None:
    import psycopg

    databases.fill_pg(cluster.url)
    databases.pg_execute(
        cluster.url,
        "CREATE TABLE parted (id int) PARTITION BY RANGE (id);"
        "CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000);",
    )
    holder = psycopg.connect(_libpq(cluster.url))
    try:
        _lock(holder)
        pool, future = _in_thread(lambda: take_backup(cluster.url, tmp_path / "backups", timeout=120))
        try:
            _blocked_pg_dump(cluster.url, future)
            stopped = cluster.pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")
            assert stopped.returncode == 0, stopped.stderr
            with pytest.raises(BackupFailed) as failed:
                future.result(timeout=BOUND)
        finally:
            pool.shutdown(wait=True)
    finally:
        holder.close()
    assert str(failed.value).startswith("pg_dump of ")
    assert _leftovers(tmp_path / "backups") == []


def _running_pg_dump(folder: Path) -> bool:
    """True when a pg_dump writing into ``folder`` still runs (a deadline must kill it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"pg_dump") and any(str(folder).encode() in part for part in argv):
                return True
    return False


def test_postgres_restore_blocked_by_a_lock_ends_at_the_deadline_and_changes_nothing(
    tmp_path: Path, locked_source: tuple[str, Any], databases: Any
) -> None:
    """The application still holds a lock: the restore gives up at its deadline, in one transaction."""
    from rollback_harness.rollback.database.backup import RestoreFailed, restore

    url, holder = locked_source
    backup = take_backup(url, tmp_path / "backups", timeout=120)
    databases.pg_execute(url, "DELETE FROM audit_log")  # what the restore would put back
    before = databases.pg_row_counts(url)
    _lock(holder)
    started = time.monotonic()
    try:
        with pytest.raises(RestoreFailed) as failed:
            restore(backup, url, timeout=4)
        assert time.monotonic() - started < BOUND
        # While the application still holds its lock, the restore's server session is gone too: it
        # does not wait on, holding the tables it had already dropped in its uncommitted transaction.
        _wait_until_no_session(url, "pg_restore")
    finally:
        holder.rollback()
    assert "did not finish within the 4 s timeout" in str(failed.value) and "pg_restore was killed" in str(failed.value)
    assert databases.pg_row_counts(url) == before
    restore(backup, url, timeout=120)
    assert databases.pg_row_counts(url)["audit_log"] == databases.rows["audit_log"]


def _wait_until_no_session(url: str, application: str) -> None:
    import psycopg

    database = make_url(url).database
    deadline = time.monotonic() + BOUND
    with psycopg.connect(_libpq(url), autocommit=True) as watcher:
        while time.monotonic() < deadline:
            row = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (database, application),
            ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.05)
    pytest.fail(f"a {application} session still runs on {database}")


# A backup's writer, as a process of its own: it creates and claims a partial file the way
# take_backup does, writes into it, and waits (stdin) until the test kills it or lets it go.
_PARTIAL_WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from rollback_harness.rollback.database.backup import _claim
    fd = _claim(Path(sys.argv[1]))
    os.write(fd, b"x" * 200_000)
    Path(sys.argv[1] + "-journal").write_bytes(b"j" * 1000)
    print("claimed", flush=True)
    sys.stdin.read()
    """
)


def _start_partial_writer(partial: Path) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", _PARTIAL_WRITER, str(partial)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline() == "claimed\n"
    return writer


def test_a_partial_backup_left_by_a_killed_backup_is_removed_by_the_next_one(tmp_path: Path, databases: Any) -> None:
    """SIGKILL leaves the partial file (and SQLite's journal beside it): nothing in the dead
    process can remove them. The next backup into the folder does, says so, and is taken."""
    url = databases.fill_sqlite(tmp_path / "app.db")
    backups = tmp_path / "backups"
    backups.mkdir()
    stale = backups / "pre-rollback-20260101-000000.sqlite3.incomplete"
    writer = _start_partial_writer(stale)
    writer.kill()
    writer.wait(timeout=BOUND)
    assert stale.exists() and Path(f"{stale}-journal").exists()
    lines: list[str] = []

    backup = take_backup(url, backups, timeout=BOUND, progress=lines.append)

    assert not stale.exists() and not Path(f"{stale}-journal").exists()
    assert any(f"removed {stale}" in line and "interrupted" in line for line in lines), lines
    assert backup.verified and sorted(path.name for path in backups.iterdir()) == [backup.path.name]


def test_a_partial_backup_another_backup_is_writing_is_left_alone(tmp_path: Path, databases: Any) -> None:
    url = databases.fill_sqlite(tmp_path / "app.db")
    backups = tmp_path / "backups"
    backups.mkdir()
    busy = backups / "before-upgrade.sqlite3.incomplete"
    writer = _start_partial_writer(busy)
    try:
        lines: list[str] = []
        backup = take_backup(url, backups, timeout=BOUND, progress=lines.append)
        assert busy.stat().st_size == 200_000 and not any("removed" in line for line in lines), lines
        assert backup.verified and backup.path.name.startswith("pre-rollback-")
        # The same name as the backup being written: refused, that backup untouched.
        with pytest.raises(BackupFailed, match=r"another backup is writing before-upgrade\.sqlite3\.incomplete"):
            take_backup(url, backups, timeout=BOUND, name="before-upgrade")
        assert busy.stat().st_size == 200_000
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=BOUND)
