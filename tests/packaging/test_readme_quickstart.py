"""The README's "use it in your own project" section: its config and its install lines hold."""

from __future__ import annotations

import re
from pathlib import Path

from rollback_harness.rollback import targets
from rollback_harness.rollback.config import load_config

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    return text[text.index("## Use it in your own project") :].split("\n## ", 1)[0]


def test_the_minimal_config_is_valid(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", section(), re.S)
    assert block is not None
    path = tmp_path / "rollback.toml"
    path.write_text(block.group(1))

    config = load_config(path)

    assert config.target(None).kind == "symlink"
    assert config.settings.reports.keep == 50


def test_every_extra_it_names_exists() -> None:
    named = set(re.findall(r"pytest-rollback-harness\[(\w+)\]", section()))
    assert named >= {"kubernetes", "swarm", "all"}
    assert named <= {*targets.EXTRAS.values(), "all"}
