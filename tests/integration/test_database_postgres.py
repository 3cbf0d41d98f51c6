"""The database check against a real PostgreSQL server (scripts/start-postgres.sh starts it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from deployments import Deployment, read_evidence
from sqlalchemy.engine import make_url

from rollback_harness.checks.database import check_database

pytestmark = pytest.mark.integration
DEFAULT_URL = "postgresql+psycopg://harness:harness-test-pw@127.0.0.1:5432/harness"


@pytest.fixture(scope="module")
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


def test_select_one_passes(pg_url: str) -> None:
    result = check_database(pg_url, timeout=5)

    assert result.status == "passed"
    assert result.measured["dialect"] == "postgresql"
    assert "harness-test-pw" not in str(result.to_dict())


def test_wrong_password_fails_without_showing_it(pg_url: str) -> None:
    wrong = make_url(pg_url).set(password="not-the-password-42")
    result = check_database(wrong.render_as_string(hide_password=False), timeout=5)

    assert result.status == "failed"
    assert "password authentication failed" in result.summary
    assert "not-the-password-42" not in str(result.to_dict())


def test_nothing_listening_fails_fast(pg_url: str) -> None:
    closed = make_url(pg_url).set(port=1)
    result = check_database(closed.render_as_string(hide_password=False), timeout=2)

    assert result.status == "failed"
    assert "refused" in result.summary.lower()


def test_verify_gate_with_a_password_from_the_environment(
    pytester: pytest.Pytester, demo: Deployment, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_url(pg_url)
    password = url.password
    assert password
    monkeypatch.setenv("SHOP_DB_PASSWORD", str(password))
    demo.update_config(database={"url": pg_url.replace(f":{password}@", ":${SHOP_DB_PASSWORD}@")})
    # The demo's own rollback.toml names its SQLite file; this gate reads PostgreSQL instead.
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--gate", "verify", "-k", "database"))

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(pytester.path / "reports")
    [check] = [t["check"] for t in evidence["tests"] if t["check"]]
    assert check["measured"]["dialect"] == "postgresql" and check["status"] == "passed"
    for artifact in Path(pytester.path / "reports").rglob("*"):
        if artifact.is_file():
            assert str(password) not in artifact.read_text(errors="replace"), artifact
    assert str(password) not in result.stdout.str()


# Every character that breaks a URL's user info when pasted in as is.
SPECIAL_PASSWORD = "p@ss/w:rd%40#q?x"
SPECIAL_ROLE = "harness_special_pw"


@pytest.fixture
def special_role(pg_url: str) -> Iterator[str]:
    """A PostgreSQL role whose password holds @ / : % # ?, made as the postgres superuser."""
    su = shutil.which("su")
    if su is None or os.geteuid() != 0:
        pytest.skip("making a PostgreSQL role needs root (su postgres -c psql)")

    def psql(sql: str) -> None:
        done = subprocess.run(
            [su, "postgres", "-c", "psql -qAt -v ON_ERROR_STOP=1"],
            input=sql,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    psql(f"DROP ROLE IF EXISTS {SPECIAL_ROLE}; CREATE ROLE {SPECIAL_ROLE} LOGIN PASSWORD '{SPECIAL_PASSWORD}';")
    try:
        yield SPECIAL_ROLE
    finally:
        psql(f"DROP ROLE IF EXISTS {SPECIAL_ROLE};")


def test_a_password_with_url_characters_from_the_environment_connects_and_stays_secret(
    pytester: pytest.Pytester, demo: Deployment, pg_url: str, special_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented pattern, user:${DB_PASSWORD}@host, with a password a URL cannot hold as is."""
    url = make_url(pg_url)
    monkeypatch.setenv("DB_PASSWORD", SPECIAL_PASSWORD)
    demo.update_config(
        database={"url": f"postgresql+psycopg://{special_role}:${{DB_PASSWORD}}@{url.host}:{url.port}/{url.database}"}
    )

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--gate", "verify", "-k", "database", "-rA")
    )

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(pytester.path / "reports")
    [check] = [t["check"] for t in evidence["tests"] if t["check"]]
    assert check["status"] == "passed", check
    assert f"@{url.host}:{url.port}/{url.database}" in check["summary"]  # the real host, not the password's tail
    texts = {"terminal": result.stdout.str() + result.stderr.str()}
    for artifact in (pytester.path / "reports").rglob("*"):
        if artifact.is_file():
            texts[artifact.name] = artifact.read_text(errors="replace")
    assert {"evidence.json", "junit.xml", "report.html", "manifest.sha256"} <= set(texts)
    # Neither the password, its URL-encoded form, nor the part after its '@' appears anywhere.
    for form in (SPECIAL_PASSWORD, quote(SPECIAL_PASSWORD, safe=""), SPECIAL_PASSWORD.partition("@")[2]):
        assert not [name for name, text in texts.items() if form in text], form
