"""Fixtures for the lock tests: the real PostgreSQL, a lock holder in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from lock_support import HOLD_LOCK, Holder

from rollback_harness.checks.database import check_database

DEFAULT_PG_URL = "postgresql+psycopg://harness:harness-test-pw@127.0.0.1:5432/harness"


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("HARNESS_TEST_PG_URL", DEFAULT_PG_URL)
    result = check_database(url, timeout=5)
    if not result.passed:
        pytest.fail(
            f"PostgreSQL is not reachable ({result.summary}): run scripts/start-postgres.sh as root, "
            "or point HARNESS_TEST_PG_URL at a server",
            pytrace=False,
        )
    return url


@pytest.fixture
def service() -> str:
    """A service name of this test alone: parallel tests never share a lock."""
    return f"svc-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def holder() -> Iterator[Holder]:
    """Starts hold_lock.py with the given arguments; returns it once it printed ``held``."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, str(HOLD_LOCK), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # the child's own timeouts bound this read
        assert line == "held", (line, process.stderr.read() if process.poll() is not None else "")
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=30)
