"""The signature beside the manifest: not an added file for the manifest check nor for retention."""

from __future__ import annotations

import json
from pathlib import Path

from signing_support import openssl_key

from rollback_harness.rollback.evidence import verify_manifest, write_manifest
from rollback_harness.rollback.retention import prune_runs, read_run_folder
from rollback_harness.rollback.signing import SigningKey, check_signature, parse_private_key, sign_manifest


def signed_folder(reports: Path, name: str, key: SigningKey) -> Path:
    folder = reports / name
    folder.mkdir(parents=True)
    evidence = {
        "schema": "rollback-evidence/1",
        "mode": "rollback",
        "service": {"name": "demo"},
        "target": {"name": "app"},
        "outcome": {"status": "rolled-back"},
        "started": f"2026-01-0{name[-1]}T00:00:00Z",
    }
    (folder / "evidence.json").write_text(json.dumps(evidence))
    (folder / "journal.jsonl").write_text("{}\n")
    write_manifest(folder)
    sign_manifest(folder, key)
    return folder


def test_retention_and_the_manifest_check_take_the_signature_for_the_harness_s_own(tmp_path: Path) -> None:
    private, _ = openssl_key(tmp_path / "keys")
    key = SigningKey(parse_private_key(private.read_bytes()), "test")
    old = signed_folder(tmp_path / "reports", "run-1", key)
    new = signed_folder(tmp_path / "reports", "run-2", key)

    assert verify_manifest(new) == [] and check_signature(new, key.public).ok
    assert read_run_folder(new) is not None, "a signed run folder is a finished run folder of ours"
    write_manifest(new)  # written again (as after a late failure): the signature is still not listed
    assert "manifest.sha256.sig" not in (new / "manifest.sha256").read_text()

    pruned = prune_runs(new, keep=1)
    assert pruned.removed == [old] and pruned.failed == []
    assert new.is_dir()


def test_a_signing_key_repr_never_shows_the_key(tmp_path: Path) -> None:
    private, _ = openssl_key(tmp_path / "keys")
    key = SigningKey(parse_private_key(private.read_bytes()), "reports.signing.key_file = 'k.pem'")
    assert repr(key) == f"SigningKey(source={key.source!r})"
