"""Helpers for the signed-evidence tests: keys made by openssl, the verify command, key material.

Not a conftest: tests/conftest.py is imported as ``conftest`` by the other test folders.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

COMMAND_TIMEOUT_S = 60
VERIFY = Path(sys.executable).parent / "rollback-harness"  # the console script pip installed


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("openssl")
    assert binary, "openssl is needed to make keys the way the docs tell users to"
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True
    )


def openssl_key(folder: Path, name: str = "signing") -> tuple[Path, Path]:
    """An Ed25519 private key (PEM PKCS#8, as `openssl genpkey` writes it) and its public key PEM."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    openssl("genpkey", "-algorithm", "ed25519", "-out", str(private), cwd=folder)
    openssl("pkey", "-in", str(private), "-pubout", "-out", str(public), cwd=folder)
    return private, public


def verify(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rollback-harness verify RUN_DIR ...``, the installed console script, as a user runs it."""
    return subprocess.run(
        [str(VERIFY), "verify", str(run_dir), *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def key_material(private_pem: Path) -> list[str]:
    """Every form of the private key that must never appear: the PEM body, raw base64 and hex."""
    text = private_pem.read_text()
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    key = serialization.load_pem_private_key(text.encode(), password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return [body, body[:40], base64.b64encode(raw).decode(), raw.hex()]


def assert_no_key_material(forms: list[str], *, folder: Path | None = None, text: str = "") -> None:
    for form in forms:
        assert form not in text, "private key material in the output"
        for path in sorted(folder.rglob("*")) if folder is not None else []:
            if path.is_file():
                assert form not in path.read_text(errors="replace"), f"private key material in {path}"
