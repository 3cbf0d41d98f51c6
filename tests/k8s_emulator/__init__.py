"""A Kubernetes API server emulator for the tests: real HTTP on loopback, the subset kubectl uses.

    with Emulator() as api:
        api.create("deployments", manifest)
        subprocess.run(["kubectl", "--server", api.url, "get", "deploy"])

See server.py (HTTP, discovery, verbs, watch), controller.py (revisions, rollouts, status),
patches.py (JSON / merge / strategic merge patches), tables.py (kubectl's Table output).
"""

from __future__ import annotations

from .server import Emulator

__all__ = ["Emulator"]
