"""The demo app as real processes under a real supervisord: bad v1.3.0, rollback by link + restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demo.deployment import (
    DemoLayout,
    Release,
    app_pid,
    free_port,
    is_running,
    lay_out,
    linked_version,
    live_version,
    start,
    stop,
    supervisord_pid,
    switch_release,
)

pytestmark = pytest.mark.integration

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 5.0) -> tuple[int, str, float]:
    """Status, body and elapsed seconds of a GET; HTTP errors are answers too."""
    started = time.monotonic()
    try:
        with NO_PROXY.open(url, timeout=timeout) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    return status, body, time.monotonic() - started


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def version_is(layout: DemoLayout, version: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return live_version(layout, timeout=1.0) == version
        except OSError:
            return False

    return check


def gone(pid: int) -> bool:
    """True when pid no longer runs; a zombie left for a non-reaping PID 1 counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state in ("Z", "X")


@pytest.fixture
def running() -> Iterator[Callable[..., DemoLayout]]:
    """Lay out and start deployments; every one is stopped at teardown."""
    layouts: list[DemoLayout] = []

    def make(root: Path, **kwargs: object) -> DemoLayout:
        layout = lay_out(root, **kwargs)  # type: ignore[arg-type]
        layouts.append(layout)
        start(layout)
        return layout

    try:
        yield make
    finally:
        for layout in layouts:
            stop(layout)


@pytest.fixture
def deployment(tmp_path: Path, running: Callable[..., DemoLayout]) -> DemoLayout:
    return running(tmp_path / "deploy")


def test_bad_release_is_live(deployment: DemoLayout) -> None:
    assert live_version(deployment) == "v1.3.0"
    assert linked_version(deployment) == "v1.3.0"
    assert get(deployment.base_url + "/version.json")[:2] == (200, '{"version": "v1.3.0"}\n')
    status, body, _ = get(deployment.base_url + "/health")
    assert (status, body) == (200, '{"status": "ok", "version": "v1.3.0"}\n')

    status, body, _ = get(deployment.base_url + "/api/orders")
    assert status == 500
    assert "v1.3.0" in body

    status, body, elapsed = get(deployment.base_url + "/")
    assert status == 200
    assert "v1.3.0" in body
    assert elapsed >= 0.4


def test_rollback_by_link_and_restart(deployment: DemoLayout) -> None:
    old_pid = app_pid(deployment)
    switch_release(deployment, "v1.2.9")
    subprocess.run(deployment.restart_command, check=True, capture_output=True, timeout=30)
    wait_for(version_is(deployment, "v1.2.9"), what="GET /version == v1.2.9")

    assert app_pid(deployment) != old_pid
    status, body, _ = get(deployment.base_url + "/api/orders")
    assert status == 200
    assert "coffee beans" in body  # read from demo.db
    assert get(deployment.base_url + "/health")[0] == 200


def test_rollback_the_way_ln_sfn_does_it(deployment: DemoLayout) -> None:
    tmp_link = deployment.root / "current.new"
    os.symlink("releases/v1.2.8", tmp_link)
    os.replace(tmp_link, deployment.current_link)
    subprocess.run(deployment.restart_command, check=True, capture_output=True, timeout=30)
    wait_for(version_is(deployment, "v1.2.8"), what="GET /version == v1.2.8")


def test_injected_delay(tmp_path: Path, running: Callable[..., DemoLayout]) -> None:
    layout = running(tmp_path, live="v1.2.9", env={"DEMO_DELAY_MS": "300"})
    status, _, elapsed = get(layout.base_url + "/")
    assert status == 200
    assert elapsed >= 0.3
    status, _, _ = get(layout.base_url + "/api/orders")
    assert status == 200


def test_unhealthy_release(tmp_path: Path, running: Callable[..., DemoLayout]) -> None:
    layout = running(tmp_path, releases=(Release("v2.0.0", health_status=503),), live="v2.0.0")
    status, body, _ = get(layout.base_url + "/health")
    assert status == 503
    assert '"version": "v2.0.0"' in body


def test_stop_leaves_no_process(tmp_path: Path, running: Callable[..., DemoLayout]) -> None:
    layout = running(tmp_path)
    supervisor = supervisord_pid(layout)
    app = app_pid(layout)
    assert supervisor is not None and app is not None
    assert not gone(supervisor) and not gone(app)

    stop(layout)
    assert gone(supervisor)
    assert gone(app)
    assert not is_running(layout)
    with pytest.raises(OSError):
        live_version(layout, timeout=1.0)
    stop(layout)  # idempotent


def test_many_deployments_at_once(tmp_path: Path, running: Callable[..., DemoLayout]) -> None:
    one = running(tmp_path / "one")
    two = running(tmp_path / ("two-with-a-rather-long-folder-name-" + "z" * 60), live="v1.2.8")
    assert one.port != two.port
    assert one.supervisor_socket != two.supervisor_socket
    assert live_version(one) == "v1.3.0"
    assert live_version(two) == "v1.2.8"
    stop(two)
    assert not two.supervisor_socket.parent.exists()  # the short socket folder is cleaned up
    assert live_version(one) == "v1.3.0"


def test_start_failure_names_the_cause(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        layout = lay_out(tmp_path, port=blocker.getsockname()[1])
        try:
            # The port answers nothing useful, so /version never answers: a timeout with the log.
            with pytest.raises(RuntimeError, match="did not answer") as info:
                start(layout, timeout=1.5)
            assert "Address already in use" in str(info.value)
            assert not is_running(layout)  # start cleaned up after itself
        finally:
            stop(layout)


def test_stale_pidfile_does_not_confuse_start(tmp_path: Path, running: Callable[..., DemoLayout]) -> None:
    layout = lay_out(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    layout.pidfile.write_text(dead.stdout)
    layout = running(tmp_path)
    assert live_version(layout) == "v1.3.0"


def test_app_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    layout = lay_out(tmp_path, port=free_port())
    app = layout.releases_dir / "v1.2.9" / "app.py"
    proc = subprocess.Popen(
        [sys.executable, str(app), "--host", "127.0.0.1", "--port", str(layout.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(version_is(layout, "v1.2.9"), what="the app answering")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
