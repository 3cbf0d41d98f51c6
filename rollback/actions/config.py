"""``[config_rollback]`` beside any platform target: config files restored from the target
version's git tag before the platform step, restart hooks run, and the files put back exactly
as they were when the rollback fails. The git work is rollback/targets/config.py's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ..config import ConfigRollbackConfig
from ..errors import HarnessError
from ..targets.base import Finding, TargetContext
from ..targets.config import ConfigRollback
from .base import Action

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec
    from ..journal import Journal

FINDINGS = ("config-tag", "config-clean", "config-commands")


class ConfigAction(Action):
    name: ClassVar[str] = "config"
    order: ClassVar[int] = 30

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        super().__init__(config, spec, context)
        settings = config.settings.config_rollback
        assert settings is not None  # applies() said so
        self.settings: ConfigRollbackConfig = settings
        self.work = ConfigRollback(settings, context.base_dir, context.progress)
        self.back_to: str | None = None

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        # A kind = "config" target restores its own files; the section is for other targets.
        return config.settings.config_rollback is not None and spec.kind != "config"

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return FINDINGS

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        try:
            tag, clean = self.work.judge(to_version)
        except (HarnessError, OSError) as exc:
            tag = Finding("config-tag", False, str(exc))
            clean = Finding("config-clean", False, "not checked: the repository could not be read", checked=False)
        commands = self.work.hook_findings()
        bad = [f for f in commands if not f.ok]
        joined = Finding("config-commands", not bad, "; ".join(f.message for f in (bad or commands)))
        return [tag, clean, joined]

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        return [f"config: {line}" for line in self.work.plan(to_version)], []

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        self.back_to = from_version or to_version
        self.work.restore(to_version, journal, "config:restore")
        self.work.run_hooks(to_version, journal, "config:restart")

    def undo(self, journal: Journal) -> None:
        if self.work.undo(journal, "config:undo") and self.back_to is not None:
            # The services read the restored files: restart them on the files put back.
            self.work.run_hooks(self.back_to, journal, "config:undo-restart")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.work.describe()}
