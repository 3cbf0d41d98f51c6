"""The Docker Engine as the swarm driver reaches it: one low-level client, made on first use, and
every call's failure put in words naming what was asked.

Kept apart from the driver so that its reading, waiting and updating share one way in. The
docker SDK is the ``[swarm]`` extra: imported where a call needs it, never at load.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from .swarm_settings import SwarmSettings

REREAD_INTERVAL = 0.2  # seconds between reads of a service whose update got no answer
ROLLBACK_STATES = ("rollback_started", "rollback_paused", "rollback_completed")
# A connection that never opened: the request was not sent (``not_sent``).
_NOT_CONNECTED = (ConnectionRefusedError, FileNotFoundError, PermissionError)


class Unanswered(RollbackFailed):
    """An update that went out and got no answer: applied or not is unknown until the service is read again.

    As the kubernetes driver's ``Unanswered``; a RollbackFailed, so a caller that does not read the
    service again still reports it as unknown, never as not applied.
    """

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


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

        An index that moved since is the manager's optimistic lock refusing it: a Conflict. A request
        that could not be sent (no connection) is a RollbackFailed saying it was not applied; one that
        went out and got no answer (a read timeout, a connection closed before the answer, a gateway's
        504) is ``Unanswered``: whether it was applied is for ``reread_after_unanswered`` to find out.
        """
        import docker
        import requests

        api = self.api
        name = self.settings.service
        try:
            response = api._post_json(api._url("/services/{0}/update", service_id), data=spec, params=params)
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "out of sequence" in text:  # the manager's optimistic lock: the index moved
                raise Conflict(conflict_message(name, expected, self.version_index())) from None
            if exc.status_code == 504:  # a gateway gave up; the engine behind it may still be at work
                raise self._unanswered(f"504 from a gateway in front of the engine: {text}") from None
            raise RollbackFailed(f"the Docker Engine refused the update of {name}: {text}") from None
        except requests.RequestException as exc:
            if not_sent(exc):
                raise RollbackFailed(
                    f"the update of service {name} was not sent: cannot reach the Docker Engine at {self.where()} "
                    f"({exc}); not applied"
                ) from None
            raise self._unanswered(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # anything else may have come after the request went out: unknown
            raise self._unanswered(f"{type(exc).__name__}: {exc}") from None

    def _unanswered(self, error: str) -> Unanswered:
        name = self.settings.service
        return Unanswered(
            f"the update of service {name} got no answer from the Docker Engine at {self.where()} ({error}); "
            f"the outcome is UNKNOWN until the service is read again: run `docker service inspect {name}`",
            error,
        )

    def reread_after_unanswered(
        self, before: dict[str, Any], image: str, server_side: bool, lost: Unanswered, detail: dict[str, Any]
    ) -> dict[str, Any]:
        """An update whose answer was lost: read the service again until the outcome is known; never send it twice.

        Applied: the version index moved past the one the update was sent at (``before``'s) and the
        spec names ``image`` (a server-side rollback: the spec is what PreviousSpec was, or Swarm says a
        rollback started). Not applied: the index moved without it (Swarm refuses an update sent at a
        stale index), or it stayed put for ``api_timeout`` of reading again. Unknown: the service could
        not be read again. Journals the outcome in ``detail``; returns the service as read.
        """
        name = self.settings.service
        sent_at = int(before["Version"]["Index"])
        what = (
            f"Swarm's server-side rollback of service {name} to its PreviousSpec ({image})"
            if server_side
            else f"the update of service {name} to {image}"
        )
        what = f"{what}, sent at version index {sent_at},"
        detail["answer"] = f"lost ({lost.error})"
        timeout = self.settings.api_timeout
        deadline = time.monotonic() + timeout
        reads = 0
        while True:
            try:
                now = self.service()
            except RollbackFailed as exc:
                left = deadline - time.monotonic()
                if left > 0:
                    time.sleep(min(REREAD_INTERVAL, left))
                    continue
                detail["write"] = "unknown (the answer was lost and the service could not be read again)"
                raise RollbackFailed(
                    f"{what} got no answer ({lost.error}); the outcome is UNKNOWN: reading the service again "
                    f"failed too ({exc}); it was not sent again; run `docker service inspect {name}` to see "
                    f"(a Version.Index above {sent_at} and the image {image} mean it was applied) before running again"
                ) from None
            reads += 1
            index = int(now["Version"]["Index"])
            specified = spec_image(now["Spec"])
            if index > sent_at and _landed(before, now, image, server_side):
                detail["write"] = "applied (the answer was lost; a re-read confirmed it)"
                detail["reread"] = {
                    "index": index,
                    "image": specified,
                    "update_state": (now.get("UpdateStatus") or {}).get("State"),
                    "reads": reads,
                }
                return now
            if index > sent_at:
                detail["write"] = "not applied (the answer was lost; the service moved on without it)"
                raise RollbackFailed(
                    f"{what} got no answer ({lost.error}); re-read: not applied: the service moved on from version "
                    f"index {sent_at} to {index} without it (it specifies {specified}), and Swarm refuses an "
                    "update sent at an index that has moved; it was not sent again"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                detail["write"] = "not applied (the answer was lost; re-read: the version index did not move)"
                raise RollbackFailed(
                    f"{what} got no answer ({lost.error}); re-read: not applied: the version index stayed at "
                    f"{sent_at} for {format_duration(timeout)} of reading the service again (it still specifies "
                    f"{specified}); it was not sent again"
                )
            time.sleep(min(REREAD_INTERVAL, left))

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


def not_sent(exc: BaseException) -> bool:
    """Whether the request behind ``exc`` never went out: no connection was made (refused, no socket, a
    connect timeout). Anything else (a read timeout, a connection closed after sending) may have been sent."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return True
    seen: list[BaseException] = [exc]
    for cause in seen:
        if isinstance(cause, (ConnectTimeoutError, *_NOT_CONNECTED)):  # urllib3's NewConnectionError is one
            return True
        more = [*cause.args, getattr(cause, "reason", None), cause.__cause__]
        seen.extend(e for e in more if isinstance(e, BaseException) and e not in seen and len(seen) < 20)
    return False


def _bare(image: str) -> str:
    return image.split("@", 1)[0]


def _landed(before: dict[str, Any], now: dict[str, Any], image: str, server_side: bool) -> bool:
    """Whether ``now`` (read after the index moved) is the update's work, by its spec."""
    if _bare(spec_image(now["Spec"])) == _bare(image):
        return True
    if not server_side:
        return False
    previous = before.get("PreviousSpec") or {}
    if now["Spec"] == previous or _bare(spec_image(now["Spec"])) == _bare(spec_image(previous)):
        return True
    status, earlier = now.get("UpdateStatus") or {}, before.get("UpdateStatus") or {}
    return status.get("State") in ROLLBACK_STATES and status.get("StartedAt") != earlier.get("StartedAt")
