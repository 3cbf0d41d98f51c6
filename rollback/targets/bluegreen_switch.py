"""Switching the blue/green proxy: the proxy's own commands (check, reload), and the switch itself.

A new config is written to a temporary file beside the live one, checked by the proxy
(``nginx -t -c`` / ``haproxy -c -f``), renamed over it and reloaded. A config the proxy refuses
never goes live; a reload that fails, or that the proxy does not apply (no new worker), puts the
old file back and reloads it. See docs/traffic.md.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from ..traffic import haproxy
from ..traffic.commands import ProxyError, ReloadNotApplied
from ..traffic.files import atomic_write, digest, read_text, temporary_beside
from ..traffic.nginx import Nginx
from ..traffic.ports import new_addresses_held
from .bluegreen_config import ProxyConfig, marked_colour
from .bluegreen_settings import BlueGreenSettings


class ProxySwitch:
    """The configured proxy (nginx or HAProxy) and the checked, reversible switch of its config."""

    def __init__(self, settings: BlueGreenSettings, config: ProxyConfig) -> None:
        self.settings = settings
        self.config = config

    # -- the proxy's commands -------------------------------------------------------------------

    @property
    def program(self) -> str:
        return self.settings.proxy_program or self.settings.proxy

    def _nginx(self, config: Path | None = None) -> Nginx:
        return Nginx(self.program, config or self.config.config_file, self.settings.reload_timeout)

    def pid_file(self) -> Path:
        if self.settings.pid_file is None:
            raise ProxyError("targets.*.pid_file is required with proxy = 'haproxy' (the master's pid file)")
        return self.config.base_dir / self.settings.pid_file

    def check_config(self, path: Path) -> None:
        if self.settings.proxy == "nginx":
            self._nginx().check(path)
        else:
            haproxy.check_config(self.program, path, self.settings.reload_timeout)

    def reload(self) -> str:
        if self.settings.proxy == "nginx":
            return self._nginx().reload()
        return haproxy.reload_master(self.pid_file(), self.settings.reload_timeout)

    def reload_words(self) -> str:
        if self.settings.proxy == "nginx":
            return self._nginx().reload_command()
        pid_file = shlex.quote(str(self.pid_file()))
        return f'kill -USR2 "$(cat {pid_file})"'

    # -- the switch -----------------------------------------------------------------------------

    def validated_rendering(self, colour: str) -> Path:
        """The config with ``colour`` active, in a temporary file beside the live one, checked by the proxy."""
        temporary = temporary_beside(self.config.config_file)
        temporary.write_text(self.config.render(colour), encoding="utf-8")
        try:
            self.check_config(temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary

    def switch(self, colour: str, detail: dict[str, Any]) -> None:
        """Put the config with ``colour`` active live and reload; ``detail`` is the journal step's."""
        config = self.config
        old = read_text(config.config_file)
        wanted = config.render(colour)
        if old == wanted:
            # A run killed after the rename: the file was never confirmed running; the backup was.
            detail["note"] = f"{config.config_file.name} already had {colour} active: reloaded only"
            backup = read_text(config.backup)
            self._reload_or_put_back(backup if backup != wanted else None, detail)
            config.failed_reload.unlink(missing_ok=True)
            return
        self._check_earlier_failure(old, wanted, detail)
        temporary = self.validated_rendering(colour)  # a config the proxy refuses never goes further
        if old is not None:
            atomic_write(config.backup, old)
        os.replace(temporary, config.config_file)
        detail.update(before=digest(old), after=digest(wanted), backup=str(config.backup))
        self._reload_or_put_back(old, detail)
        config.failed_reload.unlink(missing_ok=True)

    def _check_earlier_failure(self, live: str | None, wanted: str, detail: dict[str, Any]) -> None:
        """An earlier run's reload of this very config did not take: look before reloading it again.
        A port it listens on that is still held refuses the switch before anything is written."""
        record = read_text(self.config.failed_reload)
        if record is None or not record.startswith(digest(wanted) + " "):
            return
        earlier = record.partition(" ")[2].strip()
        held = new_addresses_held(self.settings.proxy, live, wanted)
        if held:
            detail["traffic"] = f"{self.config.live_colour()}, unchanged: nothing was written or reloaded"
            raise ProxyError(
                f"{self.settings.proxy} did not apply this config in an earlier run ({earlier}) and would not now: "
                f"{'; '.join(held)}; nothing was switched (free the address, then run again)"
            )
        detail["earlier_failure"] = f"{earlier}; the addresses it adds are free now: reloading it again"

    def _reload_or_put_back(self, known_good: str | None, detail: dict[str, Any]) -> None:
        """Reload; a reload that failed or did not take puts ``known_good`` (the config the proxy ran
        before) back, and reloads it again when the proxy was signalled. ``detail["traffic"]`` says
        where traffic goes then, for the journal; the ProxyError raised says it too."""
        config_file = self.config.config_file
        try:
            detail["reload"] = self.reload()
            return
        except ProxyError as exc:
            failure, signalled = str(exc), isinstance(exc, ReloadNotApplied)
        detail["reload"] = f"failed: {failure}"
        if signalled:
            atomic_write(self.config.failed_reload, f"{digest(read_text(config_file))} {failure}\n")
        if known_good is None:
            detail["traffic"] = f"unknown: {config_file} did not take and there is no earlier config to put back"
            raise ProxyError(f"{failure}; there is no earlier config of {config_file} to put back")
        atomic_write(config_file, known_good)
        back = marked_colour(known_good) or "the old colour"
        where = f"{back} ({self.config.url(back)})" if back in self.settings.colours else back
        put_back = f"{config_file} was put back with the old colour, {back}"
        if signalled:
            try:
                detail["restore"] = self.reload()
            except ProxyError as again:
                detail["traffic"] = f"{where} by the config the proxy kept; reloading the put-back file failed: {again}"
                raise ProxyError(
                    f"{failure}; {put_back}, but reloading it failed too ({again}): the proxy still runs the config "
                    f"it had, so traffic goes to {where}"
                ) from None
            put_back += " and reloaded"
        detail["traffic"] = f"{where}, as before the switch: {config_file.name} is the old config again"
        raise ProxyError(f"{failure}; {put_back}: traffic goes to {where}, as before the switch") from None
