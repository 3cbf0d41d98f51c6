"""The demo's own HTTP app: one copy per release folder, configured by release.json next to it.

Run as ``python <release>/app.py --host 127.0.0.1 --port N [--db PATH]``. Standard library only.
Environment: ``DEMO_DELAY_MS`` overrides the release's ``delay_ms``.
Fault switches in release.json: ``delay_ms``, ``failing_paths``, ``health_status``, and
``crash_after_s`` (a late crash: the app exits N seconds after it starts, leaves a ``crashed``
file in its release folder, and from then on exits at every start: a crash loop).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent

FALLBACK_ORDERS: list[dict[str, Any]] = [
    {"id": 1, "item": "coffee beans", "quantity": 2, "status": "shipped"},
    {"id": 2, "item": "grinder", "quantity": 1, "status": "open"},
]


def load_release(folder: Path = HERE) -> dict[str, Any]:
    """Read release.json next to this file; DEMO_DELAY_MS overrides delay_ms."""
    path = folder / "release.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    release = {
        "version": str(data.get("version", folder.name)),
        "delay_ms": int(data.get("delay_ms", 0)),
        "failing_paths": [str(p) for p in data.get("failing_paths", [])],
        "health_status": int(data.get("health_status", 200)),
        "crash_after_s": None if data.get("crash_after_s") is None else float(data["crash_after_s"]),
    }
    override = os.environ.get("DEMO_DELAY_MS", "").strip()
    if override:
        release["delay_ms"] = int(override)
    return release


def read_orders(db: str | None) -> list[dict[str, Any]]:
    """The orders table, opened read-only; a fixed list when no database was given."""
    if not db:
        return FALLBACK_ORDERS
    uri = Path(db).resolve().as_uri() + "?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=2.0) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT id, item, quantity, status FROM orders ORDER BY id").fetchall()
    return [dict(row) for row in rows]


class Handler(BaseHTTPRequestHandler):
    """Routes: /, /version, /version.json, /health, /api/orders; failing paths answer 500."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus delayed
    # ACKs add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server_version = "demo-app"
    release: ClassVar[dict[str, Any]] = {}
    db: ClassVar[str | None] = None

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, *, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        version = self.release["version"]
        if path == "/health":
            status = self.release["health_status"]
            state = "ok" if status < 400 else "failing"
            return self._json(status, {"status": state, "version": version}, send_body)
        if path == "/version":
            return self._send(200, "text/plain; charset=utf-8", version + "\n", send_body)
        if path == "/version.json":
            return self._json(200, {"version": version}, send_body)
        delay_ms = self.release["delay_ms"]
        if delay_ms > 0:
            time.sleep(delay_ms / 1000.0)
        if path in self.release["failing_paths"]:
            error = {"error": "internal server error", "path": path, "version": version}
            return self._json(500, error, send_body)
        if path == "/":
            page = f"<!doctype html><title>demo {version}</title><h1>demo app</h1><p>version <b>{version}</b></p>\n"
            return self._send(200, "text/html; charset=utf-8", page, send_body)
        if path == "/api/orders":
            try:
                orders = read_orders(self.db)
            except sqlite3.Error as exc:
                return self._json(503, {"error": f"database: {exc}"}, send_body)
            return self._json(200, orders, send_body)
        return self._json(404, {"error": "not found", "path": path}, send_body)

    def _json(self, status: int, payload: Any, send_body: bool) -> None:
        self._send(status, "application/json", json.dumps(payload) + "\n", send_body)

    def _send(self, status: int, content_type: str, body: str, send_body: bool) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"{self.release['version']} {self.address_string()} {format % args}\n")


def _crash(marker: Path, version: str) -> None:
    """The late crash of ``crash_after_s``: gone at once, as a segfault would leave it."""
    marker.write_text("crashed\n", encoding="utf-8")
    print(f"demo app {version} crashed", file=sys.stderr, flush=True)
    os._exit(70)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", default=None, help="SQLite file with an orders table")
    args = parser.parse_args(argv)

    Handler.release = load_release()
    Handler.db = args.db
    crash_after = Handler.release["crash_after_s"]
    crashed = HERE / "crashed"
    if crash_after is not None and crashed.exists():
        print(f"demo app {Handler.release['version']} crashes at start (crash loop)", file=sys.stderr, flush=True)
        return 70
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True

    def on_term(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if crash_after is not None:
        threading.Timer(crash_after, _crash, (crashed, Handler.release["version"])).start()
    release = Handler.release
    print(
        f"demo app {release['version']} listening on http://{args.host}:{args.port} "
        f"(delay {release['delay_ms']} ms, failing {release['failing_paths']})",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    print(f"demo app {release['version']} stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
