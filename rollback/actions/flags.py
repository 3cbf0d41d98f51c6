"""Feature flags and circuit breakers ([[flags]] in the config; docs/traffic.md).

Each flag is a file an application reads. Before the platform step its text is saved beside it
(``.<name>.before-rollback``) and ``off`` is written; after a passed verify (or at once when the
rollback fails) the saved text is put back. The saved copy makes a killed run's flag resettable
by the next run, which finds it and knows the flag's real value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

from ..config import FlagConfig, HarnessConfig, TargetSpec
from ..journal import Journal
from ..targets.base import Finding
from ..traffic.files import atomic_write, digest, read_text
from .base import Action

FINDING = "flags-ready"


def _shown(text: str | None) -> str:
    if text is None:
        return "(no file)"
    text = text.strip()
    return text if len(text) <= 80 else text[:80] + "..."


class FlagsAction(Action):
    name: ClassVar[str] = "flags"
    order: ClassVar[int] = 20

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        return bool(config.settings.flags)

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return (FINDING,)

    def _path(self, flag: FlagConfig) -> Path:
        return self.config.base_dir / flag.file

    def _saved(self, flag: FlagConfig) -> Path:
        path = self._path(flag)
        return path.with_name(f".{path.name}.before-rollback")

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        problems, facts = [], []
        for flag in self.config.settings.flags:
            path = self._path(flag)
            if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
                problems.append(f"flag {flag.name}: cannot write in {path.parent}")
                continue
            saved = " (a saved value from an earlier run waits to be put back)" if self._saved(flag).exists() else ""
            facts.append(f"flag {flag.name} = {_shown(read_text(path))}{saved}")
        if problems:
            return [Finding(FINDING, False, "; ".join(problems))]
        return [Finding(FINDING, True, "; ".join(facts))]

    def left_over(self) -> str | None:
        saved = [f.name for f in self.config.settings.flags if self._saved(f).exists()]
        return f"flags {', '.join(saved)} off (saved by an earlier run)" if saved else None

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        flags = self.config.settings.flags
        before = [f"flag {f.name} off: write {f.off!r} to {self._path(f)}" for f in flags]
        after = [f"after verify passes: flag {f.name} back to its value from before" for f in flags]
        return before, after

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        for flag in self.config.settings.flags:
            path, saved = self._path(flag), self._saved(flag)
            now = read_text(path)
            step = f"flags:{flag.name}-off"
            if now == flag.off:
                why = "saved by an earlier run" if saved.exists() else "it was off before the rollback"
                journal.record(step, "skipped", reason=f"already {flag.off!r} ({why})")
                continue
            with journal.step(step, file=str(path), before=_shown(now), after=flag.off):
                if not saved.exists():
                    # The real value first: a run killed after this line can still put it back.
                    atomic_write(saved, now if now is not None else "")
                    if now is None:
                        saved.with_name(saved.name + ".absent").touch()
                atomic_write(path, flag.off)
            self.context.progress(f"flags: {flag.name} off")

    def _reset(self, journal: Journal, step_prefix: str) -> None:
        for flag in reversed(self.config.settings.flags):
            path, saved = self._path(flag), self._saved(flag)
            step = f"flags:{flag.name}-{step_prefix}"
            old = read_text(saved)
            if old is None:
                journal.record(step, "skipped", reason="nothing saved: this run did not change it")
                continue
            absent = saved.with_name(saved.name + ".absent")
            with journal.step(
                step, file=str(path), before=_shown(read_text(path)), after=_shown(old), saved=digest(old)
            ):
                if absent.exists():
                    path.unlink(missing_ok=True)
                    absent.unlink()
                else:
                    atomic_write(path, old)
                saved.unlink()

    def undo(self, journal: Journal) -> None:
        self._reset(journal, "undo")

    def finish(self, journal: Journal, verified: bool) -> None:
        if not verified:
            for flag in self.config.settings.flags:
                journal.record(
                    f"flags:{flag.name}-reset",
                    "skipped",
                    reason=f"verify did not pass: left {flag.off!r}; its value from before is in {self._saved(flag)}",
                )
            return
        self._reset(journal, "reset")

    def describe(self) -> dict[str, Any]:
        return {"action": self.name, "flags": {f.name: str(self._path(f)) for f in self.config.settings.flags}}
