"""The ini options a team writes once (the command line wins over them), read the same way everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

INI_CONFIG = "rollback_config"
INI_REPORT_DIR = "rollback_report_dir"
INI_TARGET = "rollback_target"


def ini_path(config: pytest.Config, name: str) -> Path | None:
    """An ini option's path, relative to the ini file's folder."""
    value = str(config.getini(name) or "").strip()
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return base / Path(value).expanduser()


def target_option(config: pytest.Config) -> str | None:
    """--rollback-target, else the ini option: one target's name, a comma list or ``all``."""
    value: str | None = config.option.rollback_target or str(config.getini(INI_TARGET) or "").strip() or None
    return value
