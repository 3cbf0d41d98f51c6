"""kind = "command": the demo deployment rolled back by a real shell script (the runbook's
./deploy-version.sh v1.2.9 --rolling), its live version and history read by commands; shell strings
refused, deadlines that kill the whole process group, exit codes mapped, output bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, read_evidence

from rollback_harness.rollback.errors import Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.targets.command import CommandSettings, CommandTarget

pytestmark = pytest.mark.integration

DEPLOY_SCRIPT = """#!/bin/sh
# deploy-version.sh VERSION [--rolling]: point current at releases/VERSION and restart the app.
set -eu
version="$1"
if [ ! -d "releases/$version" ]; then echo "no release $version" >&2; exit 3; fi
if [ "$(basename "$(readlink current)")" = "$version" ]; then echo "already on $version"; exit 7; fi
echo "deploying $version ${2:-}"
ln -sfn "releases/$version" current
exec "$@" 2>&1
"""
LIVE_SCRIPT = """#!/bin/sh
basename "$(readlink current)"
"""


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def scripted(demo: Deployment) -> Deployment:
    """The demo, its target replaced by kind = "command" over two real shell scripts."""
    root = demo.layout.root
    restart = demo.config()["targets"]["app"]["restart"]
    deploy = DEPLOY_SCRIPT.replace('exec "$@" 2>&1', "exec " + " ".join(f"'{arg}'" for arg in restart))
    script(root / "deploy-version.sh", deploy)
    script(root / "current-version.sh", LIVE_SCRIPT)
    data = demo.config()
    data["targets"] = {
        "app": {
            "kind": "command",
            "live_version": ["./current-version.sh"],
            "history": ["ls", "releases"],
            "rollback": ["./deploy-version.sh", "{version}", "--rolling"],
            "deployable": ["test", "-f", "releases/{version}/app.py"],
            "already_codes": [7],
            "ready_timeout": "30s",
        }
    }
    demo.write_config(data)
    return demo


def run(pytester: pytest.Pytester, demo: Deployment, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args))


def set_target(demo: Deployment, **changes: Any) -> None:
    data = demo.config()
    data["targets"]["app"].update(changes)
    demo.write_config(data)


def test_the_deploy_script_rolls_the_demo_back_and_verify_passes(
    pytester: pytest.Pytester, scripted: Deployment
) -> None:
    result = run(pytester, scripted, "--rollback-to", "previous", "--rollback-yes", "-v")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*run ./deploy-version.sh v1.2.9 --rolling in *", "*verify-version PASSED*"])
    assert scripted.linked_version() == "v1.2.9" and scripted.live_version() == "v1.2.9"
    assert scripted.restarts() == 1
    evidence = read_evidence(pytester.path / "reports")
    (event,) = [e for e in evidence["timeline"] if e["what"] == "run-rollback"]
    assert event["status"] == "done" and event["detail"]["exit_code"] == 0
    assert "deploying v1.2.9 --rolling" in event["detail"]["output"]
    assert event["detail"]["command"] == ["./deploy-version.sh", "v1.2.9", "--rolling"]


def test_a_shell_string_is_refused_with_the_argument_list_it_means(
    pytester: pytest.Pytester, scripted: Deployment
) -> None:
    set_target(scripted, rollback="./deploy-version.sh {version} --rolling")

    result = run(pytester, scripted, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert "targets.app.rollback" in output and "a shell string is not accepted" in output
    assert '["./deploy-version.sh", "{version}", "--rolling"]' in output
    assert "Traceback" not in output and scripted.linked_version() == "v1.3.0"


def test_a_missing_rollback_program_refuses_the_run_in_preflight(
    pytester: pytest.Pytester, scripted: Deployment
) -> None:
    set_target(scripted, rollback=["./no-such-deploy.sh", "{version}"])

    result = run(pytester, scripted, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*rollback command not found: ./no-such-deploy.sh*"])
    assert scripted.linked_version() == "v1.3.0" and scripted.restarts() == 0


def test_a_version_the_deployable_command_rejects_is_refused(pytester: pytest.Pytester, scripted: Deployment) -> None:
    (scripted.layout.releases_dir / "v1.2.8" / "app.py").unlink()

    result = run(pytester, scripted, "--rollback-to", "v1.2.8", "--rollback-yes")

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*test -f releases/v1.2.8/app.py exited 1 (not deployable)*"])


def test_a_failing_deploy_exits_12_with_its_exit_code_and_output(
    pytester: pytest.Pytester, scripted: Deployment
) -> None:
    script(scripted.layout.root / "broken-deploy.sh", "#!/bin/sh\necho 'registry unreachable' >&2\nexit 4\n")
    set_target(scripted, rollback=["./broken-deploy.sh", "{version}"])

    result = run(pytester, scripted, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert result.ret == 12, result.stdout.str()
    result.stdout.fnmatch_lines(["*rollback command exited 4 (success is 0)*registry unreachable*"])
    result.stdout.fnmatch_lines(["*by hand: `cd * && ./broken-deploy.sh v1.3.0`*"])


def test_a_deploy_past_its_deadline_is_killed_with_its_children(
    pytester: pytest.Pytester, scripted: Deployment
) -> None:
    pidfile = scripted.layout.root / "child.pid"
    script(
        scripted.layout.root / "hanging-deploy.sh",
        f"#!/bin/sh\nsleep 300 &\necho $! > {pidfile}\necho 'waiting for the rollout'\nwait\n",
    )
    set_target(scripted, rollback=["./hanging-deploy.sh", "{version}"], rollback_timeout="1s")
    started = time.monotonic()

    result = run(pytester, scripted, "--rollback-to", "v1.2.9", "--rollback-yes")

    assert time.monotonic() - started < 60  # did not hang for the script's 300 s
    assert result.ret == 12, result.stdout.str()
    result.stdout.fnmatch_lines(["*did not finish within 1.0 s; its process group was killed*waiting for the rollout*"])
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, f"the deploy script's child {child} outlived the kill"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


# -- the driver, without pytest around it ---------------------------------------------------------


def target(root: Path, **settings: Any) -> CommandTarget:
    model = CommandSettings.model_validate(
        {"live_version": ["./current-version.sh"], "history": ["ls", "releases"], "rollback": ["true"], **settings}
    )
    context = TargetContext(name="demo", base_dir=root, progress=lambda m: None, service_version=lambda **k: None)
    return CommandTarget(model, context)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    for version in ("v1.2.8", "v1.2.9", "v1.10.0", "not a version"):
        (tmp_path / "releases" / version).mkdir(parents=True)
    os.symlink("releases/v1.10.0", tmp_path / "current")
    script(tmp_path / "current-version.sh", LIVE_SCRIPT)
    return tmp_path


def test_live_version_and_history_come_from_the_commands_sorted_as_versions(layout: Path) -> None:
    driver = target(layout)

    assert driver.live_version() == "v1.10.0"
    assert driver.history() == ["v1.2.8", "v1.2.9", "v1.10.0"]  # "not a version" left out
    assert driver.observe() == "v1.10.0"


def test_a_deploy_between_preflight_and_the_write_is_a_conflict(layout: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    driver = target(layout, rollback=["touch", str(marker)])
    observed = driver.observe()
    os.remove(layout / "current")
    os.symlink("releases/v1.2.8", layout / "current")  # someone else deployed

    with pytest.raises(Conflict, match=r"said v1\.10\.0 at preflight and says v1\.2\.8 now"):
        driver.rollback("v1.2.9", Journal(tmp_path / "j.jsonl"), observed)

    assert not marker.exists()


def test_exit_codes_map_to_done_already_there_and_failed(layout: Path, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    exits = ["sh", "-c", 'exit "$1"', "deploy"]

    target(layout, rollback=[*exits, "5"], ok_codes=[0, 5]).rollback("v1.2.9", journal)
    target(layout, rollback=[*exits, "7"], already_codes=[7]).rollback("v1.2.9", journal)
    with pytest.raises(RollbackFailed, match="exited 9"):
        target(layout, rollback=[*exits, "9"]).rollback("v1.2.9", journal)

    outcomes = [(e["status"], e.get("exit_code"), e.get("note")) for e in journal.entries() if e["status"] != "started"]
    assert outcomes == [
        ("done", 5, None),
        ("done", 7, "exit 7: the command says v1.2.9 was already there"),
        ("failed", 9, None),
    ]


def test_output_is_kept_to_its_last_bytes(layout: Path, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    noisy = ["sh", "-c", "yes progress | head -c 1000000; echo; echo 'the error at the end'"]

    target(layout, rollback=noisy, output_limit=1024).rollback("v1.2.9", journal)

    (done,) = [e for e in journal.entries() if e["status"] == "done"]
    assert done["output"].endswith("the error at the end")
    assert done["output_cut_bytes"] > 900_000


def test_the_version_is_one_argument_whatever_it_holds(layout: Path, tmp_path: Path) -> None:
    out = tmp_path / "args"
    driver = target(layout, rollback=["sh", "-c", 'printf "%s|" "$@" > "$0"', str(out), "--to={version}", "x"])

    driver.rollback("v1.2.9;rm -rf /", Journal(tmp_path / "j.jsonl"))

    assert out.read_text() == "--to=v1.2.9;rm -rf /|x|"


def test_a_multi_line_live_version_is_an_error(layout: Path) -> None:
    driver = target(layout, live_version=["printf", "v1\\nv2\\n"])

    with pytest.raises(RollbackFailed, match="printed 2 lines, expected one version"):
        driver.live_version()


def test_a_dry_run_runs_only_the_read_commands(pytester: pytest.Pytester, scripted: Deployment) -> None:
    result = run(pytester, scripted, "--rollback-to", "v1.2.9", "--rollback-dry-run")

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*run ./deploy-version.sh v1.2.9 --rolling in *"])
    assert scripted.linked_version() == "v1.3.0" and scripted.restarts() == 0
