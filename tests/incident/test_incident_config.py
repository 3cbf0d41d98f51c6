"""Bad [[logs]] / [[metrics]] config: one clear error naming file, key, value and what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.errors import ConfigError

HEAD = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"

[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
restart = ["true"]
"""


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            '[[logs]]\nfiles = ["a.log"]\nmax = { fatal = 0 }',
            "logs[0].max = {'fatal': 0}: fatal: not a pattern name; accepted: error, exception, warn",
        ),
        (
            '[[logs]]\nwindow = "5s"',
            "logs[0] = {'window': '5s'}: give either files = [...] or command = [...], not both and not neither",
        ),
        ('[[logs]]\nfiles = ["a.log"]\ncommand = ["journalctl"]', "give either files = [...] or command = [...]"),
        (
            '[[logs]]\nfiles = ["a.log"]\npatterns = { error = "(" }',
            "logs[0].patterns.error = '(': not a valid regular expression",
        ),
        ('[[logs]]\nfiles = ["a.log"]\nwindow = "2h"', "logs[0].window = '2h': expected a duration from 0 to 60.0 min"),
        (
            '[[logs]]\nfiles = ["a.log"]\nmax = { error = -1 }',
            "logs[0].max.error = -1: Input should be greater than or equal to 0",
        ),
        (
            '[[logs]]\nfiles = ["a.log"]\ncolour = "red"',
            "logs[0].colour: unknown key; accepted keys here: command, files, max, max_bytes, name, patterns, "
            "timeout, window",
        ),
        ('[[metrics]]\npath = "/metrics"', "metrics[0].series is required but missing"),
        ('[[metrics]]\nseries = [{ select = "up" }]', "metrics[0].series[0] = {'select': 'up'}: give max, min or both"),
        (
            '[[metrics]]\nseries = [{ select = "up{x=1}", max = 1 }]',
            "metrics[0].series[0].select = 'up{x=1}': cannot read the label matchers",
        ),
        (
            '[[metrics]]\npath = "metrics"\nseries = [{ select = "up", min = 1 }]',
            "metrics[0].path = 'metrics': expected a path starting with '/'",
        ),
    ],
    ids=[
        "logs-max-unknown-pattern",
        "logs-no-source",
        "logs-two-sources",
        "logs-bad-regex",
        "logs-window-too-long",
        "logs-negative-max",
        "logs-unknown-key",
        "metrics-no-series",
        "metrics-no-bound",
        "metrics-bad-selector",
        "metrics-bad-path",
    ],
)
def test_bad_sections_name_the_key(tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(HEAD + section + "\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(str(path))
    assert message in str(raised.value)


def test_good_sections_load(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(
        HEAD
        + '[[logs]]\nname = "app"\ncommand = ["journalctl", "-u", "app", "--since", "{since}"]\n'
        + "[[metrics]]\nseries = [{ select = 'http_requests_total{code=~\"5..\"}', max = 0 }]\n"
    )
    settings = load_config(path).settings
    assert settings.logs[0].key == "app" and settings.logs[0].max == {"error": 0, "exception": 0}
    assert settings.metrics[0].key == "/metrics"
