"""Lay out, start and stop a demo deployment: releases, a `current` symlink, supervisor, SQLite.

Every file of one deployment lives under its root (except, for long roots, the supervisor
socket, which goes to a short temporary folder), so many deployments can run at once.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from demo import migrations as demo_migrations

APP_SOURCE = Path(__file__).resolve().parent / "app.py"
LAYOUT_FILE = "demo.json"
SOCKET_NAME = "supervisor.sock"
SOCKET_TMP_PREFIX = "demo-sv-"
MAX_SOCKET_PATH = 90  # AF_UNIX paths are limited to 104 (macOS) / 108 (Linux) bytes
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Release:
    """One release folder: its version and how (badly) it behaves."""

    version: str
    delay_ms: int = 0
    failing_paths: tuple[str, ...] = ()
    health_status: int = 200
    # A late crash: the app exits this many seconds after it starts, and crashes at every start
    # after that (a crash loop); None never crashes.
    crash_after_s: float | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "version": self.version,
            "delay_ms": self.delay_ms,
            "failing_paths": list(self.failing_paths),
            "health_status": self.health_status,
        }
        if self.crash_after_s is not None:
            data["crash_after_s"] = self.crash_after_s
        return data


DEFAULT_RELEASES = (
    Release("v1.2.8"),
    Release("v1.2.9"),
    Release("v1.3.0", delay_ms=400, failing_paths=("/api/orders",)),
)


@dataclass(frozen=True)
class DemoLayout:
    """Where one demo deployment lives and how to reach it."""

    root: Path
    releases_dir: Path
    current_link: Path
    port: int
    supervisor_conf: Path
    supervisor_socket: Path
    database: Path
    config_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return "sqlite:///" + str(self.database.resolve())

    @property
    def restart_command(self) -> list[str]:
        """supervisorctl restart of the app, as an argv list with absolute paths."""
        return [*_supervisorctl(), "-c", str(self.supervisor_conf), "restart", "app"]

    @property
    def pidfile(self) -> Path:
        return self.root / "supervisord.pid"

    @property
    def supervisord_log(self) -> Path:
        return self.root / "supervisord.log"

    @property
    def app_log(self) -> Path:
        return self.root / "logs" / "app.log"

    def to_json(self) -> dict[str, object]:
        return {name: str(value) if isinstance(value, Path) else value for name, value in vars(self).items()}


# Demo ports come from below Linux's ephemeral range (32768-60999), where no outgoing connection
# takes one between the pick and the app's bind; under pytest-xdist each worker draws from a band
# of its own, so two tests running side by side never start their demos on the same port (the
# second demo's readiness check would be answered by the first one's app).
_PORTS = range(20000, 32000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (not even in TIME_WAIT)."""
    band = _worker_band()
    for port in random.sample(band, min(len(band), 200)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the band is full: any free port
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker_band() -> range:
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 0):
        return _PORTS
    width = len(_PORTS) // int(count)
    start = _PORTS.start + (int(worker[2:]) % int(count)) * width
    return range(start, start + width)


def port_is_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound right now (with SO_REUSEADDR, as the app binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def lay_out(
    root: Path,
    *,
    releases: Iterable[Release] = DEFAULT_RELEASES,
    live: str = "v1.3.0",
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    migrations: bool = False,
) -> DemoLayout:
    """Write releases, the `current` link, demo.db, supervisord.conf and rollback.toml.

    ``migrations``: each release ships an Alembic project (v1.3.0 adds a revision, demo/migrations.py),
    demo.db is at the live release's head, and rollback.toml turns migration care on.
    """
    root = Path(root).absolute()
    releases = tuple(releases)
    versions = [r.version for r in releases]
    if live not in versions:
        raise ValueError(f"live release {live!r} is not among the releases {versions}")
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate release versions in {versions}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "logs").mkdir(exist_ok=True)
    releases_dir = root / "releases"
    for release in releases:
        folder = releases_dir / release.version
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(APP_SOURCE, folder / "app.py")
        (folder / "release.json").write_text(json.dumps(release.to_json(), indent=2) + "\n", encoding="utf-8")
        if migrations:
            demo_migrations.write_scripts(folder, release.version)
    layout = DemoLayout(
        root=root,
        releases_dir=releases_dir,
        current_link=root / "current",
        port=free_port() if port is None else port,
        supervisor_conf=root / "supervisord.conf",
        supervisor_socket=_socket_path(root),
        database=root / "demo.db",
        config_path=root / "rollback.toml",
    )
    switch_release(layout, live)
    _write_database(layout.database)
    if migrations:
        live_scripts = releases_dir / live / demo_migrations.FOLDER
        demo_migrations.upgrade(layout.database, live_scripts, stamped=demo_migrations.BASE)
    layout.supervisor_conf.write_text(_supervisor_conf(layout, env or {}), encoding="utf-8")
    layout.config_path.write_text(_rollback_toml(layout, migrations=migrations), encoding="utf-8")
    (root / LAYOUT_FILE).write_text(json.dumps(layout.to_json(), indent=2) + "\n", "utf-8")
    return layout


def load_layout(root: Path) -> DemoLayout:
    """The layout that lay_out recorded in root/demo.json."""
    data = json.loads((Path(root) / LAYOUT_FILE).read_text(encoding="utf-8"))
    return DemoLayout(
        root=Path(data["root"]),
        releases_dir=Path(data["releases_dir"]),
        current_link=Path(data["current_link"]),
        port=int(data["port"]),
        supervisor_conf=Path(data["supervisor_conf"]),
        supervisor_socket=Path(data["supervisor_socket"]),
        database=Path(data["database"]),
        config_path=Path(data["config_path"]),
    )


def switch_release(layout: DemoLayout, version: str) -> None:
    """Point `current` at releases/<version> atomically (what `ln -sfn` does); no restart."""
    if not (layout.releases_dir / version).is_dir():
        raise ValueError(f"no release folder {layout.releases_dir / version}")
    target = os.path.relpath(layout.releases_dir / version, layout.current_link.parent)
    tmp = layout.current_link.with_name(f".{layout.current_link.name}.tmp-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, layout.current_link)


def start(layout: DemoLayout, *, timeout: float = 30.0) -> None:
    """Run supervisord for this layout and wait until GET /version answers.

    On failure supervisord is shut down again (logs stay under root) and RuntimeError says why.
    """
    deadline = time.monotonic() + timeout
    stale = _read_pid(layout.pidfile)
    if stale is not None and not _alive(stale):
        layout.pidfile.unlink(missing_ok=True)
    layout.supervisor_socket.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [*_supervisord(), "-c", str(layout.supervisor_conf)],
        cwd=layout.root,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()
        raise RuntimeError(
            f"supervisord -c {layout.supervisor_conf} exited {proc.returncode}: {output}\n"
            + _tail(layout.supervisord_log)
        )
    try:
        _wait_answering(layout, deadline, timeout)
    except BaseException:
        stop(layout)
        raise


def _wait_answering(layout: DemoLayout, deadline: float, timeout: float) -> None:
    _wake(layout.supervisor_socket)
    last_error = "no attempt made"
    while True:
        try:
            live_version(layout, timeout=1.0)
            return
        except OSError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        pid = _read_pid(layout.pidfile)
        if pid is not None and not _alive(pid):
            raise RuntimeError(
                f"supervisord (pid {pid}) died while starting {layout.base_url}: {last_error}\n"
                + _tail(layout.supervisord_log)
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"{layout.base_url}/version did not answer within {timeout:g}s: {last_error}\n"
                f"app log {layout.app_log}:\n{_tail(layout.app_log)}"
            )
        time.sleep(0.05)


def stop(layout: DemoLayout, *, timeout: float = 20.0) -> None:
    """Shut supervisord and the app down and wait until they are gone; idempotent."""
    pid = _read_pid(layout.pidfile)
    if pid is not None and _alive(pid):
        try:
            subprocess.run(
                [*_supervisorctl(), "-c", str(layout.supervisor_conf), "shutdown"],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        if not _wait_gone(pid, timeout / 2, wake=layout.supervisor_socket):
            _signal(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout / 2):
                _signal(pid, signal.SIGKILL)
                _wait_gone(pid, 2.0)
    layout.pidfile.unlink(missing_ok=True)
    sock = layout.supervisor_socket
    if not _is_under(sock, layout.root) and sock.parent.name.startswith(SOCKET_TMP_PREFIX):
        shutil.rmtree(sock.parent, ignore_errors=True)


def is_running(layout: DemoLayout) -> bool:
    """Whether the supervisord of this layout is alive."""
    pid = _read_pid(layout.pidfile)
    return pid is not None and _alive(pid)


def supervisord_pid(layout: DemoLayout) -> int | None:
    """The pid in supervisord's pidfile, if any."""
    return _read_pid(layout.pidfile)


def app_pid(layout: DemoLayout) -> int | None:
    """The app's pid as supervisor reports it (None when not running)."""
    proc = subprocess.run(
        [*_supervisorctl(), "-c", str(layout.supervisor_conf), "pid", "app"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    text = proc.stdout.strip()
    return int(text) if text.isdigit() and int(text) > 0 else None


def live_version(layout: DemoLayout, *, timeout: float = 2.0) -> str:
    """What the running app says at GET /version."""
    with _NO_PROXY.open(layout.base_url + "/version", timeout=timeout) as response:
        return str(response.read().decode("utf-8").strip())


def linked_version(layout: DemoLayout) -> str:
    """The release folder name `current` points to."""
    return Path(os.readlink(layout.current_link)).name


# -- helpers ---------------------------------------------------------------------------------


def _bin(name: str) -> list[str]:
    local = Path(sys.executable).parent / name
    if local.exists():
        return [str(local)]
    found = shutil.which(name)
    if found:
        return [found]
    module = {"supervisord": "supervisor.supervisord", "supervisorctl": "supervisor.supervisorctl"}
    return [sys.executable, "-m", module[name]]


def _supervisord() -> list[str]:
    return _bin("supervisord")


def _supervisorctl() -> list[str]:
    return _bin("supervisorctl")


def _socket_path(root: Path) -> Path:
    candidate = root / SOCKET_NAME
    if len(os.fsencode(candidate)) <= MAX_SOCKET_PATH:
        return candidate
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) > MAX_SOCKET_PATH - 30 and os.path.isdir("/tmp"):
        base = "/tmp"
    folder = Path(tempfile.mkdtemp(prefix=SOCKET_TMP_PREFIX, dir=base))
    return folder / "s.sock"


def _write_database(path: Path) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL,"
            " quantity INTEGER NOT NULL, status TEXT NOT NULL)"
        )
        conn.executemany(
            "INSERT INTO orders (id, item, quantity, status) VALUES (?, ?, ?, ?)",
            [
                (1, "coffee beans", 2, "shipped"),
                (2, "grinder", 1, "open"),
                (3, "filter papers", 5, "open"),
            ],
        )
    conn.close()


def _sv(value: object) -> str:
    """A value for supervisord.conf: `%` is its expansion character."""
    return str(value).replace("%", "%%")


def _sv_environment(env: Mapping[str, str]) -> str:
    pairs = {"PYTHONUNBUFFERED": "1", **env}
    for key, value in pairs.items():
        if not key.replace("_", "").isalnum() or '"' in value:
            raise ValueError(f"environment entry {key}={value!r} cannot go into supervisord.conf")
    return ",".join(f'{key}="{_sv(value)}"' for key, value in pairs.items())


def _sv_user() -> str:
    """As root, say so: silences supervisord's CRIT "running as root" (no privileges change)."""
    return "user = root\n" if os.geteuid() == 0 else ""


def _limit(kind: int, wanted: int) -> int:
    _soft, hard = resource.getrlimit(kind)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _supervisor_conf(layout: DemoLayout, env: Mapping[str, str]) -> str:
    root = layout.root
    command = shlex.join(
        [
            sys.executable,
            str(layout.current_link / "app.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(layout.port),
            "--db",
            str(layout.database),
        ]
    )
    return f"""\
; written by demo.deployment.lay_out for {_sv(root)}
[unix_http_server]
file = {_sv(layout.supervisor_socket)}
chmod = 0700

[supervisord]
logfile = {_sv(layout.supervisord_log)}
logfile_maxbytes = 1MB
logfile_backups = 0
loglevel = info
pidfile = {_sv(layout.pidfile)}
childlogdir = {_sv(root / "logs")}
directory = {_sv(root)}
identifier = demo-{layout.port}
minfds = {_limit(resource.RLIMIT_NOFILE, 1024)}
minprocs = {_limit(resource.RLIMIT_NPROC, 200)}
{_sv_user()}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl = unix://{_sv(layout.supervisor_socket)}

[program:app]
command = {_sv(command)}
directory = {_sv(root)}
autostart = true
autorestart = unexpected
startsecs = 0
stopsignal = TERM
stopwaitsecs = 5
stopasgroup = true
killasgroup = true
redirect_stderr = true
stdout_logfile = {_sv(layout.app_log)}
stdout_logfile_maxbytes = 1MB
stdout_logfile_backups = 0
environment = {_sv_environment(env)}
"""


# A user-written gate, to show how a team adds its own checks to the runbook.
EXAMPLE_GATES = '''"""Gates of the demo team, run by the harness in the phase their marker names."""

import pytest


@pytest.mark.gate("verify")
def test_orders_are_listed(rollback_http, rollback_base_url):
    answer = rollback_http.get(rollback_base_url + "/api/orders", timeout=5)
    assert answer.status_code == 200
    assert isinstance(answer.json(), list)
'''

# The same, for a demo with a [database] table (the symlink demo's SQLite).
EXAMPLE_DATABASE_GATE = """

@pytest.mark.gate("verify")
def test_orders_table_is_readable(rollback_db_engine):
    from sqlalchemy import text

    with rollback_db_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM orders")).scalar() > 0
"""


def _toml_str(value: object) -> str:
    return json.dumps(str(value))


def service_checks_toml(name: str, base_url: str) -> str:
    """The service and the checks every demo runs (symlink, swarm, kubernetes): one story, one set of checks."""
    return f"""\
[service]
name = {_toml_str(name)}
base_url = {_toml_str(base_url)}
timeout = "2s"

[service.version]
path = "/version"

[health]
path = "/health"
consecutive = 2

[[endpoints]]
path = "/"

[[endpoints]]
path = "/api/orders"
"""


def _rollback_toml(layout: DemoLayout, *, migrations: bool = False) -> str:
    base = layout.config_path.parent

    def rel(path: Path) -> str:
        return _toml_str(os.path.relpath(path, base))

    restart = ", ".join(_toml_str(arg) for arg in layout.restart_command)
    pid = ", ".join(_toml_str(arg) for arg in [*_supervisorctl(), "-c", str(layout.supervisor_conf), "pid", "app"])
    return f"""\
# The harness config for the demo deployment (written by demo.deployment.lay_out).
# Relative paths are relative to this file's folder.

{service_checks_toml("demo", layout.base_url)}
[[latency]]
path = "/"
samples = 20
concurrency = 4
min_samples = 10
p95 = "250ms"
max_error_rate = 0.0

[database]
url = {_toml_str("sqlite:///" + os.path.relpath(layout.database, base))}
timeout = "2s"
{demo_migrations.config_toml() if migrations else ""}
[targets.app]
kind = "symlink"
releases_dir = {rel(layout.releases_dir)}
current_link = {rel(layout.current_link)}
restart = [{restart}]
# The census: the process supervisor runs must have started after the link last changed.
pid_command = [{pid}]
ready_timeout = "30s"
"""


def _wake(sock_path: Path) -> None:
    """Connect to supervisord's socket once: its main loop wakes up and spawns the app at once
    instead of after its first 1 s poll timeout."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(sock_path))
        except OSError:
            pass


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie counts as gone: PID 1 in containers may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float, wake: Path | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        if wake is not None:
            _wake(wake)  # supervisord notices its exited child on its next loop turn
        time.sleep(0.05)
    return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError:
        pass


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True
