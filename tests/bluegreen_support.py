"""Blue/green layouts (demo/bluegreen.py): two colours of the demo app behind a real nginx or
HAProxy, each proxy started on free loopback ports with its own config, pid and log files in
tmp_path, and stopped at teardown. Shared by tests/bluegreen and tests/traffic (their conftest.py
files import the fixture; a module of its own because two conftest.py files cannot share a name)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo import bluegreen
from demo.bluegreen import BlueGreenLayout

INSTALL = "install it with: sudo apt-get install -y nginx haproxy (scripts/test-services.sh does, as root)"


def need(program: str) -> None:
    if not Path(program).is_file():
        pytest.fail(f"{program} is missing; {INSTALL}", pytrace=False)


@pytest.fixture
def make_bluegreen(tmp_path: Path) -> Iterator[Callable[..., BlueGreenLayout]]:
    """Lay out and start a blue/green deployment: ``make_bluegreen("nginx", colours=...)``."""
    started: list[BlueGreenLayout] = []

    def make(proxy: str, **kwargs: Any) -> BlueGreenLayout:
        need(bluegreen.NGINX if proxy == "nginx" else bluegreen.HAPROXY)
        layout = bluegreen.lay_out(tmp_path / f"bg-{proxy}-{len(started)}", proxy, **kwargs)
        started.append(layout)
        bluegreen.start(layout)
        return layout

    try:
        yield make
    finally:
        for layout in started:
            bluegreen.stop(layout)
