"""A fleet of real release folders on this machine, each served by a real loopback HTTP server.

Each target is a folder with ``releases/v1.2.9``, ``releases/v1.3.0`` and a ``current`` link; its
server answers ``/version`` with the VERSION file of the release ``current`` points at, read on
every request: a switch of the link is what the service answers next.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w

VERSIONS = ("v1.2.9", "v1.3.0")
HELPERS = Path(__file__).parent.parent / "helpers"


def make_release_folder(root: Path, live: str = "v1.3.0") -> Path:
    for version in VERSIONS:
        release = root / "releases" / version
        release.mkdir(parents=True, exist_ok=True)
        (release / "VERSION").write_text(version + "\n")
    link = root / "current"
    if link.is_symlink():
        link.unlink()
    os.symlink(os.path.join("releases", live), link)
    return root


def linked(root: Path) -> str:
    return Path(os.readlink(root / "current")).name


class _Handler(BaseHTTPRequestHandler):
    roots: list[Path] = []
    turn = [0]

    def do_GET(self) -> None:
        if self.path not in ("/version", "/health"):
            self.send_error(404)
            return
        root = self.roots[self.turn[0] % len(self.roots)]
        self.turn[0] += 1  # several roots: answered in turn, as a load balancer would
        try:
            body = (root / "current" / "VERSION").read_text().strip() if self.path == "/version" else "ok"
        except OSError:
            self.send_error(503)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def version_server(*roots: Path) -> Iterator[str]:
    """A server answering the version ``roots`` link to (in turn); yields its base URL."""
    handler = type("Handler", (_Handler,), {"roots": list(roots), "turn": [0]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def restart_counter(root: Path) -> list[str]:
    """A restart command that appends a line to ROOT/restarts.log (counted by the tests)."""
    return [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('restart\\n')", str(root / "restarts.log")]


def restarts(root: Path) -> int:
    log = root / "restarts.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def fleet_config(path: Path, targets: dict[str, dict[str, Any]], service_url: str) -> Path:
    data = {
        "service": {
            "name": "shop",
            "base_url": service_url,
            "timeout": "2s",
            "settle": "0s",
            "version": {"consecutive": 2, "interval": "0s"},
        },
        "health": {"consecutive": 1},
        "targets": targets,
    }
    path.write_text(tomli_w.dumps(data))
    return path


def symlink_target(root: Path, url: str, **extra: Any) -> dict[str, Any]:
    checks = {"base_url": url, **extra.pop("checks", {})}
    return {
        "kind": "symlink",
        "releases_dir": str(root / "releases"),
        "current_link": str(root / "current"),
        "restart": restart_counter(root),
        "ready_timeout": "10s",
        "ready_consecutive": 1,
        **extra,
        "checks": checks,
    }


def evidence(report_dir: Path) -> dict[str, Any]:
    runs = sorted(p for p in report_dir.iterdir() if p.is_dir())
    assert len(runs) == 1, runs
    return json.loads((runs[0] / "evidence.json").read_text())


def journal(folder: Path) -> list[dict[str, Any]]:
    path = folder / "journal.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


@dataclass
class Fleet:
    """Three targets (a, b, c), each a release folder with its own version server, on v1.3.0."""

    tmp: Path
    roots: dict[str, Path]
    urls: dict[str, str]
    service_url: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.tmp / "rollback.toml"

    def write(self, **overrides: dict[str, Any]) -> Path:
        """The config; ``overrides`` replace keys of a target's table (``b={"restart": ["false"]}``)."""
        targets = {}
        for name, root in self.roots.items():
            targets[name] = symlink_target(root, self.urls[name], **overrides.get(name, {}))
        return fleet_config(self.config_path, targets, self.service_url)

    def args(self, reports: Path, *extra: str) -> list[str]:
        return ["-p", "no:cacheprovider", f"--rollback-config={self.config_path}", f"--report-dir={reports}", *extra]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with ExitStack() as stack:
        roots = {name: make_release_folder(tmp_path / name) for name in ("a", "b", "c")}
        urls = {name: stack.enter_context(version_server(root)) for name, root in roots.items()}
        service = stack.enter_context(version_server(*roots.values()))
        result = Fleet(tmp_path, roots, urls, service)
        result.write()
        yield result
