"""What webhooks cost a run, as ratios against the same run without them, in one invocation.

    .venv/bin/python bench/bench_notify.py [--rounds N]

A verify gate (`pytest --gate verify -k "version or health"`, which changes nothing, so it can
repeat) against a real demo deployment, with: no [[notify]]; a receiver that answers 200; one
that answers 500; one that accepts and never answers (timeout 1 s); all three at once. The hanging
receiver costs at most the bounded drain at the end (its timeout plus 1 s), never its hang.
Medians of N rounds; the ratio is with webhooks / without (1.00 = no overhead).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from demo import deployment  # noqa: E402

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def receiver(mode: str) -> tuple[ThreadingHTTPServer, threading.Event]:
    released = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if mode == "hang":
                released.wait(600)
                return
            self.send_response(500 if mode == "fail" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, released


def timed_gate(layout: deployment.DemoLayout, folder: Path, name: str) -> float:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--rollback-config={layout.config_path}",
        f"--report-dir={folder / 'reports'}",
        "--gate",
        "verify",
        "-k",
        "version or health",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stdout[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    servers = {mode: receiver(mode) for mode in ("ok", "fail", "hang")}
    hooks = {
        mode: {"name": mode, "url": f"http://127.0.0.1:{server.server_address[1]}/hook", "timeout": "1s"}
        for mode, (server, _) in servers.items()
    }
    cases: dict[str, list[dict[str, Any]]] = {
        "no webhooks": [],
        "answers 200": [hooks["ok"]],
        "answers 500": [hooks["fail"]],
        "hangs": [hooks["hang"]],
        "all three": list(hooks.values()),
    }
    with tempfile.TemporaryDirectory() as folder:
        layout = deployment.lay_out(Path(folder) / "deploy", live="v1.2.9")
        deployment.start(layout)
        base = tomllib.loads(layout.config_path.read_text())
        try:
            runs: dict[str, list[float]] = {name: [] for name in cases}
            for _ in range(rounds):  # interleaved: a busy moment of the machine hits every case alike
                for name, notify in cases.items():
                    layout.config_path.write_text(tomli_w.dumps({**base, "notify": notify}))
                    runs[name].append(timed_gate(layout, Path(folder), name))
            times = {name: statistics.median(values) for name, values in runs.items()}
            bare = times["no webhooks"]
            for name, seconds in times.items():
                print(f"{name:<12} {seconds * 1000:8.0f} ms   ratio {seconds / bare:5.2f}")
        finally:
            deployment.stop(layout)
            for server, released in servers.values():
                released.set()
                server.shutdown()


if __name__ == "__main__":
    main()
