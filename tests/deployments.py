"""Real demo deployments (app processes under supervisord) in temp folders, and evidence readers.

A module of its own, not conftest.py: test files import from it, and several conftest.py files
would share one module name."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from demo import deployment
from demo.deployment import DemoLayout, Release

COUNTER = Path(__file__).parent / "helpers" / "count_and_run.py"


class Deployment:
    """A running demo deployment plus helpers to rewrite its harness config."""

    def __init__(self, layout: DemoLayout) -> None:
        self.layout = layout
        self.restart_log = layout.root / "restarts.log"

    @property
    def config_path(self) -> Path:
        return self.layout.config_path

    def linked_version(self) -> str:
        return deployment.linked_version(self.layout)

    def live_version(self) -> str:
        return deployment.live_version(self.layout)

    def restarts(self) -> int:
        """How many times the harness ran the restart command."""
        if not self.restart_log.exists():
            return 0
        return len(self.restart_log.read_text().splitlines())

    def served(self, until: str, timeout: float = 10.0) -> str:
        """The app's access log once it shows ``until``; supervisord writes it with a lag."""
        deadline = time.monotonic() + timeout
        while until not in (text := self.layout.app_log.read_text()):
            assert time.monotonic() < deadline, f"{until!r} never reached {self.layout.app_log}"
            time.sleep(0.05)
        return text

    def config(self) -> dict[str, Any]:
        return tomllib.loads(self.config_path.read_text())

    def write_config(self, data: dict[str, Any]) -> Path:
        self.config_path.write_text(tomli_w.dumps(data))
        return self.config_path

    def harness_args(self, report_dir: Path, *extra: str) -> list[str]:
        """pytest arguments for a harness run against this deployment, reports in report_dir."""
        return [
            "-p",
            "no:cacheprovider",
            f"--rollback-config={self.config_path}",
            f"--report-dir={report_dir}",
            *extra,
        ]

    def update_config(self, **sections: Any) -> Path:
        data = self.config()
        data.update(sections)
        return self.write_config(data)


def make_deployment(
    root: Path, releases: tuple[Release, ...] = deployment.DEFAULT_RELEASES, **kwargs: Any
) -> Deployment:
    layout = deployment.lay_out(root, releases=releases, **kwargs)
    result = Deployment(layout)
    # Count restarts by wrapping the real restart command.
    data = result.config()
    target = data["targets"]["app"]
    target["restart"] = [sys.executable, str(COUNTER), str(result.restart_log), *target["restart"]]
    # On a loaded 2-core test machine a few samples of a good release stall past the demo's 250 ms
    # p95 (seen: 4 of 80 over, inconclusive at the default budget of 80). More samples let the
    # bound be decided as it would be on a quiet machine; a release that fails it is still decided
    # in its first round.
    for latency in data.get("latency", []):
        latency.setdefault("max_samples", 300)
    result.write_config(data)
    return result


def read_evidence(report_dir: Path) -> dict[str, Any]:
    """The evidence.json of the only run folder under report_dir."""
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, f"expected one run folder in {report_dir}, found {runs}"
    return json.loads((runs[0] / "evidence.json").read_text())


def run_dir(report_dir: Path) -> Path:
    runs = [p for p in report_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


SIGNED_EVIDENCE_LINE = re.compile(r"^check the signed evidence: (.+) verify (\S+) --key (\S+)$", re.M)


def assert_the_demo_signed(out: str) -> None:
    """A demo's output ends with the command that checks its run's signed evidence, and it passes."""
    found = SIGNED_EVIDENCE_LINE.search(out)
    assert found is not None, out
    report = re.search(r"^report: (\S+)/report\.html$", out, re.M)
    assert report is not None and found.group(2) == report.group(1), out  # the run just reported
    checked = subprocess.run(
        [*shlex.split(found.group(1)), "verify", found.group(2), "--key", found.group(3)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "the key you gave" in checked.stdout
