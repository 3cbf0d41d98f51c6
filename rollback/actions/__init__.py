"""Actions around the platform step: database care, traffic, config, feature flags.

A target driver changes what runs; an action changes what surrounds it (drain the load balancer,
back up and downgrade the database, restore config from git, switch a flag off). The runbook runs
every configured action in a fixed order around the driver's steps:

    preflight:   each action's findings join the target's (one preflight item each)
    rollback:    before() in ascending ``order`` -> the driver's steps -> after() in descending order
    on failure:  undo() of every action that started, newest first
    after verify: finish(verified) of every action that ran, newest first (restore traffic, reset flags)

``ACTIONS`` maps a name to "module:Class" and the settings section it acts on: a module is imported
only when its section is configured (the class's ``applies`` then decides), so ``pytest --help``
imports none of them and a run imports only its own (the traffic action alone pulls in requests).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec
    from ..targets.base import TargetContext
    from .base import Action

# name -> ("module:Class", the HarnessSettings field it acts on); an action module adds its line here.
ACTIONS: dict[str, tuple[str, str]] = {
    "config": ("rollback_harness.rollback.actions.config:ConfigAction", "config_rollback"),
    "database": ("rollback_harness.rollback.actions.database:DatabaseAction", "database"),
    "traffic": ("rollback_harness.rollback.actions.traffic:TrafficAction", "traffic"),
    "flags": ("rollback_harness.rollback.actions.flags:FlagsAction", "flags"),
    "load_balancer": ("rollback_harness.rollback.actions.load_balancer:LoadBalancerAction", "load_balancer"),
    "cdn": ("rollback_harness.rollback.actions.cdn:CdnAction", "cdn"),
}


def action_classes(config: HarnessConfig, spec: TargetSpec) -> list[type[Action]]:
    """The action classes this config uses for ``spec``, in the order their before() runs."""
    classes = []
    for path, section in ACTIONS.values():
        if not getattr(config.settings, section):  # not configured (None, []): nothing to import
            continue
        module_name, _, class_name = path.partition(":")
        cls: type[Action] = getattr(import_module(module_name), class_name)
        if cls.applies(config, spec):
            classes.append(cls)
    return sorted(classes, key=lambda cls: cls.order)


def finding_names(config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
    """The preflight findings the configured actions add (known before anything is read)."""
    names: list[str] = []
    for cls in action_classes(config, spec):
        names.extend(cls.finding_names(config, spec))
    return tuple(names)


def build_actions(config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> list[Action]:
    return [cls(config, spec, context) for cls in action_classes(config, spec)]
