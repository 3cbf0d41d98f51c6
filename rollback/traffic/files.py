"""Writing proxy files so that a reader (or a crash) sees the old file or the new one, never half."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def temporary_beside(path: Path) -> Path:
    """A temporary name in ``path``'s folder (same file system: the rename is atomic)."""
    return path.with_name(f".{path.name}.rollback-{os.getpid()}")


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, rename it over ``path``."""
    temporary = temporary_beside(path)
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.chmod(temporary, path.stat().st_mode & 0o7777)
    os.replace(temporary, path)


def digest(text: str | None) -> str:
    """A short fingerprint of a file's text, for the journal and conflict tokens."""
    if text is None:
        return "missing"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
