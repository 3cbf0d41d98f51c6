"""--rollback-to last-verified with [reports.signing]: only runs whose signature holds for the configured key
are trusted; one signed by another key, a rewritten one or an unsigned one is listed as untrusted, with why."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployments import Deployment, make_deployment
from signing_support import openssl_key

from demo import deployment
from rollback_harness.rollback.evidence import write_manifest
from rollback_harness.rollback.history import find_last_verified
from rollback_harness.rollback.signing import SigningKey, parse_private_key, sign_manifest

pytestmark = pytest.mark.integration
DEPLOY_TIMEOUT_S = 30.0


@pytest.fixture
def healthy(tmp_path: Path) -> Iterator[Deployment]:
    """The demo deployment with v1.2.9 live."""
    result = make_deployment(tmp_path / "deploy", live="v1.2.9")
    deployment.start(result.layout)
    try:
        yield result
    finally:
        deployment.stop(result.layout)


def deploy(demo: Deployment, version: str) -> None:
    """What a deploy pipeline does: move the link, restart, wait until the new version answers."""
    deployment.switch_release(demo.layout, version)
    subprocess.run(demo.layout.restart_command, check=True, capture_output=True, timeout=DEPLOY_TIMEOUT_S)
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while True:
        try:
            if deployment.live_version(demo.layout) == version:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{version} never answered"
        time.sleep(0.1)


def gate_run(pytester: pytest.Pytester, demo: Deployment, reports: Path, key: Path) -> Path:
    """A passing verify gate, signed with ``key``: it proves the live version; its run folder."""
    demo.update_config(reports={"signing": {"key_file": str(key)}})
    before = set(reports.iterdir()) if reports.is_dir() else set()
    result = pytester.runpytest(*demo.harness_args(reports, "--gate", "verify"))
    assert result.ret == 0, result.stdout.str()
    (made,) = set(reports.iterdir()) - before
    return made


def rewrite_manifest(run_dir: Path) -> None:
    lines = []
    for line in (run_dir / "manifest.sha256").read_text().splitlines():
        name = line.partition("  ")[2]
        lines.append(f"{hashlib.sha256((run_dir / name).read_bytes()).hexdigest()}  {name}")
    (run_dir / "manifest.sha256").write_text("\n".join(lines) + "\n")


def test_last_verified_trusts_only_runs_signed_with_the_configured_key(
    pytester: pytest.Pytester, healthy: Deployment
) -> None:
    reports = pytester.path / "reports"
    key, _ = openssl_key(pytester.path / "keys", "ours")
    other, _ = openssl_key(pytester.path / "keys", "other")
    deploy(healthy, "v1.2.8")
    trusted_run = gate_run(pytester, healthy, reports, key)  # proves v1.2.8, the oldest
    deploy(healthy, "v1.2.9")
    foreign_run = gate_run(pytester, healthy, reports, other)  # proves v1.2.9, signed by another key
    rewritten_run = gate_run(pytester, healthy, reports, key)  # proves v1.2.9, then its evidence is edited
    junit = rewritten_run / "junit.xml"
    junit.write_text(junit.read_text().replace('failures="0"', 'failures="0" edited="yes"'))
    rewrite_manifest(rewritten_run)  # its files match the manifest again: only the signature tells
    deploy(healthy, "v1.3.0")

    healthy.update_config(reports={"signing": {"key_file": str(key)}})
    result = pytester.runpytest(*healthy.harness_args(reports, "--rollback-to", "last-verified", "--rollback-dry-run"))

    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            f"*--rollback-to last-verified: v1.2.8, verified by run {trusted_run.name} at 20*"
            "evidence matches its manifest, signed by the configured key SHA256:*"
            f"not trusted: {foreign_run.name}: signed by another key: manifest.sha256.sig was made by key SHA256:*"
            f"{rewritten_run.name}: manifest.sha256 was rewritten after it was signed*"
        ]
    )
    assert healthy.live_version() == "v1.3.0"
    latest = max(reports.iterdir())
    proof = json.loads((latest / "evidence.json").read_text())["last_verified"]
    assert proof["run_id"] == trusted_run.name and proof["signed_by"].startswith("SHA256:")
    assert len(proof["untrusted"]) == 2


PROVED = {"measured": {"version": "v1.2.9"}}


def stand_in(folder: Path, name: str) -> Path:
    """An earlier run's evidence as the history reads it: a verify gate that proved v1.2.9."""
    run_dir = folder / name
    run_dir.mkdir(parents=True)
    evidence = {
        "schema": "rollback-evidence/1",
        "mode": "gate-verify",
        "service": {"name": "demo"},
        "target": {"name": "app"},
        "exit": {"code": 0},
        "finished": f"2026-01-0{name[-1]}T00:00:00Z",
        "tests": [{"nodeid": "rollback.toml::verify-version", "outcome": "passed", "check": PROVED}],
    }
    (run_dir / "evidence.json").write_text(json.dumps(evidence))
    write_manifest(run_dir)
    return run_dir


def test_an_unsigned_run_is_not_trusted_when_a_key_is_configured(tmp_path: Path) -> None:
    private, _ = openssl_key(tmp_path / "keys")
    key = SigningKey(parse_private_key(private.read_bytes()), "test")
    stand_in(tmp_path / "reports", "run-1")
    sign_manifest(stand_in(tmp_path / "reports", "run-2"), key)
    stand_in(tmp_path / "reports", "run-3")  # the newest, unsigned

    unchecked = find_last_verified(tmp_path / "reports", "demo", "app")
    assert unchecked.proof is not None and unchecked.proof.run_id == "run-3"

    search = find_last_verified(tmp_path / "reports", "demo", "app", trusted=key.public)
    assert search.proof is not None and search.proof.run_id == "run-2"
    assert search.proof.signed_by == key.fingerprint
    assert search.untrusted == [
        "run-1: not signed: manifest.sha256.sig is missing",
        "run-3: not signed: manifest.sha256.sig is missing",
    ]
