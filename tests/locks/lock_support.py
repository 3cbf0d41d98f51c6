"""Shared by the lock tests: the holder-process starter's type and where its script is."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

HOLD_LOCK = Path(__file__).with_name("hold_lock.py")
Holder = Callable[..., subprocess.Popen[str]]
