"""kind = "bluegreen" against real nginx and HAProxy: the switch, the refusals, and a config the
proxy refuses (or a reload that fails) leaving the old colour serving real requests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deployments import read_evidence

from demo.bluegreen import BlueGreenLayout
from demo.deployment import Release
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.errors import ConfigError, Conflict, RollbackFailed
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.runbook import STATUS_FAILED, Runbook
from rollback_harness.rollback.targets import create_target
from rollback_harness.rollback.targets.base import TargetContext
from rollback_harness.rollback.traffic.commands import ProxyError

pytestmark = pytest.mark.integration

MakeBlueGreen = Callable[..., BlueGreenLayout]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def answers(url: str, times: int = 20) -> set[str]:
    """What ``times`` real requests to ``url`` got back (a body, or the HTTP status)."""
    seen = set()
    for _ in range(times):
        try:
            with _NO_PROXY.open(url, timeout=5) as response:
                seen.add(response.read().decode().strip())
        except OSError as exc:
            seen.add(f"error: {exc}")
    return seen


def harness(pytester: pytest.Pytester, layout: BlueGreenLayout, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
        f"--report-dir={pytester.path / 'reports'}", "--rollback-to", "v1.2.9", "--rollback-yes", *extra,
    )  # fmt: skip


def timeline(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    return list(read_evidence(pytester.path / "reports")["timeline"])


def target_of(layout: BlueGreenLayout) -> Any:
    config = load_config(layout.config_path)
    spec = config.target(None)
    context = TargetContext(
        name="shop", base_dir=config.base_dir, progress=lambda text: None, service_version=lambda timeout=None: None
    )
    return create_target(spec, context)


def runbook_of(layout: BlueGreenLayout, journal: Path) -> Runbook:
    config = load_config(layout.config_path)

    def service_version(timeout: float | None = None) -> str | None:
        found = answers(layout.public_url + "/version", times=1).pop()
        return None if found.startswith("error") else found

    return Runbook(
        config, config.target(None), "v1.2.9", Journal(journal),
        progress=lambda text: None, service_version=service_version, run_id="test-run",
    )  # fmt: skip


def test_nginx_switches_to_the_idle_colour_inside_a_maintenance_window(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    assert answers(layout.public_url + "/version") == {"v1.3.0"}

    result = harness(pytester, layout)

    assert result.ret == 0, result.stdout.str()
    events = {e["what"]: e for e in timeline(pytester)}
    order = [e["what"] for e in timeline(pytester) if (e["status"] == "done" and ":" not in e["what"]) or
             e["what"].startswith("traffic:")]  # fmt: skip
    assert order.index("traffic:maintenance-on") < order.index("switch-proxy") < order.index("traffic:maintenance-off")
    # In the window, nginx answered 503 with the page; the switch says which colour served before and after.
    assert "503 with the maintenance page" in events["traffic:maintenance-on"]["detail"]["check"]
    assert events["switch-proxy"]["detail"]["from_colour"] == "green"
    assert events["switch-proxy"]["detail"]["to_colour"] == "blue"
    assert events["wait-ready"]["detail"]["served_by"] == "blue"
    assert answers(layout.public_url + "/version") == {"v1.2.9"}
    assert layout.maintenance_include.read_text().startswith("# maintenance: off")


def test_haproxy_drains_the_live_colour_in_steps_then_switches(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("haproxy")
    assert answers(layout.public_url + "/version") == {"v1.3.0"}

    result = harness(pytester, layout)

    assert result.ret == 0, result.stdout.str()
    done = [e for e in timeline(pytester) if e["status"] == "done"]
    names = [e["what"] for e in done]
    assert names.index("traffic:drain-50%") < names.index("traffic:drain-0%") < names.index("switch-proxy")
    counters = {e["what"]: e["detail"]["counters"]["green"] for e in done if e["what"].startswith("traffic:drain")}
    # HAProxy's own counters at each step: green's weight went 100 -> 50 -> 0.
    assert counters["traffic:drain-50%"]["weight"] == "50" and counters["traffic:drain-0%"]["weight"] == "0"
    assert answers(layout.public_url + "/version") == {"v1.2.9"}


def test_an_unhealthy_idle_colour_is_refused_and_traffic_stays(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen(
        "nginx",
        colours=(("blue", Release("v1.2.9", health_status=503)), ("green", Release("v1.3.0"))),
    )
    config_before = layout.proxy_config.read_text()

    result = harness(pytester, layout)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*blue*is unhealthy*/health answered HTTP 503*traffic will not be switched*"])
    assert layout.proxy_config.read_text() == config_before
    assert answers(layout.public_url + "/version") == {"v1.3.0"}
    assert layout.maintenance_include.read_text().startswith("# maintenance: off")  # nothing was changed


def test_an_idle_colour_that_fails_after_preflight_is_not_switched_to(
    tmp_path: Path, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    runbook = runbook_of(layout, tmp_path / "journal.jsonl")
    try:
        assert not runbook.refusals(), runbook.refusals()
        os.killpg(layout.pids["blue"], signal.SIGTERM)  # blue dies between preflight and the switch
        os.waitpid(layout.pids["blue"], 0)

        outcome = runbook.execute()
    finally:
        runbook.close()

    assert outcome.status == STATUS_FAILED
    assert "blue" in outcome.message and "traffic was not switched" in outcome.message
    assert target_of(layout).live_colour() == "green"
    # The maintenance page went up before the check, and came down again (undo).
    states = runbook.journal.step_states()
    assert states["traffic:maintenance-on"] == "done" and states["traffic:undo-maintenance"] == "done"
    assert answers(layout.public_url + "/version") == {"v1.3.0"}


@pytest.mark.parametrize("proxy", ["haproxy", "nginx"])
def test_a_config_the_proxy_refuses_never_goes_live(proxy: str, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen(proxy)
    target = target_of(layout)
    token = target.observe()
    live_config = layout.proxy_config.read_text()
    # After preflight judged it, the template grows a line the proxy cannot parse.
    layout.template.write_text(layout.template.read_text() + "\nthis is not a directive;\n")

    with pytest.raises(ProxyError, match="refused the config"):
        target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), token)

    assert layout.proxy_config.read_text() == live_config
    assert not list(layout.root.glob(f".{layout.proxy_config.name}.rollback-*"))  # no temporary file left
    assert answers(layout.public_url + "/version") == {"v1.3.0"}  # real requests still reach green


def test_a_failed_reload_puts_the_old_config_back(make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("nginx")
    target = target_of(layout)
    live_config = layout.proxy_config.read_text()
    pid_file = layout.proxy_pid_file
    hidden = pid_file.with_name("nginx.pid.hidden")
    pid_file.rename(hidden)  # nginx -s reload cannot find the master
    try:
        with pytest.raises(ProxyError, match="put back with the old colour"):
            target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), target.observe())
    finally:
        hidden.rename(pid_file)

    assert layout.proxy_config.read_text() == live_config
    assert target.live_colour() == "green"
    assert answers(layout.public_url + "/version") == {"v1.3.0"}


def test_a_proxy_config_changed_by_hand_is_refused(pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("haproxy")
    # Edited by hand: the first line that names the live colour is gone, and it matches no rendering.
    layout.proxy_config.write_text(layout.proxy_config.read_text().partition("\n")[2] + "# edited by hand\n")

    result = harness(pytester, layout)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*names no active colour*matches neither colour's rendering*changed by hand*"])
    with pytest.raises(RollbackFailed):
        target_of(layout).live_colour()


def test_a_run_killed_during_the_drain_is_finished_by_the_next(tmp_path: Path, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("haproxy")
    config = layout.config_path.read_text()
    layout.config_path.write_text(config.replace('pause = "1s"', 'pause = "60s"'))
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
        "--rollback-to", "v1.2.9", "--rollback-yes", "--rootdir", str(layout.root), str(layout.root),
    ]  # fmt: skip
    first = subprocess.Popen(
        [*command, f"--report-dir={tmp_path / 'first'}"],
        cwd=layout.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(
            '"traffic:drain-50%", "status": "done"' in p.read_text() for p in tmp_path.glob("first/*/journal.jsonl")
        ):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never drained"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # killed during the 60 s pause between drain steps
        first.wait()
    assert answers(layout.public_url + "/version") == {"v1.3.0"}  # green at 50%: still the only active server

    layout.config_path.write_text(config)
    second = subprocess.run(
        [*command, f"--report-dir={tmp_path / 'second'}"], cwd=layout.root, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip

    assert second.returncode == 0, second.stdout + second.stderr
    entries = {e["what"]: e for e in read_evidence(tmp_path / "second")["timeline"]}
    assert entries["traffic:drain-50%"]["status"] == "skipped"  # done by the killed run, not twice
    assert entries["traffic:drain-0%"]["status"] == "done"
    assert entries["switch-proxy"]["status"] == "done"
    assert answers(layout.public_url + "/version") == {"v1.2.9"}


def test_a_haproxy_reload_that_fails_puts_the_old_config_back(make_bluegreen: MakeBlueGreen) -> None:
    """The new config passes `haproxy -c` but the master cannot load it (a port taken): no new
    worker, so the switch fails, the old file goes back, and the old workers keep serving green."""
    layout = make_bluegreen("haproxy")
    target = target_of(layout)
    token = target.observe()
    live_config = layout.proxy_config.read_text()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        extra = f"\nfrontend extra\n    bind 127.0.0.1:{port}\n    default_backend app\n"
        layout.template.write_text(layout.template.read_text() + extra)

        with pytest.raises(ProxyError, match="started no worker with the new config"):
            target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), token)

    assert layout.proxy_config.read_text() == live_config
    assert answers(layout.public_url + "/version") == {"v1.3.0"}


RED = '[targets.shop.colours.red]\nurl = "http://127.0.0.1:1"\n\n[targets.shop.colours.blue]'
ACCEPTED_MAINTENANCE = "accepted keys here: check_url, include, nginx, nginx_config, page, timeout"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('proxy = "nginx"', 'proxy = "apache"'),
            "targets.shop.proxy = 'apache': Input should be 'nginx' or 'haproxy'",
        ),
        (("[targets.shop.colours.blue]", RED), "expected exactly two colours, e.g. blue and green; got 3"),
        (('check_url = "', 'check_url = "ftp://'), "targets.shop.check_url = 'ftp://"),
        (('check_url = "http://127.0.0.1', 'check_url = "http://'), "expected an http:// URL with a host and port"),
        (('page = "maintenance.html"', 'page = "maintenance.html"\ncolor = 1'), ACCEPTED_MAINTENANCE),
    ],
    ids=["proxy", "three-colours", "check-url-scheme", "check-url-host", "maintenance-keys"],
)
def test_bad_bluegreen_and_traffic_settings_are_config_errors(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    layout = bluegreen_layout_only(tmp_path)
    text = layout.config_path.read_text()
    assert change[0] in text
    layout.config_path.write_text(text.replace(change[0], change[1], 1))

    with pytest.raises(ConfigError) as raised:
        load_config(layout.config_path)

    assert str(layout.config_path) in str(raised.value)
    assert expected in str(raised.value)


def bluegreen_layout_only(tmp_path: Path) -> BlueGreenLayout:
    """A laid-out nginx blue/green folder, nothing started (config parsing only)."""
    from demo.bluegreen import lay_out

    return lay_out(tmp_path / "bg", "nginx")


def test_a_proxy_config_changed_after_preflight_is_a_conflict(make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("nginx")
    target = target_of(layout)
    token = target.observe()
    changed = layout.proxy_config.read_text() + "# another deploy touched this\n"
    layout.proxy_config.write_text(changed)

    with pytest.raises(Conflict, match="changed after this run read it"):
        target.rollback("v1.2.9", Journal(layout.root / "journal.jsonl"), token)

    assert layout.proxy_config.read_text() == changed  # not overwritten
    assert answers(layout.public_url + "/version") == {"v1.3.0"}
