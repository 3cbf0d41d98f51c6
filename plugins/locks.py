"""A feature plugin: ``--rollback-break-lock RUN_ID`` (the lock backends are in rollback/lock.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rollback")
    group.addoption(
        "--rollback-break-lock",
        dest="rollback_break_lock",
        metavar="RUN_ID",
        help="Break the target's lock held by run RUN_ID (the id the refusal names); recorded in the evidence",
    )


def break_lock_option(config: pytest.Config) -> str | None:
    """The run id to break the lock of; a usage error when it cannot apply or is not a run id."""
    value: str | None = config.option.rollback_break_lock
    if value is None:
        return None
    if not config.option.rollback_to or config.option.rollback_gate:
        raise pytest.UsageError(
            "--rollback-break-lock needs a rollback (--rollback-to VERSION without --rollback-gate): "
            "the lock is broken by the run that acts under it"
        )
    if config.option.rollback_dry_run:
        raise pytest.UsageError(
            "--rollback-break-lock takes another run's lock, and --rollback-dry-run changes nothing: drop one of them"
        )
    if not RUN_ID.match(value):
        raise pytest.UsageError(
            f"--rollback-break-lock {value!r} is not a run id: "
            "give the id the refusal names, e.g. 20261126-101500-a1b2c3"
        )
    return value


def pytest_rollback_run_settings(config: pytest.Config, mode: str) -> dict[str, Any]:
    return {"break_lock": break_lock_option(config)}
