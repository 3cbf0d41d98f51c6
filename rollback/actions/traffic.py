"""Traffic around the platform step ([traffic] in the config; docs/traffic.md).

before:  drain the servers of the bad version in steps (HAProxy), then maintenance on (nginx)
after:   maintenance off (once the target serves, before verify)
finish:  after a passed verify, restore the drained servers in steps
undo:    a failed rollback: maintenance off and the servers back to full weight at once
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..config import HarnessConfig, TargetSpec, TrafficConfig
from ..errors import HarnessError
from ..journal import Journal
from ..targets.base import Finding, TargetContext
from ..traffic.drain import Drain
from ..traffic.maintenance import Maintenance
from .base import Action

FINDING = "traffic-ready"


class TrafficAction(Action):
    name: ClassVar[str] = "traffic"
    order: ClassVar[int] = 10

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        super().__init__(config, spec, context)
        settings = config.settings.traffic
        assert settings is not None
        self.settings: TrafficConfig = settings
        base = config.base_dir
        self.maintenance = Maintenance(settings.maintenance, base) if settings.maintenance else None
        self.drain = Drain(settings.drain, base, context.progress) if settings.drain else None
        self.drained: list[str] = []
        self.left: list[str] = []  # what an earlier run left, read in preflight

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        traffic = config.settings.traffic
        return traffic is not None and (traffic.maintenance is not None or traffic.drain is not None)

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return (FINDING,)

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        problems: list[str] = []
        facts: list[str] = []
        if self.maintenance is not None:
            found = self.maintenance.problems()
            problems += [f"maintenance: {p}" for p in found]
            if not found:
                state = "off"
                if self.maintenance.is_on():
                    state = "on (left by an earlier run)"
                    self.left.append("maintenance on")
                facts.append(f"nginx config {self.maintenance.nginx.config} is valid; maintenance is {state}")
        if self.drain is not None:
            try:
                self.drained, why = self.drain.choose(from_version)
                low = [s for s in self.drained if self.drain.below_full(s)]
                if low:
                    self.left.append(f"{', '.join(low)} drained")
                facts.append(f"HAProxy backend {self.drain.backend}: drain {', '.join(self.drained)} ({why})")
            except HarnessError as exc:
                problems.append(f"drain: {exc}")
        if problems:
            return [Finding(FINDING, False, "; ".join(problems))]
        return [Finding(FINDING, True, "; ".join(facts))]

    def left_over(self) -> str | None:
        return "; ".join(self.left) or None

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        before: list[str] = []
        after: list[str] = []
        if self.drain is not None:
            steps = ", ".join(f"{p}%" for p in self.drain.settings.drain_steps)
            servers = ", ".join(self.drained) or "the servers answering " + str(from_version)
            before.append(
                f"drain {servers} in HAProxy backend {self.drain.backend}: weight {steps} "
                f"({self.drain.settings.pause:g} s apart)"
            )
        if self.maintenance is not None:
            before.append(f"maintenance on: write {self.maintenance.include}, nginx -t, reload")
            after.append(f"maintenance off: write {self.maintenance.include}, nginx -t, reload")
        if self.drain is not None:
            steps = ", ".join(f"{p}%" for p in self.drain.settings.restore_steps)
            after.append(f"after verify passes: restore {', '.join(self.drained) or 'them'} to weight {steps}")
        return before, after

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        if self.drain is not None:
            if not self.drained:
                self.drained, _ = self.drain.choose(from_version)
            self.drain.drain(journal, self.drained)
        if self.maintenance is not None:
            self._maintenance(journal, on=True)

    def after(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        if self.maintenance is not None:
            self._maintenance(journal, on=False)

    def _maintenance(self, journal: Journal, *, on: bool, step_name: str | None = None) -> None:
        assert self.maintenance is not None
        name = step_name or f"traffic:maintenance-{'on' if on else 'off'}"
        state = "on" if on else "off"
        if self.maintenance.is_on() == on:
            # The file says so; nginx may not run it yet (a run killed between write and reload).
            shown = self.maintenance.shows(on)
            if shown is not None:
                journal.record(name, "skipped", reason=f"maintenance is already {state}: {shown}")
                return
        with journal.step(name) as step:
            self.maintenance.switch(on, step)
        self.context.progress(f"traffic: maintenance {state}")

    def undo(self, journal: Journal) -> None:
        problems = []
        if self.maintenance is not None:
            try:
                self._maintenance(journal, on=False, step_name="traffic:undo-maintenance")
            except HarnessError as exc:
                problems.append(f"maintenance is still on: {exc}")
        if self.drain is not None and self.drained:
            try:
                self.drain.restore_at_once(journal, self.drained)
            except HarnessError as exc:
                problems.append(
                    f"{', '.join(self.drained)} stay drained ({exc}); by hand: {self.drain.by_hand(self.drained)}"
                )
        if problems:
            raise HarnessError("; ".join(problems))

    def finish(self, journal: Journal, verified: bool) -> None:
        if self.drain is None or not self.drained:
            return
        if not verified:
            journal.record(
                "traffic:restore",
                "skipped",
                reason=f"verify did not pass: {', '.join(self.drained)} stay drained; "
                f"restore by hand: {self.drain.by_hand(self.drained)}",
            )
            return
        self.drain.restore(journal, self.drained)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"action": self.name}
        if self.maintenance is not None:
            facts["maintenance"] = {
                "nginx_config": str(self.maintenance.nginx.config),
                "include": str(self.maintenance.include),
            }
        if self.drain is not None:
            facts["drain"] = {"socket": str(self.drain.api.socket_path), "backend": self.drain.backend}
        return facts
