"""The ``postgres`` lock backend: a session-level advisory lock on the configured database.

``pg_try_advisory_lock(key)`` where ``key`` is a stable 64-bit hash of the service and target names,
so every machine whose config names the same service and target asks for the same lock. The lock
belongs to the session: when the holder's process dies (or its host, once TCP keepalives notice)
the server ends the session and the lock is free at once; nothing stale is left to break by hand.

Who holds it: the holder's session carries ``application_name = 'rollback-harness RUN_ID'``, and a
small table (``rollback_harness_lock_holders``, made on first use when the user may) keeps its
host, user, run id and since when; a refused run reads the holder's session from ``pg_locks`` and
names it. A row left by a session that ended is how a run knows it took over from a dead holder.

``--rollback-break-lock RUN_ID`` ends the holder's session (``pg_terminate_backend``: the same
database user, or a member of ``pg_signal_backend``) and takes the lock.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy.engine import make_url

from ..errors import ConfigError
from ..lock import HOLDER_FIELDS, describe_holder, holder_facts, refusal

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec

TABLE = "rollback_harness_lock_holders"
APPLICATION = "rollback-harness "
KEEPALIVE_EVERY = 15.0  # seconds between the queries that keep an idle session open
BREAK_WAIT = 10.0  # seconds for a terminated holder's session to end


def advisory_key(service: str, target: str) -> int:
    """A stable signed 64-bit key: the same names give the same key on every machine."""
    digest = hashlib.sha256(f"rollback-harness\0{service}\0{target}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def connect_arguments(url: str) -> dict[str, Any]:
    """psycopg's keyword arguments for a ``postgresql[+driver]://`` URL (as the [database] url is written)."""
    parsed = make_url(url)
    arguments: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    arguments.update({k: v for k, v in parsed.query.items() if isinstance(v, str)})
    return {k: v for k, v in arguments.items() if v is not None}


class PostgresLock:
    def __init__(
        self,
        url: str,
        service: str,
        target: str,
        path: Path,
        run_id: str,
        *,
        timeout: float = 10.0,
        break_run: str | None = None,
    ) -> None:
        self.url = url
        self.name = f"{service}/{target}"
        self.key = advisory_key(service, target)
        self.path = path
        self.run_id = run_id
        self.timeout = timeout
        self.break_run = break_run
        self.taken_over: dict[str, Any] | None = None
        self.broken: dict[str, Any] | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.Lock()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self._has_table = False

    @classmethod
    def from_config(
        cls, config: HarnessConfig, spec: TargetSpec, path: Path, run_id: str, *, break_run: str | None = None
    ) -> PostgresLock:
        settings = spec.lock if spec.lock is not None else config.settings.lock
        url = settings.url or config.database_url()
        if url is None:  # load_config refuses this; a config built by hand may not
            raise ConfigError("lock.backend = 'postgres' needs lock.url or a [database] url")
        service = config.settings.service.name
        return cls(url, service, spec.name, path, run_id, timeout=settings.timeout, break_run=break_run)

    @property
    def where(self) -> str:
        parsed = make_url(self.url)
        return (
            f"postgres advisory lock {self.key} ({self.name}) on {parsed.host}:{parsed.port or 5432}/{parsed.database}"
        )

    # -- taking it --------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        arguments = connect_arguments(self.url)
        # The URL's own options (?options=-csearch_path%3Dops) come first; ours bound each statement.
        options = " ".join(
            filter(None, [arguments.pop("options", ""), f"-c statement_timeout={int(self.timeout * 1000)}"])
        )
        # Bounded everywhere: connecting (the whole of it), each statement, and a peer that vanished.
        arguments.update(
            connect_timeout=max(1, math.ceil(self.timeout)),
            application_name=(APPLICATION + self.run_id)[:63],
            options=options,
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
        return psycopg.connect(autocommit=True, **arguments)

    def acquire(self) -> str | None:
        started = time.monotonic()
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            waited = time.monotonic() - started
            return f"cannot take the lock {self.where}: cannot connect within {waited:.1f} s: {_first_line(exc)}"
        try:
            got = self._try_lock(conn)
            if not got:
                holder = self._holder(conn)
                if self.break_run is None or holder is None or holder.get("run_id") != self.break_run:
                    conn.close()
                    return refusal(self.where, holder, self.break_run)
                problem = self._break(conn, holder)
                if problem is not None:
                    conn.close()
                    return problem
            self._conn = conn
            self._has_table = self._ensure_table(conn)
            self.taken_over = self._left_behind(conn)
            self._write_note(conn)
        except psycopg.Error as exc:
            conn.close()
            self._conn = None
            return f"cannot take the lock {self.where}: {_first_line(exc)}"
        self._keepalive = threading.Thread(target=self._keep_alive, name="rollback-lock-keepalive", daemon=True)
        self._keepalive.start()
        return None

    def _try_lock(self, conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def _holder_session(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        unsigned = self.key % (1 << 64)
        row = conn.execute(
            "SELECT a.pid, a.application_name, a.usename, host(a.client_addr), a.backend_start "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::bigint::oid "
            "AND l.objid = %s::bigint::oid AND l.objsubid = 1",
            (unsigned >> 32, unsigned & 0xFFFFFFFF),
        ).fetchone()
        if row is None:
            return None
        pid, application, db_user, client, started = row
        return {
            "backend_pid": pid,
            "application_name": application,
            "db_user": db_user,
            "client_addr": client,
            "backend_start": started.isoformat() if started is not None else None,
        }

    def _holder(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """Who holds the lock: the note its session wrote, else what its session says of itself."""
        session = self._holder_session(conn)
        if session is None:
            return None
        note = self._read_note(conn, session["backend_pid"])
        if note is not None:
            return {**note, "backend_pid": session["backend_pid"]}
        application = str(session.get("application_name") or "")
        run_id = application[len(APPLICATION) :] if application.startswith(APPLICATION) else None
        return {
            "run_id": run_id,
            "pid": f"backend {session['backend_pid']}",
            "host": session.get("client_addr") or "local socket",
            "user": f"database user {session.get('db_user')}",
            "since": session.get("backend_start"),
            "backend_pid": session["backend_pid"],
        }

    def _break(self, conn: psycopg.Connection[Any], holder: dict[str, Any]) -> str | None:
        """End the holder's session (its lock goes with it) and take the lock, within BREAK_WAIT."""
        try:
            conn.execute("SELECT pg_terminate_backend(%s)", (holder["backend_pid"],))
        except psycopg.Error as exc:
            return (
                f"could not break the lock {self.where} of {describe_holder(holder)}: {_first_line(exc)} "
                "(ending another session needs the same database user or the pg_signal_backend role)"
            )
        deadline = time.monotonic() + BREAK_WAIT
        while not self._try_lock(conn):
            if time.monotonic() > deadline:
                return f"could not break the lock {self.where}: {describe_holder(holder)} still holds it"
            time.sleep(0.05)
        self.broken = {**{k: holder.get(k) for k in HOLDER_FIELDS}, "backend_pid": holder["backend_pid"]}
        return None

    # -- the holder note --------------------------------------------------------------------------

    def _ensure_table(self, conn: psycopg.Connection[Any]) -> bool:
        """The note table, made when missing; False when this user may not (application_name still says)."""
        try:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (lock_key bigint PRIMARY KEY, lock_name text NOT NULL, "
                "backend_pid integer NOT NULL, run_id text NOT NULL, pid integer, host text, os_user text, "
                "since text, command text)"
            )
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            return True  # another run made it at the same moment
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True

    def _read_note(self, conn: psycopg.Connection[Any], backend_pid: int | None = None) -> dict[str, Any] | None:
        try:
            row = conn.execute(
                f"SELECT run_id, pid, host, os_user, since, command, backend_pid FROM {TABLE} WHERE lock_key = %s",
                (self.key,),
            ).fetchone()
        except (psycopg.errors.UndefinedTable, psycopg.errors.InsufficientPrivilege):
            return None
        if row is None or (backend_pid is not None and row[6] != backend_pid):
            return None
        return {**dict(zip(HOLDER_FIELDS, row[:6], strict=True)), "backend_pid": row[6]}

    def _left_behind(self, conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
        """A note whose session ended without releasing: its lock went with it; say from whom."""
        if not self._has_table:
            return None
        note = self._read_note(conn)
        if note is None or note.get("run_id") == self.run_id:
            return None
        if self.broken is not None and note.get("backend_pid") == self.broken.get("backend_pid"):
            return None  # the lock this run broke: recorded as broken, not as taken over
        return {**note, "pid_alive": None, "session": "ended"}

    def _write_note(self, conn: psycopg.Connection[Any]) -> None:
        if not self._has_table:
            return
        facts = holder_facts(self.run_id)
        conn.execute(
            f"INSERT INTO {TABLE} (lock_key, lock_name, backend_pid, run_id, pid, host, os_user, since, command) "
            "VALUES (%s, %s, pg_backend_pid(), %s, %s, %s, %s, %s, %s) ON CONFLICT (lock_key) DO UPDATE SET "
            "lock_name = EXCLUDED.lock_name, backend_pid = EXCLUDED.backend_pid, run_id = EXCLUDED.run_id, "
            "pid = EXCLUDED.pid, host = EXCLUDED.host, os_user = EXCLUDED.os_user, since = EXCLUDED.since, "
            "command = EXCLUDED.command",
            (self.key, self.name, *(facts[k] for k in HOLDER_FIELDS)),
        )

    def describe_takeover(self) -> str:
        held = self.taken_over
        if held is None:
            return ""
        return f"taken over from run {held.get('run_id')} (pid {held.get('pid')} on {held.get('host')}, session ended)"

    # -- holding it -------------------------------------------------------------------------------

    def _keep_alive(self) -> None:
        while not self._stop.wait(KEEPALIVE_EVERY):
            if self.lost() is not None:
                return

    def lost(self) -> str | None:
        """Still ours? Asked of the server: a broken lock ends our session, a dropped link fails the query."""
        with self._mutex:
            if self._conn is None or self._lost is not None:
                return self._lost
            try:
                unsigned = self.key % (1 << 64)
                row = self._conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' "
                    "AND granted AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1",
                    (unsigned >> 32, unsigned & 0xFFFFFFFF),
                ).fetchone()
                if not row or not row[0]:
                    self._lost = f"the session no longer holds {self.where}"
            except psycopg.Error as exc:
                self._lost = f"the session holding {self.where} ended: {_first_line(exc)}"
            return self._lost

    @property
    def held(self) -> bool:
        return self._conn is not None and self._lost is None

    def release(self) -> None:
        self._stop.set()
        if self._keepalive is not None and self._keepalive is not threading.current_thread():
            self._keepalive.join(timeout=self.timeout + 1)
        with self._mutex:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                if self._lost is None:
                    if self._has_table:
                        conn.execute(
                            f"DELETE FROM {TABLE} WHERE lock_key = %s AND backend_pid = pg_backend_pid()", (self.key,)
                        )
                    conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass  # closing the session below releases it all the same
            finally:
                conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
