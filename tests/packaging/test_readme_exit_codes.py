"""The README's exit-code table is the code's table of meanings (plugins/exit_codes.py), in order."""

from __future__ import annotations

import re
from pathlib import Path

from rollback_harness.plugins import exit_codes

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_codes() -> list[int]:
    section = README.read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return [int(code) for code in re.findall(r"^\| (\d+) \|", section, flags=re.MULTILINE)]


def test_the_readme_lists_every_harness_exit_code_in_order() -> None:
    codes = readme_codes()
    assert codes == sorted(codes), codes  # a reader scans down the numbers
    assert len(codes) == len(set(codes)), codes
    assert set(codes) <= set(exit_codes.MEANINGS), set(codes) - set(exit_codes.MEANINGS)
    own = {code for code in exit_codes.MEANINGS if code >= 10}  # the harness's own codes, all of them
    assert own <= set(codes), own - set(codes)
