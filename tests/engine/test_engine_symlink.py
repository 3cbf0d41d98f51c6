"""The symlink driver on real folders and links (scenarios 1, 2, 10, 14, 26).

Restart commands are real processes; the "killed half way" cases run the driver in a child process
and SIGKILL it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback_harness.rollback.config import TargetSpec, load_config
from rollback_harness.rollback.errors import RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.symlink import SymlinkSettings, SymlinkTarget

RELEASES = ("v1.2.8", "v1.2.9", "v1.3.0")


def lay_out(root: Path, releases: tuple[str, ...] = RELEASES, live: str = "v1.3.0") -> Path:
    for version in releases:
        folder = root / "releases" / version
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(f"VERSION = {version!r}\n")
    os.symlink(f"releases/{live}", root / "current")
    return root


def make_target(
    root: Path,
    service_version: Callable[..., str | None] = lambda timeout=None: None,
    progress: Callable[[str], None] | None = None,
    **settings: Any,
) -> SymlinkTarget:
    values: dict[str, Any] = {"releases_dir": "releases", "current_link": "current", **settings}
    spec = TargetSpec(name="app", kind="symlink", settings=SymlinkSettings.model_validate(values))
    context = TargetContext(
        name="shop", base_dir=root, progress=progress or (lambda message: None), service_version=service_version
    )
    target = create_target(spec, context)
    assert isinstance(target, SymlinkTarget)
    return target


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def statuses(journal: Journal) -> list[tuple[str, str]]:
    return [(e["step"], e["status"]) for e in journal.entries()]


# --- reading the deployment --------------------------------------------------------------------------


def test_built_from_a_config_file(tmp_path: Path) -> None:
    lay_out(tmp_path / "deploy")
    config_path = tmp_path / "deploy" / "rollback.toml"
    config_path.write_text(
        '[service]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\n\n'
        '[targets.app]\nkind = "symlink"\nreleases_dir = "releases"\ncurrent_link = "current"\n'
        'restart = ["true"]\nready_timeout = "3s"\n'
    )
    config = load_config(config_path, environ={})
    context = TargetContext(
        name="shop", base_dir=config.base_dir, progress=print, service_version=lambda timeout=None: None
    )
    target = create_target(config.target(None), context)
    assert target.live_version() == "v1.3.0"
    assert target.history() == list(RELEASES)
    assert target.describe() == {
        "kind": "symlink",
        "releases_dir": str(tmp_path / "deploy" / "releases"),
        "current_link": str(tmp_path / "deploy" / "current"),
    }


def test_history_lists_only_release_folders_with_plain_names_in_version_order(tmp_path: Path) -> None:
    lay_out(tmp_path, releases=("v1.9.2", "v1.10.0", "v1.2.9", "latest"), live="v1.10.0")
    releases = tmp_path / "releases"
    (releases / "notes.txt").write_text("not a release")
    (releases / ".v1.0.0-partial").mkdir()
    (releases / "v1.5 broken").mkdir()
    (releases / "v1.6;id").mkdir()
    assert make_target(tmp_path).history() == ["latest", "v1.2.9", "v1.9.2", "v1.10.0"]


def test_history_of_a_missing_releases_folder_is_empty(tmp_path: Path) -> None:
    assert make_target(tmp_path).history() == []


def test_live_version_is_read_from_the_link(tmp_path: Path) -> None:
    lay_out(tmp_path, live="v1.2.9")
    assert make_target(tmp_path).live_version() == "v1.2.9"


def test_live_version_through_an_absolute_link(tmp_path: Path) -> None:
    lay_out(tmp_path)
    (tmp_path / "current").unlink()
    os.symlink(tmp_path / "releases" / "v1.2.8", tmp_path / "current")
    assert make_target(tmp_path).live_version() == "v1.2.8"


def test_live_version_when_current_is_missing(tmp_path: Path) -> None:
    lay_out(tmp_path)
    (tmp_path / "current").unlink()
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path).live_version()
    assert str(info.value) == f"{tmp_path / 'current'} does not exist: cannot tell the live release"


def test_live_version_when_current_is_not_a_link(tmp_path: Path) -> None:
    lay_out(tmp_path)
    (tmp_path / "current").unlink()
    (tmp_path / "current").mkdir()
    with pytest.raises(RollbackFailed, match="current is not a symlink: cannot tell the live release"):
        make_target(tmp_path).live_version()


@pytest.mark.parametrize("outside", ["elsewhere/v1.2.9", "releases/v1.2.9/sub", "releases"])
def test_live_version_when_current_points_outside_the_releases(tmp_path: Path, outside: str) -> None:
    lay_out(tmp_path)
    (tmp_path / "releases" / "v1.2.9" / "sub").mkdir()
    (tmp_path / "elsewhere" / "v1.2.9").mkdir(parents=True)
    (tmp_path / "current").unlink()
    os.symlink(outside, tmp_path / "current")
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path).live_version()
    message = str(info.value)
    assert f"points to {outside}" in message
    assert f"not a folder of {(tmp_path / 'releases').resolve()}" in message


# --- preflight ---------------------------------------------------------------------------------------


def test_deployable_release(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path, required_files=["app.py"]).deployable("v1.2.9")
    assert finding.ok
    assert finding.name == "target-deployable"


def test_missing_release_folder_is_not_deployable(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path).deployable("v1.2.7")
    assert not finding.ok
    assert finding.message == f"release folder {tmp_path / 'releases' / 'v1.2.7'} does not exist"


def test_release_lacking_required_files_is_not_deployable(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path, required_files=["app.py", "static/index.html", "VERSION"]).deployable("v1.2.9")
    assert not finding.ok
    assert finding.message.endswith("v1.2.9 lacks static/index.html, VERSION")


def test_release_that_is_a_link_out_of_the_releases_is_not_deployable(tmp_path: Path) -> None:
    lay_out(tmp_path)
    outside = tmp_path / "home" / "someone" / "v9.9.9"
    outside.mkdir(parents=True)
    (outside / "app.py").write_text("")
    os.symlink(outside, tmp_path / "releases" / "v9.9.9")
    [finding] = make_target(tmp_path, required_files=["app.py"]).deployable("v9.9.9")
    assert not finding.ok
    assert "resolves outside" in finding.message


def test_plan_describes_the_steps_and_changes_nothing(tmp_path: Path) -> None:
    lay_out(tmp_path)
    target = make_target(tmp_path, restart=["supervisorctl", "restart", "app"], ready_timeout="2m")
    assert target.plan("v1.2.9") == [
        f"point {tmp_path / 'current'} at releases/v1.2.9 (atomic rename)",
        "restart: supervisorctl restart app",
        "wait until the service answers v1.2.9 3 times in a row (up to 2.0 min)",
    ]
    assert os.readlink(tmp_path / "current") == "releases/v1.3.0"


# --- the switch --------------------------------------------------------------------------------------


def test_rollback_switches_the_link_to_a_relative_target(tmp_path: Path) -> None:
    lay_out(tmp_path)
    target = make_target(tmp_path)
    journal = Journal(tmp_path / "run" / "journal.jsonl")
    target.rollback("v1.2.9", journal)
    link = tmp_path / "current"
    assert link.is_symlink()
    assert os.readlink(link) == "releases/v1.2.9"
    assert (link / "app.py").read_text() == "VERSION = 'v1.2.9'\n"
    assert target.live_version() == "v1.2.9"
    assert statuses(journal) == [("switch-link", "started"), ("switch-link", "done")]
    started, done = journal.entries()
    assert (started["link"], started["to"]) == (str(link), "releases/v1.2.9")
    assert done["from"] == "releases/v1.3.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "releases", "run"]  # no temporary link


def test_link_in_another_folder_gets_a_relative_target_too(tmp_path: Path) -> None:
    lay_out(tmp_path)
    (tmp_path / "srv").mkdir()
    os.symlink("../releases/v1.3.0", tmp_path / "srv" / "current")
    target = make_target(tmp_path, current_link="srv/current")
    target.rollback("v1.2.8", Journal(tmp_path / "journal.jsonl"))
    assert os.readlink(tmp_path / "srv" / "current") == "../releases/v1.2.8"
    assert target.live_version() == "v1.2.8"


def test_rollback_when_already_pointing_there_changes_nothing(tmp_path: Path) -> None:
    lay_out(tmp_path, live="v1.2.9")
    before = os.lstat(tmp_path / "current").st_ino
    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path).rollback("v1.2.9", journal)
    assert os.lstat(tmp_path / "current").st_ino == before
    assert journal.entries()[-1]["note"] == "already pointing there"


def test_leftover_temporary_links_from_a_killed_run_do_not_break_a_rerun(tmp_path: Path) -> None:
    lay_out(tmp_path)
    # What a run killed between "make the temporary link" and "rename it" leaves: one with this
    # process's id (a reused pid), one from another process, and a stray regular file.
    os.symlink("releases/v1.3.0", tmp_path / f".current.rollback-{os.getpid()}")
    os.symlink("releases/gone", tmp_path / ".current.rollback-999999")
    target = make_target(tmp_path)
    target.rollback("v1.2.9", Journal(tmp_path / "journal.jsonl"))
    assert os.readlink(tmp_path / "current") == "releases/v1.2.9"
    assert not (tmp_path / f".current.rollback-{os.getpid()}").is_symlink()
    (tmp_path / f".current.rollback-{os.getpid()}").write_text("stray")
    target.rollback("v1.2.8", Journal(tmp_path / "journal.jsonl"))
    assert target.live_version() == "v1.2.8"


CHILD = """
import os, sys
from pathlib import Path
from rollback_harness.rollback.config import TargetSpec
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.symlink import SymlinkSettings

root = Path(sys.argv[1])
restart = sys.argv[3:] or None
settings = SymlinkSettings(releases_dir="releases", current_link="current", restart=restart, restart_timeout=60)
context = TargetContext(name="shop", base_dir=root, progress=print, service_version=lambda: None)
target = create_target(TargetSpec("app", "symlink", settings), context)
journal = Journal(root / "journal.jsonl")
if sys.argv[2] == "flip":
    # Switch back and forth until killed.
    while True:
        for version in ("v1.2.9", "v1.3.0"):
            target.rollback(version, journal)
else:
    target.rollback(sys.argv[2], journal)
"""


def start_child(root: Path, *args: str) -> subprocess.Popen[bytes]:
    script = root / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    return subprocess.Popen([sys.executable, str(script), str(root), *args], stdout=subprocess.DEVNULL)


def test_killed_during_restart_leaves_the_new_link_and_an_open_restart_step(tmp_path: Path) -> None:
    lay_out(tmp_path)
    pid_file = tmp_path / "restart.pid"
    restart = ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"]
    child = start_child(tmp_path, "v1.2.9", *restart)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="the restart command")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
        if pid_file.exists() and pid_file.read_text().strip():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned "sleep 30"
            except ProcessLookupError:
                pass
    link = tmp_path / "current"
    assert link.is_symlink() and link.resolve().is_dir()
    assert os.readlink(link) == "releases/v1.2.9"
    journal = Journal(tmp_path / "journal.jsonl")
    assert journal.step_states() == {"switch-link": "done", "restart": "started"}

    # The rerun sees the link already in place, does not switch it again, and restarts.
    target = make_target(tmp_path, restart=[sys.executable, "-c", "print('restarted')"])
    target.rollback("v1.2.9", journal)
    assert journal.step_states() == {"switch-link": "done", "restart": "done"}
    switch_records = [e for e in journal.entries() if e["step"] == "switch-link" and e["status"] == "done"]
    assert switch_records[-1]["note"] == "already pointing there"
    assert journal.entries()[-1]["output"] == "restarted"


def test_killed_at_any_moment_of_switching_never_leaves_a_dangling_link(tmp_path: Path) -> None:
    lay_out(tmp_path)
    link = tmp_path / "current"
    journal = Journal(tmp_path / "journal.jsonl")
    child = start_child(tmp_path, "flip")
    seen: set[str] = set()
    try:
        wait_for(lambda: len(journal.entries()) > 20, what="the child to start switching")
        started = time.monotonic()
        # Watch for at least 0.3 s, and until both releases were seen (at most 10 s).
        while time.monotonic() - started < 0.3 or (len(seen) < 2 and time.monotonic() - started < 10):
            # A reader during the switches always finds a link to a real release.
            seen.add(os.readlink(link))
            assert link.resolve().is_dir()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        child.kill()
    assert seen == {"releases/v1.2.9", "releases/v1.3.0"}
    assert link.is_symlink()
    assert os.readlink(link) in seen
    assert link.resolve().is_dir()
    # Whatever the kill left behind, a rerun puts the requested release live.
    target = make_target(tmp_path)
    target.rollback("v1.2.8", Journal(tmp_path / "journal.jsonl"))
    assert target.live_version() == "v1.2.8"


# --- the restart command -----------------------------------------------------------------------------


def test_restart_runs_in_the_base_folder_and_its_output_is_journaled(tmp_path: Path) -> None:
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    code = "import os, sys; print('restarted in', os.getcwd()); print('warn', file=sys.stderr)"
    make_target(tmp_path, restart=[sys.executable, "-c", code]).rollback("v1.2.9", journal)
    assert statuses(journal)[-2:] == [("restart", "started"), ("restart", "done")]
    output = journal.entries()[-1]["output"]
    assert f"restarted in {tmp_path}" in output and "warn" in output


def test_restart_arguments_are_not_given_to_a_shell(tmp_path: Path) -> None:
    lay_out(tmp_path)
    marker = tmp_path / "pwned"
    journal = Journal(tmp_path / "journal.jsonl")
    argument = f"x; touch {marker}"
    make_target(tmp_path, restart=["echo", argument]).rollback("v1.2.9", journal)
    assert journal.entries()[-1]["output"] == argument
    assert not marker.exists()


def test_failing_restart_raises_with_exit_code_and_output(tmp_path: Path) -> None:
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    code = "import sys; print('cannot bind :8080'); print('fatal: address in use', file=sys.stderr); sys.exit(3)"
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, restart=[sys.executable, "-c", code]).rollback("v1.2.9", journal)
    message = str(info.value)
    assert "restart command exited 3" in message
    assert "cannot bind :8080" in message and "fatal: address in use" in message
    assert journal.step_states() == {"switch-link": "done", "restart": "failed"}
    assert "exited 3" in journal.entries()[-1]["error"]
    # The link was switched: the journal and the link agree on what happened.
    assert os.readlink(tmp_path / "current") == "releases/v1.2.9"


def test_restart_command_not_found(tmp_path: Path) -> None:
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, restart=["/nonexistent/bin/restart-app", "now"]).rollback("v1.2.9", journal)
    assert str(info.value) == "restart command not found: /nonexistent/bin/restart-app"
    assert journal.step_states()["restart"] == "failed"


def test_restart_command_that_is_not_executable(tmp_path: Path) -> None:
    lay_out(tmp_path)
    script = tmp_path / "restart.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, restart=[str(script)]).rollback("v1.2.9", journal)
    assert str(info.value) == f"restart command could not be started: {script}: Permission denied"
    assert journal.step_states()["restart"] == "failed"


def test_restart_that_leaves_a_daemon_behind_returns_when_the_command_does(tmp_path: Path) -> None:
    # The background sleep inherits the command's output: the harness must not wait for it.
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    started = time.monotonic()
    make_target(tmp_path, restart=["sh", "-c", "sleep 30 & echo restarted"], restart_timeout="20s").rollback(
        "v1.2.9", journal
    )
    assert time.monotonic() - started < 10
    done = journal.entries()[-1]
    assert (done["step"], done["status"], done["output"]) == ("restart", "done", "restarted")


def test_restart_timeout(tmp_path: Path) -> None:
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    started = time.monotonic()
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, restart=["sleep", "30"], restart_timeout="300ms").rollback("v1.2.9", journal)
    assert time.monotonic() - started < 5
    assert str(info.value) == "restart command did not finish within 300 ms and was killed: sleep 30"
    failed = journal.entries()[-1]
    assert (failed["step"], failed["status"]) == ("restart", "failed")
    assert failed["duration_s"] < 5


# --- waiting until ready -----------------------------------------------------------------------------


class Answers:
    """A service_version callable: answers ``before`` until called ``after`` times, then ``version``."""

    def __init__(self, version: str | None, after: int, before: str | None = "v1.3.0") -> None:
        self.version, self.after, self.before, self.calls = version, after, before, 0

    def __call__(self, timeout: float | None = None) -> str | None:
        self.calls += 1
        return self.version if self.calls > self.after else self.before


def test_wait_ready_polls_until_the_service_answers_the_target(tmp_path: Path) -> None:
    answers = Answers("v1.2.9", after=3, before=None)
    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path, answers, ready_timeout="10s", ready_consecutive=1).wait_ready("v1.2.9", journal)
    assert answers.calls == 4
    started, done = journal.entries()
    assert (started["step"], started["status"], started["version"], started["timeout_s"]) == (
        "wait-ready",
        "started",
        "v1.2.9",
        10.0,
    )
    assert (done["step"], done["status"]) == ("wait-ready", "done")
    assert 0 < done["waited_s"] <= done["duration_s"] < 5


def test_wait_ready_accepts_the_version_without_its_v(tmp_path: Path) -> None:
    answers = Answers("1.2.9", after=1)
    make_target(tmp_path, answers, ready_timeout="10s", ready_consecutive=1).wait_ready(
        "v1.2.9", Journal(tmp_path / "j.jsonl")
    )
    assert answers.calls == 2


def test_wait_ready_returns_at_once_when_already_serving(tmp_path: Path) -> None:
    answers = Answers("v1.2.9", after=0)
    make_target(tmp_path, answers, ready_timeout="10s", ready_consecutive=1).wait_ready(
        "v1.2.9", Journal(tmp_path / "j.jsonl")
    )
    assert answers.calls == 1


@pytest.mark.parametrize(("last", "shown"), [("v1.3.0", "v1.3.0"), (None, "none")])
def test_wait_ready_gives_up_at_the_deadline_naming_the_last_answer(
    tmp_path: Path, last: str | None, shown: str
) -> None:
    answers = Answers("v1.2.9", after=10**9, before=last)
    journal = Journal(tmp_path / "journal.jsonl")
    started = time.monotonic()
    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, answers, ready_timeout="0.3s").wait_ready("v1.2.9", journal)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2
    assert str(info.value) == f"shop did not answer v1.2.9 within 300 ms; last answer: {shown}"
    assert answers.calls >= 2  # polled, not asked once
    assert journal.step_states() == {"wait-ready": "failed"}


def test_wait_ready_reports_progress_while_waiting(tmp_path: Path) -> None:
    messages: list[str] = []

    def late(timeout: float | None = None) -> str:
        # The old version until the first progress message (due after 2 s), then the target.
        return "v1.2.9" if messages else "v1.3.0"

    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path, late, messages.append, ready_timeout="2.5s").wait_ready("v1.2.9", journal)
    assert journal.step_states() == {"wait-ready": "done"}
    assert len(messages) == 1, messages
    assert messages[0].startswith("waiting for shop to answer v1.2.9: 2.")
    assert messages[0].endswith(" s of 2.5 s, last answer v1.3.0")


def test_journal_lines_are_json(tmp_path: Path) -> None:
    lay_out(tmp_path)
    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path, restart=["true"]).rollback("v1.2.9", journal)
    for line in (tmp_path / "journal.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line), dict)


def test_wait_ready_needs_consecutive_matching_answers(tmp_path: Path) -> None:
    # A flapping service: the target, the old version, then the target for good.
    sequence = iter(["v1.2.9", "v1.3.0", "v1.2.9", "v1.2.9", "v1.2.9"])
    calls: list[float | None] = []

    def flapping(timeout: float | None = None) -> str | None:
        calls.append(timeout)
        return next(sequence, "v1.2.9")

    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path, flapping, ready_timeout="10s", ready_consecutive=3).wait_ready("v1.2.9", journal)
    assert len(calls) == 5
    done = journal.entries()[-1]
    assert (done["step"], done["status"], done["answers"], done["flaps"]) == ("wait-ready", "done", 5, 1)
    assert journal.entries()[0]["consecutive"] == 3


def test_wait_ready_without_enough_answers_in_a_row_fails_and_says_so(tmp_path: Path) -> None:
    answers = iter(["v1.2.9", "v1.2.9"])

    def two_then_none(timeout: float | None = None) -> str | None:
        return next(answers, None)

    with pytest.raises(RollbackFailed) as info:
        make_target(tmp_path, two_then_none, ready_timeout="300ms", ready_consecutive=3).wait_ready(
            "v1.2.9", Journal(tmp_path / "journal.jsonl")
        )
    assert str(info.value) == "shop did not answer v1.2.9 within 300 ms; last answer: none"


def test_wait_ready_gives_each_probe_only_the_time_left(tmp_path: Path) -> None:
    """A probe against a service that accepts and never answers cannot outlast the ready deadline."""
    import socket

    from rollback_harness.checks.http import make_session, probe

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # accepted by the kernel, never answered
        url = f"http://127.0.0.1:{server.getsockname()[1]}/version"
        given: list[float | None] = []

        def stalled(timeout: float | None = None) -> str | None:
            given.append(timeout)
            # The configured probe timeout is 30 s; the wait hands it the time that is left.
            answer = probe(make_session(), url, timeout=min(30.0, timeout or 30.0))
            return answer.body if answer.error is None else None

        started = time.monotonic()
        with pytest.raises(RollbackFailed, match=r"did not answer v1\.2\.9 within 1\.0 s"):
            make_target(tmp_path, stalled, ready_timeout="1s").wait_ready("v1.2.9", Journal(tmp_path / "j.jsonl"))
        assert time.monotonic() - started < 10  # not 30 s: the probe was cut at the deadline
        assert given and all(t is not None and 0 < t <= 1.0 for t in given)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("restart_timeout", "0", "targets.app.restart_timeout = 0: expected a duration above 0 and at most 24h"),
        ("ready_timeout", "1e308", "targets.app.ready_timeout = 1e+308: expected a duration above 0 and at most 24h"),
        ("ready_timeout", '"25h"', "targets.app.ready_timeout = '25h': expected a duration above 0 and at most 24h"),
        ("restart", '[""]', "targets.app.restart = ['']: expected an argument list whose first item names a program"),
        ("restart", '[" ", "x"]', "targets.app.restart = [' ', 'x']: expected an argument list whose first item"),
        ("ready_consecutive", "0", "targets.app.ready_consecutive = 0: Input should be greater than or equal to 1"),
    ],
)
def test_settings_that_would_fail_after_the_switch_are_config_errors(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    from rollback_harness.rollback.errors import ConfigError

    config_path = tmp_path / "rollback.toml"
    config_path.write_text(
        '[service]\nname = "shop"\nbase_url = "http://127.0.0.1:9"\n\n'
        f'[targets.app]\nkind = "symlink"\nreleases_dir = "releases"\ncurrent_link = "current"\n{key} = {value}\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_path, environ={})
    assert str(info.value).startswith(f"{config_path}: {message}")


# --- preflight checks every command the driver will run -----------------------------------------------


def test_restart_command_found_in_path_passes(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path, restart=["true"]).command_findings()
    assert finding.ok and finding.message.startswith("restart command /") and finding.message.endswith("can be run")


def test_restart_command_missing_from_path_is_found_in_preflight(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path, restart=["no-such-restart-tool", "app"]).command_findings()
    assert not finding.ok
    assert finding.message == "restart command not found: no-such-restart-tool (looked up in PATH)"


def test_relative_restart_command_is_resolved_from_the_config_folder(tmp_path: Path) -> None:
    lay_out(tmp_path)
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "restart.sh"
    script.write_text("#!/bin/sh\necho restarted\n")
    script.chmod(0o644)
    target = make_target(tmp_path, restart=["bin/restart.sh"])
    [finding] = target.command_findings()
    assert not finding.ok
    assert finding.message == f"restart command is not executable: {script}"
    script.chmod(0o755)
    [finding] = target.command_findings()
    assert finding.ok
    # ... and the driver runs it from there, as preflight found it.
    journal = Journal(tmp_path / "journal.jsonl")
    target.rollback("v1.2.9", journal)
    assert journal.entries()[-1]["output"] == "restarted"


def test_restart_command_that_is_a_folder_or_absent(tmp_path: Path) -> None:
    lay_out(tmp_path)
    [finding] = make_target(tmp_path, restart=[str(tmp_path / "releases")]).command_findings()
    assert finding.message == f"restart command is a folder, not a program: {tmp_path / 'releases'}"
    [finding] = make_target(tmp_path, restart=["./gone.sh"]).command_findings()
    assert finding.message == f"restart command not found: ./gone.sh (from {tmp_path})"


# --- conflicts: the live state changed after preflight read it ------------------------------------


def test_observe_is_the_links_text(tmp_path: Path) -> None:
    lay_out(tmp_path)
    target = make_target(tmp_path)
    assert target.observe() == "releases/v1.3.0"
    (tmp_path / "current").unlink()
    assert target.observe() == "(missing)"


def test_a_link_moved_after_preflight_is_a_conflict_and_nothing_is_written(tmp_path: Path) -> None:
    from rollback_harness.rollback.errors import Conflict

    lay_out(tmp_path)
    restarted = tmp_path / "restarted"
    target = make_target(tmp_path, restart=["touch", str(restarted)])
    seen = target.observe()
    # Another deploy lands between our read and our write.
    os.symlink("releases/v1.2.8", tmp_path / ".deploy-tmp")
    os.replace(tmp_path / ".deploy-tmp", tmp_path / "current")
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(Conflict) as info:
        target.rollback("v1.2.9", journal, seen)
    assert "it was releases/v1.3.0, it is now releases/v1.2.8" in str(info.value)
    assert os.readlink(tmp_path / "current") == "releases/v1.2.8"  # the deploy's link stays
    assert not restarted.exists()
    assert journal.entries() == []


def test_a_link_moved_before_a_resumed_restart_is_a_conflict(tmp_path: Path) -> None:
    from rollback_harness.rollback.errors import Conflict

    lay_out(tmp_path, live="v1.2.9")
    restarted = tmp_path / "restarted"
    target = make_target(tmp_path, restart=["touch", str(restarted)])
    seen = target.observe()
    os.symlink("releases/v1.3.0", tmp_path / ".deploy-tmp")
    os.replace(tmp_path / ".deploy-tmp", tmp_path / "current")
    with pytest.raises(Conflict):
        target.rollback("v1.2.9", Journal(tmp_path / "journal.jsonl"), seen, ["restart"])
    assert not restarted.exists()


def test_only_the_steps_asked_for_are_taken(tmp_path: Path) -> None:
    lay_out(tmp_path, live="v1.2.9")
    restarted = tmp_path / "restarted"
    target = make_target(tmp_path, restart=["touch", str(restarted)])
    journal = Journal(tmp_path / "journal.jsonl")
    target.rollback("v1.2.9", journal, target.observe(), ["restart"])
    assert restarted.exists()
    assert statuses(journal) == [("restart", "started"), ("restart", "done")]
    assert target.steps() == ["switch-link", "restart", "wait-ready"]
    assert target.plan("v1.2.9", ["restart", "wait-ready"])[0] == f"restart: touch {restarted}"
    assert make_target(tmp_path).steps() == ["switch-link", "wait-ready"]


# --- leftovers and the way back ----------------------------------------------------------------------


def test_temporary_links_of_killed_runs_are_removed_by_the_next_switch(tmp_path: Path) -> None:
    lay_out(tmp_path)
    os.symlink("releases/v1.3.0", tmp_path / ".current.rollback-4242")
    os.symlink("releases/gone", tmp_path / ".current.rollback-999999")
    (tmp_path / ".current.rollback-notes").write_text("not ours")  # not a leftover link: kept
    journal = Journal(tmp_path / "journal.jsonl")
    make_target(tmp_path).rollback("v1.2.9", journal)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".current")) == [".current.rollback-notes"]
    assert journal.entries()[-1]["removed"] == [".current.rollback-4242", ".current.rollback-999999"]


def test_way_back_is_the_exact_command(tmp_path: Path) -> None:
    lay_out(tmp_path)
    target = make_target(tmp_path, restart=["supervisorctl", "-c", "my conf", "restart", "app"])
    assert target.way_back("v1.3.0") == (
        f"cd {tmp_path} && ln -sfn releases/v1.3.0 {tmp_path / 'current'} && supervisorctl -c 'my conf' restart app"
    )
