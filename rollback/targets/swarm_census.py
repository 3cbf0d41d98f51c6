"""The census of a swarm service: every task Swarm wants running or that still runs, each with the
version of its own image (a half-finished update leaves tasks on the old one), and the update state
and running count as problems when the rollout is not complete.

Built from what the engine answered: no calls here.
"""

from __future__ import annotations

from typing import Any

from ..census import Census, Replica
from .swarm_engine import spec_image, split_image


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
        "image": spec_image(service["Spec"]),
        "update_state": state,
        "update_message": message,
        "version_index": int((service.get("Version") or {}).get("Index", 0)),
    }
    return Census(unit="task", replicas=replicas, problems=tuple(problems), facts=facts)
