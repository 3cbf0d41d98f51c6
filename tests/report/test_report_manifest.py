"""RELIABILITY 29: the manifest covers the whole evidence bundle, and ``sha256sum -c`` checks it."""

from __future__ import annotations

import json
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


LATE_WRITER = """
from pathlib import Path

import pytest


def _run_folder(config):
    [folder] = [p for p in Path(config.option.rollback_report_dir).iterdir() if p.is_dir()]
    return folder


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        (_run_folder(session.config) / "notes").mkdir(exist_ok=True)
        (_run_folder(session.config) / "notes" / "handover.md").write_text("paged the DBA\\n")


def pytest_terminal_summary(config):
    (_run_folder(config) / "summary-copy.txt").write_text("written while the summary printed\\n")


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        (_run_folder(config) / "uploaded.txt").write_text("the CI upload step's receipt\\n")
"""


def test_files_added_by_other_plugins_late_are_listed_too(pytester: pytest.Pytester, demo: Deployment) -> None:
    pytester.makeconftest(LATE_WRITER)
    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", "-n", "2")
    )
    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")

    listed = [line.partition("  ")[2] for line in (folder / "manifest.sha256").read_text().splitlines()]
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert listed == [name for name in on_disk if name != "manifest.sha256"]
    assert {
        "evidence.json",
        "journal.jsonl",
        "junit.xml",
        "report.html",
        "notes/handover.md",
        "summary-copy.txt",
    } <= set(listed)
    checked = sha256sum_check(folder)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert verify_manifest(folder) == []


GATE_RUNS = {
    "preflight": (("--gate=preflight", "--rollback-to=v1.2.9"), 0),
    "verify": (("--gate=verify", "--expect-version=v1.3.0"), 13),  # the demo's v1.3.0 fails verify
}


@pytest.mark.parametrize("gate", sorted(GATE_RUNS))
def test_evidence_lists_only_artifacts_that_exist(pytester: pytest.Pytester, demo: Deployment, gate: str) -> None:
    args, code = GATE_RUNS[gate]
    result = pytester.runpytest(*demo.harness_args(pytester.path / "reports", *args, "--incident-id=INC-5"))
    assert result.ret == code, result.stdout.str()
    folder = run_dir(pytester.path / "reports")

    artifacts = json.loads((folder / "evidence.json").read_text())["artifacts"]
    assert artifacts["incident"] == "incident.md" and artifacts["manifest"] == "manifest.sha256"
    missing = [name for name in artifacts.values() if name is not None and not (folder / name).is_file()]
    assert missing == [], f"listed but not written: {missing}"
