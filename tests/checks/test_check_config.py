"""The checks' config keys: bad values are one clear error naming key, value and what is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.errors import ConfigError

TARGET = """
[targets.app]
kind = "symlink"
releases_dir = "releases"
current_link = "current"
"""


def load(folder: Path, service: str, rest: str = "") -> str:
    """The ConfigError message for a config with these [service] lines and these tables."""
    path = folder / "rollback.toml"
    path.write_text(f'[service]\nname = "shop"\n{service}\n{rest}\n{TARGET}')
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message and "Traceback" not in message
    return message


GOOD_URL = 'base_url = "http://127.0.0.1:8080"'


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://", "(no host)"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://host:99999", "Port out of range"),
        ("http://host:port", "Port could not be cast"),
        ("http://host:0", "(port 0)"),
        ("http://ho st:80", "whitespace"),
        ("ftp://host", "expected an http:// or https:// URL"),
    ],
)
def test_an_unusable_base_url_is_a_config_error(tmp_path: Path, url: str, why: str) -> None:
    message = load(tmp_path, f'base_url = "{url}"')
    assert f"service.base_url = {url!r}: expected an http:// or https:// URL with a host" in message or (
        f"service.base_url = {url!r}: expected an http:// or https:// URL" in message
    )
    assert why in message


@pytest.mark.parametrize(
    ("table", "line", "key"),
    [
        ("", "timeout = 0", "service.timeout"),
        ("", "timeout = 1e308", "service.timeout"),
        ("", 'timeout = "25h"', "service.timeout"),
        ("[database]\nurl = 'sqlite:///x.db'", "", "database.timeout"),
        ("[[latency]]\np99 = '0ms'", "", "latency[0].p99"),
        ("[[latency]]\np95 = 1e308", "", "latency[0].p95"),
    ],
)
def test_zero_or_absurd_timeouts_are_refused(tmp_path: Path, table: str, line: str, key: str) -> None:
    if table.startswith("[database]"):
        table += "\ntimeout = 0"
    message = load(tmp_path, f"{GOOD_URL}\n{line}", table)
    assert f"{key} = " in message
    assert "expected a duration above 0 and at most 24h" in message


@pytest.mark.parametrize(
    ("table", "key", "accepted"),
    [
        ("[service.version]\ninterval = '2h'", "service.version.interval", "from 0 to 60.0 min"),
        ("[service.version]\nconsecutive = 0", "service.version.consecutive", "greater than or equal to 1"),
        ("[health]\ninterval = -1", "health.interval", "not negative"),
    ],
)
def test_version_and_health_pacing_is_bounded(tmp_path: Path, table: str, key: str, accepted: str) -> None:
    message = load(tmp_path, GOOD_URL, table)
    assert f"{key} = " in message and accepted in message


def test_settle_is_bounded_and_zero_disables_it(tmp_path: Path) -> None:
    message = load(tmp_path, f"{GOOD_URL}\nsettle = '2h'")
    assert "service.settle = '2h': expected a duration from 0 to 60.0 min" in message
    path = tmp_path / "ok.toml"
    path.write_text(f'[service]\nname = "shop"\n{GOOD_URL}\nsettle = 0\n{TARGET}')
    assert load_config(path, environ={}).settings.service.settle == 0.0


def test_min_samples_above_samples_is_refused(tmp_path: Path) -> None:
    message = load(tmp_path, GOOD_URL, "[[latency]]\nsamples = 10\nmin_samples = 20")
    assert "latency[0].min_samples = 20: more than samples (10); min_samples may be at most samples" in message


def test_max_samples_too_few_for_a_bound_to_ever_pass_is_refused(tmp_path: Path) -> None:
    message = load(tmp_path, GOOD_URL, "[[latency]]\nsamples = 20\nmax_samples = 100\np99 = '200ms'")
    assert "latency[0].max_samples = 100: too few for the percentile bounds to ever pass" in message
    assert "they need at least 299 samples" in message


def test_the_default_sample_budget_lets_every_bound_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(f'[service]\nname = "shop"\n{GOOD_URL}\n[[latency]]\nsamples = 20\np99 = "200ms"\n{TARGET}')
    latency = load_config(path, environ={}).settings.latency[0]
    assert (latency.sample_budget, latency.confidence) == (299, 0.95)
