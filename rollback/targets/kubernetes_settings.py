"""The settings of a ``kind = "kubernetes"`` target, apart from the driver so each of its parts can read them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ..config import Duration, Section

MAX_WAIT = 24 * 3600.0


def _bounded_wait(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


BoundedDuration = Annotated[Duration, AfterValidator(_bounded_wait)]


class KubernetesSettings(Section):
    deployment: str = Field(min_length=1)
    namespace: str = Field(default="default", min_length=1)
    # None: the usual lookup ($KUBECONFIG, else ~/.kube/config) and its current context.
    kubeconfig: Path | None = None
    context: str | None = None
    # None: the pod template's only container (a template with several must name one).
    container: str | None = None
    # How a template's version is read: the container's image tag, or a pod template label.
    version_from: Literal["image-tag", "label"] = "image-tag"
    version_label: str = "app.kubernetes.io/version"
    ready_timeout: BoundedDuration = 300.0
    # After the rollout, the service must answer the target this many times in a row (pods of the
    # old version stop answering only when they are gone).
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    request_timeout: BoundedDuration = 10.0
