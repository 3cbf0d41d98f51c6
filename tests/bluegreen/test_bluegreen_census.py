"""The blue/green census against real nginx and HAProxy: one replica per colour, the live one per the
proxy config, each colour's version its own answer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from demo.bluegreen import BlueGreenLayout
from rollback_harness.rollback.census import judge_census
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.bluegreen import BlueGreenTarget

pytestmark = pytest.mark.integration

MakeBlueGreen = Callable[..., BlueGreenLayout]


def target_of(layout: BlueGreenLayout) -> BlueGreenTarget:
    config = load_config(layout.config_path)
    context = TargetContext(
        name="shop", base_dir=config.base_dir, progress=lambda text: None, service_version=lambda timeout=None: None
    )
    target = create_target(config.target(None), context)
    assert isinstance(target, BlueGreenTarget)
    return target


@pytest.mark.parametrize("proxy", ["haproxy", "nginx"])
def test_after_the_switch_the_new_colour_is_the_one_serving_the_target(
    proxy: str, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen(proxy)
    target = target_of(layout)
    before = judge_census(target.census(), "v1.2.9")
    assert before.status == "failed"
    assert before.summary.startswith("1 colour of 1 serving still on another version: colour green (v1.3.0)")

    target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), target.observe())
    census = target.census()
    result = judge_census(census, "v1.2.9")

    assert result.status == "passed", result.summary
    assert result.summary == "every serving colour runs v1.2.9: 1 of 1 (1 not serving)"
    states = {r.name: (r.version, r.serving, r.state) for r in census.replicas}
    assert states == {"colour blue": ("v1.2.9", True, "live"), "colour green": ("v1.3.0", False, "idle")}
    assert census.facts["live_colour"] == census.facts["recorded_colour"] == "blue"


def test_a_proxy_config_pointing_at_the_old_colour_fails_naming_it(make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("nginx")
    target = target_of(layout)
    target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), target.observe())
    assert judge_census(target.census(), "v1.2.9").status == "passed"
    # By hand, after the switch: the first line still says blue, the rest routes to green again.
    marker, _, _ = layout.proxy_config.read_text().partition("\n")
    layout.proxy_config.write_text(marker + "\n" + target.render("green").partition("\n")[2])

    census = target.census()
    result = judge_census(census, "v1.2.9")

    assert census.facts["live_colour"] == "green" and census.facts["recorded_colour"] == "blue"
    assert result.status == "failed"
    assert "still on another version: colour green (v1.3.0)" in result.summary
    assert "says blue is live on its first line (written at the last switch) but routes to green" in result.summary


def test_a_proxy_config_that_names_no_colour_serves_none(make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("haproxy")
    target = target_of(layout)
    layout.proxy_config.write_text(layout.proxy_config.read_text().partition("\n")[2] + "# edited by hand\n")

    census = target.census()
    result = judge_census(census, "v1.3.0")

    assert census.serving() == []
    assert result.status == "failed"
    assert result.summary.startswith("no colour is serving (2 colours found")
    assert "names no active colour on its first line and matches neither colour's rendering" in result.summary
