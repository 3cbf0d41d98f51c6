"""Blue/green: two colours, each a running copy of the service on its own address, behind nginx
or HAProxy. Rolling back is switching the proxy to the idle colour, once it serves the target
version and is healthy (checked in preflight and again right before the switch).

The proxy config is rendered from a template with the active colour's address (``bluegreen_config``);
a new config is written to a temporary file beside the live one, checked by the proxy (``nginx -t -c`` /
``haproxy -c -f``), renamed over it and reloaded (``bluegreen_switch``). A config the proxy refuses
never goes live; a reload that fails, or that the proxy does not apply (no new worker), puts the old
file back and reloads it. See docs/traffic.md.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..census import Census, Replica
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..traffic.commands import ProxyError
from ..traffic.files import digest, read_text
from ..traffic.probe import get
from ..versions import same_version, sort_versions, version_problem
from .base import Finding, Target, TargetContext
from .bluegreen_config import MARKER as MARKER
from .bluegreen_config import ProxyConfig
from .bluegreen_settings import STEP_CHECK, STEP_SWITCH, STEP_WAIT, BlueGreenSettings
from .bluegreen_switch import ProxySwitch


class BlueGreenTarget(Target):
    """The blue/green driver: probes the colours, reads the proxy config (``ProxyConfig``) and
    switches it (``ProxySwitch``)."""

    kind = "bluegreen"
    settings_model = BlueGreenSettings
    settings: BlueGreenSettings

    def __init__(self, settings: BlueGreenSettings, context: TargetContext) -> None:
        super().__init__(settings, context)
        self.proxy_config = ProxyConfig(settings, context.base_dir)
        self.proxy = ProxySwitch(settings, self.proxy_config)

    # -- paths and the proxy config -------------------------------------------------------

    @property
    def config_file(self) -> Path:
        return self.proxy_config.config_file

    @property
    def template(self) -> Path:
        return self.proxy_config.template

    @property
    def backup(self) -> Path:
        return self.proxy_config.backup

    @property
    def failed_reload(self) -> Path:
        """The record of a config the proxy accepted but did not apply: its digest and the proxy's words."""
        return self.proxy_config.failed_reload

    @property
    def program(self) -> str:
        return self.proxy.program

    def render(self, colour: str) -> str:
        """The proxy config with ``colour`` active."""
        return self.proxy_config.render(colour)

    def live_colour(self) -> str:
        """The colour the live config sends traffic to (see ``ProxyConfig.live_colour``)."""
        return self.proxy_config.live_colour()

    def routed_colour(self) -> tuple[str | None, str | None, str | None]:
        """What the live config says: ``(routed, recorded, problem)`` (see ``ProxyConfig.routed_colour``)."""
        return self.proxy_config.routed_colour()

    # -- colours ----------------------------------------------------------------------------

    def _url(self, colour: str) -> str:
        return self.proxy_config.url(colour)

    def _other(self, colour: str) -> str:
        return self.proxy_config.other(colour)

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
            self.proxy.validated_rendering(colour).unlink()
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
                pid_file = self.proxy.pid_file()
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
        return f"cp {shlex.quote(str(self.backup))} {shlex.quote(str(self.config_file))} && {self.proxy.reload_words()}"

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
                self.proxy.switch(colour, step.detail)

    def _check_unchanged(self, expected: str | None) -> None:
        if expected is None:
            return
        now = self.observe()
        if now != expected:
            raise Conflict(
                f"{self.config_file} changed after this run read it ({expected} -> {now}): another deploy or run "
                "switched the proxy; this run stopped before writing"
            )

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
