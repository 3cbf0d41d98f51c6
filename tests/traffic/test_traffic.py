"""Traffic actions around the platform step, on real nginx and HAProxy: maintenance and drain are
undone when the rollback fails, flags are off during the rollback and reset after verify, and the
proxies' runtime API is bounded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence

from demo.bluegreen import BlueGreenLayout
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal, StepHandle
from rollback_harness.rollback.runbook import STATUS_FAILED, Runbook
from rollback_harness.rollback.traffic.commands import ProxyError
from rollback_harness.rollback.traffic.haproxy import RuntimeAPI
from rollback_harness.rollback.traffic.maintenance import Maintenance, include_text

pytestmark = pytest.mark.integration

MakeBlueGreen = Callable[..., BlueGreenLayout]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str) -> tuple[int | None, str]:
    try:
        with _NO_PROXY.open(url, timeout=5) as response:
            return response.status, response.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError as exc:
        return None, str(exc)


def harness(pytester: pytest.Pytester, layout: BlueGreenLayout, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
        f"--report-dir={pytester.path / 'reports'}", "--rollback-to", "v1.2.9", "--rollback-yes", *extra,
    )  # fmt: skip


def statuses(pytester: pytest.Pytester) -> dict[str, str]:
    return {e["what"]: e["status"] for e in read_evidence(pytester.path / "reports")["timeline"]}


def runbook_of(layout: BlueGreenLayout, journal: Path) -> Runbook:
    config = load_config(layout.config_path)

    def service_version(timeout: float | None = None) -> str | None:
        status, body = fetch(layout.public_url + "/version")
        return body if status == 200 else None

    return Runbook(
        config, config.target(None), "v1.2.9", Journal(journal),
        progress=lambda text: None, service_version=service_version, run_id="test-run",
    )  # fmt: skip


def test_a_failed_rollback_takes_the_maintenance_page_down(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    # Nothing answers the check URL: the wait after the switch fails, with maintenance on.
    config = layout.config_path.read_text().replace(
        f'check_url = "{layout.ops_url}"', 'check_url = "http://127.0.0.1:9"'
    )
    layout.config_path.write_text(config.replace('ready_timeout = "20s"', 'ready_timeout = "1s"'))

    result = harness(pytester, layout)

    assert result.ret == 12, result.stdout.str()
    steps = statuses(pytester)
    assert steps["traffic:maintenance-on"] == "done"
    assert steps["wait-ready"] == "failed"
    assert steps["traffic:undo-maintenance"] == "done"
    assert layout.maintenance_include.read_text().startswith("# maintenance: off")
    status, _ = fetch(layout.public_url + "/version")
    assert status == 200  # real requests get through again


def test_maintenance_answers_503_and_the_page_while_on(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    """Real requests in the window: a client polling the public port sees 503 with the page, then the target."""
    layout = make_bluegreen("nginx")
    seen: list[tuple[int | None, str]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append(fetch(layout.public_url + "/version"))

    # A slow wait after the switch keeps the window open long enough to be seen for sure.
    config = layout.config_path.read_text().replace("ready_timeout", "ready_consecutive = 40\nready_timeout")
    layout.config_path.write_text(config)
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        result = harness(pytester, layout)
    finally:
        stop.set()
        poller.join(timeout=10)

    assert result.ret == 0, result.stdout.str()
    page = (layout.root / "maintenance.html").read_text().strip()
    assert (503, page) in seen
    assert seen[0] == (200, "v1.3.0") and seen[-1] == (200, "v1.2.9")
    assert not [s for s in seen if s[0] is None]  # no request was refused or reset


def test_a_failed_rollback_puts_drained_servers_back(tmp_path: Path, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("haproxy")
    api = RuntimeAPI(layout.stats_socket)
    runbook = runbook_of(layout, tmp_path / "journal.jsonl")
    try:
        assert not runbook.refusals(), runbook.refusals()
        os.killpg(layout.pids["blue"], signal.SIGTERM)  # the colour to switch to dies after preflight
        os.waitpid(layout.pids["blue"], 0)

        outcome = runbook.execute()
    finally:
        runbook.close()

    assert outcome.status == STATUS_FAILED, outcome.message
    states = runbook.journal.step_states()
    assert states["traffic:drain-0%"] == "done" and states["check-colour"] == "failed"
    assert states["traffic:undo-drain-100%"] == "done"
    assert api.weight("app", "green") == (100, 100)
    assert fetch(layout.public_url + "/version") == (200, "v1.3.0")


def test_after_a_haproxy_switch_the_restore_finds_full_weights(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    """Servers named in traffic.drain.servers: the switch reloads HAProxy, which sets the weights back
    to the config's, so the restore after verify journals its steps as skipped."""
    layout = make_bluegreen("haproxy")
    api = RuntimeAPI(layout.stats_socket)
    # Blue is the backup: draining it does not move the traffic, and the switch makes blue the active one.
    config = layout.config_path.read_text().replace('backend = "app"', 'backend = "app"\nservers = ["blue"]')
    layout.config_path.write_text(config.replace('pause = "1s"', 'pause = "100ms"'))

    result = harness(pytester, layout)

    assert result.ret == 0, result.stdout.str()
    timeline = read_evidence(pytester.path / "reports")["timeline"]
    restore = [e for e in timeline if e["what"].startswith("traffic:restore")]
    # The switch reloaded HAProxy (weights back to the config's), so restoring found blue at 100%.
    assert [e["what"] for e in restore] == ["traffic:restore-100%"] and restore[0]["status"] == "skipped"
    assert api.weight("app", "blue") == (100, 100)


def test_flags_are_off_during_the_rollback_and_reset_after_verify(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    flag = layout.root / "payments.flag"
    flag.write_text("on\n")
    with layout.config_path.open("a") as config:
        config.write('\n[[flags]]\nname = "payments"\nfile = "payments.flag"\n')
    # A verify gate of the team's: while verify runs the flag is still off.
    pytester.makepyfile(
        test_gate=f"""
        import pytest
        from pathlib import Path

        @pytest.mark.gate("verify")
        def test_payments_flag_is_off_while_verifying():
            assert Path({str(flag)!r}).read_text() == "off"
        """
    )

    result = harness(pytester, layout, str(pytester.path))

    assert result.ret == 0, result.stdout.str()
    assert flag.read_text() == "on\n"
    assert not list(layout.root.glob(".payments.flag.before-rollback*"))
    steps = statuses(pytester)
    assert steps["flags:payments-off"] == "done" and steps["flags:payments-reset"] == "done"


def test_a_flag_stays_off_when_verify_fails(pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("nginx")
    flag = layout.root / "breaker.flag"
    flag.write_text("closed")
    with layout.config_path.open("a") as config:
        config.write('\n[[flags]]\nname = "breaker"\nfile = "breaker.flag"\noff = "open"\n')
    pytester.makepyfile(
        test_gate="""
        import pytest

        @pytest.mark.gate("verify")
        def test_fails():
            assert False, "a verify gate that fails"
        """
    )

    result = harness(pytester, layout, str(pytester.path))

    assert result.ret == 13, result.stdout.str()
    assert flag.read_text() == "open"
    assert (layout.root / ".breaker.flag.before-rollback").read_text() == "closed"  # to put back by hand
    assert statuses(pytester)["flags:breaker-reset"] == "skipped"


def test_an_nginx_config_that_fails_its_check_refuses_the_run(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    layout.maintenance_include.write_text("not_a_directive on;\n")  # what nginx -t -c will now refuse

    result = harness(pytester, layout)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*preflight refused*nginx -t -c*refused the config*not_a_directive*"])
    assert layout.maintenance_include.read_text() == "not_a_directive on;\n"  # nothing was written
    assert fetch(layout.public_url + "/version") == (200, "v1.3.0")


def test_bad_drain_steps_are_a_config_error(pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen) -> None:
    layout = make_bluegreen("haproxy")
    layout.config_path.write_text(
        layout.config_path.read_text().replace("drain_steps = [50, 0]", "drain_steps = [0, 50]")
    )

    result = harness(pytester, layout)

    assert result.ret == 4
    result.stderr.fnmatch_lines(["*traffic.drain.drain_steps = [[]0, 50[]]: expected falling percentages*"])


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never answers (a hung HAProxy)."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    try:
        yield path
    finally:
        server.close()


def test_a_stats_socket_that_never_answers_is_given_up_on(silent_socket: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ProxyError, match=r"did not answer 'show stat' within 0\.5 s"):
        RuntimeAPI(silent_socket, timeout=0.5).show_stat("app")
    assert time.monotonic() - started < 10  # bounded: did not hang


def test_a_drained_server_is_restored_in_steps_after_verify(
    pytester: pytest.Pytester, demo: Deployment, haproxy_in_front: Path
) -> None:
    """HAProxy in front of the symlink demo: web1 (on v1.3.0) drained, the release switched, then
    web1 restored 50% -> 100% once verify passed; every step with HAProxy's own counters."""
    demo.update_config(traffic={"drain": {"socket": str(haproxy_in_front), "backend": "app", "pause": "100ms"}})

    reports = pytester.path / "reports"
    result = pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))

    assert result.ret == 0, result.stdout.str()
    events = [e for e in read_evidence(reports)["timeline"] if e["status"] in ("done", "passed")]
    names = [e["what"] for e in events]
    last_verify = max(i for i, name in enumerate(names) if "::verify-" in name)
    assert names.index("traffic:drain-0%") < names.index("switch-link") < last_verify
    restores = [e for e in events if e["what"].startswith("traffic:restore")]
    assert [e["what"] for e in restores] == ["traffic:restore-50%", "traffic:restore-100%"]
    assert [e["detail"]["counters"]["web1"]["weight"] for e in restores] == ["50", "100"]
    assert names.index("traffic:restore-50%") > last_verify  # restored only once verify had passed
    assert RuntimeAPI(haproxy_in_front).weight("app", "web1") == (100, 100)


HOLD_GATE = """
import os, time
from pathlib import Path
import pytest

@pytest.mark.gate("verify")
def test_hold():
    Path(os.environ["HOLD_MARKER"]).write_text("verifying")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # held here until the test kills this run
        time.sleep(0.05)
"""


def test_a_run_killed_before_the_restore_is_finished_by_the_next(
    tmp_path: Path, demo: Deployment, haproxy_in_front: Path
) -> None:
    """Killed during verify (web1 drained, the release switched): the next run, finding every driver
    step done, still restores web1 after its own verify."""
    demo.update_config(traffic={"drain": {"socket": str(haproxy_in_front), "backend": "app", "pause": "100ms"}})
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "test_hold.py").write_text(HOLD_GATE)
    marker = tmp_path / "verifying"
    command = [sys.executable, "-m", "pytest", "--rollback-to", "v1.2.9", "--rollback-yes", "--rootdir", str(gates)]
    first = subprocess.Popen(
        [*command, *demo.harness_args(tmp_path / "first"), str(gates)],
        cwd=gates, env={**os.environ, "HOLD_MARKER": str(marker)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never reached verify"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    api = RuntimeAPI(haproxy_in_front)
    assert api.weight("app", "web1") == (0, 100)  # left drained by the killed run

    (gates / "test_hold.py").unlink()  # the next run verifies with the harness's own checks only
    second = subprocess.run(
        [*command, *demo.harness_args(tmp_path / "second"), str(gates)],
        cwd=gates, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert second.returncode == 0, second.stdout + second.stderr
    assert "already at target v1.2.9" in second.stdout
    steps = {e["what"]: e["status"] for e in read_evidence(tmp_path / "second")["timeline"]}
    assert "traffic:restore-50%" in steps, "\n".join(f"{k}: {v}" for k, v in steps.items())
    assert steps["traffic:restore-50%"] == "done" and steps["traffic:restore-100%"] == "done"
    assert api.weight("app", "web1") == (100, 100)


def test_an_include_written_but_never_reloaded_is_switched_for_real(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    """A run killed between writing the include and reloading nginx: the file says 'on', nginx does
    not. The next run does not trust the file: it switches (check, reload) and sees the page."""
    layout = make_bluegreen("nginx")
    layout.maintenance_include.write_text(include_text(True, layout.root / "maintenance.html"))
    assert fetch(layout.public_url + "/version") == (200, "v1.3.0")  # nginx never loaded it

    result = harness(pytester, layout)

    assert result.ret == 0, result.stdout.str()
    events = {e["what"]: e for e in read_evidence(pytester.path / "reports")["timeline"]}
    assert events["traffic:maintenance-on"]["status"] == "done"
    assert "with the maintenance page" in events["traffic:maintenance-on"]["detail"]["check"]
    assert events["traffic:maintenance-off"]["status"] == "done"
    assert fetch(layout.public_url + "/version") == (200, "v1.2.9")


def test_a_maintenance_switch_nginx_does_not_apply_is_put_back(make_bluegreen: MakeBlueGreen) -> None:
    """nginx.conf on disk gained a listener on a port another process holds (an edit nginx -t
    accepts): maintenance on is not counted as done, the include is put back, and nginx still
    serves the site (not the page), saying nginx's own error line."""
    layout = make_bluegreen("nginx")
    traffic = load_config(layout.config_path).settings.traffic
    assert traffic is not None and traffic.maintenance is not None
    maintenance = Maintenance(traffic.maintenance, layout.root)
    include_before = layout.maintenance_include.read_text()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        text = layout.proxy_config.read_text().rstrip()
        layout.proxy_config.write_text(text[:-1] + f"    server {{ listen 127.0.0.1:{port}; }}\n}}\n")
        step = StepHandle()

        with pytest.raises(ProxyError, match=r"still could not bind\(\).*was put back") as raised:
            maintenance.switch(True, step)

    assert "did not apply" in str(raised.value)
    assert layout.maintenance_include.read_text() == include_before
    assert step.detail["maintenance"] == "off"
    assert fetch(layout.public_url + "/version") == (200, "v1.3.0")  # the old config serves, not the page
