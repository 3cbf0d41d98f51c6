"""The nginx maintenance switch: an include file the harness owns, on (503 and the page) or off.

Each switch writes the include atomically, checks the whole config with ``nginx -t`` and only
then reloads; a config nginx refuses is taken back at once, so the running config stays live.
"""

from __future__ import annotations

import time
from pathlib import Path

from rollback_harness.rollback.config import MaintenanceConfig
from rollback_harness.rollback.journal import StepHandle
from rollback_harness.rollback.traffic.commands import ProxyError
from rollback_harness.rollback.traffic.files import atomic_write, digest, read_text
from rollback_harness.rollback.traffic.nginx import Nginx
from rollback_harness.rollback.traffic.probe import Answer, get

MARK_ON = "# maintenance: on"
MARK_OFF = "# maintenance: off"


def include_text(on: bool, page: Path) -> str:
    """What the include holds: the page for every request with a 503, or nothing."""
    if not on:
        return f"{MARK_OFF} (written by pytest-rollback-harness; the harness owns this file)\n"
    return (
        f"{MARK_ON} (written by pytest-rollback-harness; the harness owns this file)\n"
        "error_page 503 @rollback_maintenance;\n"
        "location @rollback_maintenance {\n"
        f"    root {_nginx_string(str(page.parent))};\n"
        f"    try_files {_nginx_string('/' + page.name)} =503;\n"
        "}\n"
        "return 503;\n"
    )


def _nginx_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Maintenance:
    def __init__(self, settings: MaintenanceConfig, base_dir: Path) -> None:
        self.settings = settings
        self.include = base_dir / settings.include
        self.page = (base_dir / settings.page).resolve()
        self.nginx = Nginx(settings.nginx, base_dir / settings.nginx_config, settings.timeout)

    def problems(self) -> list[str]:
        """Why the switch cannot work here (preflight; changes nothing)."""
        found = []
        if self.nginx.program() is None:
            found.append(f"nginx program {self.settings.nginx!r} not found")
        if not self.nginx.config.is_file():
            found.append(f"nginx config {self.nginx.config} does not exist")
        if not self.page.is_file():
            found.append(f"maintenance page {self.page} does not exist")
        if not self.include.parent.is_dir():
            found.append(f"the include's folder {self.include.parent} does not exist")
        if found:
            return found
        try:
            self.nginx.check()
        except ProxyError as exc:
            found.append(str(exc))
        return found

    def is_on(self) -> bool:
        text = read_text(self.include)
        return text is not None and text.startswith(MARK_ON)

    def switch(self, on: bool, step: StepHandle) -> None:
        """Write the include, check, reload; on a refusal put the old include back (still live)."""
        wanted = include_text(on, self.page)
        old = read_text(self.include)
        step.detail.update(include=str(self.include), before=digest(old), after=digest(wanted))
        atomic_write(self.include, wanted)
        try:
            self.nginx.check()
            step.detail["reload"] = self.nginx.reload()
        except ProxyError as exc:
            self._put_back(old)
            raise ProxyError(f"{exc}; {self.include} was put back and the running config stays live") from None
        if self.settings.check_url:
            step.detail["check"] = self._wait_for(on)

    def shows(self, on: bool) -> str | None:
        """With a check URL: one probe that shows maintenance ``on`` (or off), in words; else None
        (without a check URL nothing can show it: the switch is done again, which is harmless)."""
        url = self.settings.check_url
        if url is None:
            return None
        answer = get(url, timeout=min(2.0, self.settings.timeout))
        if on and answer.status == 503 and self._page_text() in answer.body:
            return f"{url} answers {answer.describe()} with the maintenance page"
        if not on and answer.status is not None and answer.status != 503:
            return f"{url} answers {answer.describe()}"
        return None

    def _page_text(self) -> str:
        try:
            return self.page.read_text(encoding="utf-8").strip()
        except OSError:
            return "(the maintenance page cannot be read)"

    def _put_back(self, old: str | None) -> None:
        if old is None:
            self.include.unlink(missing_ok=True)
        else:
            atomic_write(self.include, old)

    def _wait_for(self, on: bool) -> str:
        """nginx reloads in the background: poll the check URL until it shows the new state."""
        url = self.settings.check_url
        assert url is not None
        deadline = time.monotonic() + self.settings.timeout
        answer = Answer(None, "", "not asked")
        while True:
            answer = get(url, timeout=min(2.0, max(0.05, deadline - time.monotonic())))
            if on and answer.status == 503 and self._page_text() in answer.body:
                return f"{url} answered {answer.describe()} with the maintenance page"
            if not on and answer.status is not None and answer.status != 503:
                return f"{url} answered {answer.describe()}"
            if time.monotonic() >= deadline:
                state = "on" if on else "off"
                raise ProxyError(
                    f"nginx reloaded but {url} still answered {answer.describe()} "
                    f"{self.settings.timeout:g} s later (expected maintenance {state}"
                    + (", with the page)" if on else ")")
                )
            time.sleep(0.05)
