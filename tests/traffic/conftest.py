"""The blue/green layouts of tests/bluegreen (tests/bluegreen_support.py), and a real HAProxy in
front of the symlink demo."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluegreen_support import (
    make_bluegreen,  # noqa: F401  (a fixture: found by its name)
    need,
)
from deployments import Deployment

from demo import bluegreen
from demo.deployment import free_port


@pytest.fixture
def haproxy_in_front(demo: Deployment, tmp_path: Path) -> Iterator[Path]:
    """A real HAProxy in front of the symlink demo's app (server ``web1``); yields its stats socket."""
    need(bluegreen.HAPROXY)
    folder = tmp_path / "haproxy"
    folder.mkdir()
    socket_folder = Path(tempfile.mkdtemp(prefix="harness-test-", dir="/tmp"))  # AF_UNIX paths are short
    socket_path, pid_file, config = socket_folder / "admin.sock", folder / "haproxy.pid", folder / "haproxy.cfg"
    config.write_text(
        f"""\
global
    stats socket {socket_path} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend public
    bind 127.0.0.1:{free_port()}
    default_backend app
backend app
    server web1 127.0.0.1:{demo.layout.port} weight 100
"""
    )
    command = [bluegreen.HAPROXY, "-W", "-D", "-f", str(config), "-p", str(pid_file)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        deadline = time.monotonic() + 20
        while not socket_path.exists():
            assert time.monotonic() < deadline, "HAProxy's stats socket never appeared"
            time.sleep(0.05)
        yield socket_path
    finally:
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        shutil.rmtree(socket_folder, ignore_errors=True)
