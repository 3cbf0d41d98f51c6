"""The symlink driver's census: the link's release and the real process serving it.

The app is a real process started by a real restart command (a Python script in the deployment's
folder) that writes its pid file; the driver reads the pid and /proc/<pid>/stat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollback_harness.rollback.census import judge_census
from rollback_harness.rollback.config import TargetSpec, load_config
from rollback_harness.rollback.errors import ConfigError, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.symlink import STEP_RESTART, STEP_SWITCH, SymlinkSettings, SymlinkTarget

# The app: writes its pid file (atomically) once it runs, then waits for a signal.
APP = """\
import os, signal
from pathlib import Path
Path("app.pid.tmp").write_text(str(os.getpid()))
os.replace("app.pid.tmp", "app.pid")
signal.pause()
"""

# The restart command: stop the app the pid file names, start current/app.py, return once it wrote its pid.
RESTART = f"""\
import os, signal, subprocess, sys, time
from pathlib import Path

def gone(pid):
    try:
        state = Path(f"/proc/{{pid}}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")

pid_file = Path("app.pid")
if pid_file.exists():
    old = int(pid_file.read_text())
    pid_file.unlink()
    try:
        os.kill(old, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while not gone(old) and time.monotonic() < deadline:
        time.sleep(0.01)
subprocess.Popen([{sys.executable!r}, "current/app.py"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 10
while not pid_file.exists():
    if time.monotonic() > deadline:
        sys.exit("the app did not write app.pid within 10s")
    time.sleep(0.01)
"""


def lay_out(root: Path) -> Path:
    for version in ("v1.2.9", "v1.3.0"):
        folder = root / "releases" / version
        folder.mkdir(parents=True)
        (folder / "app.py").write_text(APP)
    os.symlink("releases/v1.3.0", root / "current")
    (root / "restart.py").write_text(RESTART)
    return root


def make_target(root: Path, **settings: Any) -> SymlinkTarget:
    values = {"releases_dir": "releases", "current_link": "current", "restart": [sys.executable, "restart.py"]}
    spec = TargetSpec(name="app", kind="symlink", settings=SymlinkSettings.model_validate({**values, **settings}))
    context = TargetContext(
        name="shop", base_dir=root, progress=lambda message: None, service_version=lambda timeout=None: None
    )
    target = create_target(spec, context)
    assert isinstance(target, SymlinkTarget)
    return target


def app_pid(root: Path) -> int:
    return int((root / "app.pid").read_text())


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Path]:
    """A release folder whose app runs (started by its restart command) on v1.3.0; stopped at teardown."""
    root = lay_out(tmp_path / "deploy")
    subprocess.run([sys.executable, "restart.py"], cwd=root, check=True, timeout=30)
    try:
        yield root
    finally:
        pid_file = root / "app.pid"
        if pid_file.exists():
            try:
                os.kill(app_pid(root), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_process_not_restarted_since_the_switch_is_a_problem_naming_it(deployment: Path) -> None:
    target = make_target(deployment, pid_file="app.pid")
    journal = Journal(deployment / "journal.jsonl")
    before = app_pid(deployment)

    target.rollback("v1.2.9", journal, steps=[STEP_SWITCH])  # the link moves; nothing restarts
    census = target.census()
    result = judge_census(census, "v1.2.9")

    assert census.unit == "process"
    assert [(r.version, r.serving, r.state) for r in census.replicas] == [("v1.2.9", True, "running")]
    assert census.replicas[0].name.startswith(f"process {before} (python")
    assert result.status == "failed"
    assert f"process {before}" in result.summary and "not restarted since" in result.summary
    assert census.facts["pid"] == before

    target.rollback("v1.2.9", journal, steps=[STEP_RESTART])
    after = target.census()
    passed = judge_census(after, "v1.2.9")

    assert app_pid(deployment) != before
    assert after.problems == ()
    assert passed.status == "passed", passed.summary
    assert passed.summary == "every serving process runs v1.2.9: 1 of 1"


def test_a_pid_command_names_the_process_as_a_pid_file_does(deployment: Path) -> None:
    target = make_target(deployment, pid_command=["cat", "app.pid"])

    census = target.census()

    assert census.facts["process"] == "pid command cat app.pid"
    assert judge_census(census, "v1.3.0").status == "passed"
    # The fixture made the link, then started the app: it started after the link changed.
    assert census.replicas[0].name.startswith(f"process {app_pid(deployment)} ")


def test_a_stopped_process_serves_nothing(deployment: Path) -> None:
    pid = app_pid(deployment)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    target = make_target(deployment, pid_file="app.pid")
    while (census := target.census()).replicas[0].serving:  # until the kernel has ended it
        assert time.monotonic() < deadline, "the killed app still looks alive"
        time.sleep(0.01)

    result = judge_census(census, "v1.3.0")

    assert census.replicas[0].state == "not running"
    assert result.status == "failed"
    assert result.summary.startswith("no process is serving")

    (deployment / "app.pid").unlink()
    assert judge_census(target.census(), "v1.3.0").summary.startswith("no process is serving")


def test_without_a_process_the_link_alone_is_judged_and_the_facts_say_so(tmp_path: Path) -> None:
    target = make_target(lay_out(tmp_path))

    census = target.census()

    assert census.unit == "release"
    assert "judged by the link only" in census.facts["process"]
    assert judge_census(census, "v1.3.0").status == "passed"
    failed = judge_census(census, "v1.2.9")
    assert failed.status == "failed" and "link current (v1.3.0)" in failed.summary


def test_an_unreadable_link_or_pid_raises_a_clear_error(tmp_path: Path) -> None:
    root = lay_out(tmp_path)
    (root / "app.pid").write_text("not a pid\n")
    with pytest.raises(RollbackFailed, match=r"the pid file .*app.pid gave 'not a pid', not a process id"):
        make_target(root, pid_file="app.pid").census()
    with pytest.raises(RollbackFailed, match=r"pid command false \(exit 1\) failed: no output"):
        make_target(root, pid_command=["false"]).census()
    (root / "current").unlink()
    with pytest.raises(RollbackFailed, match="does not exist: cannot tell the live release"):
        make_target(root).census()


def test_a_missing_pid_command_is_refused_in_preflight(tmp_path: Path) -> None:
    findings = make_target(lay_out(tmp_path), pid_command=["no-such-pid-program"]).command_findings()
    assert [(f.ok, f.message) for f in findings if not f.ok] == [
        (False, "pid command not found: no-such-pid-program (looked up in PATH)")
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            'pid_file = "app.pid"\npid_command = ["cat", "app.pid"]\n',
            "targets.app.pid_command = ['cat', 'app.pid']: pid_file names the serving process already",
        ),
        (
            'pid_file = "app.pid"\nhosts = ["web1"]\n[targets.app.ssh]\nknown_hosts = "known_hosts"\n',
            "targets.app.hosts = ['web1']: pid_file and pid_command apply to a target on this machine",
        ),
    ],
    ids=["both", "with-hosts"],
)
def test_process_settings_that_cannot_work_are_config_errors(tmp_path: Path, settings: str, expected: str) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text(
        textwrap.dedent(
            """\
            [service]
            name = "shop"
            base_url = "http://127.0.0.1:9"

            [targets.app]
            kind = "symlink"
            releases_dir = "releases"
            current_link = "current"
            """
        )
        + settings
    )
    with pytest.raises(ConfigError) as raised:
        load_config(config, environ={})
    assert expected in str(raised.value)
