"""nginx: check a config with ``nginx -t -c``, reload with ``nginx -s reload -c``.

``nginx -s reload`` only sends the master a signal: it exits 0 even when the master then cannot
apply the new config (a ``listen`` port held by another process, a file it cannot read) and keeps
running the old one. So a reload counts only when the master started new workers; a master that
logs an ``[emerg]`` or ``[alert]`` line and starts none has not taken it (ReloadNotApplied, with
nginx's own lines).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .commands import ProxyError, ReloadNotApplied, alive, children, run

# "2026/12/02 16:33:31 [emerg] 8951#8951: still could not bind()"
_LOG_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(emerg|alert)\] (\d+)#\d+: (.*)$")
# nginx retries a bind every 500 ms (5 times): this long after its last error line with no new
# worker, the master has given up on the new config.
_GIVE_UP_AFTER_ERROR = 1.5
MAX_LINES = 3


@dataclass(frozen=True)
class Nginx:
    binary: str
    config: Path  # the main config file the running master was started with
    timeout: float = 10.0

    def program(self) -> str | None:
        """The nginx program, resolved; None when it cannot be found."""
        return shutil.which(self.binary)

    def check(self, config: Path | None = None) -> str:
        """``nginx -t -c``; the output when the config is valid, ProxyError (with nginx's words) when not."""
        path = config or self.config
        code, output = run([self.binary, "-t", "-q", "-c", str(path)], self.timeout)
        if code != 0:
            raise ProxyError(f"nginx -t -c {path} refused the config: {output or f'exit {code}'}")
        return output

    def reload(self) -> str:
        """Signal the master (found through the config's pid file) to load the config again; wait
        until it started new workers (else ReloadNotApplied), then until the workers of the old
        config have exited: until then they may still answer with it. Returns what happened."""
        master = self._master_pid()
        if master is None:
            raise ProxyError(f"cannot find nginx's master: the pid file named in {self.config} cannot be read")
        old_workers = children(master)
        logs = ErrorLogs(master, self._error_log_paths(master))
        code, output = run([self.binary, "-s", "reload", "-c", str(self.config)], self.timeout)
        if code != 0:
            raise ProxyError(f"nginx -s reload -c {self.config} failed: {output or f'exit {code}'}")
        new_workers, errors = self._wait_for_new_workers(master, old_workers, logs)
        deadline = time.monotonic() + self.timeout
        while old_workers and time.monotonic() < deadline:
            old_workers = {pid for pid in old_workers if alive(pid)}
            if old_workers:
                time.sleep(0.02)
        words = f"reloaded: the master (pid {master}) started worker {', '.join(map(str, sorted(new_workers)))}"
        if errors:
            words += f" (after logging: {'; '.join(errors[-MAX_LINES:])})"
        if old_workers:
            return f"{words}; {len(old_workers)} worker(s) of the old config still finishing requests"
        return f"{words}; the old config's workers have exited"

    def _wait_for_new_workers(self, master: int, old: set[int], logs: ErrorLogs) -> tuple[set[int], list[str]]:
        deadline = time.monotonic() + self.timeout
        errors: list[str] = []
        last_error = 0.0
        while True:
            new = {pid for pid in children(master) - old if alive(pid)}
            if new:
                return new, errors
            fresh = logs.new_errors()
            now = time.monotonic()
            if fresh:
                errors += [line for line in fresh if line not in errors]
                last_error = now
            if not alive(master):
                raise ProxyError(f"nginx's master (pid {master}) exited during the reload: {self._said(errors)}")
            if (errors and now - last_error >= _GIVE_UP_AFTER_ERROR) or now >= deadline:
                raise ReloadNotApplied(
                    f"nginx did not apply {self.config}: its master (pid {master}) started no new worker "
                    f"{'and logged' if errors else f'within {self.timeout:g} s; it logged'} {self._said(errors)}; "
                    "it keeps running the config it had"
                )
            time.sleep(0.02)

    @staticmethod
    def _said(errors: list[str]) -> str:
        if not errors:
            return "no error (see its error log)"
        return "; ".join(f'"{line}"' for line in errors[-MAX_LINES:])

    def _master_pid(self) -> int | None:
        """The master's pid from the config's ``pid`` file, if the config names one we can read."""
        for words in _main_directives(self.config):
            if len(words) == 2 and words[0] == "pid":
                try:
                    return int(Path(words[1].strip("\"'")).read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    return None
        return None

    def _error_log_paths(self, master: int) -> set[Path]:
        """Where the master writes its errors: the files it holds open (Linux /proc, when we may
        look), and the ``error_log`` files the config names at its top level."""
        found: set[Path] = set()
        try:
            descriptors = os.listdir(f"/proc/{master}/fd")
        except OSError:
            descriptors = []
        for fd in descriptors:
            try:
                target = Path(os.readlink(f"/proc/{master}/fd/{fd}"))
            except OSError:
                continue
            if target.is_absolute() and target.is_file():
                found.add(target)
        for words in _main_directives(self.config):
            if len(words) >= 2 and words[0] == "error_log" and words[1].strip("\"'").startswith("/"):
                found.add(Path(words[1].strip("\"'")))
        return found

    def reload_command(self) -> str:
        return f"{self.binary} -s reload -c {self.config}"


def _main_directives(config: Path) -> list[list[str]]:
    """The directives of the config's main context (outside every block), each as its words."""
    try:
        text = config.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    found: list[list[str]] = []
    depth = 0
    for part in re.split(r"([;{}])", text):
        if part == "{":
            depth += 1
        elif part == "}":
            depth = max(0, depth - 1)
        elif part != ";" and depth == 0 and part.split():
            found.append(part.split())
    return found


class ErrorLogs:
    """nginx's error logs read from where they ended when made: the master's new emerg/alert lines."""

    def __init__(self, master: int, paths: set[Path]) -> None:
        self.master = master
        self.offsets = {path: _size(path) for path in paths}

    def new_errors(self) -> list[str]:
        found = []
        for path, offset in self.offsets.items():
            if _size(path) < offset:
                offset = 0  # rotated
            try:
                with path.open("rb") as handle:
                    handle.seek(offset)
                    data = handle.read(1024 * 1024)
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = offset + len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                matched = _LOG_LINE.match(line)
                if matched is not None and int(matched.group(2)) == self.master:
                    found.append(f"[{matched.group(1)}] {matched.group(3)}")
        return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
