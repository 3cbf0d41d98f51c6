"""The postgres lock backend against the real PostgreSQL 15: two connections, two processes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lock_support import Holder

from rollback_harness.rollback.locks.postgres import PostgresLock, advisory_key

pytestmark = pytest.mark.integration


def lock(pg_url: str, service: str, run_id: str, tmp_path: Path, **options: object) -> PostgresLock:
    return PostgresLock(pg_url, service, "app", tmp_path / f"{run_id}.lock", run_id, **options)  # type: ignore[arg-type]


def acquire_within(lock: PostgresLock, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while (refusal := lock.acquire()) is not None:
        assert time.monotonic() < deadline, refusal
        time.sleep(0.05)


def test_the_key_is_stable_and_per_target() -> None:
    assert advisory_key("shop", "app") == advisory_key("shop", "app") == -8132989804635424532
    assert advisory_key("shop", "app") != advisory_key("shop", "worker")
    assert advisory_key("shop", "app") != advisory_key("sho", "papp")


def test_a_second_connection_is_refused_and_told_who_holds_it(pg_url: str, service: str, tmp_path: Path) -> None:
    first = lock(pg_url, service, "run-first", tmp_path)
    assert first.acquire() is None and first.held
    try:
        second = lock(pg_url, service, "run-second", tmp_path)
        refusal = second.acquire()
        assert refusal is not None and not second.held
        assert f"another run holds the lock postgres advisory lock {first.key} ({service}/app)" in refusal
        assert f"run run-first (pid {__import__('os').getpid()} on {socket.gethostname()}, user " in refusal
        assert ", since 20" in refusal
        assert "--rollback-break-lock run-first" in refusal
        # Another target of the same service is another lock.
        other = PostgresLock(pg_url, service, "worker", tmp_path / "w.lock", "run-other")
        assert other.acquire() is None
        other.release()
    finally:
        first.release()
    assert not first.held
    third = lock(pg_url, service, "run-third", tmp_path)
    assert third.acquire() is None and third.taken_over is None  # released properly: nobody to take over from
    third.release()


def test_a_killed_holder_frees_the_lock_at_once_and_is_named(
    pg_url: str, service: str, tmp_path: Path, holder: Holder
) -> None:
    process = holder("postgres", pg_url, service, "app", "run-killed")
    refusal = lock(pg_url, service, "run-waiting", tmp_path).acquire()
    assert refusal is not None and f"run run-killed (pid {process.pid} on " in refusal

    process.kill()  # SIGKILL: no release; the server ends its session
    process.wait(timeout=30)
    after = lock(pg_url, service, "run-after", tmp_path)
    acquire_within(after)
    try:
        assert after.taken_over is not None
        assert (after.taken_over["run_id"], after.taken_over["pid"]) == ("run-killed", process.pid)
        assert after.describe_takeover().startswith(f"taken over from run run-killed (pid {process.pid} on ")
    finally:
        after.release()


def test_breaking_needs_the_holders_run_id_and_is_recorded(
    pg_url: str, service: str, tmp_path: Path, holder: Holder
) -> None:
    process = holder("postgres", pg_url, service, "app", "run-stuck")

    wrong = lock(pg_url, service, "run-wrong", tmp_path, break_run="run-someone-else")
    refusal = wrong.acquire()
    assert refusal is not None and "names another run, so nothing was broken" in refusal
    assert wrong.broken is None

    breaker = lock(pg_url, service, "run-breaker", tmp_path, break_run="run-stuck")
    assert breaker.acquire() is None
    try:
        assert breaker.broken is not None
        assert (breaker.broken["run_id"], breaker.broken["pid"]) == ("run-stuck", process.pid)
        assert breaker.taken_over is None  # broken, not taken over from a dead run
        assert breaker.held and breaker.lost() is None
    finally:
        breaker.release()
        process.kill()
        process.wait(timeout=30)


def test_a_run_whose_lock_was_broken_knows_it_lost_it(pg_url: str, service: str, tmp_path: Path) -> None:
    first = lock(pg_url, service, "run-first", tmp_path)
    assert first.acquire() is None
    breaker = lock(pg_url, service, "run-breaker", tmp_path, break_run="run-first")
    assert breaker.acquire() is None
    try:
        assert first.lost() is not None and "ended" in str(first.lost())
        assert not first.held
        first.release()  # never touches the breaker's lock
        assert breaker.lost() is None
        assert lock(pg_url, service, "run-third", tmp_path).acquire() is not None
    finally:
        breaker.release()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()
    server.close()


def test_connecting_has_a_total_deadline(silent_server: int, tmp_path: Path) -> None:
    url = f"postgresql+psycopg://harness:harness-test-pw@127.0.0.1:{silent_server}/harness"
    started = time.monotonic()
    refusal = lock(url, "svc", "run-1", tmp_path, timeout=1.0).acquire()
    assert time.monotonic() - started < 10  # did not hang
    assert refusal is not None and refusal.startswith("cannot take the lock postgres advisory lock")
    assert "cannot connect within" in refusal and "harness-test-pw" not in refusal


def test_without_the_note_table_the_holder_is_named_from_its_session(pg_url: str, service: str, tmp_path: Path) -> None:
    # The URL's own options are kept: with pg_catalog as the only schema, this user may not create
    # the note table, so the lock works from application_name and pg_stat_activity alone.
    url = f"{pg_url}?options=-csearch_path%3Dpg_catalog"
    first = lock(url, service, "run-first", tmp_path)
    assert first.acquire() is None
    try:
        refusal = lock(url, service, "run-second", tmp_path).acquire()
        assert refusal is not None
        assert "run run-first (pid backend " in refusal and "user database user harness, since 20" in refusal
        assert "--rollback-break-lock run-first" in refusal
    finally:
        first.release()
    third = lock(url, service, "run-third", tmp_path)
    assert third.acquire() is None
    third.release()
