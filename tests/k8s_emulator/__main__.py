"""The API emulator on its own, in the foreground: try the real kubectl and the harness against it.

From the checkout root (with the project's venv)::

    python -m tests.k8s_emulator --port 8443 --kubeconfig /tmp/emu.kubeconfig [--demo]

It listens on 127.0.0.1 (plain HTTP, no authentication: loopback only), writes a kubeconfig whose
current context ("emulator", namespace default) is this server, prints the kubectl line to try, and
runs until Ctrl-C or SIGTERM; then it stops its pods, removes the files it wrote and exits 0.

``--demo`` seeds the deployment of ``python -m demo --platform kubernetes`` (demo/kubernetes.py):
``web``, three pods that are real demo app processes, v1.2.9 (revision 1) then v1.3.0 (revision 2),
a Service URL over the ready pods, and a harness config beside the kubeconfig
(``<kubeconfig stem>.rollback.toml``) for ``pytest --rollback-to v1.2.9``. Without it the cluster
is empty and pods are records (no processes), as in most of tests/k8s.

The kubeconfig appears only once the server listens (and, with ``--demo``, the deployment has rolled
out), written whole (a rename), so a script may wait for the file and then use it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType

from .server import Emulator

MARK = "# written by python -m tests.k8s_emulator; removed when it stops\n"


class Stop(Exception):
    """Raised by the SIGINT / SIGTERM handler: unwinds whatever runs, then the emulator stops."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.k8s_emulator",
        description="Run the project's Kubernetes API emulator in the foreground on 127.0.0.1 (Ctrl-C stops it).",
    )
    parser.add_argument("--port", type=int, default=8443, help="loopback port to listen on; 0: any free port")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path("emulator.kubeconfig"),
        help="where to write the kubeconfig for kubectl (default: ./emulator.kubeconfig)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="seed the demo deployment 'web' (real demo app pods, v1.2.9 then v1.3.0) and a harness config",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected 0..65535")
    return args


def write_whole(path: Path, text: str) -> None:
    """Written to a temporary name, then renamed: a reader sees no file or all of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def ours_or_absent(path: Path) -> bool:
    """True when ``path`` does not exist or is a file an earlier run wrote (never clobber a real kubeconfig)."""
    try:
        with path.open() as file:
            return file.readline() == MARK
    except FileNotFoundError:
        return True
    except (OSError, UnicodeDecodeError):
        return False


def seed_demo(emulator: Emulator) -> str:
    """The deployment of ``python -m demo --platform kubernetes``, rolled out; returns its Service URL."""
    from demo.deployment import DEFAULT_RELEASES
    from demo.kubernetes import ROLLOUT_TIMEOUT, TARGET, manifest, rolled_out, set_image

    assert emulator.pod_processes is not None
    emulator.pod_processes.releases = {r.version: r.to_json() for r in DEFAULT_RELEASES}
    emulator.create("deployments", manifest(TARGET))
    emulator.wait_for(lambda: rolled_out(emulator), ROLLOUT_TIMEOUT)
    set_image(emulator.url, "v1.3.0")
    emulator.wait_for(lambda: rolled_out(emulator), ROLLOUT_TIMEOUT)
    return emulator.service({"app": "web"})


def main(argv: list[str] | None = None) -> int:
    from demo.kubernetes import TARGET, kubeconfig_text, rollback_toml

    args = parse_args(argv)
    kubeconfig: Path = args.kubeconfig.absolute()
    harness_config = kubeconfig.with_name(f"{kubeconfig.stem}.rollback.toml")
    for path in [kubeconfig, harness_config] if args.demo else [kubeconfig]:
        if not ours_or_absent(path):
            print(f"{path} exists and was not written by this emulator: not overwriting it", file=sys.stderr)
            return 2
    if not kubeconfig.parent.is_dir():
        print(f"--kubeconfig {kubeconfig}: the folder {kubeconfig.parent} does not exist", file=sys.stderr)
        return 2

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(real_pods=args.demo, port=args.port)
    written: list[Path] = []
    try:
        try:
            emulator.start()
        except OSError as exc:
            print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
            return 1
        service_url = None
        if args.demo:
            print("seeding the demo deployment web (v1.2.9, then v1.3.0; real demo app pods)...", flush=True)
            try:
                service_url = seed_demo(emulator)
            except (OSError, TimeoutError) as exc:
                print(f"the demo deployment did not roll out on the emulator: {exc}", file=sys.stderr)
                return 1
            written.append(harness_config)
            write_whole(harness_config, MARK + rollback_toml(service_url, kubeconfig))
        written.append(kubeconfig)
        write_whole(kubeconfig, MARK + kubeconfig_text(emulator.url))

        shown = shlex.quote(str(kubeconfig))
        print(f"Kubernetes API emulator at {emulator.url} (Ctrl-C stops it)")
        print(f"kubeconfig: {kubeconfig} (context 'emulator', namespace default)")
        print("try:")
        print(f"  KUBECONFIG={shown} kubectl get deployments")
        if service_url is not None:
            print(f"  curl {service_url}/version        # the Service over web's ready pods (v1.3.0, the bad one)")
            print(f"harness config: {harness_config}")
            config = shlex.quote(str(harness_config))
            print(f'  cd "$(mktemp -d)" && pytest -p no:cacheprovider --rollback-config {config}', end="")
            print(f" --rollback-to {TARGET} --rollback-yes")
        sys.stdout.flush()
        while True:
            signal.pause()
    except Stop as stop:
        print(f"{stop}: stopping", flush=True)
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second Ctrl-C does not cut the clean-up short
        emulator.stop()
        for path in written:
            path.unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)
    print("stopped the emulator" + (" and its pods" if args.demo else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
