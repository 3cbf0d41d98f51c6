"""Actions around the platform step (rollback/actions/): the order they run in, their preflight
findings, undo after a failed rollback, and finish after verify. A recording action stands in for
database, traffic and config actions, against the real demo deployment."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.rollback.actions import ACTIONS
from rollback_harness.rollback.actions.base import Action
from rollback_harness.rollback.config import HarnessConfig, TargetSpec
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import Finding

pytestmark = pytest.mark.integration

LOG_VARIABLE = "RECORDING_ACTION_LOG"
REFUSE_VARIABLE = "RECORDING_ACTION_REFUSES"


class RecordingAction(Action):
    """Appends each call to the file named by $RECORDING_ACTION_LOG, with the link's version then."""

    name: ClassVar[str] = "recording"
    order: ClassVar[int] = 10

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        return LOG_VARIABLE in os.environ

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return ("recording-ready",)

    def _note(self, call: str, **detail: Any) -> None:
        link = self.context.base_dir / "current"
        entry = {"call": call, "linked": Path(os.readlink(link)).name if link.is_symlink() else None, **detail}
        with open(os.environ[LOG_VARIABLE], "a") as log:
            log.write(json.dumps(entry) + "\n")

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        self._note("preflight", versions=[from_version, to_version])
        refuse = REFUSE_VARIABLE in os.environ
        return [Finding("recording-ready", not refuse, "refused on purpose" if refuse else "ready")]

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        return [f"record before {to_version}"], [f"record after {to_version}"]

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        with journal.step("recording:before"):
            self._note("before")

    def after(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        with journal.step("recording:after"):
            self._note("after")

    def undo(self, journal: Journal) -> None:
        with journal.step("recording:undo"):
            self._note("undo")

    def finish(self, journal: Journal, verified: bool) -> None:
        with journal.step("recording:finish", verified=verified):
            self._note("finish", verified=verified)


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "actions.jsonl"
    monkeypatch.setenv(LOG_VARIABLE, str(log))
    # "service" is always configured: the recording action applies to every run
    monkeypatch.setitem(ACTIONS, "recording", (f"{__name__}:RecordingAction", "service"))
    return log


def recorded(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def rollback(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", *args))


def test_actions_run_around_the_driver_steps_and_finish_after_verify(
    pytester: pytest.Pytester, demo: Deployment, calls: Path
) -> None:
    result = rollback(pytester, demo, "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*preflight-recording-ready PASSED*", "*1. record before v1.2.9*"])
    # before() saw the bad release still linked; after() saw the target linked; finish came last.
    assert [(c["call"], c["linked"]) for c in recorded(calls)] == [
        ("preflight", "v1.3.0"),
        ("before", "v1.3.0"),
        ("after", "v1.2.9"),
        ("finish", "v1.2.9"),
    ]
    assert recorded(calls)[-1]["verified"] is True
    evidence = read_evidence(pytester.path / "reports")
    done = [e["what"] for e in evidence["timeline"] if e["status"] == "done"]
    assert done == ["rollback", "recording:before", "switch-link", "restart", "wait-ready", "recording:after",
                    "recording:finish"]  # fmt: skip
    assert evidence["plan"][0] == "record before v1.2.9" and evidence["plan"][-1] == "record after v1.2.9"


def test_a_refusing_action_refuses_the_run_before_any_change(
    pytester: pytest.Pytester, demo: Deployment, calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REFUSE_VARIABLE, "1")

    result = rollback(pytester, demo, "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*recording-ready: refused on purpose*"])
    assert [c["call"] for c in recorded(calls)] == ["preflight"]
    assert demo.linked_version() == "v1.3.0" and demo.restarts() == 0


def test_a_failed_rollback_undoes_started_actions_and_does_not_finish_them(
    pytester: pytest.Pytester, demo: Deployment, calls: Path
) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = rollback(pytester, demo, "--rollback-yes")

    assert result.ret == 12, result.stdout.str()
    assert [c["call"] for c in recorded(calls)] == ["preflight", "before", "undo"]
