"""The demo layout on disk: release folders, the `current` link, SQLite, supervisord.conf, rollback.toml."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from demo.deployment import (
    DEFAULT_RELEASES,
    Release,
    free_port,
    lay_out,
    linked_version,
    load_layout,
    switch_release,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_release_folders_hold_app_and_release_json(tmp_path: Path) -> None:
    layout = lay_out(tmp_path)
    assert sorted(p.name for p in layout.releases_dir.iterdir()) == ["v1.2.8", "v1.2.9", "v1.3.0"]
    for release in DEFAULT_RELEASES:
        folder = layout.releases_dir / release.version
        assert (folder / "app.py").is_file()
        data = json.loads((folder / "release.json").read_text())
        assert data == {
            "version": release.version,
            "delay_ms": release.delay_ms,
            "failing_paths": list(release.failing_paths),
            "health_status": release.health_status,
        }
    bad = json.loads((layout.releases_dir / "v1.3.0" / "release.json").read_text())
    assert bad["delay_ms"] == 400
    assert bad["failing_paths"] == ["/api/orders"]


def test_current_is_a_relative_link_to_the_live_release(tmp_path: Path) -> None:
    layout = lay_out(tmp_path)
    assert layout.current_link.is_symlink()
    assert os.readlink(layout.current_link) == os.path.join("releases", "v1.3.0")
    assert linked_version(layout) == "v1.3.0"

    switch_release(layout, "v1.2.9")
    assert os.readlink(layout.current_link) == os.path.join("releases", "v1.2.9")
    assert linked_version(layout) == "v1.2.9"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".current")] == []
    with pytest.raises(ValueError, match="no release folder"):
        switch_release(layout, "v9.9.9")


def test_unknown_live_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"v2\.0\.0"):
        lay_out(tmp_path, live="v2.0.0")


def test_custom_releases(tmp_path: Path) -> None:
    releases = (Release("v1.0.0"), Release("v1.1.0", health_status=503))
    layout = lay_out(tmp_path, releases=releases, live="v1.1.0")
    assert linked_version(layout) == "v1.1.0"
    data = json.loads((layout.releases_dir / "v1.1.0" / "release.json").read_text())
    assert data["health_status"] == 503


def test_database_has_orders(tmp_path: Path) -> None:
    layout = lay_out(tmp_path)
    assert layout.database == tmp_path / "demo.db"
    assert layout.database_url == "sqlite:///" + str(tmp_path.resolve() / "demo.db")
    with sqlite3.connect(layout.database) as conn:
        rows = conn.execute("SELECT id, item FROM orders ORDER BY id").fetchall()
    conn.close()
    assert len(rows) >= 2


def test_rollback_toml_is_the_documented_schema(tmp_path: Path) -> None:
    port = free_port()
    layout = lay_out(tmp_path, port=port)
    assert layout.config_path == tmp_path / "rollback.toml"
    config = tomllib.loads(layout.config_path.read_text())
    assert config == {
        "service": {
            "name": "demo",
            "base_url": f"http://127.0.0.1:{port}",
            "timeout": "2s",
            "version": {"path": "/version"},
        },
        "health": {"path": "/health", "consecutive": 2},
        "endpoints": [{"path": "/"}, {"path": "/api/orders"}],
        "latency": [
            {
                "path": "/",
                "samples": 20,
                "concurrency": 4,
                "min_samples": 10,
                "p95": "250ms",
                "max_error_rate": 0.0,
            }
        ],
        "database": {"url": "sqlite:///demo.db", "timeout": "2s"},
        "targets": {
            "app": {
                "kind": "symlink",
                "releases_dir": "releases",
                "current_link": "current",
                "restart": layout.restart_command,
                "pid_command": [*layout.restart_command[:-2], "pid", "app"],
                "ready_timeout": "30s",
            }
        },
    }


def test_restart_command_and_urls(tmp_path: Path) -> None:
    layout = lay_out(tmp_path, port=free_port())
    assert layout.base_url == f"http://127.0.0.1:{layout.port}"
    command = layout.restart_command
    assert command[-4:] == ["-c", str(layout.supervisor_conf), "restart", "app"]
    assert all(Path(arg).is_absolute() for arg in [*command[:1], command[-3]])
    assert "supervisorctl" in " ".join(command[:3])


def test_supervisord_conf_keeps_everything_under_root(tmp_path: Path) -> None:
    layout = lay_out(tmp_path, env={"DEMO_DELAY_MS": "5", "GREETING": "50% off"})
    text = layout.supervisor_conf.read_text()
    assert f"--port {layout.port}" in text
    assert f"file = {layout.supervisor_socket}" in text
    assert f"serverurl = unix://{layout.supervisor_socket}" in text
    assert str(tmp_path / "current" / "app.py") in text
    assert 'DEMO_DELAY_MS="5"' in text
    assert 'GREETING="50%% off"' in text  # `%` is supervisord's expansion character
    for name in ("supervisor_conf", "supervisor_socket", "database", "config_path"):
        assert getattr(layout, name).is_relative_to(tmp_path), name
    for option in ("pidfile", "logfile", "childlogdir"):
        line = next(line for line in text.splitlines() if line.startswith(option + " "))
        assert str(tmp_path) in line


def test_long_root_gets_a_short_socket(tmp_path: Path) -> None:
    root = tmp_path / ("x" * 60) / ("y" * 60)
    layout = lay_out(root)
    assert len(os.fsencode(layout.supervisor_socket)) < 100
    assert not layout.supervisor_socket.is_relative_to(root)
    assert layout.supervisor_socket.parent.is_dir()
    layout.supervisor_socket.parent.rmdir()


def test_layout_round_trips_through_demo_json(tmp_path: Path) -> None:
    layout = lay_out(tmp_path)
    assert load_layout(tmp_path) == layout


def test_lay_out_twice_replaces_in_place(tmp_path: Path) -> None:
    lay_out(tmp_path, live="v1.3.0")
    layout = lay_out(tmp_path, live="v1.2.8")
    assert linked_version(layout) == "v1.2.8"
    with sqlite3.connect(layout.database) as conn:
        (count,) = conn.execute("SELECT count(*) FROM orders").fetchone()
    conn.close()
    assert count == 3
