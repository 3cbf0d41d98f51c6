"""`make demo` signs its evidence with a key of its own and ends with the command that checks it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.deployment import free_port, load_layout, stop

pytestmark = pytest.mark.integration
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEMO_TIMEOUT_S = 180
VERIFY_LINE = re.compile(r"^check the signed evidence: (.+ verify (\S+) --key (\S+))$", re.M)


@pytest.fixture
def demo_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_PORT": str(free_port()),
        "DEMO_REPORT_DIR": str(tmp_path / "reports"),
    }
    try:
        yield env
    finally:
        if (tmp_path / "demo" / "demo.json").exists():
            stop(load_layout(tmp_path / "demo"))


def run_demo(env: dict[str, str]) -> re.Match[str]:
    done = subprocess.run(
        [sys.executable, "-m", "demo"],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = VERIFY_LINE.search(done.stdout)
    assert found, done.stdout
    return found


def run_verify(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=60, check=False)


def test_the_demo_signs_and_prints_the_verify_command(demo_env: dict[str, str]) -> None:
    first = run_demo(demo_env)
    checked = run_verify(first[1])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "the key you gave" in checked.stdout
    public = Path(first[3])
    assert public.is_relative_to(demo_env["DEMO_DIR"]) and "PUBLIC KEY" in public.read_text()
    key = public.read_bytes()

    second = run_demo(demo_env)  # the key made on the first run is kept: the first run still verifies
    assert second[2] != first[2] and public.read_bytes() == key
    assert (
        run_verify(
            f"{shlex.quote(str(Path(sys.executable).parent / 'rollback-harness'))} verify {first[2]} --key {public}"
        ).returncode
        == 0
    )
    assert run_verify(second[1]).returncode == 0
