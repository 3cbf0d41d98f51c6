"""Scenario 32: a proxy config that `nginx -t` / `haproxy -c` accept but the running proxy cannot
apply (its new listen port is held by another process). The reload does not count as done: the old
config goes back and is reloaded, the run fails with the proxy's own words, traffic stays on the old
colour, the maintenance page comes down again; a rerun while the port is held refuses before
writing anything; a rerun once it is free completes."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from deployments import read_evidence

from demo.bluegreen import BlueGreenLayout
from rollback_harness.rollback.traffic.haproxy import RuntimeAPI

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


def served(layout: BlueGreenLayout, times: int = 10) -> set[tuple[int | None, str]]:
    """What real requests through the proxy's public port get: (status, body)."""
    return {fetch(layout.public_url + "/version") for _ in range(times)}


@contextmanager
def held_port() -> Iterator[int]:
    """A loopback port held by a plain socket of this process (not the proxy's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        yield taken.getsockname()[1]


def listen_also_on(layout: BlueGreenLayout, port: int) -> None:
    """The template (so the config the switch renders) gains a listener on ``port``."""
    if layout.proxy == "nginx":
        extra = f"    server {{ listen 127.0.0.1:{port}; location / {{ return 204; }} }}\n}}\n"
        text = layout.template.read_text().rstrip()
        assert text.endswith("}")
        layout.template.write_text(text[:-1] + extra)
    else:
        extra = f"frontend extra\n    bind 127.0.0.1:{port}\n    default_backend app\n"
        layout.template.write_text(layout.template.read_text() + extra)


def harness(pytester: pytest.Pytester, layout: BlueGreenLayout, reports: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
        f"--report-dir={pytester.path / reports}", "--rollback-to", "v1.2.9", "--rollback-yes",
    )  # fmt: skip


def timeline(pytester: pytest.Pytester, reports: str) -> dict[str, dict[str, Any]]:
    """The last entry of each step in the run's evidence."""
    return {e["what"]: e for e in read_evidence(pytester.path / reports)["timeline"]}


def test_an_nginx_reload_that_does_not_take_is_put_back_and_fails_the_run(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    config_before = layout.proxy_config.read_text()
    with held_port() as port:
        listen_also_on(layout, port)

        first = harness(pytester, layout, "first")

        assert first.ret == 12, first.stdout.str()  # preflight passed (nginx -t accepts it), the rollback failed
        output = first.stdout.str()
        assert "still could not bind()" in output  # nginx's own line
        assert "traffic goes to green" in output
        events = timeline(pytester, "first")
        switch = events["switch-proxy"]
        assert switch["status"] == "failed"
        assert switch["detail"]["traffic"].startswith("green (")
        assert "did not apply" in switch["detail"]["reload"] and "restore" in switch["detail"]
        assert events["traffic:maintenance-on"]["status"] == "done"
        assert events["traffic:undo-maintenance"]["status"] == "done"
        # Traffic goes to green, through nginx, and not to the maintenance page.
        assert served(layout) == {(200, "v1.3.0")}
        assert layout.proxy_config.read_text() == config_before
        assert layout.maintenance_include.read_text().startswith("# maintenance: off")

        # A rerun while the port is still held does not reload the same config again.
        second = harness(pytester, layout, "second")

        assert second.ret == 12, second.stdout.str()
        second.stdout.fnmatch_lines([f"*did not apply this config in an earlier run*{port} is already in use*"])
        assert "reload" not in timeline(pytester, "second")["switch-proxy"]["detail"]  # nothing was reloaded
        assert served(layout) == {(200, "v1.3.0")}
        assert layout.proxy_config.read_text() == config_before

    third = harness(pytester, layout, "third")  # the port is free again

    assert third.ret == 0, third.stdout.str()
    switch = timeline(pytester, "third")["switch-proxy"]
    assert "the addresses it adds are free now" in switch["detail"]["earlier_failure"]
    assert served(layout) == {(200, "v1.2.9")}
    assert layout.maintenance_include.read_text().startswith("# maintenance: off")
    assert not list(layout.root.glob(".*.reload-failed"))


def test_a_haproxy_reload_that_does_not_take_is_put_back_and_fails_the_run(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("haproxy")
    # HAProxy says nothing we read: a reload that takes starts a worker within this long.
    layout.config_path.write_text(
        layout.config_path.read_text().replace('ready_timeout = "20s"', 'ready_timeout = "20s"\nreload_timeout = "3s"')
    )
    config_before = layout.proxy_config.read_text()
    with held_port() as port:
        listen_also_on(layout, port)

        first = harness(pytester, layout, "first")

        assert first.ret == 12, first.stdout.str()
        assert "started no worker with the new config" in first.stdout.str()
        events = timeline(pytester, "first")
        assert events["switch-proxy"]["status"] == "failed"
        assert events["switch-proxy"]["detail"]["traffic"].startswith("green (")
        # Green was drained before the switch; it is back at full weight (the second reload alone sets that).
        assert events["traffic:undo-drain-100%"]["status"] in ("done", "skipped")
        assert RuntimeAPI(layout.stats_socket).weight("app", "green") == (100, 100)
        assert served(layout) == {(200, "v1.3.0")}
        assert layout.proxy_config.read_text() == config_before

        second = harness(pytester, layout, "second")

        assert second.ret == 12, second.stdout.str()
        second.stdout.fnmatch_lines([f"*did not apply this config in an earlier run*{port} is already in use*"])
        assert served(layout) == {(200, "v1.3.0")}

    third = harness(pytester, layout, "third")

    assert third.ret == 0, third.stdout.str()
    assert served(layout) == {(200, "v1.2.9")}


def test_maintenance_off_puts_back_the_include_from_before_the_run(
    pytester: pytest.Pytester, make_bluegreen: MakeBlueGreen
) -> None:
    layout = make_bluegreen("nginx")
    before = "# maintenance: off (ours, with a note for the on-call)\n"
    layout.maintenance_include.write_text(before)

    result = harness(pytester, layout, "reports")

    assert result.ret == 0, result.stdout.str()
    assert layout.maintenance_include.read_text() == before
    assert not Path(layout.root / ".maintenance.conf.before-rollback").exists()
    assert "reloaded: the master" in timeline(pytester, "reports")["traffic:maintenance-off"]["detail"]["reload"]
