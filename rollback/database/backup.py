"""Verified database backups taken before any downgrade: SQLite and PostgreSQL.

SQLite goes through the online backup API (``sqlite3.Connection.backup``): a file copy of a live
database can be torn. PostgreSQL goes through ``pg_dump --format=custom``, one consistent snapshot.

A backup is written as ``<name><suffix>.incomplete`` and only renamed to its final name once it is
complete, verified (``PRAGMA integrity_check`` / ``pg_restore --list`` and a full read) and synced
to disk; a failed backup is removed, so a file with the final name is always a verified backup.
Every wait has a total deadline: a ``pg_dump`` still running at the timeout is killed.

Passwords never reach a command line, a message or the evidence: the PostgreSQL tools get theirs
through ``PGPASSWORD`` in their environment, and every URL shown has it replaced by ``***``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlencode

from ..errors import HarnessError
from ..targets.base import Finding
from ..urls import SECRET_QUERY, redact_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ENGINES = ("postgresql", "sqlite")
SUFFIXES = {"postgresql": ".dump", "sqlite": ".sqlite3"}
INCOMPLETE = ".incomplete"
# Room a backup leaves free: at least this much, and at least 1/RESERVE_SHARE of the file system, so that
# a backup never fills the disk the live database (or its logs) may share.
SPACE_MARGIN = 16 * 1024 * 1024
RESERVE_SHARE = 50
FINDINGS_TIMEOUT = 30.0
PROGRESS_EVERY = 10.0
_STDERR_LIMIT = 600
_SQLITE_STEP_PAGES = 1024
# A stepped copy that started over this many times (writes between its steps) is taken again
# under a read lock (_Sqlite._hold_snapshot).
_SQLITE_RESTARTS_BEFORE_HOLDING = 3
# What the restore command runs for SQLite: the online backup API again, from the backup into the
# database (``sqlite3 DB ".restore FILE"`` does the same where the sqlite3 shell is installed).
_SQLITE_RESTORE = (
    "import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2], timeout=30); "
    "src.backup(dst); dst.close(); src.close()"
)


class BackupFailed(HarnessError):
    """A backup could not be taken or verified; no file with a backup's final name was left."""


class RestoreFailed(BackupFailed):
    """A backup could not be restored; the message says what the restore tool answered."""


@dataclass
class Backup:
    """A verified backup: where it is, how it was checked, and the command that restores it."""

    path: Path
    engine: str
    size: int
    sha256: str
    verified: bool
    verification: str
    restore_command: list[str]
    created: str
    # What taking it did to the live database beyond reading it (SQLite: a read lock writers waited on).
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins for the evidence; holds no password (the restore command reads PGPASSWORD)."""
        found = {
            "path": str(self.path),
            "engine": self.engine,
            "size": self.size,
            "sha256": self.sha256,
            "verified": self.verified,
            "verification": self.verification,
            "restore_command": list(self.restore_command),
            "created": self.created,
        }
        if self.note is not None:
            found["note"] = self.note
        return found


@dataclass
class _Clock:
    """The one total deadline every step of a backup or restore shares, and its progress lines."""

    timeout: float
    progress: Callable[[str], None] | None = None
    started: float = field(init=False)
    deadline: float = field(init=False)
    last_report: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.last_report = time.monotonic()
        self.deadline = self.started + self.timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def report(self, what: str) -> None:
        """Say what is being waited on, for how long so far and until when (every PROGRESS_EVERY s)."""
        now = time.monotonic()
        if self.progress is None or now - self.last_report < PROGRESS_EVERY:
            return
        self.last_report = now
        self.progress(f"{what}: {now - self.started:.0f} s so far, timeout {self.timeout:g} s")


@dataclass
class _Source:
    """A parsed database URL: what to connect to, how to show it, and the secrets to hide."""

    url: URL
    engine: str
    password: str | None
    shown: str

    def hide(self, text: str) -> str:
        """``text`` with the password, in plain and URL-encoded forms, replaced by ``***``."""
        if self.password:
            forms = {self.password, quote(self.password, safe=""), quote(self.password), quote_plus(self.password)}
            for form in sorted(forms, key=len, reverse=True):
                text = text.replace(form, "***")
        return text


def take_backup(
    url: str,
    dest_dir: Path,
    *,
    password: str | None = None,
    timeout: float = 300.0,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Backup:
    """Back up the database at ``url`` into ``dest_dir``, verify it, and return what was made.

    The file is ``pre-rollback-YYYYmmdd-HHMMSS.dump`` (PostgreSQL, custom format) or ``.sqlite3``
    (UTC time), or ``name`` plus that suffix. ``password`` replaces the URL's password. Raises
    BackupFailed, naming what failed, when the database cannot be read, the disk lacks room, the
    tool fails, verification fails or ``timeout`` seconds pass; nothing complete-looking is left.
    ``progress`` gets a line every PROGRESS_EVERY seconds while a step runs.
    """
    clock = _Clock(timeout, progress)
    source = _parse(url, password)
    engine = _engine(source, clock)
    dest_dir = Path(dest_dir).absolute()
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackupFailed(f"cannot create the backup folder {dest_dir}: {exc.strerror or exc}") from None
    with _folder_locked(dest_dir, clock):
        swept = _sweep_abandoned(dest_dir)
    for line in swept:
        if progress is not None:
            progress(line)
    final = _backup_path(dest_dir, name, SUFFIXES[source.engine])
    estimate = engine.estimate()
    free, reserve = _free_and_reserve(dest_dir)
    if free < estimate + reserve:
        raise BackupFailed(
            f"not enough free space for a backup of {source.shown} in {dest_dir}: {_size(free)} free, "
            f"{_size(estimate + reserve)} needed (about {_size(estimate)} for the backup, and {_size(reserve)} "
            "left free after it); nothing was written: free some space or choose another backup folder"
        )
    partial = final.with_name(final.name + INCOMPLETE)
    with _folder_locked(dest_dir, clock):
        claim = _claim(partial)
    try:
        return _write_and_keep(engine, source, partial, final, dest_dir)
    finally:
        os.close(claim)


def _write_and_keep(engine: _Sqlite | _Postgres, source: _Source, partial: Path, final: Path, dest_dir: Path) -> Backup:
    """Dump into ``partial``, verify it, and give it its final name; on any failure remove it."""
    try:
        note = engine.dump(partial)
        verification = engine.verify(partial)
        _fsync(partial)
        size, digest = _digest(partial)
        if final.exists():
            raise BackupFailed(f"{final} appeared while the backup was taken; it was not overwritten")
        partial.rename(final)
    except BaseException as exc:
        _discard(partial)
        if isinstance(exc, OSError):
            raise BackupFailed(
                f"backup of {source.shown} into {final} failed: {source.hide(exc.strerror or str(exc))} "
                f"({exc.filename or final}); the partial file was removed"
            ) from None
        if isinstance(exc, sqlite3.Error):
            raise BackupFailed(f"backup of {source.shown} into {final} failed: {exc}") from None
        raise
    _fsync_folder(dest_dir)
    return Backup(
        path=final,
        engine=source.engine,
        size=size,
        sha256=digest,
        verified=True,
        verification=verification,
        restore_command=engine.restore_command(final, source),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        note=note,
    )


def restore(
    backup: Backup,
    into_url: str,
    *,
    password: str | None = None,
    timeout: float = 300.0,
    progress: Callable[[str], None] | None = None,
) -> None:
    """Restore ``backup`` into the database at ``into_url`` with the same command as ``restore_command``.

    The backup's SHA-256 is checked first. Raises RestoreFailed, naming what failed.
    """
    clock = _Clock(timeout, progress)
    try:
        target = _parse(into_url, password)
    except BackupFailed as exc:
        raise RestoreFailed(str(exc)) from None
    if target.engine != backup.engine:
        raise RestoreFailed(f"a {backup.engine} backup cannot be restored into {target.shown} ({target.engine})")
    if not backup.path.is_file():
        raise RestoreFailed(f"backup {backup.path} does not exist")
    _, digest = _digest(backup.path)
    if digest != backup.sha256:
        raise RestoreFailed(
            f"backup {backup.path} changed since it was taken (SHA-256 {digest}, recorded {backup.sha256}); "
            "not restored"
        )
    try:
        engine = _engine(target, clock)
    except BackupFailed as exc:
        raise RestoreFailed(str(exc)) from None
    engine.restore(backup.path)


def backup_findings(
    url: str, dest_dir: Path, *, password: str | None = None, timeout: float = FINDINGS_TIMEOUT
) -> list[Finding]:
    """Preflight: can a backup of ``url`` be taken into ``dest_dir`` now? Changes nothing.

    Always four findings, in this order: ``backup-source`` (the database answers and its size is
    known), ``backup-tools`` (pg_dump/pg_restore/psql present and new enough for the server),
    ``backup-destination`` (the folder exists or can be made, and is writable), ``backup-space``.
    """
    clock = _Clock(timeout)
    dest_dir = Path(dest_dir).absolute()
    destination = _destination_finding(dest_dir)
    try:
        source = _parse(url, password)
    except BackupFailed as exc:
        return [
            Finding("backup-source", False, str(exc)),
            Finding("backup-tools", False, "not checked: the database URL is not usable", checked=False),
            destination,
            Finding("backup-space", False, "not checked: the database URL is not usable", checked=False),
        ]
    try:
        engine = _engine(source, clock)
    except BackupFailed as exc:
        return [
            Finding("backup-source", False, f"not checked: {exc}", checked=False),
            Finding("backup-tools", False, str(exc)),
            destination,
            Finding("backup-space", False, f"not checked: {exc}", checked=False),
        ]
    try:
        estimate = engine.estimate()
    except BackupFailed as exc:
        problem = engine.tools_problem()
        return [
            Finding("backup-source", False, str(exc)),
            Finding("backup-tools", problem is None, problem or engine.tools_summary()),
            destination,
            Finding("backup-space", False, "not checked: the database's size is not known", checked=False),
        ]
    tools_problem = engine.tools_problem()
    tools = Finding("backup-tools", tools_problem is None, tools_problem or engine.tools_summary())
    source_ok = Finding("backup-source", True, f"{source.shown} answers; about {_size(estimate)} to back up")
    if not destination.ok:
        space = Finding("backup-space", False, "not checked: the backup folder is not usable", checked=False)
        return [source_ok, tools, destination, space]
    free, reserve = _free_and_reserve(_existing_parent(dest_dir))
    needed = estimate + reserve
    space = Finding(
        "backup-space",
        free >= needed,
        f"{_size(free)} free in {dest_dir}, about {_size(needed)} needed"
        + ("" if free >= needed else ": free some space or choose another backup folder"),
    )
    return [source_ok, tools, destination, space]


# --- URLs -------------------------------------------------------------------------------------


def _parse(url: str, password: str | None) -> _Source:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise BackupFailed(f"not a database URL: {redact_url(url)}") from None
    query = dict(parsed.query)
    in_query = query.pop("password", None)
    if in_query is not None:
        parsed = parsed.set(query=query)
        if parsed.password is None and isinstance(in_query, str):
            parsed = parsed.set(password=in_query)
    if password is not None:
        parsed = parsed.set(password=password)
    backend = parsed.get_backend_name()
    secret = parsed.password if isinstance(parsed.password, str) and parsed.password else None
    shown = SECRET_QUERY.sub(r"\1***", parsed.render_as_string(hide_password=True))
    if backend not in ENGINES:
        raise BackupFailed(f"cannot back up {shown}: a {backend!r} database; backups support {', '.join(ENGINES)}")
    secret_keys = sorted(key for key in query if SECRET_QUERY.search(f"?{key}="))
    if secret_keys and backend == "postgresql":
        raise BackupFailed(
            f"cannot back up {shown}: the PostgreSQL tools would get ?{secret_keys[0]}= on their command line; "
            "give the password as the URL's password or the password setting, or use ~/.pgpass"
        )
    return _Source(url=parsed, engine=backend, password=secret, shown=shown)


def _libpq_uri(url: URL) -> str:
    """A libpq connection URI for ``url`` without its password (it travels in PGPASSWORD)."""
    netloc = ""
    if url.username:
        netloc += quote(url.username, safe="") + "@"
    if url.host:
        netloc += f"[{url.host}]" if ":" in url.host else quote(url.host, safe="")
    if url.port:
        netloc += f":{url.port}"
    uri = f"postgresql://{netloc}/{quote(url.database or '', safe='')}"
    items = [(key, value) for key, values in url.query.items() for value in _as_list(values)]
    return f"{uri}?{urlencode(items)}" if items else uri


def _as_list(value: str | tuple[str, ...]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# --- files ------------------------------------------------------------------------------------

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _backup_path(dest_dir: Path, name: str | None, suffix: str) -> Path:
    """The backup's final path: never one that exists (or whose ``.incomplete`` exists)."""

    def taken(path: Path) -> bool:
        return path.exists() or path.with_name(path.name + INCOMPLETE).exists()

    if name is not None:
        stem = name[: -len(suffix)] if name.endswith(suffix) else name
        if not _NAME.match(stem) or ".." in stem:
            raise BackupFailed(
                f"backup name {name!r} is not a plain file name (letters, digits, '.', '_', '+', '-', "
                "not starting with '.')"
            )
        path = dest_dir / f"{stem}{suffix}"
        partial = path.with_name(path.name + INCOMPLETE)
        if partial.exists() and not path.exists():
            raise BackupFailed(
                f"another backup is writing {partial.name} in {dest_dir} right now (or it could not be "
                "removed): wait for it, or choose another name"
            )
        if taken(path):
            raise BackupFailed(f"{path} already exists; a backup is never overwritten: choose another name")
        return path
    stem = f"pre-rollback-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    path = dest_dir / f"{stem}{suffix}"
    count = 1
    while taken(path):
        count += 1
        path = dest_dir / f"{stem}-{count}{suffix}"
    return path


def _claim(partial: Path) -> int:
    """Create ``partial`` and hold a lock on it while the backup writes it (the returned descriptor).

    The lock goes with the process: a partial file nobody holds was left by a backup that was
    killed, and the next backup into the folder removes it (``_sweep_abandoned``).
    """
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BackupFailed(f"cannot create {partial}: {exc.strerror or exc}") from None
    try:
        # Made a moment ago, with the folder locked: no sweep can hold it.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        _discard(partial)
        raise BackupFailed(f"cannot lock {partial}: {exc.strerror or exc}") from None
    return fd


@contextmanager
def _folder_locked(folder: Path, clock: _Clock) -> Iterator[None]:
    """The backup folder, locked while partial files are created or swept: a sweep never removes a
    partial file created but not yet claimed. Held for milliseconds; waited for within the deadline."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise BackupFailed(f"cannot open the backup folder {folder}: {exc.strerror or exc}") from None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock.expired():
                    raise BackupFailed(
                        f"the backup folder {folder} stayed locked by another backup for {clock.timeout:g} s"
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # closing lets go of the lock


def _sweep_abandoned(dest_dir: Path) -> list[str]:
    """Remove the partial backups nobody holds (their backup was killed); say what was removed.

    A partial file a running backup writes is locked by it (``_claim``) and stays. Only files
    named like the harness's partial backups are looked at.
    """
    said = []
    for path in sorted(dest_dir.glob(f"*{INCOMPLETE}")):
        if any(path.name.endswith(suffix + INCOMPLETE) for suffix in SUFFIXES.values()):
            size = _remove_if_unheld(path)
            if size is not None:
                said.append(
                    f"removed {path} ({_size(size)}): a partial backup left by a backup that was interrupted "
                    "(nothing holds it any more)"
                )
    return said


def _remove_if_unheld(path: Path) -> int | None:
    """Remove ``path`` (and SQLite's files beside it) unless a backup holds its lock; its size if removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        size = os.fstat(fd).st_size
        _discard(path)
    except BlockingIOError:
        return None  # a backup is writing it right now
    finally:
        os.close(fd)
    return None if path.exists() else size


def _discard(partial: Path) -> None:
    """Remove a failed backup and the files SQLite may have made beside it."""
    for path in (partial, *(partial.with_name(partial.name + end) for end in ("-journal", "-wal", "-shm"))):
        try:
            path.unlink(missing_ok=True)
        except OSError:
            # It keeps its ``.incomplete`` name: never mistaken for a backup.
            pass


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; some file systems cannot sync a folder, and the file is synced already."""
    try:
        _fsync(folder)
    except OSError:
        pass


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def _free_and_reserve(folder: Path) -> tuple[int, int]:
    """Free bytes in ``folder``'s file system, and how many of them a backup must leave free."""
    usage = shutil.disk_usage(folder)
    return usage.free, max(SPACE_MARGIN, usage.total // RESERVE_SHARE)


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _destination_finding(dest_dir: Path) -> Finding:
    if dest_dir.exists() and not dest_dir.is_dir():
        return Finding("backup-destination", False, f"{dest_dir} exists and is not a folder")
    parent = _existing_parent(dest_dir)
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return Finding("backup-destination", False, f"{parent} is not writable: backups cannot be written there")
    made = "" if dest_dir.exists() else " (it will be created)"
    return Finding("backup-destination", True, f"backups go to {dest_dir}{made}")


def _cut(text: str) -> str:
    line = " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return line if len(line) <= _STDERR_LIMIT else line[: _STDERR_LIMIT - 1] + "…"


# --- engines ----------------------------------------------------------------------------------


def _engine(source: _Source, clock: _Clock) -> _Sqlite | _Postgres:
    return _Sqlite(source, clock) if source.engine == "sqlite" else _Postgres(source, clock)


class _Sqlite:
    def __init__(self, source: _Source, clock: _Clock) -> None:
        self.source = source
        self.clock = clock
        database = source.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise BackupFailed(f"cannot back up {source.shown}: name the database by its file path (sqlite:///path)")
        self.path = Path(database).absolute()

    def tools_summary(self) -> str:
        return f"SQLite {_sqlite_version()} online backup API (Python's sqlite3)"

    def tools_problem(self) -> str | None:
        return None

    def _open_source(self) -> Any:
        if not self.path.is_file():
            raise BackupFailed(f"cannot back up {self.source.shown}: database file {self.path} does not exist")
        try:
            # Read-only: never creates the file, a journal or a WAL owned by whoever runs the harness.
            return sqlite3.connect(
                f"file:{quote(str(self.path))}?mode=ro", uri=True, timeout=self._busy_wait(), check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise BackupFailed(f"cannot open {self.path}: {exc}") from None

    def _journal_mode(self, source: Any) -> str:
        # The connection's first statement reads the schema: it needs the lock a commit excludes.
        mode = self._while_locked(lambda: source.execute("PRAGMA journal_mode").fetchone()[0])
        return str(mode).lower()

    def _hold_snapshot(self, source: Any) -> None:
        """Open a read transaction on ``source``, kept until it closes: the backup's steps copy one state.

        The backup API copies in steps and starts over whenever another connection writes between
        two of them, so a database written without pause would never finish copying. With the
        source's read transaction held, every step reads the same snapshot. In WAL mode that costs
        the application nothing (readers never block writers), so it is done from the start; in the
        other journal modes the read lock makes the application's commits wait for the copy, so it
        is done only once the copy kept starting over (``_SQLITE_RESTARTS_BEFORE_HOLDING``).
        """
        source.execute("BEGIN")
        self._while_locked(lambda: source.execute("SELECT count(*) FROM sqlite_master").fetchall())

    def _busy_wait(self) -> float:
        return max(0.05, min(1.0, self.clock.remaining()))

    def estimate(self) -> int:
        connection = self._open_source()
        try:
            pages = self._while_locked(lambda: connection.execute("PRAGMA page_count").fetchone()[0])
            page_size = self._while_locked(lambda: connection.execute("PRAGMA page_size").fetchone()[0])
            return int(pages) * int(page_size)
        except sqlite3.OperationalError as exc:
            raise BackupFailed(f"cannot read {self.path}: {exc}") from None
        finally:
            connection.close()

    def _while_locked(self, read: Callable[[], Any]) -> Any:
        """``read()``, asked again while another connection holds the database locked, until the deadline."""
        while True:
            try:
                return read()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if self.clock.expired():
                    raise BackupFailed(self._timed_out("the database stayed locked")) from None
                self.clock.report(f"SQLite database {self.path} is locked by another connection, waiting")

    def _timed_out(self, why: str) -> str:
        return (
            f"backup of {self.source.shown} did not finish within its {self.clock.timeout:g} s timeout "
            f"({why}); it was stopped and nothing was kept"
        )

    def dump(self, partial: Path) -> str | None:
        """Copy the database into ``partial``; say what the copy did to the live database, if anything."""
        source = self._open_source()
        try:
            target = sqlite3.connect(partial, timeout=self._busy_wait())
        except sqlite3.Error as exc:
            source.close()
            raise BackupFailed(f"cannot write {partial}: {exc}") from None
        note: str | None = None
        try:
            if self._journal_mode(source) == "wal":
                # One snapshot, held across the steps: no restarts, and WAL readers never block writers.
                self._hold_snapshot(source)
                self._copy(source, target, restarts_allowed=None)
            else:
                try:
                    self._copy(source, target, restarts_allowed=_SQLITE_RESTARTS_BEFORE_HOLDING)
                except _KeptRestarting as restarted:
                    note = self._copy_under_read_lock(source, target, restarted.times)
            # One self-contained file, even when the live database runs in WAL mode.
            target.execute("PRAGMA journal_mode=DELETE").fetchall()
            return note
        except sqlite3.Error as exc:
            raise BackupFailed(f"SQLite online backup of {self.path} into {partial} failed: {exc}") from None
        finally:
            target.close()
            source.close()

    def _copy(self, source: Any, target: Any, *, restarts_allowed: int | None) -> None:
        """The online backup in steps, within the deadline; ``_KeptRestarting`` once writes between
        steps made it start over ``restarts_allowed`` times (None: never given up for that)."""
        last: dict[str, int] = {}
        restarts = 0

        def each_step(status: int, remaining: int, total: int) -> None:
            nonlocal restarts
            if remaining > last.get("remaining", remaining):
                restarts += 1  # another connection wrote between two steps: the copy started again
            last.update(status=status, remaining=remaining, total=total)
            if self.clock.expired():
                raise _DeadlineReached
            if restarts_allowed is not None and restarts >= restarts_allowed:
                raise _KeptRestarting(restarts)
            state = "waiting for a lock" if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) else "copying"
            self.clock.report(f"SQLite backup of {self.path}: {total - remaining} of {total} pages, {state}")

        try:
            source.backup(target, pages=_SQLITE_STEP_PAGES, progress=each_step, sleep=0.05)
        except _DeadlineReached:
            busy = last.get("status") in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            raise BackupFailed(
                self._timed_out("the database stayed locked" if busy else "the database kept changing or is slow")
            ) from None

    def _copy_under_read_lock(self, source: Any, target: Any, restarts: int) -> str:
        """Written faster than a step copies: one whole copy under a read lock. The application's
        commits wait meanwhile (within SQLite's busy timeout), for this copy only."""
        if self.clock.progress is not None:
            self.clock.progress(
                f"SQLite backup of {self.path}: the database changed {restarts} times mid-copy; "
                "copying it under a read lock (writers wait until the copy ends)"
            )
        self._hold_snapshot(source)
        held = time.monotonic()
        self._copy(source, target, restarts_allowed=None)
        return (
            f"writes restarted the copy {restarts} times, so it was taken under a read lock: "
            f"the application's commits waited for it (up to {time.monotonic() - held:.2f} s)"
        )

    def verify(self, partial: Path) -> str:
        connection = sqlite3.connect(f"file:{quote(str(partial))}?mode=ro&immutable=1", uri=True)
        connection.set_progress_handler(lambda: 1 if self.clock.expired() else 0, 10_000)
        try:
            rows = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
            tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        except sqlite3.Error as exc:
            if self.clock.expired():
                raise BackupFailed(self._timed_out("PRAGMA integrity_check was still running")) from None
            raise BackupFailed(f"PRAGMA integrity_check could not read the backup {partial}: {exc}") from None
        finally:
            connection.close()
        if rows != ["ok"]:
            raise BackupFailed(f"PRAGMA integrity_check on the backup {partial} failed: {_cut(chr(10).join(rows))}")
        return f"PRAGMA integrity_check: ok ({tables} tables)"

    def restore_command(self, backup: Path, into: _Source) -> list[str]:
        return [sys.executable, "-c", _SQLITE_RESTORE, str(backup), str(self.path)]

    def restore(self, backup: Path) -> None:
        if not self.path.parent.is_dir():
            raise RestoreFailed(f"cannot restore into {self.path}: its folder does not exist")
        _run(self.restore_command(backup, self.source), self.source, self.clock, "the SQLite restore", RestoreFailed)


class _DeadlineReached(Exception):
    """Raised from SQLite's backup progress callback to abort a backup past its deadline."""


class _KeptRestarting(Exception):
    """Raised from SQLite's backup progress callback when writes keep restarting a stepped copy."""

    def __init__(self, times: int) -> None:
        super().__init__(times)
        self.times = times


class _Postgres:
    def __init__(self, source: _Source, clock: _Clock) -> None:
        self.source = source
        self.clock = clock
        self.uri = _libpq_uri(source.url)
        self.bindir = _pg_bindir()
        if self.bindir is None:
            raise BackupFailed(
                "pg_dump was not found (PATH, /usr/lib/postgresql/*/bin): install the PostgreSQL client "
                "tools of the server's version or newer (Debian: postgresql-client)"
            )
        self.server_version: int | None = None

    def tool(self, name: str) -> str:
        assert self.bindir is not None
        return str(self.bindir / name)

    def tools_summary(self) -> str:
        return f"{self.tool('pg_dump')} ({_tool_version(self.tool('pg_dump')) or 'version unknown'})"

    def tools_problem(self) -> str | None:
        for name in ("pg_dump", "pg_restore", "psql"):
            if not os.access(self.tool(name), os.X_OK):
                return f"{self.tool(name)} is missing (pg_dump's folder lacks it)"
        version = _tool_version(self.tool("pg_dump"))
        if version is None:
            return f"{self.tool('pg_dump')} --version did not answer"
        if self.server_version is not None and version // 10000 < self.server_version // 10000:
            return (
                f"{self.tool('pg_dump')} is version {version // 10000}, older than the server "
                f"({self.server_version // 10000}): pg_dump refuses to dump a newer server; install a newer client"
            )
        return None

    def estimate(self) -> int:
        """The size of the tables' data (indexes are not dumped); also reads the server's version."""
        sql = (
            "SELECT current_setting('server_version_num'), "
            "coalesce(sum(pg_table_size(c.oid)), 0) + pg_table_size('pg_largeobject') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        )
        argv = [
            self.tool("psql"),
            "--no-password",
            "--no-psqlrc",
            "--tuples-only",
            "--no-align",
            "--field-separator=|",
            "--set=ON_ERROR_STOP=1",
            f"--dbname={self.uri}",
            f"--command={sql}",
        ]
        done = _run(argv, self.source, self.clock, f"reading the size of {self.source.shown}", BackupFailed)
        try:
            version, size = done.stdout.strip().split("|")
            self.server_version = int(version)
            return int(size)
        except ValueError:
            raise BackupFailed(f"unexpected answer from psql about {self.source.shown}: {_cut(done.stdout)}") from None

    def dump(self, partial: Path) -> str | None:
        """pg_dump's one snapshot (MVCC: writers never wait for it); nothing to say beyond reading."""
        lock_wait_ms = _lock_timeout_ms(self.clock)
        argv = [
            self.tool("pg_dump"),
            "--format=custom",
            "--no-password",
            f"--lock-wait-timeout={lock_wait_ms}",
            f"--file={partial}",
            f"--dbname={self.uri}",
        ]
        what = f"pg_dump of {self.source.shown}"
        _run(argv, self.source, self.clock, what, BackupFailed, writing=partial, extra_env=self.session_options())
        return None

    def verify(self, partial: Path) -> str:
        listed = _run(
            [self.tool("pg_restore"), "--list", str(partial)],
            self.source,
            self.clock,
            "pg_restore --list of the backup",
            BackupFailed,
        )
        # An empty database dumps to a valid archive with no entries; a damaged one fails --list.
        entries = [line for line in listed.stdout.splitlines() if line.strip() and not line.startswith(";")]
        data = sum(1 for line in entries if " TABLE DATA " in line)
        # --list reads only the table of contents at the start; a full read decompresses every block.
        _run(
            [self.tool("pg_restore"), "--file=/dev/null", str(partial)],
            self.source,
            self.clock,
            "a full read of the backup (pg_restore --file=/dev/null)",
            BackupFailed,
        )
        return f"pg_restore --list: {len(entries)} entries, {data} with table data; full read: ok"

    def restore_command(self, backup: Path, into: _Source) -> list[str]:
        return [
            self.tool("pg_restore"),
            "--no-password",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            f"--dbname={_libpq_uri(into.url)}",
            str(backup),
        ]

    def restore(self, backup: Path) -> None:
        what = f"pg_restore into {self.source.shown}"
        self.read_server_version(f"{what} (checking the connection first)", RestoreFailed)
        argv = self.restore_command(backup, self.source)
        _run(argv, self.source, self.clock, what, RestoreFailed, extra_env=self.session_options())

    def read_server_version(self, what: str, error: Callable[[str], BackupFailed]) -> None:
        argv = [self.tool("psql"), "--no-password", "--no-psqlrc", "--tuples-only", "--no-align"]
        argv += [f"--dbname={self.uri}", "--command=SHOW server_version_num"]
        done = _run(argv, self.source, self.clock, what, error)
        try:
            self.server_version = int(done.stdout.strip())
        except ValueError:
            raise error(f"unexpected answer from psql about {self.source.shown}: {_cut(done.stdout)}") from None

    def session_options(self) -> dict[str, str]:
        """PGOPTIONS for the tool's server session: on PostgreSQL 14+ it ends within a second once the
        tool is gone (killed at the deadline), instead of waiting on, and holding, locks: pg_restore's
        script sets lock_timeout = 0 itself, and a dropped-but-uncommitted table blocks the application."""
        if self.server_version is None or self.server_version < 140000:
            return {}
        options = os.environ.get("PGOPTIONS", "")
        return {"PGOPTIONS": f"{options} -c client_connection_check_interval=1000".strip()}


def _lock_timeout_ms(clock: _Clock) -> int:
    """A lock wait that ends a second before the deadline, so the server's own error is what is reported."""
    return max(500, int((clock.remaining() - 1.0) * 1000))


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_dump")
    if found:
        return Path(found).parent
    installed = sorted(
        (path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "pg_dump").is_file()),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    return installed[-1] if installed else None


def _tool_version(tool: str) -> int | None:
    """``pg_dump --version`` as a number like ``server_version_num`` (15.5 -> 150005)."""
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\)\s+(\d+)(?:\.(\d+))?", done.stdout)
    if not match:
        return None
    return int(match.group(1)) * 10000 + int(match.group(2) or 0)


def _sqlite_version() -> str:
    return sqlite3.sqlite_version


def _run(
    argv: list[str],
    source: _Source,
    clock: _Clock,
    what: str,
    error: Callable[[str], BackupFailed],
    writing: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` within the time left; raise ``error`` naming ``what`` and the tool's stderr."""
    remaining = clock.remaining()
    if remaining <= 0:
        raise error(f"{what} was not started: the {clock.timeout:g} s timeout had passed")
    env = dict(os.environ)
    if source.password is not None:
        env["PGPASSWORD"] = source.password
    env.setdefault("PGCONNECT_TIMEOUT", str(max(2, min(30, int(remaining)))))
    env.update(extra_env or {})
    try:
        child = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise error(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    with child:
        try:
            while True:
                try:
                    stdout, stderr = child.communicate(timeout=max(0.0, min(PROGRESS_EVERY, clock.remaining())))
                    break
                except subprocess.TimeoutExpired:
                    if clock.expired():
                        raise error(
                            f"{what} did not finish within the {clock.timeout:g} s timeout "
                            f"(the database stopped answering?); {Path(argv[0]).name} was killed"
                        ) from None
                    written = f", {_size(writing.stat().st_size)} written" if writing and writing.exists() else ""
                    clock.report(f"{what}{written}")
        except BaseException:
            child.kill()
            child.communicate()
            raise
    if child.returncode != 0:
        raise error(f"{what} failed: {source.hide(_cut(stderr)) or _status(argv[0], child.returncode)}")
    return subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)


def _status(tool: str, code: int) -> str:
    if code > 0:
        return f"{Path(tool).name} exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"{Path(tool).name} was killed by {name} ({signal.strsignal(-code) or 'unknown signal'})"
