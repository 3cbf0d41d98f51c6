"""The [[logs]] and [[metrics]] checks, as ratios against bare baselines in the same invocation.

    .venv/bin/python bench/bench_incident_checks.py [--rounds N]

1. logs, new part of a huge file: checks.logs on a 2 GiB (sparse) file with 1 MiB written after
   the mark, against a bare loop that seeks to the mark and counts lines with "ERROR" in them.
   The old 2 GiB are never read: both take time proportional to the new part only.
2. logs, 16 MiB written after the mark (the default max_bytes), three patterns, against the
   same bare loop with one substring test.
3. metrics: parsing 50 000 samples with prometheus_client's parser, against splitting the text
   into lines and floats by hand (no escaping, no validation).
Medians of N rounds; the ratio is check / bare.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rollback_harness.checks.logs import check_log_files, mark
from rollback_harness.checks.metrics import parse
from rollback_harness.rollback.config import LOG_PATTERNS

LINE = b"2026-11-26 03:12:55 INFO request served in 3 ms path=/api/orders user=4711\n"


def median_seconds(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bare_count(path: Path, offset: int) -> int:
    with path.open("rb") as handle:
        handle.seek(offset)
        return sum(1 for line in handle if b"ERROR" in line)


def logs_case(folder: Path, old: int, new: int, rounds: int) -> tuple[float, float]:
    log = folder / "app.log"
    with log.open("wb") as handle:
        handle.truncate(old)
    log_mark = mark([log])
    with log.open("ab") as handle:
        handle.write(LINE * (new // len(LINE)))
    checked = median_seconds(
        lambda: check_log_files(log_mark, patterns=LOG_PATTERNS, limits={"error": 0}, max_bytes=16 * 1024**2),
        rounds,
    )
    bare = median_seconds(lambda: bare_count(log, old), rounds)
    log_mark.close()
    log.unlink()
    return checked, bare


def bare_parse(text: str) -> list[tuple[str, float]]:
    samples = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples.append((name, float(value)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        for label, old, new in (("2 GiB file, 1 MiB new", 2 * 1024**3, 1024**2), ("16 MiB new", 0, 16 * 1024**2)):
            checked, bare = logs_case(Path(tmp), old, new, rounds)
            print(
                f"logs, {label}: check {checked * 1000:.0f} ms, bare {bare * 1000:.0f} ms, ratio {checked / bare:.2f}"
            )
    text = "# TYPE http_requests_total counter\n" + "".join(
        f'http_requests_total{{code="{200 + i % 5}",path="/p{i}"}} {i}\n' for i in range(50_000)
    )
    checked = median_seconds(lambda: parse(text), rounds)
    bare = median_seconds(lambda: bare_parse(text), rounds)
    print(
        f"metrics, 50000 samples: parse {checked * 1000:.0f} ms, bare {bare * 1000:.0f} ms, ratio {checked / bare:.2f}"
    )


if __name__ == "__main__":
    main()
