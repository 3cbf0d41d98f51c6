"""What the benchmarks share: one line per figure, next to its goal, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import sys

# pytest as a user's install runs it: the development venv also has hypothesis, whose pytest plugin
# (a test-only dependency here) adds 0.1-0.2 s to every start-up and summary no user pays.
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:hypothesispytest"]


def goal_line(name: str, value: float, op: str, goal: float, *, unit: str = "x", ratio: bool = True) -> str:
    """``name   0.42x   goal <= 0.50x   met`` (or ``MISSED``)."""
    met = value <= goal if op == "<=" else value >= goal
    shown = f"{value:.3f}{unit}" if ratio else f"{value:.1f}{unit}"
    wanted = f"{goal:.2f}{unit}" if ratio else f"{goal:g}{unit}"
    return f"{name:<48} {shown:>10}   goal {op} {wanted:<8} {'met' if met else 'MISSED'}"


def skipped(name: str, why: str) -> str:
    return f"{name:<48} {'-':>10}   skipped: {why}"


def machine() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    return (
        f"(python {sys.version.split()[0]}, {os.cpu_count()} cores, {model}, {platform.system()} {platform.release()})"
    )
