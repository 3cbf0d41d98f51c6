"""Signed evidence: an Ed25519 signature over a run's ``manifest.sha256`` (``[reports.signing]``).

The manifest alone shows that files changed, but whoever can change a file can rewrite it; the
signature, written after it as ``manifest.sha256.sig``, shows the manifest is the one the harness
wrote, and with the signer's public key, who wrote it. What is signed is the manifest's exact
bytes, so ``openssl pkeyutl -verify -rawin`` checks it too (docs/evidence.md). The private key is
read once at start-up and never written, logged or shown; no error message quotes key material.
Plain Python: no pytest import.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import run_files
from .errors import ConfigError
from .evidence import write_text

ALGORITHM = "ed25519"
FORMAT = "rollback-manifest-signature/1"
PRIVATE_ACCEPTED = (
    "an Ed25519 private key: PEM PKCS#8 (what `openssl genpkey -algorithm ed25519` writes), an unencrypted "
    "OpenSSH key (`ssh-keygen -t ed25519 -N ''`), or the raw 32-byte key in base64"
)
PUBLIC_ACCEPTED = (
    "an Ed25519 public key: PEM (`openssl pkey -in KEY -pubout`), an OpenSSH line (ssh-ed25519 AAAA...), "
    "or the raw 32-byte key in base64 (the public_key in manifest.sha256.sig)"
)
# Bigger than any key file in the accepted forms; a larger file is the wrong file.
_MAX_KEY_BYTES = 64 * 1024


def fingerprint(public: Ed25519PublicKey) -> str:
    """``SHA256:...``, the same as ``ssh-keygen -l`` prints for this key."""
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    blob = base64.b64decode(line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def public_raw(public: Ed25519PublicKey) -> str:
    """The raw 32-byte public key in base64."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class SigningKey:
    """The configured private key, and where it came from (``reports.signing.key_env = 'NAME'``)."""

    private: Ed25519PrivateKey = field(repr=False)
    source: str
    # The lines of the file or variable the key came from, for the redactor (never shown).
    given: tuple[str, ...] = field(default=(), repr=False)

    def secret_forms(self) -> list[str]:
        """The key as text in every form it may be seen in: what was given, raw base64 and hex, PKCS#8 PEM."""
        raw = self.private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        pem = self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return [*self.given, base64.b64encode(raw).decode(), raw.hex(), *_key_lines(pem)]

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)


# -- reading keys ------------------------------------------------------------------------------------


def _key_lines(data: bytes) -> tuple[str, ...]:
    """The lines of key text that hold key material (not ``-----BEGIN``, not short ends)."""
    lines = data.decode("utf-8", "replace").splitlines()
    return tuple(line.strip() for line in lines if len(line.strip()) >= 16 and not line.startswith("-----"))


def _raw_base64(text: bytes) -> bytes | None:
    """32 bytes from one line of base64, or None when it is not that."""
    stripped = text.strip()
    if not stripped or b"\n" in stripped or len(stripped) > 64:
        return None
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 32 else None


def parse_private_key(data: bytes) -> Ed25519PrivateKey:
    """The Ed25519 private key in ``data``; ValueError saying what is wrong (never quoting ``data``)."""
    raw = _raw_base64(data)
    if raw is not None:
        return Ed25519PrivateKey.from_private_bytes(raw)
    text = data.strip()
    if b"PUBLIC KEY" in text.split(b"\n", 1)[0] or text.startswith(b"ssh-"):
        raise ValueError("it is a public key; the harness signs with the private key")
    try:
        if text.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
            key: Any = serialization.load_ssh_private_key(text, password=None)
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(text, password=None)
        else:
            raise ValueError("it is neither PEM, an OpenSSH key nor 32 bytes in base64")
    except TypeError:
        raise ValueError(
            "it is encrypted with a passphrase, and the harness signs unattended: give an unencrypted key "
            "and protect it by its permissions or a secret store"
        ) from None
    except UnsupportedAlgorithm:
        raise ValueError("its algorithm is not supported here") from None
    except ValueError as exc:
        if "neither PEM" in str(exc):
            raise
        raise ValueError("it does not parse as a private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"it is not an Ed25519 key ({_kind(key)})")
    return key


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in ``data``; ValueError saying what is wrong."""
    raw = _raw_base64(data)
    if raw is not None:
        return Ed25519PublicKey.from_public_bytes(raw)
    text = data.strip()
    if b"PRIVATE KEY" in text.split(b"\n", 1)[0]:
        raise ValueError(
            "it is a private key: give its public key instead (openssl pkey -in KEY -pubout -out KEY.pub.pem); "
            "a private key has no place on an auditor's machine"
        )
    try:
        if text.startswith(b"ssh-"):
            key: Any = serialization.load_ssh_public_key(text.split(b"\n", 1)[0])
        elif text.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(text)
        else:
            raise ValueError("it is neither PEM, an OpenSSH line nor 32 bytes in base64")
    except UnsupportedAlgorithm:
        raise ValueError("its algorithm is not supported here") from None
    except ValueError as exc:
        if "neither PEM" in str(exc):
            raise
        raise ValueError("it does not parse as a public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"it is not an Ed25519 key ({_kind(key)})")
    return key


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_")


def read_key_file(path: Path) -> bytes:
    """A key file's bytes, bounded; OSError or ValueError saying why not."""
    if not path.is_file():
        raise OSError(errno.ENOENT, "no such file" if not path.exists() else "not a file")
    with path.open("rb") as handle:
        data = handle.read(_MAX_KEY_BYTES + 1)
    if len(data) > _MAX_KEY_BYTES:
        raise ValueError(f"it is larger than {_MAX_KEY_BYTES // 1024} KiB: not a key file")
    return data


def load_signing_key(config_path: Path, settings: Any, environ: Mapping[str, str]) -> SigningKey:
    """The key ``[reports.signing]`` names (a ``SigningConfig``); ConfigError naming the key and what is accepted."""
    prefix = "tool.rollback." if config_path.name == "pyproject.toml" else ""
    if settings.key_file is not None:
        path = (config_path.parent / Path(settings.key_file).expanduser()).resolve()
        source = f"{prefix}reports.signing.key_file = {settings.key_file!r}"
        try:
            data = read_key_file(path)
        except OSError as exc:
            raise ConfigError(
                f"{config_path}: {source} ({path}): cannot be read: {exc.strerror or exc}; expected {PRIVATE_ACCEPTED}"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"{config_path}: {source} ({path}): {exc}; expected {PRIVATE_ACCEPTED}") from None
    else:
        source = f"{prefix}reports.signing.key_env = {settings.key_env!r}"
        value = environ.get(settings.key_env, "")
        if not value.strip():
            raise ConfigError(
                f"{config_path}: {source}: the environment variable {settings.key_env} is "
                f"{'empty' if settings.key_env in environ else 'not set'}; expected {PRIVATE_ACCEPTED}"
            )
        data = value.encode("utf-8", "replace")
    try:
        return SigningKey(parse_private_key(data), source, _key_lines(data))
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {source}: not usable: {exc}; expected {PRIVATE_ACCEPTED}") from None


def configured_key(harness_config: Any, environ: Mapping[str, str]) -> SigningKey | None:
    """The signing key of a loaded ``HarnessConfig``, None when ``[reports.signing]`` is not set."""
    signing = harness_config.settings.reports.signing
    return None if signing is None else load_signing_key(harness_config.path, signing, environ)


# -- signing -----------------------------------------------------------------------------------------


def sign_manifest(run_dir: Path, key: SigningKey) -> Path:
    """Write ``manifest.sha256.sig`` for the manifest in ``run_dir``, then read it back and check it.

    An OSError when it cannot be written or does not hold once written (no signature is left then).
    """
    manifest = (run_dir / run_files.MANIFEST).read_bytes()
    document = {
        "format": FORMAT,
        "algorithm": ALGORITHM,
        "signed_file": run_files.MANIFEST,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "public_key": public_raw(key.public),
        "fingerprint": key.fingerprint,
        "signature": base64.b64encode(key.private.sign(manifest)).decode(),
        "signed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = write_text(run_dir / run_files.SIGNATURE, json.dumps(document, indent=2) + "\n")
    check = check_signature(run_dir, key.public)
    if not check.ok:
        path.unlink(missing_ok=True)
        raise OSError(errno.EIO, f"the signature read back does not hold ({check.message})")
    return path


# -- checking ----------------------------------------------------------------------------------------

OK = "signed"
MISSING = "not-signed"
MALFORMED = "malformed"
REWRITTEN = "rewritten"
OTHER_KEY = "other-key"
NO_MANIFEST = "no-manifest"


@dataclass(frozen=True)
class SignatureCheck:
    """What ``manifest.sha256.sig`` says of the manifest: ``status`` one of the names above."""

    status: str
    message: str
    fingerprint: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK


def read_signature(run_dir: Path) -> tuple[dict[str, Any], Ed25519PublicKey, bytes]:
    """The signature document, the public key it names and the signature; ValueError when it is not one."""
    try:
        document = json.loads((run_dir / run_files.SIGNATURE).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f'its "format" is not {FORMAT!r}')
    if document.get("algorithm") != ALGORITHM or document.get("signed_file") != run_files.MANIFEST:
        raise ValueError(f'it is not an {ALGORITHM} signature of {run_files.MANIFEST} ("algorithm", "signed_file")')
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(str(document.get("public_key")), validate=True))
        signature = base64.b64decode(str(document.get("signature")), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('its "public_key" or "signature" is not the base64 of an Ed25519 key or signature') from None
    return document, public, signature


def check_signature(run_dir: Path, trusted: Ed25519PublicKey | None) -> SignatureCheck:
    """Whether the manifest's signature holds: for ``trusted`` when given, else for the key it names.

    Without ``trusted`` a holding signature proves the manifest was not rewritten by someone
    without that key, not whose key it is. OSError when a file cannot be read.
    """
    sig, manifest = run_dir / run_files.SIGNATURE, run_dir / run_files.MANIFEST
    if not manifest.is_file():
        return SignatureCheck(NO_MANIFEST, f"{run_files.MANIFEST} is missing: there is nothing signed to check")
    if not sig.exists():
        return SignatureCheck(MISSING, f"not signed: {run_files.SIGNATURE} is missing")
    if not sig.is_file():
        return SignatureCheck(MALFORMED, f"not signed: {run_files.SIGNATURE} is not a file")
    try:
        _document, public, signature = read_signature(run_dir)
    except ValueError as exc:
        return SignatureCheck(MALFORMED, f"{run_files.SIGNATURE} is not a signature this harness wrote: {exc}")
    signer = fingerprint(public)
    if trusted is not None and signer != fingerprint(trusted):
        return SignatureCheck(
            OTHER_KEY,
            f"signed by another key: {run_files.SIGNATURE} was made by key {signer}, "
            f"not by the trusted key {fingerprint(trusted)}",
            signer,
        )
    try:
        public.verify(signature, manifest.read_bytes())
    except InvalidSignature:
        return SignatureCheck(
            REWRITTEN,
            f"{run_files.MANIFEST} was rewritten after it was signed: the signature in {run_files.SIGNATURE} "
            f"(key {signer}) does not hold for it",
            signer,
        )
    return SignatureCheck(OK, f"signature holds: {run_files.MANIFEST} signed by key {signer}", signer)


def generate_key_files(folder: Path) -> tuple[Path, Path]:
    """A new key pair in ``folder``: ``signing-key.pem`` (PKCS#8, mode 600) and ``signing-key.pub.pem``."""
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / "signing-key.pem", folder / "signing-key.pub.pem"
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private.touch(mode=0o600)
    private.write_bytes(pem)
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public
