"""The swarm target's settings and step names, shared by the driver and the modules it reads with."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from ..config import Duration, Section

MAX_WAIT = 24 * 3600.0
STEP_UPDATE, STEP_WAIT = "update-service", "wait-ready"
STEP_REMOVE_IMAGE = "remove-image"


def _bounded_wait(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


def _monitor(value: float | None) -> float | None:
    if value is not None and not 0 <= value <= 3600:
        raise ValueError("expected a duration from 0 to 1h, e.g. '1s' or '5s'")
    return value


class SwarmSettings(Section):
    service: str = Field(min_length=1)
    # Where the engine is, as `docker -H` takes it; None: the environment (DOCKER_HOST, or the local socket).
    docker_host: str | None = None
    ready_timeout: Annotated[Duration, AfterValidator(_bounded_wait)] = 120.0
    # How long one call to the engine may take.
    api_timeout: Annotated[Duration, AfterValidator(_bounded_wait)] = 30.0
    # For an update to a named version: tasks updated at once (0: all at once) and how long
    # Swarm watches each for failure. None keeps what the service's spec says.
    parallelism: int | None = Field(default=None, ge=0, le=1000)
    monitor: Annotated[Duration | None, AfterValidator(_monitor)] = None
    # The runbook's cleanup: after a rollback that verify passed, remove the image this run replaced
    # from the node (never one a service still specifies), so it cannot be deployed again by mistake.
    remove_replaced_image: bool = False
