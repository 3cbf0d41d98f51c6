"""Docker Swarm services: the version is the service's image tag (``repo:v1.2.9``).

Two ways back, both guarded by the service's version index (Swarm's optimistic lock: an update
naming a stale index is refused by the manager, so a deploy that lands in between is a conflict,
never overwritten):

- to the version PreviousSpec runs: Swarm's own server-side rollback
  (``POST /services/{id}/update?version=N&rollback=previous``), what ``docker service update
  --rollback`` does. Swarm keeps one level of history, so this reaches one version back;
- to any other version the service ran (its history: see ``history``) whose image is on the node:
  an update of the image to ``repo:<version>``.

Readiness is Swarm's own account: the update state is ``completed`` / ``rollback_completed`` and
the running tasks equal the desired ones, every one on the target image. A paused update is a
failed rollback, reported with the tasks' errors.

The census counts tasks: every task Swarm wants running or that still runs, each with the version
of its own image (a half-finished update leaves tasks on the old one), and the service's update
state and running count as problems when the rollout is not complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from ..census import Census, Replica
from ..config import Duration, Section
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..resume import read_record
from ..versions import newest_occurrence, version_problem
from .base import Finding, Target

POLL_INTERVAL = 0.25  # seconds between looks at the service while waiting
REPORT_EVERY = 2.0  # seconds between progress lines
MAX_WAIT = 24 * 3600.0
STEP_UPDATE, STEP_WAIT = "update-service", "wait-ready"
STEP_REMOVE_IMAGE = "remove-image"
IN_PROGRESS = ("updating", "rollback_started")
PAUSED = ("paused", "rollback_paused")
DONE = ("completed", "rollback_completed")
NANOS = 1_000_000_000
FAST_MONITOR = 1.0  # --rollback-fast: seconds Swarm watches the new tasks for failure
FAST_TRADE = (
    "emergency mode (--rollback-fast): every task replaced at once (parallelism 0, stop-first: "
    "the service answers nothing for a moment), failures watched for 1s only"
)


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


def split_image(image: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` -> (repo, tag or None)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


class SwarmTarget(Target):
    kind = "swarm"
    settings_model = SwarmSettings
    settings: SwarmSettings
    _client: Any = None

    # --- the engine -------------------------------------------------------------------------

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
                raise RollbackFailed(f"cannot reach the Docker Engine at {self._where()}: {exc}") from None
        return self._client

    def _where(self) -> str:
        if self.settings.docker_host:
            return self.settings.docker_host
        import os

        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (the default; DOCKER_HOST is unset)"

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
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
            raise RollbackFailed(f"cannot reach the Docker Engine at {self._where()} to {what}: {exc}") from None

    def _service(self) -> dict[str, Any]:
        import docker

        try:
            service: dict[str, Any] = self._call("inspect the service", "inspect_service", self.settings.service)
        except docker.errors.NotFound:
            raise RollbackFailed(
                f"no swarm service named {self.settings.service!r} on the engine at {self._where()}"
            ) from None
        return service

    def _tasks(self, service_id: str, desired_running: bool = False) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"service": service_id}
        if desired_running:
            filters["desired-state"] = "running"
        tasks: list[dict[str, Any]] = self._call("list the service's tasks", "tasks", filters=filters)
        return tasks

    # --- reading ----------------------------------------------------------------------------

    @staticmethod
    def _image(spec: dict[str, Any] | None) -> str:
        return str(((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Image", ""))

    def _repo(self, service: dict[str, Any]) -> str:
        return split_image(self._image(service["Spec"]))[0]

    def live_version(self) -> str:
        service = self._service()
        image = self._image(service["Spec"])
        tag = split_image(image)[1]
        if tag is None:
            raise RollbackFailed(f"service {self.settings.service} runs image {image!r}, which has no tag to read")
        return tag

    def _previous_version(self, service: dict[str, Any]) -> str | None:
        previous = service.get("PreviousSpec")
        return split_image(self._image(previous))[1] if previous else None

    def history(self) -> list[str]:
        """What this service ran, oldest first: what the harness's journals saw, PreviousSpec, Spec.

        Never the local image tags: an image on the node is not a version the service ever ran.
        """
        service = self._service()
        ran = [*self._recorded_versions(service), self._previous_version(service), self._spec_version(service)]
        return newest_occurrence([v for v in ran if v is not None and version_problem(v) is None])

    def previous_refusal(self) -> str | None:
        """Why ``previous`` means nothing here now: Swarm's previous is PreviousSpec, and there is none."""
        service = self._service()
        if self._previous_version(service) is not None:
            return None
        return (
            f"'previous' is the version of the service's PreviousSpec (Swarm's own rollback), and service "
            f"{self.settings.service} has none: it was never updated since it was created; "
            "name the version instead: --rollback-to VERSION"
        )

    def _spec_version(self, service: dict[str, Any]) -> str | None:
        return split_image(self._image(service["Spec"]))[1]

    def _recorded_versions(self, service: dict[str, Any]) -> list[str]:
        """Versions this service (this very one: same id) ran by the journals the harness's records name.

        A record (``.rollback-<target>.state.json`` beside the config) names its run's journal; that
        journal describes the service before the run (image, previous image) and says which version
        a finished wait saw every task run. Unreadable records and journals are skipped.
        """
        found: list[tuple[str, list[str]]] = []
        for path in sorted(self.context.base_dir.glob(".rollback-*.state.json")):
            record, _ = read_record(path)
            journal = record.get("journal") if record else None
            if record is None or not isinstance(journal, str) or not Path(journal).is_file():
                continue
            versions = self._versions_in_journal(Journal(Path(journal)).entries(), str(service["ID"]))
            if versions:
                found.append((str(record.get("started") or ""), versions))
        return [version for _, versions in sorted(found) for version in versions]

    def _versions_in_journal(self, entries: list[dict[str, Any]], service_id: str) -> list[str]:
        described = next((e for e in entries if e.get("step") == "target" and e.get("status") == "described"), None)
        if described is None or described.get("kind") != self.kind or described.get("service_id") != service_id:
            return []
        versions = [split_image(str(described.get(key) or ""))[1] for key in ("previous_image", "image")]
        waiting: str | None = None
        for entry in entries:
            if entry.get("step") == STEP_WAIT and entry.get("status") == "started":
                waiting = entry.get("version")
            elif entry.get("step") == STEP_WAIT and entry.get("status") == "done" and waiting:
                versions.append(waiting)  # every task ran it and Swarm said the update completed
        return [version for version in versions if version]

    def observe(self) -> str:
        """The service's version index: Swarm bumps it on every change to the service."""
        return str(self._service()["Version"]["Index"])

    def _image_present(self, image: str) -> bool:
        import docker

        try:
            self._call(f"inspect image {image}", "inspect_image", image)
        except docker.errors.NotFound:
            return False
        return True

    def command_findings(self) -> list[Finding]:
        """The engine answers and can change services: it is a swarm manager."""
        info = self._call("describe itself", "info")
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active":
            return [
                Finding(
                    "target-deployable",
                    False,
                    f"the Docker Engine at {self._where()} is not in a swarm "
                    f"(state {swarm.get('LocalNodeState') or 'unknown'})",
                )
            ]
        if not swarm.get("ControlAvailable"):
            return [
                Finding(
                    "target-deployable",
                    False,
                    f"the Docker Engine at {self._where()} is a swarm worker, not a manager: "
                    "only a manager can update services; point docker_host at a manager",
                )
            ]
        return [Finding("target-deployable", True, f"engine {info.get('ServerVersion')} is a swarm manager")]

    def deployable(self, version: str) -> list[Finding]:
        service = self._service()
        repo = self._repo(service)
        image = f"{repo}:{version}"
        findings = []
        state = (service.get("UpdateStatus") or {}).get("State")
        if state in IN_PROGRESS:
            message = (service.get("UpdateStatus") or {}).get("Message", "")
            return [
                Finding(
                    "target-deployable",
                    False,
                    f"service {self.settings.service} is in the middle of an update (state {state}: {message}); "
                    "wait for it to finish or pause, then run again",
                )
            ]
        if not self._image_present(image):
            return [
                Finding(
                    "target-deployable",
                    False,
                    f"image {image} is not on this node (no registry is consulted): "
                    f"load or build it first (docker load / docker pull {image})",
                )
            ]
        findings.append(Finding("target-deployable", True, f"image {image} is present on the node"))
        previous = self._previous_version(service)
        if previous == version:
            findings.append(
                Finding("target-deployable", True, f"PreviousSpec runs {version}: Swarm's server-side rollback")
            )
        else:
            why = f"PreviousSpec runs {previous}" if previous else "the service has no PreviousSpec"
            findings.append(
                Finding(
                    "target-deployable",
                    True,
                    f"{why}; Swarm keeps one level of history, so {version} is an image update to {image}",
                )
            )
        if state in PAUSED:
            findings.append(Finding("target-deployable", True, f"the last update is {state}; a new one replaces it"))
        return findings

    # --- changing ---------------------------------------------------------------------------

    def steps(self) -> list[str]:
        return [STEP_UPDATE, STEP_WAIT]

    def _server_side(self, service: dict[str, Any], version: str) -> bool:
        """Swarm's own rollback: to PreviousSpec's version, unless fast (its pace is PreviousSpec's)."""
        return self._previous_version(service) == version and not self.context.fast

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        name = self.settings.service
        if STEP_UPDATE in steps:
            try:
                service = self._service()
                server_side = self._server_side(service, version)
                image = f"{self._repo(service)}:{version}"
            except RollbackFailed:
                server_side, image = False, f"<repo>:{version}"
            if server_side:
                lines.append(f"roll service {name} back to its PreviousSpec ({image}): docker service rollback")
            elif self.context.fast:
                lines.append(f"update service {name} to image {image}: {FAST_TRADE}")
            else:
                lines.append(f"update service {name} to image {image}{self._update_options()}")
        if STEP_WAIT in steps:
            lines.append(
                f"wait until every task of {name} runs {version} and Swarm reports the update completed "
                f"(up to {format_duration(self.settings.ready_timeout)})"
            )
        if self.settings.remove_replaced_image and STEP_UPDATE in steps:
            lines.append("once verify has passed: remove the replaced image from this node (remove_replaced_image)")
        return lines

    def _update_options(self) -> str:
        options = []
        if self.settings.parallelism is not None:
            options.append(f"parallelism {self.settings.parallelism}")
        if self.settings.monitor is not None:
            options.append(f"monitor {format_duration(self.settings.monitor)}")
        return f" ({', '.join(options)})" if options else ""

    def way_back(self, version: str) -> str:
        try:
            image = f"{self._repo(self._service())}:{version}"
        except RollbackFailed:
            image = f"<repo>:{version}"
        return f"docker service update --image {image} {self.settings.service}"

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        if STEP_UPDATE not in steps:
            return
        service = self._service()
        index = service["Version"]["Index"]
        if expected_state is not None and str(index) != expected_state:
            raise Conflict(self._conflict_message(expected_state, str(index)))
        repo = self._repo(service)
        image = f"{repo}:{version}"
        server_side = self._server_side(service, version)
        with journal.step(
            STEP_UPDATE,
            service=self.settings.service,
            image=image,
            how="server-side rollback"
            if server_side
            else ("fast image update" if self.context.fast else "image update"),
            index=index,
        ) as step:
            step.detail["from"] = self._image(service["Spec"])
            step.detail["tasks_before"] = self.task_table(service["ID"])
            if split_image(self._image(service["Spec"]))[1] == version:
                # Never again: a second server-side rollback would swap back to the bad spec. A
                # paused update to it is reported by wait_ready, with the tasks' errors.
                state = (service.get("UpdateStatus") or {}).get("State")
                step.detail["note"] = f"service already specifies {image} (update state {state or 'none'})"
                return
            spec = service["Spec"]
            params: dict[str, Any] = {"version": index}
            if server_side:
                params["rollback"] = "previous"
            elif self.context.fast:
                step.detail["traded"] = FAST_TRADE
                if self._previous_version(service) == version:
                    # All of PreviousSpec, under the current name and labels, as Swarm's rollback does.
                    spec = {**service["PreviousSpec"], "Name": spec["Name"], "Labels": spec.get("Labels") or {}}
                spec = _with_image(spec, image, 0, FAST_MONITOR)
                spec["UpdateConfig"].update({"Order": "stop-first", "Delay": 0, "FailureAction": "pause"})
            else:
                spec = _with_image(spec, image, self.settings.parallelism, self.settings.monitor)
            self._post_update(service["ID"], spec, params, expected_state or str(index))

    def _conflict_message(self, expected: str, now: str) -> str:
        return (
            f"service {self.settings.service} changed after this run read it: its version index was {expected}, "
            f"it is now {now} (another deploy or run updated it); this run stopped before writing"
        )

    def _post_update(self, service_id: str, spec: dict[str, Any], params: dict[str, Any], expected: str) -> None:
        import docker

        api = self.api
        try:
            response = api._post_json(api._url("/services/{0}/update", service_id), data=spec, params=params)
            api._raise_for_status(response)
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc)
            if "out of sequence" in text:  # the manager's optimistic lock: the index moved
                raise Conflict(self._conflict_message(expected, self.observe())) from None
            raise RollbackFailed(f"the Docker Engine refused the update of {self.settings.service}: {text}") from None
        except Exception as exc:  # requests' connection errors and the like
            raise RollbackFailed(f"cannot reach the Docker Engine at {self._where()} to update: {exc}") from None

    # --- waiting ----------------------------------------------------------------------------

    def task_table(self, service_id: str) -> list[dict[str, Any]]:
        """Like ``docker service ps``: the newest task of each slot (or node), then older ones."""
        rows = []
        for task in self._tasks(service_id):
            status = task.get("Status") or {}
            image = self._image({"TaskTemplate": task.get("Spec") or {}})
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

    def _desired(self, service: dict[str, Any], tasks: list[dict[str, Any]]) -> int:
        mode = service["Spec"].get("Mode") or {}
        if "Replicated" in mode:
            return int(mode["Replicated"].get("Replicas", 1))
        return len(tasks)  # global: one task per eligible node, as the orchestrator wants them

    def wait_ready(self, version: str, journal: Journal) -> None:
        timeout = self.settings.ready_timeout
        name = self.settings.service
        with journal.step(STEP_WAIT, service=name, version=version, timeout_s=timeout) as step:
            started = time.monotonic()
            deadline = started + timeout
            next_report = started + REPORT_EVERY
            while True:
                service = self._service()
                state = (service.get("UpdateStatus") or {}).get("State")
                message = (service.get("UpdateStatus") or {}).get("Message", "")
                specified = split_image(self._image(service["Spec"]))[1]
                tasks = self._tasks(service["ID"], desired_running=True)
                desired = self._desired(service, tasks)
                on_target = [
                    t
                    for t in tasks
                    if (t.get("Status") or {}).get("State") == "running"
                    and split_image(self._image({"TaskTemplate": t.get("Spec") or {}}))[1] == version
                ]
                progress = f"{len(on_target)}/{desired} tasks on {version}"
                if specified != version:
                    step.detail["tasks_after"] = self.task_table(service["ID"])
                    raise RollbackFailed(
                        f"service {name} now specifies {specified}, not {version} (update state {state}: {message}); "
                        "Swarm rolled the update back or another deploy replaced it"
                    )
                if state in PAUSED:
                    table = self.task_table(service["ID"])
                    step.detail["tasks_after"] = table
                    raise RollbackFailed(
                        f"Swarm paused the rollback of {name} ({state}: {message}); {progress}; "
                        f"task errors: {_task_errors(table, version)}"
                    )
                if state in (*DONE, None) and len(on_target) == desired == len(tasks):
                    step.detail["waited_s"] = round(time.monotonic() - started, 3)
                    step.detail["update_state"] = state
                    step.detail["tasks_after"] = self.task_table(service["ID"])
                    return
                now = time.monotonic()
                if now >= deadline:
                    table = self.task_table(service["ID"])
                    step.detail["tasks_after"] = table
                    raise RollbackFailed(
                        f"service {name} did not finish rolling back to {version} within {format_duration(timeout)}: "
                        f"{progress}, update state {state or 'none'}; task errors: {_task_errors(table, version)}"
                    )
                if now >= next_report:
                    self.context.progress(
                        f"{name}: {progress} (update {state or 'pending'}), "
                        f"{format_duration(now - started)} of {format_duration(timeout)}"
                    )
                    next_report = now + REPORT_EVERY
                pause = POLL_INTERVAL / 2.5 if self.context.fast else POLL_INTERVAL
                time.sleep(min(pause, max(0.0, deadline - now)))

    def cleanup(self, journal: Journal) -> None:
        if not self.settings.remove_replaced_image:
            return
        replaced = next(
            (
                str(e["from"]).split("@")[0]
                for e in reversed(journal.entries())
                if e.get("step") == STEP_UPDATE and e.get("status") == "done" and e.get("from") and not e.get("note")
            ),
            None,
        )
        if replaced is None:
            journal.record(STEP_REMOVE_IMAGE, "skipped", reason="this run replaced no image")
            return
        with journal.step(STEP_REMOVE_IMAGE, image=replaced) as step:
            services = self._call("list services", "services")
            users = [s["Spec"]["Name"] for s in services if self._image(s["Spec"]).split("@")[0] == replaced]
            if users:
                step.detail["note"] = f"kept: still specified by {', '.join(sorted(users))}"
                return
            # Stopped task containers keep the image itself; the tag goes, so nobody deploys it again.
            self._call(f"remove the replaced image {replaced}", "remove_image", replaced, force=True)
            step.detail["removed"] = True

    # --- counting ---------------------------------------------------------------------------

    def census(self) -> Census:
        """The service's tasks as Swarm reports them now: three reads, each bounded by ``api_timeout``."""
        service = self._service()
        tasks = self._tasks(service["ID"])
        nodes = self._call("list the swarm's nodes", "nodes")
        hostnames = {
            str(node.get("ID", "")): str((node.get("Description") or {}).get("Hostname") or "") for node in nodes
        }
        return build_census(self.settings.service, service, tasks, hostnames)

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            **super().describe(),
            "service": self.settings.service,
            "docker_host": self._where(),
        }
        try:
            service = self._service()
            facts["service_id"] = service["ID"]
            facts["image"] = self._image(service["Spec"])
            facts["previous_image"] = self._image(service.get("PreviousSpec")) or None
            facts["update_state"] = (service.get("UpdateStatus") or {}).get("State")
            facts["tasks_before"] = self.task_table(service["ID"])
        except RollbackFailed as exc:
            facts["error"] = str(exc)
        return facts


def _with_image(spec: dict[str, Any], image: str, parallelism: int | None, monitor: float | None) -> dict[str, Any]:
    """A copy of ``spec`` running ``image``, with the update options the settings ask for."""
    new = {**spec, "TaskTemplate": {**spec["TaskTemplate"]}}
    new["TaskTemplate"]["ContainerSpec"] = {**spec["TaskTemplate"]["ContainerSpec"], "Image": image}
    update = dict(spec.get("UpdateConfig") or {})
    if parallelism is not None:
        update["Parallelism"] = parallelism
    if monitor is not None:
        update["Monitor"] = int(monitor * NANOS)
    if update:
        new["UpdateConfig"] = update
    return new


def _task_version(task: dict[str, Any]) -> str | None:
    """The tag of the task's own image: what it runs, whatever the service specifies now."""
    image = str(((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Image", ""))
    return split_image(image)[1]


def _task_replica(task: dict[str, Any], hostnames: dict[str, str]) -> Replica:
    status = task.get("Status") or {}
    state = str(status.get("State") or "unknown")
    desired = str(task.get("DesiredState") or "unknown")
    node_id = str(task.get("NodeID") or "")
    node = hostnames.get(node_id) or node_id[:12] or "no node yet"
    where = f"slot {task['Slot']}, node {node}" if task.get("Slot") else f"node {node}"
    serving = state == "running" and desired == "running"
    detail = f"node {node}"
    if not serving:
        why = status.get("Err") or status.get("Message") or ""
        detail += f"; desired state {desired}" + (f"; {why}" if why else "")
    return Replica(
        name=f"task {str(task.get('ID', ''))[:12]} ({where})",
        version=_task_version(task),
        serving=serving,
        state=state,
        detail=detail,
    )


def _update_problem(name: str, state: str | None, message: str) -> str | None:
    why = f" ({state}: {message})" if message else f" ({state})"
    if state == "updating":
        return f"Swarm is still updating service {name}{why}: some tasks are not replaced yet"
    if state == "rollback_started":
        return f"Swarm is still rolling service {name} back{why}: some tasks are not replaced yet"
    if state == "paused":
        return (
            f"Swarm paused the update of service {name}{why}: tasks stay as they are until someone "
            "resumes it (docker service update) or rolls it back"
        )
    if state == "rollback_paused":
        return (
            f"Swarm paused the rollback of service {name}{why}: tasks stay as they are until someone "
            "updates the service again"
        )
    return None


def build_census(name: str, service: dict[str, Any], tasks: list[dict[str, Any]], hostnames: dict[str, str]) -> Census:
    """The census of ``service`` from what the engine answered: no calls here.

    Tasks that are shut down and stopped (earlier images, failed attempts) are history, left out.
    """
    current = [
        task
        for task in tasks
        if task.get("DesiredState") == "running" or (task.get("Status") or {}).get("State") == "running"
    ]
    current.sort(key=lambda task: (int(task.get("Slot") or 0), str(task.get("NodeID", "")), str(task.get("ID", ""))))
    replicas = tuple(_task_replica(task, hostnames) for task in current)
    running = sum(1 for replica in replicas if replica.serving)
    update = service.get("UpdateStatus") or {}
    state = update.get("State")
    message = str(update.get("Message") or "")
    mode = service["Spec"].get("Mode") or {}
    wanted = int(mode["Replicated"].get("Replicas", 1)) if "Replicated" in mode else None
    problems = []
    update_problem = _update_problem(name, state, message)
    if update_problem:
        problems.append(update_problem)
    if wanted is not None and running < wanted:
        count = f"only {running} of the {wanted} tasks" if running else f"none of the {wanted} tasks"
        problems.append(f"{count} service {name} asks for {'is' if running == 0 else 'are'} running")
    facts: dict[str, Any] = {
        "service": name,
        "mode": "replicated" if wanted is not None else "global",
        "spec_replicas": wanted,
        "running": running,
        "image": SwarmTarget._image(service["Spec"]),
        "update_state": state,
        "update_message": message,
        "version_index": int((service.get("Version") or {}).get("Index", 0)),
    }
    return Census(unit="task", replicas=replicas, problems=tuple(problems), facts=facts)


def _task_errors(table: list[dict[str, Any]], version: str) -> str:
    """The errors of the failed tasks, newest first: what `docker service ps` shows in ERROR."""
    errors = []
    for row in sorted(table, key=lambda r: str(r["since"]), reverse=True):
        if row["error"] or row["state"] in ("failed", "rejected"):
            errors.append(f"task {row['id']} (slot {row['slot']}, {row['version']}): {row['state']}: {row['error']}")
    return "; ".join(errors[:5]) or "none reported"
