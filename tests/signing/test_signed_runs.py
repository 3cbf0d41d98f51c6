"""Signed evidence: a real harness run signs its manifest; ``rollback-harness verify`` checks the bundle."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deployments import Deployment, make_deployment
from signing_support import assert_no_key_material, key_material, openssl, openssl_key, verify

from demo import deployment
from rollback_harness.rollback.evidence import verify_manifest
from rollback_harness.rollback.signing import SigningKey, parse_private_key, sign_manifest

pytestmark = pytest.mark.integration
RUN_TIMEOUT_S = 300


@dataclass(frozen=True)
class SignedRun:
    run_dir: Path
    private: Path
    public: Path
    output: str  # the harness's terminal output, stdout and stderr
    code: int


def harness(demo: Deployment, reports: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A harness run in its own process, as a user starts it."""
    root = demo.layout.root
    (root / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", *demo.harness_args(reports, *extra), "--rootdir", str(root), str(root)]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRun]:
    """One real rollback of the demo, signed with a key openssl made: each test checks a copy."""
    root = tmp_path_factory.mktemp("signed")
    private, public = openssl_key(root / "keys")
    demo = make_deployment(root / "deploy")
    demo.update_config(reports={"signing": {"key_file": str(private)}})
    deployment.start(demo.layout)
    try:
        done = harness(demo, root / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    finally:
        deployment.stop(demo.layout)
    (run_dir,) = [p for p in (root / "reports").iterdir() if p.is_dir()]
    yield SignedRun(run_dir, private, public, done.stdout + done.stderr, done.returncode)


def copy_of(run: SignedRun, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run.run_dir, tmp_path / run.run_dir.name))


def test_a_signed_run_verifies_with_and_without_the_key(signed_run: SignedRun) -> None:
    assert signed_run.code == 0, signed_run.output
    run_dir = signed_run.run_dir
    listed = (run_dir / "manifest.sha256").read_text()
    assert "manifest.sha256.sig" not in listed and verify_manifest(run_dir) == []
    evidence = json.loads((run_dir / "evidence.json").read_text())
    fingerprint = evidence["signing"]["fingerprint"]
    assert evidence["artifacts"]["signature"] == "manifest.sha256.sig"
    assert f"manifest.sha256 signed with key {fingerprint}" in signed_run.output
    assert f"rollback-harness verify {run_dir}" in signed_run.output
    assert (
        f'id="rollback-signing">manifest.sha256 is signed with Ed25519 key <code>{fingerprint}</code>'
        in (run_dir / "report.html").read_text()
    )

    alone = verify(run_dir)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.stdout.startswith(f"VERIFIED: {run_dir}")
    assert f"signed by key {fingerprint} (not checked against a key you trust: pass --key" in alone.stdout

    trusted = verify(run_dir, "--key", str(signed_run.public))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert f"signed by key {fingerprint}: the key you gave" in trusted.stdout
    assert f"run {run_dir.name} (exit code 0): " in trusted.stdout


def test_openssl_checks_the_signature_without_the_harness(signed_run: SignedRun, tmp_path: Path) -> None:
    """What docs/evidence.md tells an auditor who has only openssl: the signature is over the manifest's bytes."""
    document = json.loads((signed_run.run_dir / "manifest.sha256.sig").read_text())
    signature = tmp_path / "manifest.sig.bin"
    signature.write_bytes(__import__("base64").b64decode(document["signature"]))
    checked = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(signed_run.public), "-rawin",
        "-in", str(signed_run.run_dir / "manifest.sha256"), "-sigfile", str(signature),
        cwd=tmp_path,
    )  # fmt: skip
    assert "Signature Verified Successfully" in checked.stdout


def test_the_private_key_is_in_no_file_and_no_output(signed_run: SignedRun) -> None:
    forms = key_material(signed_run.private)
    assert_no_key_material(forms, folder=signed_run.run_dir, text=signed_run.output)
    assert_no_key_material(forms, text=verify(signed_run.run_dir, "--key", str(signed_run.public)).stdout)


def test_a_changed_added_or_removed_file_is_named(signed_run: SignedRun, tmp_path: Path) -> None:
    run_dir = copy_of(signed_run, tmp_path)
    report = run_dir / "report.html"
    report.write_text(report.read_text().replace("rolled back", "no rollback was needed"))
    (run_dir / "notes.txt").write_text("added later\n")
    (run_dir / "junit.xml").unlink()

    result = verify(run_dir, "--key", str(signed_run.public))

    assert result.returncode == 1, result.stdout
    assert result.stdout.startswith(f"REFUSED: {run_dir} is not the evidence")
    assert "  report.html: changed after the manifest was written" in result.stdout
    assert "  notes.txt: added after the manifest was written" in result.stdout
    assert "  junit.xml: removed" in result.stdout


def rewrite_manifest(run_dir: Path) -> None:
    """What someone who can change files does: recompute every line of the manifest."""
    lines = []
    for line in (run_dir / "manifest.sha256").read_text().splitlines():
        name = line.partition("  ")[2]
        lines.append(f"{hashlib.sha256((run_dir / name).read_bytes()).hexdigest()}  {name}")
    (run_dir / "manifest.sha256").write_text("\n".join(lines) + "\n")


def test_a_rewritten_manifest_is_refused(signed_run: SignedRun, tmp_path: Path) -> None:
    run_dir = copy_of(signed_run, tmp_path)
    evidence = run_dir / "evidence.json"
    edited = json.loads(evidence.read_text())
    edited["headline"] = "no rollback was needed"
    evidence.write_text(json.dumps(edited))
    rewrite_manifest(run_dir)
    assert verify_manifest(run_dir) == [], "the files match the rewritten manifest"

    for args in ((), ("--key", str(signed_run.public))):
        result = verify(run_dir, *args)
        assert result.returncode == 1, result.stdout
        assert "manifest.sha256 was rewritten after it was signed" in result.stdout


def test_a_signature_by_another_key_is_refused(signed_run: SignedRun, tmp_path: Path) -> None:
    run_dir = copy_of(signed_run, tmp_path)
    other_private, other_public = openssl_key(tmp_path / "other", "other")
    other = SigningKey(parse_private_key(other_private.read_bytes()), "test")
    sign_manifest(run_dir, other)  # signed again by whoever holds another key

    with_key = verify(run_dir, "--key", str(signed_run.public))
    assert with_key.returncode == 1, with_key.stdout
    assert f"signed by another key: manifest.sha256.sig was made by key {other.fingerprint}" in with_key.stdout
    # Without --key the evidence itself names the key that signed the run.
    alone = verify(run_dir)
    assert alone.returncode == 1, alone.stdout
    assert "it was signed again by someone else" in alone.stdout
    assert verify(run_dir, "--key", str(other_public)).returncode == 1


def test_a_missing_signature_is_refused_unless_allowed(signed_run: SignedRun, tmp_path: Path) -> None:
    run_dir = copy_of(signed_run, tmp_path)
    (run_dir / "manifest.sha256.sig").unlink()

    result = verify(run_dir, "--key", str(signed_run.public))
    assert result.returncode == 1
    assert "not signed: manifest.sha256.sig is missing" in result.stdout
    allowed = verify(run_dir, "--allow-unsigned")
    assert allowed.returncode == 0, allowed.stdout
    assert "only the manifest was checked" in allowed.stdout


def test_a_malformed_signature_is_refused(signed_run: SignedRun, tmp_path: Path) -> None:
    run_dir = copy_of(signed_run, tmp_path)
    (run_dir / "manifest.sha256.sig").write_text("not json\n")
    result = verify(run_dir)
    assert result.returncode == 1
    assert "manifest.sha256.sig is not a signature this harness wrote: it is not JSON" in result.stdout
