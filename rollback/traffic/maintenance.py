"""The nginx maintenance switch: an include file the harness owns, on (503 and the page) or off.

Each switch writes the include atomically, checks the whole config with ``nginx -t`` and only
then reloads; a config nginx refuses, or a reload nginx does not apply, is taken back at once
(reloaded again in the second case), so the running config stays live. Switching on saves the
include as it was before the run beside it; switching off puts that text back.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import MaintenanceConfig
from ..journal import StepHandle
from .commands import ProxyError, ReloadNotApplied
from .files import atomic_write, digest, read_text
from .nginx import Nginx
from .probe import Answer, get

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
        return self._is_on(read_text(self.include))

    @property
    def saved(self) -> Path:
        """The include as it was before the run, saved when maintenance went on."""
        return self.include.with_name(f".{self.include.name}.before-rollback")

    def _off_text(self) -> str:
        """The include from before the run (when saved and not itself on), else the harness's off text."""
        before = read_text(self.saved)
        if before is None or before.startswith(MARK_ON):
            return include_text(False, self.page)
        return before

    def switch(self, on: bool, step: StepHandle) -> None:
        """Write the include, check, reload; on a refusal, or a reload nginx did not apply, put the
        old include back (and reload it again in the second case): the running config stays live."""
        wanted = include_text(True, self.page) if on else self._off_text()
        old = read_text(self.include)
        if on and not self.saved.exists() and old is not None and not old.startswith(MARK_ON):
            atomic_write(self.saved, old)
        step.detail.update(include=str(self.include), before=digest(old), after=digest(wanted))
        atomic_write(self.include, wanted)
        try:
            self.nginx.check()
            step.detail["reload"] = self.nginx.reload()
        except ReloadNotApplied as exc:
            self._put_back(old)
            step.detail["maintenance"] = "on" if self._is_on(old) else "off"
            raise ProxyError(f"{exc}; {self.include} was put back{self._reload_again(step)}") from None
        except ProxyError as exc:
            self._put_back(old)
            raise ProxyError(f"{exc}; {self.include} was put back and the running config stays live") from None
        if self.settings.check_url:
            step.detail["check"] = self._wait_for(on)
        if not on:
            self.saved.unlink(missing_ok=True)

    def _reload_again(self, step: StepHandle) -> str:
        """After a reload nginx did not apply: reload the put-back files, so nginx runs what is on disk."""
        try:
            step.detail["restore"] = self.nginx.reload()
        except ProxyError as again:
            return f", but reloading it failed too ({again}): nginx keeps running the config it had"
        return " and reloaded: nginx runs the config it had"

    @staticmethod
    def _is_on(text: str | None) -> bool:
        return text is not None and text.startswith(MARK_ON)

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
