"""`python -m demo --platform bluegreen-nginx | bluegreen-haproxy`: blue/green behind a real proxy.

Two colours, each a real process of the demo app on its own loopback port: green serves the bad
v1.3.0 and takes the traffic, blue serves v1.2.9 and is idle. A real nginx (or HAProxy), started
here with its own config, pid and log files in the demo folder, sends the traffic. Then
`pytest --rollback-to v1.2.9` (kind = "bluegreen") switches the proxy to blue:
- with nginx, a maintenance window: the public port answers 503 and the page during the switch;
- with HAProxy, a gradual drain of green through the stats socket before the switch.
Both show in the report's timeline. Everything started here is stopped at the end.

The same layout serves the tests (tests/bluegreen, tests/traffic): ``lay_out`` then ``start``/``stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from demo import signing
from demo.deployment import (
    APP_SOURCE,
    EXAMPLE_GATES,
    MAX_SOCKET_PATH,
    SOCKET_TMP_PREFIX,
    Release,
    free_port,
    service_checks_toml,
)
from rollback_harness.rollback.targets.bluegreen import MARKER

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TARGET = "v1.2.9"
NGINX = os.environ.get("DEMO_NGINX", "/usr/sbin/nginx")
HAPROXY = os.environ.get("DEMO_HAPROXY", "/usr/sbin/haproxy")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MAINTENANCE_PAGE = "<!doctype html><title>Maintenance</title><h1>Back in a minute</h1><p>maintenance</p>\n"


@dataclass
class BlueGreenLayout:
    root: Path
    proxy: str  # "nginx" or "haproxy"
    colours: dict[str, Release]  # colour -> the release it runs
    ports: dict[str, int]  # colour -> port
    public_port: int
    ops_port: int
    live: str  # the colour the proxy config sends traffic to at start
    # HAProxy's stats socket: in root when its path is short enough for AF_UNIX, else in /tmp.
    stats_socket: Path = Path()
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    @property
    def config_path(self) -> Path:
        return self.root / "rollback.toml"

    @property
    def proxy_config(self) -> Path:
        return self.root / f"{self.proxy}.conf"

    @property
    def template(self) -> Path:
        return self.root / f"{self.proxy}.conf.template"

    @property
    def proxy_pid_file(self) -> Path:
        return self.root / f"{self.proxy}.pid"

    @property
    def maintenance_include(self) -> Path:
        return self.root / "maintenance.conf"

    def colour_url(self, colour: str) -> str:
        return f"http://127.0.0.1:{self.ports[colour]}"


def _nginx_template(layout: BlueGreenLayout) -> str:
    root = layout.root
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {name}_temp_path {root / 'tmp' / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""\
# The demo's nginx (written by demo.bluegreen): {{{{colour}}}} takes the traffic.
{user}daemon on;
worker_processes 1;
pid {layout.proxy_pid_file};
error_log {root / "logs" / "nginx-error.log"} notice;
events {{ worker_connections 256; }}
http {{
    access_log {root / "logs" / "nginx-access.log"};
{temp}
    upstream app {{ server {{{{host}}}}:{{{{port}}}}; }}
    # The public port: the maintenance switch lives here.
    server {{
        listen 127.0.0.1:{layout.public_port};
        include {layout.maintenance_include};
        location / {{ proxy_pass http://app; }}
    }}
    # The ops port: the harness checks the switch here, behind no maintenance page.
    server {{
        listen 127.0.0.1:{layout.ops_port};
        location / {{ proxy_pass http://app; }}
    }}
}}
"""


def _haproxy_template(layout: BlueGreenLayout) -> str:
    return f"""\
# The demo's HAProxy (written by demo.bluegreen): {{{{colour}}}} takes the traffic, {{{{idle_colour}}}} is the backup.
global
    stats socket {layout.stats_socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend public
    bind 127.0.0.1:{layout.public_port}
    default_backend app
frontend ops
    bind 127.0.0.1:{layout.ops_port}
    default_backend app
backend app
    server {{{{colour}}}} {{{{host}}}}:{{{{port}}}} weight 100
    server {{{{idle_colour}}}} {{{{idle_host}}}}:{{{{idle_port}}}} weight 100 backup
"""


def render(template: str, layout: BlueGreenLayout, colour: str) -> str:
    idle = next(c for c in layout.colours if c != colour)
    values = {"colour": colour, "idle_colour": idle, "host": "127.0.0.1", "idle_host": "127.0.0.1"}
    values |= {"port": str(layout.ports[colour]), "idle_port": str(layout.ports[idle])}
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return MARKER.format(colour=colour) + template


def rollback_toml(layout: BlueGreenLayout, *, drain_pause: str = "1s") -> str:
    colours = "".join(
        f'[targets.shop.colours.{colour}]\nurl = "{layout.colour_url(colour)}"\n\n' for colour in layout.colours
    )
    if layout.proxy == "nginx":
        traffic = f"""\
[traffic.maintenance]
nginx = "{NGINX}"
nginx_config = "{layout.proxy_config.name}"
include = "{layout.maintenance_include.name}"
page = "maintenance.html"
check_url = "{layout.public_url}/"
"""
        proxy = f'proxy = "nginx"\nproxy_program = "{NGINX}"\n'
    else:
        traffic = f"""\
[traffic.drain]
socket = "{layout.stats_socket}"
backend = "app"
drain_steps = [50, 0]
restore_steps = [50, 100]
pause = "{drain_pause}"
"""
        proxy = f'proxy = "haproxy"\nproxy_program = "{HAPROXY}"\npid_file = "{layout.proxy_pid_file.name}"\n'
    return f"""\
# The harness config for the blue/green demo (written by demo.bluegreen). Paths are relative to this folder.

{service_checks_toml("shop", layout.public_url)}
[targets.shop]
kind = "bluegreen"
{proxy}config_file = "{layout.proxy_config.name}"
config_template = "{layout.template.name}"
check_url = "{layout.ops_url}"
ready_timeout = "20s"

{colours}{traffic}"""


def lay_out(
    root: Path,
    proxy: str,
    *,
    colours: Iterable[tuple[str, Release]] = (
        ("blue", Release("v1.2.9")),
        ("green", Release("v1.3.0", delay_ms=400, failing_paths=("/api/orders",))),
    ),
    live: str = "green",
) -> BlueGreenLayout:
    """Write the releases, the proxy template and config, the maintenance page and rollback.toml."""
    if proxy not in ("nginx", "haproxy"):
        raise ValueError(f"proxy {proxy!r}: expected nginx or haproxy")
    root = Path(root).absolute()
    for folder in ("logs", "tmp", "releases"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    chosen = dict(colours)
    layout = BlueGreenLayout(
        root=root,
        proxy=proxy,
        colours=chosen,
        ports={colour: free_port() for colour in chosen},
        public_port=free_port(),
        ops_port=free_port(),
        live=live,
        stats_socket=_socket_path(root),
    )
    for colour, release in chosen.items():
        folder = root / "releases" / colour
        folder.mkdir(exist_ok=True)
        shutil.copyfile(APP_SOURCE, folder / "app.py")
        (folder / "release.json").write_text(json.dumps(release.to_json(), indent=2) + "\n")
    template = _nginx_template(layout) if proxy == "nginx" else _haproxy_template(layout)
    layout.template.write_text(template)
    layout.proxy_config.write_text(render(template, layout, live))
    if proxy == "nginx":
        (root / "maintenance.html").write_text(MAINTENANCE_PAGE)
        layout.maintenance_include.write_text("# maintenance: off (written by demo.bluegreen)\n")
    layout.config_path.write_text(rollback_toml(layout))
    (root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    return layout


def _socket_path(root: Path) -> Path:
    candidate = root / "haproxy.sock"
    if len(os.fsencode(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    return Path(tempfile.mkdtemp(prefix=SOCKET_TMP_PREFIX, dir="/tmp")) / "haproxy.sock"


def _answer(url: str, timeout: float = 1.0) -> str | None:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


def _wait_for(url: str, what: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while (answer := _answer(url)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer at {url} within {timeout:g}s")
        time.sleep(0.05)
    return answer


def start_colour(layout: BlueGreenLayout, colour: str) -> int:
    """Start one colour's app process (its own session, so it is stopped with its children)."""
    log = (layout.root / "logs" / f"{colour}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, str(layout.root / "releases" / colour / "app.py"), "--port", str(layout.ports[colour])],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    layout.pids[colour] = process.pid
    _wait_for(layout.colour_url(colour) + "/version", f"the {colour} app")
    return process.pid


def start_proxy(layout: BlueGreenLayout) -> None:
    if layout.proxy == "nginx":
        command = [NGINX, "-c", str(layout.proxy_config), "-p", str(layout.root)]
    else:
        command = [HAPROXY, "-W", "-D", "-f", str(layout.proxy_config), "-p", str(layout.proxy_pid_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {(done.stdout + done.stderr).strip()}")
    _wait_for(layout.public_url + "/version", layout.proxy)


def start(layout: BlueGreenLayout) -> None:
    """Both colours, then the proxy; on failure everything started is stopped again."""
    try:
        for colour in layout.colours:
            start_colour(layout, colour)
        start_proxy(layout)
    except BaseException:
        stop(layout)
        raise


def proxy_pid(layout: BlueGreenLayout) -> int | None:
    try:
        return int(layout.proxy_pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return True


def _end(pid: int, *, group: bool) -> None:
    kill = os.killpg if group else os.kill
    try:
        kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child: reap it
    except ChildProcessError:
        pass


def stop(layout: BlueGreenLayout) -> None:
    """Stop the proxy (its master, by the pid file) and both colours; idempotent."""
    pid = proxy_pid(layout)
    if pid is not None and _alive(pid):
        _end(pid, group=False)
    for colour_pid in layout.pids.values():
        _end(colour_pid, group=True)
    if layout.stats_socket.parent.name.startswith(SOCKET_TMP_PREFIX):
        shutil.rmtree(layout.stats_socket.parent, ignore_errors=True)


def served_by(layout: BlueGreenLayout) -> str | None:
    """The version the public port answers now."""
    return _answer(layout.public_url + "/version")


def run(proxy: str, root: Path, reports: Path, key_folder: Path) -> int:
    """The demo story end to end; stops everything it started."""
    program = NGINX if proxy == "nginx" else HAPROXY
    if not Path(program).is_file():
        print(f"the bluegreen-{proxy} demo needs {program}: apt-get install -y {proxy}", file=sys.stderr)
        return 2
    if root.exists():
        shutil.rmtree(root)
    layout = lay_out(root, proxy)
    (root / "test_demo_gates.py").write_text(EXAMPLE_GATES)
    public_key = signing.kept_key(key_folder)
    with layout.config_path.open("a", encoding="utf-8") as config:
        config.write(signing.signing_toml(str(key_folder / signing.KEY)))
    try:
        start(layout)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"the bluegreen-{proxy} demo did not start: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"{proxy} at {layout.public_url} sends the traffic to green, which serves {served_by(layout)}")
        for colour in layout.colours:
            print(f"  {colour}: {layout.colour_url(colour)} (pid {layout.pids[colour]})")
        window = "a maintenance window (503 and a page)" if proxy == "nginx" else "a gradual drain of green"
        print(f"  v1.3.0 is bad; rolling back to {TARGET} (blue) with {window}")
        print(f"rolling back with: pytest --rollback-to {TARGET} --rollback-yes", flush=True)
        command = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
            "--rollback-to", TARGET, "--rollback-yes", f"--report-dir={reports}", "--rootdir", str(root), str(root),
        ]  # fmt: skip
        started = time.time()
        code = subprocess.run(command, cwd=root, check=False).returncode
        print(f"\npytest exited {code}")
        print(f"live now: {served_by(layout)} at {layout.public_url}")
        print("\n".join(signing.report_lines(reports, started, public_key)))
        return code
    finally:
        stop(layout)
        print(f"stopped {proxy} and both colours")
