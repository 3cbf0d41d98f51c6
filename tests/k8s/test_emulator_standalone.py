"""`python -m tests.k8s_emulator`: the API emulator on its own, as a user starts it to try kubectl and the harness.

Each test starts it as a subprocess from the checkout root on a free loopback port (``--port 0``: the
port is in the kubeconfig it writes), waits for the kubeconfig with a deadline, drives it with the
real kubectl, then stops it with SIGTERM and expects exit 0, promptly, with its files removed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from k8s_support import KUBECTL, Kubectl

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0  # seconds until the kubeconfig appears (with --demo: after the demo's two rollouts)
STOP_TIMEOUT = 15.0  # seconds from SIGTERM to exit (pods get SIGTERM, then SIGKILL after 5 s)

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="the real kubectl is not installed on this machine")


@contextmanager
def standalone(tmp_path: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """(the process, its kubeconfig, its output file) once the kubeconfig exists; killed if a test fails first."""
    kubeconfig = tmp_path / "emu.kubeconfig"
    output = tmp_path / "emulator.out"
    command = [sys.executable, "-m", "tests.k8s_emulator", "--port", "0", "--kubeconfig", str(kubeconfig), *extra]
    with output.open("w") as out:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not kubeconfig.exists():
            assert time.monotonic() < deadline, f"no kubeconfig after {START_TIMEOUT:g}s:\n{output.read_text()}"
            try:
                code = process.wait(timeout=0.05)  # the poll's pause, and it notices an early exit
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"the emulator exited {code} before writing its kubeconfig:\n{output.read_text()}")
        yield process, kubeconfig, output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[str], output: Path) -> str:
    """SIGTERM; asserts a prompt exit 0 and returns what it printed."""
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = process.wait(timeout=STOP_TIMEOUT)
    took = time.monotonic() - started
    printed = output.read_text()
    assert code == 0, printed
    assert took < STOP_TIMEOUT, took
    return printed


@needs_kubectl
def test_kubectl_reaches_it_and_sigterm_stops_it(tmp_path: Path) -> None:
    with standalone(tmp_path) as (process, kubeconfig, output):
        kubectl = Kubectl(kubeconfig, tmp_path / "kube-cache")
        listed = kubectl("get", "deployments")
        assert "No resources found in default namespace." in listed.stderr
        assert kubectl("config", "current-context").stdout.strip() == "emulator"
        printed = stop(process, output)
    assert f"KUBECONFIG={kubeconfig} kubectl get deployments" in printed
    assert "SIGTERM: stopping" in printed
    assert not kubeconfig.exists()  # it removes what it wrote


@needs_kubectl
def test_demo_seeds_the_demo_deployment(tmp_path: Path) -> None:
    with standalone(tmp_path, "--demo") as (process, kubeconfig, output):
        kubectl = Kubectl(kubeconfig, tmp_path / "kube-cache")
        image = kubectl("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
        assert image.stdout == "demo:v1.3.0"
        ready = kubectl("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}")
        assert ready.stdout == "3"
        assert "REVISION" in kubectl("rollout", "history", "deployment/web").stdout
        harness_config = tmp_path / "emu.rollback.toml"
        assert 'kind = "kubernetes"' in harness_config.read_text()
        printed = stop(process, output)
    assert f"--rollback-config {harness_config} --rollback-to v1.2.9" in printed
    assert "stopped the emulator and its pods" in printed
    assert not harness_config.exists()
    assert not kubeconfig.exists()


def test_an_existing_kubeconfig_it_did_not_write_is_left_alone(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    command = [sys.executable, "-m", "tests.k8s_emulator", "--port", "0", "--kubeconfig", str(kubeconfig)]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "was not written by this emulator: not overwriting it" in result.stderr
    assert kubeconfig.read_text() == "apiVersion: v1\nkind: Config\n"
