"""200 endpoints x 20 latency samples against a server that adds a known 50 ms.

    .venv/bin/python bench/bench_endpoints.py [--endpoints N] [--samples N] [--delay-ms MS]

A local HTTP server (its own process, a thread per connection) answers every path after sleeping
exactly ``--delay-ms``. The harness's baseline phase runs the configured checks the way a run does
(plugins/phase.py: the quick checks together, then the latency checks, each sending its samples
``concurrency`` at a time), twice: with the default, one latency check after another, and with
``[verify] latency_connections = 64``, checks side by side within 64 connections (issue 19: measure
whether concurrent latency checks skew each other; keep them apart only if they do). Printed for
each, next to its goal:

- wall time of the phase against the serial sum (every sample one after another: the sum of the
  latencies the harness measured): goal at most 0.05;
- the p95 the harness reports against the delay the server adds: goal within 5 ms. Each endpoint
  has its own p95; the goal line shows the median endpoint's, then the worst and how many are over.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import goal_line, machine  # noqa: E402

from rollback_harness.plugins.items import check_specs  # noqa: E402
from rollback_harness.plugins.phase import PhaseChecks  # noqa: E402
from rollback_harness.plugins.state import MODE_ROLLBACK, HarnessRun  # noqa: E402
from rollback_harness.rollback.config import VerifyConfig, load_config  # noqa: E402

SERVER = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
DELAY = float(sys.argv[1]) / 1000

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(DELAY)
        body = b"v1.2.9"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""

CONCURRENCY = 20


def start_server(delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(delay_ms)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    port = int(process.stdout.readline())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            requests.get(url + "/version", timeout=2).raise_for_status()
            return process, url
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_config(path: Path, url: str, endpoints: int, samples: int, connections: int) -> None:
    lines = [
        "[verify]",
        f"latency_connections = {connections}",
        "[service]",
        'name = "bench"',
        f'base_url = "{url}"',
        'timeout = "5s"',
        "[service.version]",
        'path = "/version"',
        "consecutive = 1",
        "interval = 0",
    ]
    for n in range(endpoints):
        lines += [
            "[[latency]]",
            f'path = "/e{n}"',
            f"samples = {samples}",
            f"concurrency = {min(CONCURRENCY, samples)}",
            f"min_samples = {samples}",
        ]
    lines += ["[targets.app]", 'kind = "symlink"', 'releases_dir = "releases"', 'current_link = "current"']
    lines += ['restart = ["true"]']
    path.write_text("\n".join(lines) + "\n")


def measure(url: str, endpoints: int, samples: int, connections: int) -> tuple[float, float, list[float]]:
    """(wall time of the baseline phase, serial sum of the samples, each endpoint's p95)."""
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as temp:
        workdir = Path(temp)
        config_path = workdir / "rollback.toml"
        write_config(config_path, url, endpoints, samples, connections)
        config = load_config(config_path)
        run = HarnessRun(
            mode=MODE_ROLLBACK,
            config=config,
            target_spec=None,
            requested="v1.2.9",
            expect_version=None,
            dry_run=True,
            assume_yes=True,
            run_id="bench-endpoints",
            run_dir=workdir / "run",
            is_worker=False,
        )
        specs = check_specs(run)
        started = time.perf_counter()
        phase = PhaseChecks(run, "baseline", specs)
        results = [phase.result(spec.key) for spec in specs]
        wall = time.perf_counter() - started
    failed = [r.name for r in results if not r.passed]
    assert not failed, f"checks did not pass: {failed[:5]}"
    serial = sum(s for kept in run.latency_baselines.values() for s in kept)
    return wall, serial, [r.measured["p95_ms"] / 1000 for r in results if r.name.startswith("latency[")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    args = parser.parse_args()
    # The default (one latency check at a time) against checks side by side within 64 connections.
    budget = VerifyConfig().latency_connections or 1  # unset: one latency check at a time
    side_by_side = 64
    server, url = start_server(args.delay_ms)
    try:
        figures = {
            "apart (default)": measure(url, args.endpoints, args.samples, budget),
            f"side by side ({side_by_side} conns)": measure(url, args.endpoints, args.samples, side_by_side),
        }
    finally:
        server.kill()
        server.wait()
    delay = args.delay_ms / 1000
    for name, (wall, serial, p95s) in figures.items():
        print(
            f"{args.endpoints} endpoints x {args.samples} samples at +{args.delay_ms:g} ms, latency checks {name}: "
            f"{wall:.2f} s, serial sum {serial:.1f} s"
        )
        print(goal_line(f"endpoints, {name}: wall / serial", wall / serial, "<=", 0.05))
        median, worst = statistics.median(p95s) - delay, max(p95s) - delay
        print(
            goal_line(f"endpoints, {name}: p95 - delay", median * 1000, "<=", 5.0, unit=" ms", ratio=False)
            + f"   (median endpoint; worst {worst * 1000:.1f} ms; "
            f"{sum(p - delay > 0.005 for p in p95s)} of {len(p95s)} over 5 ms)"
        )
    print(machine())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
