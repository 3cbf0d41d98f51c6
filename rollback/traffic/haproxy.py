"""HAProxy: check a config with ``haproxy -c -f``, reload a master-worker process, and its runtime
API on the stats socket (``show stat``, ``set weight``), spoken to from Python with a deadline."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from .commands import ProxyError, ReloadNotApplied, alive, children, run

# The counters of `show stat` a timeline row carries for each server.
STAT_FIELDS = ("status", "weight", "scur", "stot", "hrsp_5xx")


def check_config(binary: str, config: Path, timeout: float) -> str:
    """``haproxy -c -f``: the output when valid, ProxyError with HAProxy's words when not."""
    code, output = run([binary, "-c", "-q", "-f", str(config)], timeout)
    if code != 0:
        raise ProxyError(f"haproxy -c -f {config} refused the config: {output or f'exit {code}'}")
    return output


def reload_master(pid_file: Path, timeout: float) -> str:
    """SIGUSR2 to the master of ``haproxy -W``, then wait until it runs a worker it did not run
    before: a master that cannot load the new config (a port it cannot bind) keeps the old
    workers, and that is a failed reload (ReloadNotApplied). Returns what happened, for the journal."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ProxyError(f"cannot read HAProxy's master pid from {pid_file}: {exc}") from None
    before = children(pid)
    try:
        os.kill(pid, signal.SIGUSR2)
    except OSError as exc:
        raise ProxyError(f"cannot signal HAProxy's master (pid {pid} from {pid_file}): {exc.strerror}") from None
    deadline = time.monotonic() + timeout
    while True:
        new = {worker for worker in children(pid) - before if alive(worker)}
        if new:
            return f"HAProxy's master (pid {pid}) reloaded: new worker {', '.join(map(str, sorted(new)))}"
        if time.monotonic() >= deadline:
            raise ReloadNotApplied(
                f"HAProxy's master (pid {pid}) started no worker with the new config within {timeout:g} s "
                "(it keeps serving with the old one; see HAProxy's log)"
            )
        time.sleep(0.02)


@dataclass(frozen=True)
class RuntimeAPI:
    """The stats socket (``stats socket PATH level admin`` in the global section)."""

    socket_path: Path
    timeout: float = 5.0

    def command(self, line: str) -> str:
        """Send one command, read the answer to the end; the whole exchange within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        chunks: list[bytes] = []
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("timed out")
                    sock.settimeout(left)
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise ProxyError(
                f"HAProxy's stats socket {self.socket_path} did not answer {line!r} within {self.timeout:g} s: {reason}"
            ) from None
        answer = b"".join(chunks).decode("utf-8", "replace").strip()
        lowered = answer.lower()
        if lowered.startswith(("no such", "unknown", "permission denied", "require", "invalid")):
            raise ProxyError(f"HAProxy refused {line!r}: {answer}")
        return answer

    def show_stat(self, backend: str) -> dict[str, dict[str, str]]:
        """``show stat``'s rows of ``backend``'s servers: server name -> counters."""
        text = self.command("show stat")
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            row["svname"]: dict(row)
            for row in rows
            if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")
        }

    def servers(self, backend: str) -> dict[str, tuple[str, int]]:
        """Each server of ``backend`` and the address it sends traffic to."""
        text = self.command(f"show servers state {backend}")
        found: dict[str, tuple[str, int]] = {}
        header: list[str] = []
        for line in text.splitlines():
            if line.startswith("# "):
                header = line[2:].split()
                continue
            parts = line.split()
            if not header or len(parts) < len(header) or not line.strip() or line.strip().isdigit():
                continue
            row = dict(zip(header, parts[: len(header)], strict=True))
            if row.get("be_name") == backend:
                found[row["srv_name"]] = (row["srv_addr"], int(row["srv_port"]))
        if not found:
            raise ProxyError(f"HAProxy has no backend {backend!r} with servers (show servers state {backend})")
        return found

    def weight(self, backend: str, server: str) -> tuple[int, int]:
        """(current, initial) weight: ``get weight`` answers ``"50 (initial 100)"``."""
        answer = self.command(f"get weight {backend}/{server}")
        try:
            current, _, rest = answer.partition(" (initial ")
            return int(current), int(rest.rstrip(")"))
        except ValueError:
            raise ProxyError(f"HAProxy answered {answer!r} to 'get weight {backend}/{server}'") from None

    def set_weight_percent(self, backend: str, server: str, percent: int) -> None:
        """``set weight backend/server N%`` (of the initial weight). HAProxy answers nothing on success."""
        answer = self.command(f"set weight {backend}/{server} {percent}%")
        if answer:
            raise ProxyError(f"HAProxy refused 'set weight {backend}/{server} {percent}%': {answer}")

    def counters(self, backend: str, servers: list[str]) -> dict[str, dict[str, str]]:
        """The proxy's own counters of ``servers`` (for the timeline)."""
        stats = self.show_stat(backend)
        return {name: {k: stats.get(name, {}).get(k, "") for k in STAT_FIELDS} for name in servers}
