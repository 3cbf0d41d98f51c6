"""Docker Swarm services: the version is the service's image tag (``repo:v1.2.9``).

Two ways back, both guarded by the service's version index (Swarm's optimistic lock: an update
naming a stale index is refused by the manager, so a deploy that lands in between is a conflict,
never overwritten):

- to the version PreviousSpec runs: Swarm's own server-side rollback
  (``POST /services/{id}/update?version=N&rollback=previous``), what ``docker service update
  --rollback`` does. Swarm keeps one level of history, so this reaches one version back;
- to any other version the service ran (its history: see ``history``) whose image is on the node:
  an update of the image to ``repo:<version>``.

An update that goes out and gets no answer (a read timeout, a connection closed before the answer)
is read again, never sent twice: applied when the version index moved past the one it was sent at
and the spec names the target; not applied when the index did not move within ``api_timeout``, or
moved without it (Swarm refuses a stale index); UNKNOWN when the service cannot be read again
(``SwarmEngine.reread_after_unanswered``). One that was never sent (connection refused) is not applied.

Readiness is Swarm's own account: the update state is ``completed`` / ``rollback_completed`` and
the running tasks equal the desired ones, every one on the target image. A paused update is a
failed rollback, reported with the tasks' errors.

The census counts tasks: every task Swarm wants running or that still runs, each with the version
of its own image (a half-finished update leaves tasks on the old one), and the service's update
state and running count as problems when the rollout is not complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..census import Census
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import newest_occurrence, version_problem
from .base import Finding, Target, TargetContext
from .swarm_census import build_census
from .swarm_engine import SwarmEngine, Unanswered, conflict_message, spec_image, split_image
from .swarm_history import recorded_versions
from .swarm_settings import STEP_REMOVE_IMAGE, STEP_UPDATE, STEP_WAIT, SwarmSettings
from .swarm_wait import PAUSED, wait_for_tasks

IN_PROGRESS = ("updating", "rollback_started")
NANOS = 1_000_000_000
FAST_MONITOR = 1.0  # --rollback-fast: seconds Swarm watches the new tasks for failure
FAST_TRADE = (
    "emergency mode (--rollback-fast): every task replaced at once (parallelism 0, stop-first: "
    "the service answers nothing for a moment), failures watched for 1s only"
)


class SwarmTarget(Target):
    """The swarm driver: reads and updates one service through its engine (``SwarmEngine``)."""

    kind = "swarm"
    settings_model = SwarmSettings
    settings: SwarmSettings

    def __init__(self, settings: SwarmSettings, context: TargetContext) -> None:
        super().__init__(settings, context)
        self.engine = SwarmEngine(settings)

    # --- the engine -------------------------------------------------------------------------

    def _where(self) -> str:
        return self.engine.where()

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.engine.call(what, method, *args, **kwargs)

    def _service(self) -> dict[str, Any]:
        return self.engine.service()

    def _post_update(self, service_id: str, spec: dict[str, Any], params: dict[str, Any], expected: str) -> None:
        self.engine.post_update(service_id, spec, params, expected)

    def task_table(self, service_id: str) -> list[dict[str, Any]]:
        """Like ``docker service ps``: the newest task of each slot (or node), then older ones."""
        return self.engine.task_table(service_id)

    # --- reading ----------------------------------------------------------------------------

    def _repo(self, service: dict[str, Any]) -> str:
        return split_image(spec_image(service["Spec"]))[0]

    def live_version(self) -> str:
        service = self._service()
        image = spec_image(service["Spec"])
        tag = split_image(image)[1]
        if tag is None:
            raise RollbackFailed(f"service {self.settings.service} runs image {image!r}, which has no tag to read")
        return tag

    def _previous_version(self, service: dict[str, Any]) -> str | None:
        previous = service.get("PreviousSpec")
        return split_image(spec_image(previous))[1] if previous else None

    def history(self) -> list[str]:
        """What this service ran, oldest first: what the harness's journals saw, PreviousSpec, Spec.

        Never the local image tags: an image on the node is not a version the service ever ran.
        """
        service = self._service()
        ran = [
            *recorded_versions(self.context.base_dir, self.kind, str(service["ID"])),
            self._previous_version(service),
            self._spec_version(service),
        ]
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
        return split_image(spec_image(service["Spec"]))[1]

    def observe(self) -> str:
        """The service's version index: Swarm bumps it on every change to the service."""
        return self.engine.version_index()

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
        if not self.engine.image_present(image):
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
            raise Conflict(conflict_message(self.settings.service, expected_state, str(index)))
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
            step.detail["from"] = spec_image(service["Spec"])
            step.detail["tasks_before"] = self.task_table(service["ID"])
            if split_image(spec_image(service["Spec"]))[1] == version:
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
            try:
                self._post_update(service["ID"], spec, params, expected_state or str(index))
            except Unanswered as lost:  # sent, no answer: read again to know; never send it twice
                self.engine.reread_after_unanswered(service, image, server_side, lost, step.detail)
                self.context.progress(
                    f"{self.settings.service}: the answer to the update was lost; a re-read confirmed it was applied"
                )

    # --- waiting ----------------------------------------------------------------------------

    def wait_ready(self, version: str, journal: Journal) -> None:
        wait_for_tasks(self.engine, self.context, version, journal)

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
            users = [s["Spec"]["Name"] for s in services if spec_image(s["Spec"]).split("@")[0] == replaced]
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
        tasks = self.engine.tasks(service["ID"])
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
            facts["image"] = spec_image(service["Spec"])
            facts["previous_image"] = spec_image(service.get("PreviousSpec")) or None
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
