"""Shared by the lock tests: the holder-process starter's type and where its script is."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

HOLD_LOCK = Path(__file__).with_name("hold_lock.py")
Holder = Callable[..., subprocess.Popen[str]]


def write_kubeconfig(path: Path, server: str) -> str:
    """A kubeconfig whose current context talks to the emulator at ``server`` without credentials."""
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: emulator\n  cluster:\n    server: {server}\n"
        "users:\n- name: tester\n  user: {}\n"
        "contexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: tester\n    namespace: default\n"
        "current-context: emulator\n"
    )
    return str(path)
