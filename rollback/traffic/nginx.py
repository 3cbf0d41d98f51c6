"""nginx: check a config with ``nginx -t -c``, reload with ``nginx -s reload -c``."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rollback_harness.rollback.traffic.commands import ProxyError, run


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

    def reload(self) -> None:
        """Signal the master (found through the config's pid file) to load the config again."""
        code, output = run([self.binary, "-s", "reload", "-c", str(self.config)], self.timeout)
        if code != 0:
            raise ProxyError(f"nginx -s reload -c {self.config} failed: {output or f'exit {code}'}")

    def reload_command(self) -> str:
        return f"{self.binary} -s reload -c {self.config}"
