"""nginx: check a config with ``nginx -t -c``, reload with ``nginx -s reload -c``."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rollback_harness.rollback.traffic.commands import ProxyError, alive, children, run


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
        """Signal the master (found through the config's pid file) to load the config again, then
        wait until the workers of the old config have exited: until then they may still accept
        connections and answer with the old config. Returns what happened, for the journal."""
        master = self._master_pid()
        old_workers = children(master) if master is not None else set()
        code, output = run([self.binary, "-s", "reload", "-c", str(self.config)], self.timeout)
        if code != 0:
            raise ProxyError(f"nginx -s reload -c {self.config} failed: {output or f'exit {code}'}")
        deadline = time.monotonic() + self.timeout
        while old_workers and time.monotonic() < deadline:
            old_workers = {pid for pid in old_workers if alive(pid)}
            if old_workers:
                time.sleep(0.02)
        if old_workers:
            return f"reloaded; {len(old_workers)} worker(s) of the old config still finishing requests"
        return "reloaded; the old config's workers have exited"

    def _master_pid(self) -> int | None:
        """The master's pid from the config's ``pid`` file, if the config names one we can read."""
        for line in self.config.read_text(encoding="utf-8", errors="replace").splitlines():
            words = line.split("#", 1)[0].strip().rstrip(";").split()
            if len(words) == 2 and words[0] == "pid":
                try:
                    return int(Path(words[1].strip("\"'")).read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    return None
        return None

    def reload_command(self) -> str:
        return f"{self.binary} -s reload -c {self.config}"
