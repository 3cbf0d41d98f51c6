"""Evidence files: secret redaction, JSON writing and the SHA-256 manifest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from . import run_files

REDACTED = "***"
MANIFEST_NAME = run_files.MANIFEST
SCHEMA_NAME = "evidence.schema.json"
# Each pattern runs in time linear in the text it reads (a 1 MB report line in well under a second):
# a match can start only at a fixed word ("://", "authorization"), every repeat stops at a character
# it cannot take, and no two repeats can take the same characters one after the other (``(?!\s)``
# makes the spaces after the colon all taken at once), so a failed start gives back what it read one
# character at a time, never reading it again. The patterns before started at every letter of a
# run, or had two ``\s*`` side by side: quadratic, 8 s for 100 KB.
# user:password@ after "scheme://" (the scheme's last character is right before "://").
_URL_PASSWORD = re.compile(r"(?<=[A-Za-z0-9+.-])(?P<head>://[^/\s:@]*:)[^@\s/]+@")
# "Authorization: Bearer x", and the same header inside a dict's repr or JSON ('Authorization': 'x').
_AUTH_HEADER = re.compile(
    r"(?P<head>(?i:authorization)['\"]?\s*[:=]\s*(?!\s)['\"]?)(?i:bearer|basic|token)?\s*[^\s'\",}]+"
)
_AUTH_KEY = re.compile(r"(?i)^(proxy-)?authorization$")


class Redactor:
    """Removes secret values, in plain and encoded forms, from anything written out."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """More secrets, known after the config was read (a signing key): removed from then on."""
        forms: set[str] = set(self._forms)
        for secret in secrets:
            if len(secret) < 4:
                # Too short to replace without mangling ordinary text.
                continue
            forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
            forms.add(base64.b64encode(secret.encode()).decode())
            forms.add(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="))
        # Longest first, so a secret that contains another is replaced whole.
        self._forms = sorted((f for f in forms if f), key=len, reverse=True)
        # Every known secret in one alternation of literals: one pass over the text, however many.
        known = re.compile("|".join(re.escape(form) for form in self._forms)) if self._forms else None
        self.patterns: tuple[re.Pattern[str], ...] = (*((known,) if known else ()), _URL_PASSWORD, _AUTH_HEADER)

    def text(self, value: str) -> str:
        """``value`` with every secret replaced: one pass per pattern in ``patterns``, in order."""
        for pattern in self.patterns:
            value = pattern.sub(_replacement, value)
        return value

    def data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                self.text(str(k)): REDACTED if _AUTH_KEY.match(str(k)) and v else self.data(v) for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value


def _replacement(match: re.Match[str]) -> str:
    """What a match becomes: the words around a secret that are not secret (``://user:``), then ``***``."""
    head = match.groupdict().get("head") or ""
    return head + REDACTED + ("@" if match.re is _URL_PASSWORD else "")


@cache
def evidence_schema() -> dict[str, Any]:
    """The JSON Schema of evidence.json, shipped in the package (docs/evidence.schema.json is a copy)."""
    schema: dict[str, Any] = json.loads(resources.files(__package__).joinpath(SCHEMA_NAME).read_text("utf-8"))
    return schema


def write_json(path: Path, data: Any, redactor: Redactor) -> Path:
    """Write redacted JSON atomically (temporary file + rename).

    On any failure (a full disk, a read-only file system, Ctrl-C) the temporary file is removed
    and the exception goes on: ``path`` then holds its old content, or does not exist.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(redactor.data(data), indent=2, sort_keys=False, default=str) + "\n"
    _write_atomically(path, text)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` atomically (temporary file + rename); the caller redacts it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, text)
    return path


def write_manifest(run_dir: Path) -> Path | None:
    """``sha256sum``-compatible manifest of every file in ``run_dir`` (``sha256sum -c`` checks it).

    Written atomically, so a full disk or Ctrl-C never leaves a cut or empty manifest; a folder
    holding no file gets none (None is returned). The signature written after it is not listed.
    """
    lines = []
    unlisted = (run_dir / MANIFEST_NAME, _temporary(run_dir / MANIFEST_NAME), run_dir / run_files.SIGNATURE)
    for path in sorted(p for p in run_dir.rglob("*") if p.is_file() and p not in unlisted):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(run_dir).as_posix()}")
    if not lines:
        return None
    manifest = run_dir / MANIFEST_NAME
    _write_atomically(manifest, "\n".join(lines) + "\n")
    return manifest


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_atomically(path: Path, text: str) -> None:
    temporary = _temporary(path)
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        # Never leave half a file behind, whatever stopped the write.
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def verify_manifest(run_dir: Path) -> list[str]:
    """Files whose content no longer matches the manifest, or that were added or removed."""
    manifest = run_dir / MANIFEST_NAME
    if not manifest.is_file():
        return [f"{MANIFEST_NAME}: missing"]
    expected = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        expected[name] = digest
    problems = []
    present = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}
    present.difference_update({MANIFEST_NAME, run_files.SIGNATURE})  # the signature is written after the manifest
    for name, digest in sorted(expected.items()):
        path = run_dir / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{name}: changed")
    problems.extend(f"{name}: added" for name in sorted(present - set(expected)))
    return problems
