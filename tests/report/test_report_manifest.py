"""RELIABILITY 29: the manifest covers the whole evidence bundle, and ``sha256sum -c`` checks it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from deployments import Deployment, run_dir

from rollback_harness.rollback.evidence import verify_manifest

pytestmark = pytest.mark.integration


def sha256sum_check(folder: Path) -> subprocess.CompletedProcess[str]:
    sha256sum = shutil.which("sha256sum")
    assert sha256sum, "sha256sum (coreutils) is needed"
    return subprocess.run(
        [sha256sum, "--check", "--strict", "manifest.sha256"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_manifest_covers_the_bundle_and_sha256sum_checks_it(pytester: pytest.Pytester, demo: Deployment) -> None:
    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )
    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")

    listed = {}
    for line in (folder / "manifest.sha256").read_text().splitlines():
        digest, separator, name = line.partition("  ")
        assert separator and len(digest) == 64, f"not a sha256sum line: {line!r}"
        listed[name] = digest
    assert {"report.html", "evidence.json", "journal.jsonl"} <= set(listed)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(listed) == on_disk - {"manifest.sha256"}, "every file but the manifest is listed"

    checked = sha256sum_check(folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "report.html: OK" in checked.stdout and "journal.jsonl: OK" in checked.stdout

    report = folder / "report.html"
    report.write_text(report.read_text().replace("rolled back from v1.3.0 to v1.2.9", "no rollback was needed"))
    checked = sha256sum_check(folder)
    assert checked.returncode != 0
    assert "report.html: FAILED" in checked.stdout
    assert verify_manifest(folder) == ["report.html: changed"]
