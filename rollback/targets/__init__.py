"""Platform drivers, found by ``kind`` and imported only when a config names them.

``pytest --help`` imports none of them, so heavy clients (kubernetes, docker) load only when used.
Those clients are optional extras of the package (``EXTRAS``): a config naming a driver whose
client is not installed gets a ConfigError saying which extra to install, not a traceback.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigError, UnknownTargetKind

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .base import Target, TargetContext

PACKAGE = "pytest-rollback-harness"

DRIVERS: dict[str, str] = {
    "bluegreen": "rollback_harness.rollback.targets.bluegreen:BlueGreenTarget",
    "kubernetes": "rollback_harness.rollback.targets.kubernetes:KubernetesTarget",
    "symlink": "rollback_harness.rollback.targets.symlink:SymlinkTarget",
    "swarm": "rollback_harness.rollback.targets.swarm:SwarmTarget",
    "command": "rollback_harness.rollback.targets.command:CommandTarget",
    "config": "rollback_harness.rollback.targets.config:ConfigTarget",
}

# The package extra that installs a driver's client library (pyproject.toml's optional-dependencies).
EXTRAS: dict[str, str] = {
    "kubernetes": "kubernetes",
    "swarm": "swarm",
    "ssh": "ssh",  # a symlink target with hosts = [...]
    "aws-target-group": "aws",  # [[load_balancer]] and [[cdn]] (boto3)
    "cloudfront": "aws",
}


class DriverSpec(Protocol):
    """What ``create_target`` reads of a configured target (``rollback.config.TargetSpec`` is one).

    Named here, not imported: the config module looks drivers up in this registry, so the
    registry must not import the config module back.
    """

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def settings(self) -> BaseModel: ...


def driver_class(kind: object, where: str) -> type[Target]:
    """The driver class for ``kind``; ``where`` names the config key in error messages."""
    known = ", ".join(sorted(DRIVERS))
    if kind is None:
        raise UnknownTargetKind(f"{where} is required but missing; accepted: {known}")
    if not isinstance(kind, str) or kind not in DRIVERS:
        raise UnknownTargetKind(f"{where} = {kind!r}: unknown target kind; accepted: {known}")
    module_name, _, class_name = DRIVERS[kind].partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] == "rollback_harness":
            raise  # a module of our own is missing: a broken install or a bug, not a missing client
        raise ConfigError(missing_client_message(kind, exc, where)) from None
    cls: type[Target] = getattr(module, class_name)
    return cls


def missing_client_message(kind: str, exc: ImportError, where: str) -> str:
    """What to install when the ``kind`` driver cannot import its client library."""
    requirement = f"'{PACKAGE}[{EXTRAS.get(kind, 'all')}]'"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (
            f"{where} = {kind!r}: the {kind} driver needs the Python module {exc.name!r}, "
            f"which is not installed; install it with: pip install {requirement}"
        )
    # Installed but unusable (too old, broken): "cannot import name ... from ...".
    return (
        f"{where} = {kind!r}: the {kind} driver cannot import its client ({exc}); "
        f"install it with: pip install --upgrade {requirement}"
    )


def settings_model_for(kind: object, where: str) -> type[BaseModel]:
    return driver_class(kind, where).settings_model


def create_target(spec: DriverSpec, context: TargetContext) -> Target:
    return driver_class(spec.kind, f"targets.{spec.name}.kind").create(spec.settings, context)
