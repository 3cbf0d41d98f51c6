"""Bad [config_rollback], kind = "config" and kind = "command" settings: one clear ConfigError
naming the file, the key, the value and what is accepted (RELIABILITY.md scenario 30)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.errors import ConfigError

SERVICE = {"service": {"name": "shop", "base_url": "http://127.0.0.1:8080"}}
SYMLINK = {"kind": "symlink", "releases_dir": "releases", "current_link": "current"}
COMMAND = {
    "kind": "command",
    "live_version": ["./live"],
    "history": ["./history"],
    "rollback": ["./deploy", "{version}"],
}


def error_for(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "rollback.toml"
    path.write_text(tomli_w.dumps({**SERVICE, **data}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return str(caught.value)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"repo": "deploy", "paths": ["../etc"]}, "config_rollback.paths[0] = '../etc': expected a path relative"),
        ({"repo": "deploy", "paths": ["/etc/app"]}, "config_rollback.paths[0] = '/etc/app': expected a path relative"),
        ({"repo": "deploy", "paths": []}, "config_rollback.paths = []"),
        ({"repo": "deploy", "paths": ["c/"], "tag": "release"}, "holding '{version}' once"),
        ({"repo": "deploy", "paths": ["c/"], "restart": "nginx -s reload"}, "a shell string is not accepted"),
        ({"repo": "deploy", "paths": ["c/"], "restart": [[]]}, "first item names a program"),
        ({"repo": "deploy", "paths": ["c/"], "restart_timeout": "0s"}, "config_rollback.restart_timeout = '0s'"),
        ({"repo": "deploy", "paths": ["c/"], "branch": "main"}, "config_rollback.branch: unknown key; accepted keys"),
        ({"paths": ["c/"]}, "config_rollback.repo is required but missing"),
    ],
    ids=["dotdot", "absolute", "no-paths", "tag-template", "shell-hook", "empty-hook", "timeout", "unknown", "repo"],
)
def test_config_rollback_section_errors(tmp_path: Path, section: dict[str, Any], expected: str) -> None:
    message = error_for(tmp_path, {"config_rollback": section, "targets": {"app": SYMLINK}})

    assert expected in message and str(tmp_path / "rollback.toml") in message


def test_a_flat_list_is_one_restart_hook(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    section = {"repo": "deploy", "paths": ["c/"], "restart": ["nginx", "-s", "reload"]}
    path.write_text(tomli_w.dumps({**SERVICE, "config_rollback": section, "targets": {"app": SYMLINK}}))

    settings = load_config(path, environ={}).settings.config_rollback

    assert settings is not None and settings.restart == [["nginx", "-s", "reload"]]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"rollback": "./deploy {version} --rolling"}, '["./deploy", "{version}", "--rolling"]'),
        ({"rollback": []}, "first item names a program"),
        ({"rollback": ["{version}.sh"]}, "may not contain {version}"),
        ({"ok_codes": [256]}, "targets.app.ok_codes[0] = 256"),
        ({"rollback_timeout": "25h"}, "at most 24h"),
        ({"output_limit": 10}, "targets.app.output_limit = 10"),
        ({"live_version": None}, "targets.app.live_version"),
    ],
    ids=["shell-string", "empty", "program-version", "exit-code", "timeout", "output-limit", "missing"],
)
def test_command_target_errors(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    target = {k: v for k, v in {**COMMAND, **changes}.items() if v is not None}

    message = error_for(tmp_path, {"targets": {"app": target}})

    assert expected in message, message


def test_a_config_target_takes_the_same_keys_plus_its_wait(tmp_path: Path) -> None:
    target = {"kind": "config", "repo": "deploy", "paths": ["c/"], "ready_timeout": "5s", "wait_for_version": False}
    path = tmp_path / "rollback.toml"
    path.write_text(tomli_w.dumps({**SERVICE, "targets": {"app": target}}))

    spec = load_config(path, environ={}).targets["app"]

    assert spec.kind == "config" and spec.settings.model_dump()["wait_for_version"] is False
    assert "targets.app.paths[0] = '..'" in error_for(tmp_path, {"targets": {"app": {**target, "paths": [".."]}}})
