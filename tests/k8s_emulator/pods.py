"""Real pod processes: each running container is the demo app at its image's version on its own port.

``PodProcesses`` is what the controller asks when ``Emulator(real_pods=True)``: ``observe(uid, image)``
starts the container's process the first time (``python <release>/app.py --port N`` on a free loopback
port, the release folder holding demo/app.py and a release.json naming the image tag), marks it ready
once it answers ``GET /health`` with 2xx/3xx (a readiness probe: polled, with a startup deadline after
which the process is killed and restarted), and restarts it with a back-off when it exits (the
restart count rises: CrashLoopBackOff). An image in ``crashing`` starts with an environment the app
refuses (it exits 1 at once), so a crash loop is a real process that really exits.

``forget(uid)`` (pod deleted) and ``stop()`` (emulator stopped) terminate processes and reap them:
nothing outlives the emulator.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP_SOURCE = Path(__file__).resolve().parents[2] / "demo" / "app.py"
STARTUP_TIMEOUT = 20.0  # seconds a started process has to answer its readiness probe
PROBE_EVERY = 0.05  # seconds between readiness probes while a process starts
BACKOFF = 0.5  # seconds between an exit and the next start (the kubelet's back-off, shortened)
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def image_tag(image: str) -> str:
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Container:
    """One pod's container process and what the kubelet knows of it."""

    key: str  # "<pod uid>-<container name>": its log file's name
    image: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    ready: bool = False
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0  # time.time() of the current process's start
    next_start: float = 0.0  # time.monotonic() before which no new start happens (back-off)
    pids: list[int] = field(default_factory=list)  # every process ever started for this container


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after STOP_GRACE; always reaped."""
    if process.poll() is None:
        try:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            process.kill()
        except ProcessLookupError:
            pass
    process.wait()


class PodProcesses:
    def __init__(self, notify: Any = None) -> None:
        self.crashing: set[str] = set()  # images whose process exits at once
        # Version -> release.json fields (delay_ms, failing_paths, health_status) for that version.
        self.releases: dict[str, dict[str, Any]] = {}
        self.containers: dict[tuple[str, str], Container] = {}  # (pod uid, container name)
        self._lock = threading.RLock()
        self._notify = notify or (lambda: None)
        self._root = Path(tempfile.mkdtemp(prefix="k8s-emulator-pods-"))
        self._stopped = False
        self._stoppers: list[threading.Thread] = []

    # --- what the controller calls (with the store locked: nothing here blocks) ------------------

    def observe(self, uid: str, name: str, image: str) -> Container:
        """The state of pod ``uid``'s container ``name`` now; starts or restarts its process when due."""
        with self._lock:
            box = self.containers.get((uid, name))
            if box is None or box.image != image:
                if box is not None and box.process is not None:
                    self._stop_in_background(box.process)
                box = self.containers[(uid, name)] = Container(f"{uid}-{name}", image)
            if self._stopped:
                return box
            if box.process is not None and box.process.poll() is not None:
                box.last_exit = box.process.returncode
                box.process = None
                box.ready = False
                box.restarts += 1
                box.next_start = time.monotonic() + BACKOFF
            if box.process is None and time.monotonic() >= box.next_start:
                self._start(box)
            return box

    def forget(self, uid: str) -> None:
        """The pod is gone: its process is terminated (in the background) and reaped."""
        with self._lock:
            boxes = [self.containers.pop(key) for key in list(self.containers) if key[0] == uid]
        for box in boxes:
            if box.process is not None:
                self._stop_in_background(box.process)

    def forget_all_but(self, uids: set[str]) -> None:
        with self._lock:
            gone = {key[0] for key in self.containers if key[0] not in uids}
        for uid in gone:
            self.forget(uid)

    def port_of(self, uid: str) -> int | None:
        """The port of the pod's first ready container (the one the Service targets), if any."""
        with self._lock:
            for (owner, _), box in self.containers.items():
                if owner == uid and box.ready:
                    return box.port
            return None

    def all_pids(self) -> list[int]:
        with self._lock:
            return [pid for box in self.containers.values() for pid in box.pids]

    def stop(self) -> None:
        """Every process terminated and reaped; the release folders removed."""
        with self._lock:
            self._stopped = True
            boxes = list(self.containers.values())
            self.containers.clear()
        for box in boxes:
            if box.process is not None:
                self._stop_in_background(box.process)
        for thread in list(self._stoppers):
            thread.join()
        shutil.rmtree(self._root, ignore_errors=True)

    # --- inside ---------------------------------------------------------------------------------

    def _release_folder(self, version: str) -> Path:
        folder = self._root / "releases" / version
        if not (folder / "app.py").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(APP_SOURCE, folder / "app.py")
            release = {"version": version, **self.releases.get(version, {})}
            (folder / "release.json").write_text(json.dumps(release), encoding="utf-8")
        return folder

    def _start(self, box: Container) -> None:
        folder = self._release_folder(image_tag(box.image))
        env = {k: v for k, v in os.environ.items() if k != "DEMO_DELAY_MS"}
        if box.image in self.crashing:
            env["DEMO_DELAY_MS"] = "not-a-number"  # the app exits 1 at start: a version that crashes
        box.port = free_port()
        log = open(self._root / f"{box.key}.log", "ab")
        try:
            box.process = subprocess.Popen(
                [sys.executable, str(folder / "app.py"), "--host", "127.0.0.1", "--port", str(box.port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        box.pids.append(box.process.pid)
        box.started_at = time.time()
        box.ready = False
        threading.Thread(target=self._probe, args=(box, box.process), daemon=True).start()

    def _probe(self, box: Container, process: subprocess.Popen[bytes]) -> None:
        """Readiness: GET /health until it answers 2xx/3xx, the process exits, or the startup deadline."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None or self._stopped:
                self._notify()
                return
            try:
                connection = http.client.HTTPConnection("127.0.0.1", box.port, timeout=2.0)
                connection.request("GET", "/health")
                status = connection.getresponse().status
                connection.close()
            except OSError:
                status = 0
            if 200 <= status < 400:
                with self._lock:
                    if box.process is process:
                        box.ready = True
                self._notify()
                return
            time.sleep(PROBE_EVERY)  # the next probe (a poll interval, bounded by the deadline)
        process.kill()  # never answered: the kubelet kills it; observe() counts the restart
        process.wait()
        self._notify()

    def _stop_in_background(self, process: subprocess.Popen[bytes]) -> None:
        thread = threading.Thread(target=_stop_process, args=(process,), daemon=True)
        thread.start()
        with self._lock:
            self._stoppers = [t for t in self._stoppers if t.is_alive()] + [thread]
