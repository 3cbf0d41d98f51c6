"""What the symlink driver on this machine (``symlink.py``) and on other hosts (``remote.py``) share
behind the Target interface: the kind, the settings model, the steps and the wait for the service.

A base of their own, so that the driver on this machine can hand a target with ``hosts`` to the
remote one without either module importing the other.
"""

from __future__ import annotations

from ..journal import Journal
from .base import Target, wait_for_version
from .symlink_settings import STEP_RESTART, STEP_SWITCH, STEP_WAIT, SymlinkSettings


class SymlinkBase(Target):
    kind = "symlink"
    settings_model = SymlinkSettings
    settings: SymlinkSettings

    def steps(self) -> list[str]:
        return [STEP_SWITCH, *([STEP_RESTART] if self.settings.restart else []), STEP_WAIT]

    def wait_ready(self, version: str, journal: Journal) -> None:
        wait_for_version(
            self.context,
            version,
            journal,
            timeout=self.settings.ready_timeout,
            consecutive=self.settings.ready_consecutive,
        )
