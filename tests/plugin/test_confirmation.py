"""The confirmation prompt, answered on a real pseudo-terminal."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pexpect
import pytest
from deployments import Deployment, read_evidence

pytestmark = pytest.mark.integration
PROMPT = "Proceed with rollback of demo from v1.3.0 to v1.2.9? (yes/no)"


def spawn(demo: Deployment, workdir: Path) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "pytest", *demo.harness_args(workdir / "reports", "--rollback-to", "v1.2.9")],
        cwd=str(workdir),
        encoding="utf-8",
        timeout=120,
    )
    child.logfile_read = io.StringIO()  # the whole output, for the failure message
    return child


def expect_prompt(child: pexpect.spawn) -> None:
    """The prompt, or a failure that shows everything the harness printed instead."""
    try:
        child.expect_exact(PROMPT)
    except (pexpect.EOF, pexpect.TIMEOUT) as exc:
        output = child.logfile_read.getvalue()
        pytest.fail(f"no prompt ({type(exc).__name__}); the harness printed:\n{output}", pytrace=False)


@pytest.mark.parametrize("answer", ["", "no", "y", "y e s", "yes please"])
def test_anything_but_yes_changes_nothing(demo: Deployment, tmp_path: Path, answer: str) -> None:
    child = spawn(demo, tmp_path)
    expect_prompt(child)
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 11
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0
    assert read_evidence(tmp_path / "reports")["outcome"]["status"] == "not-confirmed"


def test_yes_rolls_back(demo: Deployment, tmp_path: Path) -> None:
    child = spawn(demo, tmp_path)
    expect_prompt(child)
    child.sendline("yes")
    child.expect(pexpect.EOF)
    child.close()

    assert child.exitstatus == 0, child.before
    assert demo.linked_version() == "v1.2.9" and demo.restarts() == 1
