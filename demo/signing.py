"""The demos' signing key: every platform's demo signs its evidence with it, so that
`rollback-harness verify RUN_DIR --key PUB` can be tried on each (docs/evidence.md).

The key pair is made on a demo's first run and kept for the next ones: the runs it signed still
verify with it. It is never in a report folder (a CI job may upload reports/).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

KEY = "signing-key.pem"
PUBLIC = "signing-key.pub.pem"


def saved_key(folder: Path) -> dict[str, bytes]:
    """The key pair kept in ``folder`` by an earlier run (empty when there is none)."""
    if not folder.is_dir():
        return {}
    return {path.name: path.read_bytes() for path in folder.glob("*.pem")}


def install_key(folder: Path, saved: dict[str, bytes]) -> Path:
    """The saved pair written back into ``folder``, or a new one made there; the public key's path."""
    from rollback_harness.rollback.signing import generate_key_files

    if {KEY, PUBLIC} <= set(saved):
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in saved.items():
            (folder / name).touch(mode=0o600)
            (folder / name).write_bytes(data)
        return folder / PUBLIC
    return generate_key_files(folder)[1]


def kept_key(folder: Path) -> Path:
    """The key pair in ``folder`` (a folder no demo clears), made there on the first run; its public key.

    Demos of several platforms may start at once: one makes the pair, the others use it.
    """
    from filelock import FileLock

    from rollback_harness.rollback.signing import generate_key_files

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock"), timeout=30):
        if (folder / KEY).is_file() and (folder / PUBLIC).is_file():
            return folder / PUBLIC
        return generate_key_files(folder)[1]


def signing_toml(key_file: str) -> str:
    """[reports.signing] naming ``key_file`` (relative to the config's folder, or absolute)."""
    return f"\n[reports.signing]\n# The demo's own key: it signs each run's manifest.\nkey_file = \"{key_file}\"\n"


def verify_command() -> str:
    """``rollback-harness``, by its path when it is in the demo's venv (often not on PATH)."""
    script = Path(sys.executable).parent / "rollback-harness"
    return str(script) if script.is_file() and shutil.which("rollback-harness") != str(script) else "rollback-harness"


def verify_line(report: Path, public: Path) -> str:
    """The line telling how to check the run's signed evidence."""
    return f"check the signed evidence: {verify_command()} verify {report.parent} --key {public}"


def report_lines(reports: Path, since: float, public: Path) -> list[str]:
    """Where the run's report is and how to check its signed evidence (a report newer than ``since``)."""
    found = [path for path in reports.glob("*/report.html") if path.stat().st_mtime >= since - 1.0]
    if not found:
        return [f"no new report.html under {reports} (see the pytest output above)"]
    report = max(found, key=lambda path: path.stat().st_mtime)
    return [f"report: {report}", verify_line(report, public)]
