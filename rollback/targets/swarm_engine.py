"""The Docker Engine as the swarm driver reaches it: one low-level client, made on first use, and
every call's failure put in words naming what was asked.

Kept apart from the driver so that its reading, waiting and updating share one way in. The
docker SDK is the ``[swarm]`` extra: imported where a call needs it, never at load.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import Conflict, RollbackFailed
from .swarm_settings import SwarmSettings


def split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` -> (repo, tag or None)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def spec_image(spec: dict[str, Any] | None) -> str:
    """The image a service spec (or ``{"TaskTemplate": task spec}``) names; "" when none."""
    return str(((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))


def conflict_message(service: str, expected: str, now: str) -> str:
    return (
        f"service {service} changed after this run read it: its version index was {expected}, "
        f"it is now {now} (another deploy or run updated it); this run stopped before writing"
    )


class SwarmEngine:
    """The engine the settings name (``docker_host``, or the environment), and the calls the driver makes."""

    def __init__(self, settings: SwarmSettings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def api(self) -> Any:
        """The SDK's low-level APIClient (the server-side rollback has no high-level method)."""
        if self._client is None:
            import docker

            try:
                if self.settings.docker_host:
                    self._client = docker.APIClient(
                        base_url=self.settings.docker_host, version="auto", timeout=self.settings.api_timeout
                    )
                else:
                    self._client = docker.from_env(version="auto", timeout=self.settings.api_timeout).api
            except docker.errors.DockerException as exc:
                raise RollbackFailed(f"cannot reach the Docker Engine at {self.where()}: {exc}") from None
        return self._client

    def where(self) -> str:
        if self.settings.docker_host:
            return self.settings.docker_host
        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (the default; DOCKER_HOST is unset)"

    def call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """One API call; engine errors become RollbackFailed naming what was asked."""
        import docker
        import requests

        try:
            return getattr(self.api, method)(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except docker.errors.APIError as exc:
            raise RollbackFailed(f"the Docker Engine refused to {what}: {exc.explanation or exc}") from None
        except (requests.RequestException, docker.errors.DockerException) as exc:
            raise RollbackFailed(f"cannot reach the Docker Engine at {self.where()} to {what}: {exc}") from None

    def service(self) -> dict[str, Any]:
        import docker

        try:
            service: dict[str, Any] = self.call("inspect the service", "inspect_service", self.settings.service)
        except docker.errors.NotFound:
            raise RollbackFailed(
                f"no swarm service named {self.settings.service!r} on the engine at {self.where()}"
            ) from None
        return service

    def tasks(self, service_id: str, desired_running: bool = False) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"service": service_id}
        if desired_running:
            filters["desired-state"] = "running"
        tasks: list[dict[str, Any]] = self.call("list the service's tasks", "tasks", filters=filters)
        return tasks

    def version_index(self) -> str:
        """The service's version index: Swarm bumps it on every change to the service."""
        return str(self.service()["Version"]["Index"])

    def image_present(self, image: str) -> bool:
        import docker

        try:
            self.call(f"inspect image {image}", "inspect_image", image)
        except docker.errors.NotFound:
            return False
        return True

    def post_update(self, service_id: str, spec: dict[str, Any], params: dict[str, Any], expected: str) -> None:
        """The update (or, with ``rollback=previous``, Swarm's own rollback) at version index ``params["version"]``.

        An index that moved since is the manager's optimistic lock refusing it: a Conflict.
        """
        import docker

        api = self.api
        try:
            response = api._post_json(api._url("/services/{0}/update", service_id), data=spec, params=params)
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "out of sequence" in text:  # the manager's optimistic lock: the index moved
                raise Conflict(conflict_message(self.settings.service, expected, self.version_index())) from None
            raise RollbackFailed(f"the Docker Engine refused the update of {self.settings.service}: {text}") from None
        except Exception as exc:  # requests' connection errors and the like
            raise RollbackFailed(f"cannot reach the Docker Engine at {self.where()} to update: {exc}") from None

    def task_table(self, service_id: str) -> list[dict[str, Any]]:
        """Like ``docker service ps``: the newest task of each slot (or node), then older ones."""
        rows = []
        for task in self.tasks(service_id):
            status = task.get("Status") or {}
            image = spec_image({"TaskTemplate": task.get("Spec") or {}})
            rows.append(
                {
                    "id": task.get("ID", "")[:12],
                    "slot": task.get("Slot") or task.get("NodeID", "")[:12],
                    "version": split_image(image)[1],
                    "image": image.split("@", 1)[0],
                    "desired": task.get("DesiredState"),
                    "state": status.get("State"),
                    "error": status.get("Err", ""),
                    "since": status.get("Timestamp", ""),
                }
            )
        rows.sort(key=lambda r: (str(r["slot"]), str(r["since"])), reverse=True)
        rows.sort(key=lambda r: str(r["slot"]))
        return rows
