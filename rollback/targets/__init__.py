"""Platform drivers, found by ``kind`` and imported only when a config names them.

``pytest --help`` imports none of them, so heavy clients (kubernetes, docker) load only when used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from rollback_harness.rollback.errors import UnknownTargetKind

if TYPE_CHECKING:
    from pydantic import BaseModel

    from rollback_harness.rollback.config import TargetSpec
    from rollback_harness.rollback.targets.base import Target, TargetContext

DRIVERS: dict[str, str] = {
    "symlink": "rollback_harness.rollback.targets.symlink:SymlinkTarget",
}


def driver_class(kind: object, where: str) -> type[Target]:
    """The driver class for ``kind``; ``where`` names the config key in error messages."""
    known = ", ".join(sorted(DRIVERS))
    if kind is None:
        raise UnknownTargetKind(f"{where} is required but missing; accepted: {known}")
    if not isinstance(kind, str) or kind not in DRIVERS:
        raise UnknownTargetKind(f"{where} = {kind!r}: unknown target kind; accepted: {known}")
    module_name, _, class_name = DRIVERS[kind].partition(":")
    cls: type[Target] = getattr(import_module(module_name), class_name)
    return cls


def settings_model_for(kind: object, where: str) -> type[BaseModel]:
    return driver_class(kind, where).settings_model


def create_target(spec: TargetSpec, context: TargetContext) -> Target:
    return driver_class(spec.kind, f"targets.{spec.name}.kind")(spec.settings, context)
