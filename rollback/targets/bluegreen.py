"""Blue/green: two colours, each a running copy of the service on its own address, behind nginx
or HAProxy. Rolling back is switching the proxy to the idle colour, once it serves the target
version and is healthy (checked in preflight and again right before the switch).

The proxy config is rendered from a template with the active colour's address; a new config is
written to a temporary file beside the live one, checked by the proxy (``nginx -t -c`` /
``haproxy -c -f``), renamed over it and reloaded. A config the proxy refuses never goes live; a
reload that fails, or that the proxy does not apply (no new worker), puts the old file back and
reloads it. See docs/traffic.md.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from ..census import Census, Replica
from ..config import Section, Timeout, UrlPath
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..traffic import haproxy
from ..traffic.commands import ProxyError, ReloadNotApplied
from ..traffic.files import atomic_write, digest, read_text, temporary_beside
from ..traffic.nginx import Nginx
from ..traffic.ports import new_addresses_held
from ..traffic.probe import get
from ..versions import same_version, sort_versions, version_problem
from .base import Finding, Target

STEP_CHECK, STEP_SWITCH, STEP_WAIT = "check-colour", "switch-proxy", "wait-ready"
PLACEHOLDERS = ("colour", "host", "port", "url", "idle_colour", "idle_host", "idle_port", "idle_url")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
# The first line of every config the driver writes: which colour it sends traffic to.
MARKER = "# active colour: {colour} (written by pytest-rollback-harness from the template)\n"
_MARKER = re.compile(r"^# active colour: ([A-Za-z0-9_-]+) ")
_URL_ACCEPTED = "expected an http:// URL with a host and port, e.g. http://127.0.0.1:8001"


def _colour_url(value: str) -> str:
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(_URL_ACCEPTED)
    return value.rstrip("/")


ColourUrl = Annotated[str, AfterValidator(_colour_url)]


class ColourSettings(Section):
    url: ColourUrl


class BlueGreenSettings(Section):
    proxy: Literal["nginx", "haproxy"]
    # The two colours by name (e.g. blue and green), each the address one copy serves on.
    colours: dict[str, ColourSettings]
    config_file: Path  # the config the running proxy reads
    config_template: Path  # config_file with {{colour}}, {{host}}, {{port}}, {{url}} (and idle_*) in it
    proxy_program: str | None = None  # default: nginx / haproxy from PATH
    pid_file: Path | None = None  # haproxy: the master's pid file (started with -W); nginx: not needed
    check_url: ColourUrl | None = None  # through the proxy, bypassing a maintenance page; default: the service
    version_path: UrlPath = "/version"
    version_field: str | None = None  # a JSON field of the version answer; None: the body is the version
    health_path: UrlPath = "/health"
    health_consecutive: int = Field(default=2, ge=1, le=100)
    probe_timeout: Timeout = 2.0
    reload_timeout: Timeout = 10.0
    ready_timeout: Timeout = 30.0
    ready_consecutive: int = Field(default=3, ge=1, le=100)

    @field_validator("colours")
    @classmethod
    def _two_colours(cls, value: dict[str, ColourSettings]) -> dict[str, ColourSettings]:
        if len(value) != 2:
            raise ValueError(f"expected exactly two colours, e.g. blue and green; got {len(value)}")
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise ValueError(f"colour name {name!r}: expected letters, digits, '-' or '_'")
        return value


class BlueGreenTarget(Target):
    kind = "bluegreen"
    settings_model = BlueGreenSettings
    settings: BlueGreenSettings

    # -- paths and proxy commands ---------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.context.base_dir / self.settings.config_file

    @property
    def template(self) -> Path:
        return self.context.base_dir / self.settings.config_template

    @property
    def backup(self) -> Path:
        return self.config_file.with_name(f".{self.config_file.name}.before-switch")

    @property
    def program(self) -> str:
        return self.settings.proxy_program or self.settings.proxy

    def _nginx(self, config: Path | None = None) -> Nginx:
        return Nginx(self.program, config or self.config_file, self.settings.reload_timeout)

    def _pid_file(self) -> Path:
        if self.settings.pid_file is None:
            raise ProxyError("targets.*.pid_file is required with proxy = 'haproxy' (the master's pid file)")
        return self.context.base_dir / self.settings.pid_file

    def _check_config(self, path: Path) -> None:
        if self.settings.proxy == "nginx":
            self._nginx().check(path)
        else:
            haproxy.check_config(self.program, path, self.settings.reload_timeout)

    def _reload(self) -> str:
        if self.settings.proxy == "nginx":
            return self._nginx().reload()
        return haproxy.reload_master(self._pid_file(), self.settings.reload_timeout)

    def _reload_words(self) -> str:
        if self.settings.proxy == "nginx":
            return self._nginx().reload_command()
        pid_file = shlex.quote(str(self._pid_file()))
        return f'kill -USR2 "$(cat {pid_file})"'

    # -- colours ----------------------------------------------------------------------------

    def _url(self, colour: str) -> str:
        return self.settings.colours[colour].url

    def _other(self, colour: str) -> str:
        return next(name for name in self.settings.colours if name != colour)

    def render(self, colour: str) -> str:
        """The proxy config with ``colour`` active."""
        try:
            text = self.template.read_text(encoding="utf-8")
        except OSError as exc:
            raise RollbackFailed(f"cannot read the proxy config template {self.template}: {exc.strerror}") from None
        values: dict[str, str] = {}
        for prefix, name in (("", colour), ("idle_", self._other(colour))):
            parts = urlsplit(self._url(name))
            values.update(
                {
                    f"{prefix}colour": name,
                    f"{prefix}host": parts.hostname or "",
                    f"{prefix}port": str(parts.port),
                    f"{prefix}url": self._url(name),
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

    def colour_version(self, colour: str) -> str | None:
        answer = get(self._url(colour) + self.settings.version_path, timeout=self.settings.probe_timeout)
        if answer.status != 200:
            return None
        return self._parse_version(answer.body)

    def _parse_version(self, body: str) -> str | None:
        if self.settings.version_field is None:
            return body.strip() or None
        try:
            value = json.loads(body).get(self.settings.version_field)
        except (ValueError, AttributeError):
            return None
        return str(value) if value is not None else None

    def colour_problem(self, colour: str, version: str) -> str | None:
        """Why ``colour`` cannot take traffic for ``version`` (version, then health N times), or None."""
        url = self._url(colour)
        seen = self.colour_version(colour)
        if not same_version(seen, version):
            return f"{colour} ({url}) answers {seen or 'nothing'} at {self.settings.version_path}, not {version}"
        for _ in range(self.settings.health_consecutive):
            answer = get(url + self.settings.health_path, timeout=self.settings.probe_timeout)
            if answer.status != 200:
                return f"{colour} ({url}) is unhealthy: {self.settings.health_path} answered {answer.describe()}"
        return None

    def _colour_for(self, version: str) -> str:
        """The idle colour when it serves ``version`` (else the live one when that does)."""
        live = self.live_colour()
        idle = self._other(live)
        if same_version(self.colour_version(idle), version):
            return idle
        return live if same_version(self.colour_version(live), version) else idle

    # -- the driver interface ----------------------------------------------------------------

    def live_version(self) -> str:
        colour = self.live_colour()
        version = self.colour_version(colour)
        if version is None:
            raise RollbackFailed(f"the live colour {colour} ({self._url(colour)}) does not answer its version")
        return version

    def census(self) -> Census:
        """One replica per colour: the version it answers itself; serving when the proxy config routes to it."""
        routed, recorded, problem = self.routed_colour()
        replicas = []
        for colour in self.settings.colours:
            version = self.colour_version(colour)
            answered = "" if version is not None else f"; does not answer {self.settings.version_path}"
            live = colour == routed
            replicas.append(
                Replica(f"colour {colour}", version, live, "live" if live else "idle", self._url(colour) + answered)
            )
        facts = {
            "proxy": self.settings.proxy,
            "config_file": str(self.config_file),
            "live_colour": routed,
            "recorded_colour": recorded,
        }
        return Census("colour", tuple(replicas), (problem,) if problem else (), facts)

    def history(self) -> list[str]:
        versions = {v for colour in self.settings.colours if (v := self.colour_version(colour)) is not None}
        return sort_versions([v for v in versions if version_problem(v) is None])

    def deployable(self, version: str) -> list[Finding]:
        live = self.live_colour()
        colour = self._colour_for(version)
        if colour == live:
            return [Finding("target-deployable", True, f"{colour} is live and serves {version}")]
        problem = self.colour_problem(colour, version)
        if problem is not None:
            return [Finding("target-deployable", False, f"{problem}: traffic will not be switched to it")]
        try:
            self._validated_rendering(colour).unlink()
        except ProxyError as exc:
            return [Finding("target-deployable", False, f"the config for {colour}: {exc}")]
        return [
            Finding(
                "target-deployable",
                True,
                f"{colour} ({self._url(colour)}) serves {version} and is healthy; "
                f"the {self.settings.proxy} config with {colour} active is valid",
            )
        ]

    def command_findings(self) -> list[Finding]:
        if shutil.which(self.program) is None:
            return [Finding("target-deployable", False, f"{self.settings.proxy} program not found: {self.program}")]
        if self.settings.proxy == "haproxy":
            try:
                pid_file = self._pid_file()
            except ProxyError as exc:
                return [Finding("target-deployable", False, str(exc))]
            if not pid_file.is_file():
                return [Finding("target-deployable", False, f"HAProxy's master pid file {pid_file} does not exist")]
        return [Finding("target-deployable", True, f"{self.settings.proxy} program {shutil.which(self.program)}")]

    def observe(self) -> str:
        text = read_text(self.config_file)
        return f"{self.config_file.name}@{digest(text)}"

    def steps(self) -> list[str]:
        return [STEP_CHECK, STEP_SWITCH, STEP_WAIT]

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        try:
            colour = self._colour_for(version)
        except RollbackFailed:
            colour = "the idle colour"
        lines = []
        if STEP_CHECK in steps:
            lines.append(f"check again that {colour} serves {version} and is healthy")
        if STEP_SWITCH in steps:
            check = "nginx -t -c" if self.settings.proxy == "nginx" else "haproxy -c -f"
            lines.append(
                f"render {self.config_file.name} with {colour} active, check it ({check}), rename it into place, "
                f"reload {self.settings.proxy}"
            )
        if STEP_WAIT in steps:
            lines.append(
                f"wait until {self._check_where()} answers {version} {self.settings.ready_consecutive} times "
                f"in a row (up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def _check_where(self) -> str:
        return self.settings.check_url or "the service"

    def way_back(self, version: str) -> str | None:
        if not self.backup.exists():
            return None
        return f"cp {shlex.quote(str(self.backup))} {shlex.quote(str(self.config_file))} && {self._reload_words()}"

    def lock_path(self) -> Path:
        return self.config_file.with_name(f".{self.config_file.name}.rollback.lock")

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            **super().describe(),
            "proxy": self.settings.proxy,
            "config_file": str(self.config_file),
            "colours": {name: colour.url for name, colour in self.settings.colours.items()},
        }
        try:
            facts["live_colour"] = self.live_colour()
        except RollbackFailed as exc:
            facts["live_colour"] = f"unknown: {exc}"
        return facts

    # -- rolling back -------------------------------------------------------------------------

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        colour = self._colour_for(version)
        if STEP_CHECK in steps:
            with journal.step(STEP_CHECK, colour=colour, url=self._url(colour), version=version):
                problem = self.colour_problem(colour, version)
                if problem is not None:
                    raise RollbackFailed(f"{problem}: traffic was not switched")
        if STEP_SWITCH in steps:
            self._check_unchanged(expected_state)
            before = self.live_colour()
            with journal.step(STEP_SWITCH, proxy=self.settings.proxy, config=str(self.config_file)) as step:
                step.detail.update({"from_colour": before, "to_colour": colour})
                self._switch(colour, step.detail)

    def _check_unchanged(self, expected: str | None) -> None:
        if expected is None:
            return
        now = self.observe()
        if now != expected:
            raise Conflict(
                f"{self.config_file} changed after this run read it ({expected} -> {now}): another deploy or run "
                "switched the proxy; this run stopped before writing"
            )

    def _validated_rendering(self, colour: str) -> Path:
        """The config with ``colour`` active, in a temporary file beside the live one, checked by the proxy."""
        temporary = temporary_beside(self.config_file)
        temporary.write_text(self.render(colour), encoding="utf-8")
        try:
            self._check_config(temporary)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return temporary

    @property
    def failed_reload(self) -> Path:
        """The record of a config the proxy accepted but did not apply: its digest and the proxy's words."""
        return self.config_file.with_name(f".{self.config_file.name}.reload-failed")

    def _switch(self, colour: str, detail: dict[str, Any]) -> None:
        old = read_text(self.config_file)
        wanted = self.render(colour)
        if old == wanted:
            # A run killed after the rename: the file was never confirmed running; the backup was.
            detail["note"] = f"{self.config_file.name} already had {colour} active: reloaded only"
            backup = read_text(self.backup)
            self._reload_or_put_back(backup if backup != wanted else None, detail)
            self.failed_reload.unlink(missing_ok=True)
            return
        self._check_earlier_failure(old, wanted, detail)
        temporary = self._validated_rendering(colour)  # a config the proxy refuses never goes further
        if old is not None:
            atomic_write(self.backup, old)
        os.replace(temporary, self.config_file)
        detail.update(before=digest(old), after=digest(wanted), backup=str(self.backup))
        self._reload_or_put_back(old, detail)
        self.failed_reload.unlink(missing_ok=True)

    def _check_earlier_failure(self, live: str | None, wanted: str, detail: dict[str, Any]) -> None:
        """An earlier run's reload of this very config did not take: look before reloading it again.
        A port it listens on that is still held refuses the switch before anything is written."""
        record = read_text(self.failed_reload)
        if record is None or not record.startswith(digest(wanted) + " "):
            return
        earlier = record.partition(" ")[2].strip()
        held = new_addresses_held(self.settings.proxy, live, wanted)
        if held:
            detail["traffic"] = f"{self.live_colour()}, unchanged: nothing was written or reloaded"
            raise ProxyError(
                f"{self.settings.proxy} did not apply this config in an earlier run ({earlier}) and would not now: "
                f"{'; '.join(held)}; nothing was switched (free the address, then run again)"
            )
        detail["earlier_failure"] = f"{earlier}; the addresses it adds are free now: reloading it again"

    def _reload_or_put_back(self, known_good: str | None, detail: dict[str, Any]) -> None:
        """Reload; a reload that failed or did not take puts ``known_good`` (the config the proxy ran
        before) back, and reloads it again when the proxy was signalled. ``detail["traffic"]`` says
        where traffic goes then, for the journal; the ProxyError raised says it too."""
        try:
            detail["reload"] = self._reload()
            return
        except ProxyError as exc:
            failure, signalled = str(exc), isinstance(exc, ReloadNotApplied)
        detail["reload"] = f"failed: {failure}"
        if signalled:
            atomic_write(self.failed_reload, f"{digest(read_text(self.config_file))} {failure}\n")
        if known_good is None:
            detail["traffic"] = f"unknown: {self.config_file} did not take and there is no earlier config to put back"
            raise ProxyError(f"{failure}; there is no earlier config of {self.config_file} to put back")
        atomic_write(self.config_file, known_good)
        marked = _MARKER.match(known_good)
        back = marked.group(1) if marked is not None else "the old colour"
        where = f"{back} ({self._url(back)})" if back in self.settings.colours else back
        put_back = f"{self.config_file} was put back with the old colour, {back}"
        if signalled:
            try:
                detail["restore"] = self._reload()
            except ProxyError as again:
                detail["traffic"] = f"{where} by the config the proxy kept; reloading the put-back file failed: {again}"
                raise ProxyError(
                    f"{failure}; {put_back}, but reloading it failed too ({again}): the proxy still runs the config "
                    f"it had, so traffic goes to {where}"
                ) from None
            put_back += " and reloaded"
        detail["traffic"] = f"{where}, as before the switch: {self.config_file.name} is the old config again"
        raise ProxyError(f"{failure}; {put_back}: traffic goes to {where}, as before the switch") from None

    def wait_ready(self, version: str, journal: Journal) -> None:
        timeout = self.settings.ready_timeout
        needed = self.settings.ready_consecutive
        with journal.step(STEP_WAIT, version=version, via=self._check_where(), timeout_s=timeout) as step:
            started = time.monotonic()
            deadline = started + timeout
            next_report = started + 2.0
            in_a_row, seen = 0, None
            while True:
                left = deadline - time.monotonic()
                seen = self._proxy_version(min(self.settings.probe_timeout, max(0.05, left)))
                in_a_row = in_a_row + 1 if same_version(seen, version) else 0
                if in_a_row >= needed:
                    step.detail.update(waited_s=round(time.monotonic() - started, 3), served_by=self.live_colour())
                    return
                now = time.monotonic()
                if now >= deadline:
                    raise RollbackFailed(
                        f"{self._check_where()} did not answer {version} {needed} times in a row within "
                        f"{format_duration(timeout)} after the switch; last answer: {seen or 'none'}"
                    )
                if now >= next_report:
                    self.context.progress(
                        f"waiting for {self._check_where()} to answer {version}: "
                        f"{format_duration(now - started)} of {format_duration(timeout)}, last answer {seen or 'none'}"
                    )
                    next_report = now + 2.0
                if not in_a_row:
                    time.sleep(min(0.05, max(0.0, deadline - now)))

    def _proxy_version(self, timeout: float) -> str | None:
        if self.settings.check_url is None:
            return self.context.service_version(timeout=timeout)
        answer = get(self.settings.check_url + self.settings.version_path, timeout=timeout)
        return self._parse_version(answer.body) if answer.status == 200 else None
