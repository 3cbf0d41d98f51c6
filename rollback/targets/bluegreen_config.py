"""The blue/green proxy config as the driver reads it: rendered from the template with one colour
active, and the live file read back to tell which colour takes the traffic.

Every config the driver writes starts with ``MARKER``, naming its active colour; a config without
it must equal one colour's rendering. Reads only: writing and reloading are ``bluegreen_switch``'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import RollbackFailed
from ..traffic.files import read_text
from .bluegreen_settings import BlueGreenSettings

PLACEHOLDERS = ("colour", "host", "port", "url", "idle_colour", "idle_host", "idle_port", "idle_url")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
# The first line of every config the driver writes: which colour it sends traffic to.
MARKER = "# active colour: {colour} (written by pytest-rollback-harness from the template)\n"
_MARKER = re.compile(r"^# active colour: ([A-Za-z0-9_-]+) ")


def marked_colour(text: str) -> str | None:
    """The colour ``MARKER`` names on the first line of ``text``, whatever it is; None without one."""
    marked = _MARKER.match(text)
    return marked.group(1) if marked is not None else None


class ProxyConfig:
    """The live config file, its template and the files kept beside it, for the two colours."""

    def __init__(self, settings: BlueGreenSettings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir

    @property
    def config_file(self) -> Path:
        return self.base_dir / self.settings.config_file

    @property
    def template(self) -> Path:
        return self.base_dir / self.settings.config_template

    @property
    def backup(self) -> Path:
        return self.config_file.with_name(f".{self.config_file.name}.before-switch")

    @property
    def failed_reload(self) -> Path:
        """The record of a config the proxy accepted but did not apply: its digest and the proxy's words."""
        return self.config_file.with_name(f".{self.config_file.name}.reload-failed")

    def url(self, colour: str) -> str:
        return self.settings.colours[colour].url

    def other(self, colour: str) -> str:
        return next(name for name in self.settings.colours if name != colour)

    def render(self, colour: str) -> str:
        """The proxy config with ``colour`` active."""
        try:
            text = self.template.read_text(encoding="utf-8")
        except OSError as exc:
            raise RollbackFailed(f"cannot read the proxy config template {self.template}: {exc.strerror}") from None
        values: dict[str, str] = {}
        for prefix, name in (("", colour), ("idle_", self.other(colour))):
            parts = urlsplit(self.url(name))
            values.update(
                {
                    f"{prefix}colour": name,
                    f"{prefix}host": parts.hostname or "",
                    f"{prefix}port": str(parts.port),
                    f"{prefix}url": self.url(name),
                }
            )

        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in values:
                raise RollbackFailed(
                    f"{self.template}: unknown placeholder {{{{{key}}}}}; accepted: {', '.join(PLACEHOLDERS)}"
                )
            return values[key]

        return MARKER.format(colour=colour) + _PLACEHOLDER.sub(replace, text)

    def live_colour(self) -> str:
        """The colour the live config sends traffic to: its first line says (every config this
        driver writes starts with it); a config without it must equal one colour's rendering."""
        text = read_text(self.config_file)
        if text is None:
            raise RollbackFailed(f"the proxy config {self.config_file} does not exist")
        marked = _MARKER.match(text)
        if marked is not None and marked.group(1) in self.settings.colours:
            return marked.group(1)
        for colour in self.settings.colours:
            rendered = self.render(colour)
            if text in (rendered, rendered.partition("\n")[2]):
                return colour
        raise RollbackFailed(
            f"{self.config_file} names no active colour on its first line and matches neither colour's rendering "
            f"of {self.template} ({' nor '.join(self.settings.colours)}): it was changed by hand; render it from "
            "the template for the colour that is live"
        )

    def routed_colour(self) -> tuple[str | None, str | None, str | None]:
        """What the live config says: ``(routed, recorded, problem)``.

        ``recorded`` is the colour on the first line the driver writes; ``routed`` the colour whose
        rendering the rest of the file is (falling back to ``recorded`` when it matches neither);
        ``problem`` says why the two cannot be trusted to agree, or None.
        """
        text = read_text(self.config_file)
        if text is None:
            return None, None, f"the proxy config {self.config_file} does not exist: no colour can be live"
        marked = _MARKER.match(text)
        recorded = marked.group(1) if marked is not None and marked.group(1) in self.settings.colours else None
        body = text.partition("\n")[2] if recorded is not None else text
        routed = next((c for c in self.settings.colours if body == self.render(c).partition("\n")[2]), None)
        first_line = f"{self.config_file} says {recorded} is live on its first line"
        neither = f"matches neither colour's rendering of {self.template}"
        problem = None
        if routed is None and recorded is None:
            problem = f"{self.config_file} names no active colour on its first line and {neither}: no colour is known"
        elif routed is None:
            problem = (
                f"{first_line} but {neither} (changed by hand, or the template changed since): that it routes "
                f"to {recorded} cannot be confirmed"
            )
        elif recorded is not None and routed != recorded:
            problem = f"{first_line} (written at the last switch) but routes to {routed}: changed by hand since"
        return routed or recorded, recorded, problem
