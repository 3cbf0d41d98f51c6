"""`python -m demo` across the demo's migration: v1.3.0 added orders.note and a coupons table; the
report shows the migration found in preflight, the backup, the downgrade and the migration check
before and after."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo import migrations
from demo.deployment import free_port, load_layout, stop

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_PORT": str(free_port()),
        "DEMO_REPORT_DIR": str(tmp_path / "reports"),
    }
    try:
        yield env
    finally:
        if (tmp_path / "demo" / "demo.json").exists():
            stop(load_layout(tmp_path / "demo"))


def test_the_demo_report_shows_the_database_steps(demo_env: dict[str, str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=PROJECT_ROOT,
        env=demo_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "--allow-data-loss" in result.stdout
    [run] = [p for p in (tmp_path / "reports").iterdir() if p.is_dir()]
    evidence = json.loads((run / "evidence.json").read_text())
    checks = {t["nodeid"].rpartition("::")[2]: t["check"] for t in evidence["tests"] if t["check"]}
    assert checks["preflight-database-migrations"]["summary"].startswith(
        "destructive downgrade needed, allowed by --allow-data-loss"
    )
    assert checks["baseline-migration"]["measured"]["revision"] == migrations.COUPONS
    assert checks["verify-migration"]["measured"]["revision"] == migrations.BASE
    assert checks["verify-migration"]["status"] == "passed"
    done = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    assert done.index("switch-link") < done.index("database:backup") < done.index("database:downgrade")
    html = (run / "report.html").read_text()
    assert "database:backup" in html and "database:downgrade" in html and "pre-rollback-" in html
    database = Path(demo_env["DEMO_DIR"]) / "demo.db"
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in connection.execute("PRAGMA table_info(orders)")}
    connection.close()
    assert "coupons" not in tables and "note" not in columns
