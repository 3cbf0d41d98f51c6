"""Fixtures for the checks' tests: a real HTTP service on loopback and a probe session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from _checks_server import Service, running_service

from rollback_harness.checks.http import make_session


@pytest.fixture
def service() -> Iterator[Service]:
    with running_service() as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with make_session() as made:
        yield made
