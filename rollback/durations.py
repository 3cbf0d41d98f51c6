"""Durations as people write them in config and on the command line: ``250ms``, ``5s``, ``2m``."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# The sign is matched so that "-5s" is refused as negative, not as unreadable.
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
ACCEPTED = "a number of seconds or a string like '250ms', '5s', '2m', '1h'"


def parse_duration(value: object) -> float:
    """Return seconds; raise ValueError naming what is accepted."""
    if isinstance(value, bool):
        raise ValueError(f"expected {ACCEPTED}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected {ACCEPTED}")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError(f"expected {ACCEPTED}")
    if not math.isfinite(seconds):
        # TOML's inf and nan: a wait bounded by them never ends.
        raise ValueError(f"expected a finite duration ({ACCEPTED})")
    if seconds < 0:
        raise ValueError(f"expected a duration that is not negative ({ACCEPTED})")
    return seconds


MAX_TIMEOUT = 24 * 3600.0
TIMEOUT_ACCEPTED = "a duration above 0 and at most 24h, e.g. '500ms', '5s', '2m'"


def parse_timeout(value: object) -> float:
    """A timeout or limit: a duration above 0 and at most 24 hours; ValueError otherwise.

    Zero would fail every request at once, and a bound like 1e308 seconds is no bound.
    """
    seconds = parse_duration(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ValueError(f"expected {TIMEOUT_ACCEPTED}")
    return seconds


def parse_pause(value: object, *, most: float = MAX_TIMEOUT) -> float:
    """A wait between attempts, or a settle time: 0 or more, at most ``most`` seconds."""
    seconds = parse_duration(value)
    if seconds > most:
        raise ValueError(f"expected a duration from 0 to {format_duration(most)} ({ACCEPTED})")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
