"""Actions around the platform step: database care, traffic, config, feature flags.

A target driver changes what runs; an action changes what surrounds it (drain the load balancer,
back up and downgrade the database, restore config from git, switch a flag off). The runbook runs
every configured action in a fixed order around the driver's steps:

    preflight:   each action's findings join the target's (one preflight item each)
    rollback:    before() in ascending ``order`` -> the driver's steps -> after() in descending order
    on failure:  undo() of every action that started, newest first
    after verify: finish(verified) of every action that ran, newest first (restore traffic, reset flags)

``ACTIONS`` maps a name to "module:Class"; modules are imported only when a config uses them (the
class's ``applies`` decides), so ``pytest --help`` imports none of them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec
    from ..targets.base import TargetContext
    from .base import Action

# name -> "module:Class"; an action module adds its line here.
ACTIONS: dict[str, str] = {
    "config": "rollback_harness.rollback.actions.config:ConfigAction",
    "database": "rollback_harness.rollback.actions.database:DatabaseAction",
    "traffic": "rollback_harness.rollback.actions.traffic:TrafficAction",
    "flags": "rollback_harness.rollback.actions.flags:FlagsAction",
    "load_balancer": "rollback_harness.rollback.actions.load_balancer:LoadBalancerAction",
    "cdn": "rollback_harness.rollback.actions.cdn:CdnAction",
}


def action_classes(config: HarnessConfig, spec: TargetSpec) -> list[type[Action]]:
    """The action classes this config uses for ``spec``, in the order their before() runs."""
    classes = []
    for path in ACTIONS.values():
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
