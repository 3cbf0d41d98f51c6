"""`python -m demo` (what `make demo` runs): a bad v1.3.0 goes live, then `pytest --rollback-to v1.2.9`.

`python -m demo --stop` stops a running demo. `python -m demo --platform kubernetes` runs the same story
on the project's Kubernetes API emulator (demo/kubernetes.py) and stops it at the end.
Environment: DEMO_DIR (default .demo/ in the project),
DEMO_PORT (default 8080 when free, else any free port), DEMO_REPORT_DIR (default reports/).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from demo import signing
from demo.deployment import (
    EXAMPLE_DATABASE_GATE,
    EXAMPLE_GATES,
    LAYOUT_FILE,
    DemoLayout,
    free_port,
    is_running,
    lay_out,
    linked_version,
    live_version,
    load_layout,
    port_is_free,
    start,
    stop,
)
from rollback_harness.plugins.exit_codes import MEANINGS as EXIT_MEANINGS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 8080
TARGET = "v1.2.9"
SIGNING_FOLDER = "signing"  # in the demo folder: the key that signs the demo's evidence (docs/evidence.md)


def demo_dir() -> Path:
    return Path(os.environ.get("DEMO_DIR") or PROJECT_ROOT / ".demo").absolute()


def demo_port() -> int:
    if os.environ.get("DEMO_PORT"):
        return int(os.environ["DEMO_PORT"])
    return DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()


def report_dir() -> Path:
    return Path(os.environ.get("DEMO_REPORT_DIR") or PROJECT_ROOT / "reports").absolute()


def stop_existing(root: Path) -> bool:
    """Stop the demo recorded in root, if any; True when one was running."""
    if not (root / LAYOUT_FILE).is_file():
        return False
    layout = load_layout(root)
    running = is_running(layout)
    stop(layout)
    return running


def clear_folder(root: Path) -> None:
    """Remove a previous demo folder; refuse to delete anything that is not one."""
    if not root.exists():
        return
    if root.is_dir() and not any(root.iterdir()):
        return
    if not (root / LAYOUT_FILE).is_file():
        raise SystemExit(
            f"{root} exists and is not a demo folder (no {LAYOUT_FILE}); remove it or point DEMO_DIR elsewhere"
        )
    shutil.rmtree(root)


def saved_signing_key(root: Path) -> dict[str, bytes]:
    """The demo's signing key pair from an earlier run: kept, so the runs it signed still verify with it."""
    if not (root / LAYOUT_FILE).is_file():
        return {}
    return signing.saved_key(root / SIGNING_FOLDER)


def configure_signing(layout: DemoLayout, saved: dict[str, bytes]) -> Path:
    """[reports.signing] with the demo's own Ed25519 key, made on the first run; the public key's path."""
    public = signing.install_key(layout.root / SIGNING_FOLDER, saved)
    with layout.config_path.open("a", encoding="utf-8") as config:
        config.write(signing.signing_toml(f"{SIGNING_FOLDER}/{signing.KEY}"))
    return public


def platform_key_folder() -> Path:
    """Where the other platforms' demos keep their signing key: beside the demo folders, never cleared."""
    return demo_dir().with_name(".demo-signing")


def newest_report(report_dir: Path) -> Path | None:
    reports = [p for p in report_dir.glob("*/report.html") if p.is_file()]
    reports += [p for p in report_dir.glob("report.html") if p.is_file()]
    return max(reports, key=lambda p: p.stat().st_mtime, default=None)


def newest_report_since(report_dir: Path, since: float) -> Path | None:
    report = newest_report(report_dir)
    return report if report is not None and report.stat().st_mtime >= since else None


def describe_live(layout: DemoLayout) -> str:
    try:
        answer = live_version(layout)
    except OSError as exc:
        answer = f"nothing answering ({exc})"
    try:
        linked = f"releases/{linked_version(layout)}"
    except OSError as exc:
        linked = f"unreadable ({exc})"
    return f"{answer} at {layout.base_url} (current -> {linked})"


def run_demo(pytest_args: list[str] | None = None) -> int:
    root = demo_dir()
    if stop_existing(root):
        print(f"stopped the previous demo in {root}")
    saved_key = saved_signing_key(root)
    clear_folder(root)
    port = demo_port()
    layout = lay_out(root, port=port, migrations=True)
    public_key = configure_signing(layout, saved_key)
    # Its own pytest.ini makes the demo folder pytest's rootdir, whatever surrounds it.
    (root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
    (root / "test_demo_gates.py").write_text(EXAMPLE_GATES + EXAMPLE_DATABASE_GATE)
    try:
        start(layout)
    except RuntimeError as exc:
        stop(layout)
        print(f"the demo did not start: {exc}", file=sys.stderr)
        return 1
    print(f"demo is serving {live_version(layout)} at {layout.base_url}")
    print("  v1.3.0 is bad: every page takes ~400 ms and /api/orders answers 500")
    print("  v1.3.0 also migrated demo.db (orders.note, a coupons table): the rollback backs it up, then downgrades it")
    print(f"  deployment in {root}, harness config {layout.config_path}")
    print(f"rolling back with: pytest --rollback-to {TARGET} --rollback-yes --allow-data-loss", flush=True)

    reports = report_dir()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--rollback-config={layout.config_path}",
        "--rollback-to",
        TARGET,
        "--rollback-yes",
        # The downgrade drops v1.3.0's new column and table (empty in the demo); the backup keeps them.
        "--allow-data-loss",
        f"--report-dir={reports}",
        "--rootdir",
        str(layout.root),
        # e.g. --severity critical --data-impact none --time-to-fix 2h --incident-id INC-1
        *(pytest_args or []),
        str(layout.root),
    ]
    started = time.time()
    code = subprocess.run(command, cwd=layout.root, check=False).returncode

    print()
    print(f"pytest exited {code}: {EXIT_MEANINGS.get(code, 'see the report')}")
    print(f"live now: {describe_live(layout)}")
    report = newest_report_since(reports, started - 1.0)
    if report is not None:
        print(f"report: {report}")
        print(signing.verify_line(report, public_key))
    else:
        print(f"no new report.html under {reports} (see the pytest output above)")
    print("stop the demo with: make demo-stop")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--stop", action="store_true", help="stop the running demo")
    parser.add_argument(
        "--platform",
        choices=("symlink", "swarm", "kubernetes", "bluegreen-nginx", "bluegreen-haproxy", "aws"),
        default="symlink",
        help="symlink: releases under supervisord (default); swarm: a 3-replica Docker Swarm service; "
        "kubernetes: a deployment on the API emulator; bluegreen-nginx / bluegreen-haproxy: two colours "
        "behind a real nginx (maintenance window) or HAProxy (gradual drain); aws: the symlink demo behind an "
        "AWS target group and CloudFront, on moto's emulator",
    )
    args, pytest_args = parser.parse_known_args(argv)
    if pytest_args and (args.platform != "symlink" or args.stop):
        parser.error(f"unrecognized arguments: {' '.join(pytest_args)} (the symlink demo passes harness options on)")
    if args.platform == "swarm":
        from demo import swarm

        if args.stop:
            service = swarm.stop(demo_dir().with_name(".demo-swarm"))
            print(f"swarm service {service} and its images removed")
            return 0
        return swarm.run(demo_dir().with_name(".demo-swarm"), demo_port(), report_dir(), platform_key_folder())
    if args.platform.startswith("bluegreen-"):
        if args.stop:
            parser.error("--stop applies to the symlink and swarm demos: the bluegreen demos stop what they started")
        from demo import bluegreen

        proxy = args.platform.removeprefix("bluegreen-")
        return bluegreen.run(proxy, demo_dir().with_name(f".demo-{args.platform}"), report_dir(), platform_key_folder())
    if args.platform == "aws":
        if args.stop:
            parser.error("--stop applies to the symlink and swarm demos: the aws demo stops what it started")
        from demo import aws

        return aws.run(demo_dir().with_name(".demo-aws"), demo_port(), report_dir(), platform_key_folder())
    if args.platform == "kubernetes":
        if args.stop:
            parser.error("--stop applies to the symlink and swarm demos: the kubernetes demo stops what it started")
        from demo.kubernetes import run_kubernetes_demo

        return run_kubernetes_demo(report_dir(), platform_key_folder())
    if args.stop:
        root = demo_dir()
        print(f"demo in {root} stopped" if stop_existing(root) else f"no demo running in {root}")
        return 0
    return run_demo(pytest_args)


if __name__ == "__main__":
    sys.exit(main())
