"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for (``as=Table``)."""

from __future__ import annotations

import time
from typing import Any

from .controller import parse_time
from .store import Obj, selector_to_string


def human_age(created: str) -> str:
    """duration.HumanDuration as kubectl shows AGE: 45s, 3m12s, 17m, 5h3m, 3d."""
    seconds = max(0, int(time.time() - parse_time(created)))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _column(name: str, type_: str = "string", priority: int = 0, fmt: str = "") -> Obj:
    return {"name": name, "type": type_, "format": fmt, "description": name, "priority": priority}


def _containers(template_spec: Obj) -> tuple[str, str]:
    containers = template_spec.get("containers") or []
    return ",".join(c["name"] for c in containers), ",".join(c.get("image", "") for c in containers)


def _deployment_row(d: Obj) -> list[Any]:
    status = d.get("status") or {}
    names, images = _containers(d["spec"]["template"].get("spec") or {})
    return [
        d["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{d['spec'].get('replicas', 0)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        human_age(d["metadata"]["creationTimestamp"]),
        names,
        images,
        selector_to_string(d["spec"].get("selector") or {}),
    ]


def _replicaset_row(rs: Obj) -> list[Any]:
    status = rs.get("status") or {}
    names, images = _containers(rs["spec"]["template"].get("spec") or {})
    return [
        rs["metadata"]["name"],
        rs["spec"].get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        human_age(rs["metadata"]["creationTimestamp"]),
        names,
        images,
        selector_to_string(rs["spec"].get("selector") or {}),
    ]


def _pod_row(pod: Obj) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("phase", "Pending")
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(pod['spec'].get('containers') or [])}",
        reason,
        sum(s.get("restartCount", 0) for s in statuses),
        human_age(pod["metadata"]["creationTimestamp"]),
        status.get("podIP", "<none>"),
        pod["spec"].get("nodeName", "<none>"),
        "<none>",
        "<none>",
    ]


COLUMNS: dict[str, list[Obj]] = {
    "deployments": [
        _column("Name", fmt="name"),
        _column("Ready"),
        _column("Up-to-date", "integer"),
        _column("Available", "integer"),
        _column("Age"),
        _column("Containers", priority=1),
        _column("Images", priority=1),
        _column("Selector", priority=1),
    ],
    "replicasets": [
        _column("Name", fmt="name"),
        _column("Desired", "integer"),
        _column("Current", "integer"),
        _column("Ready", "integer"),
        _column("Age"),
        _column("Containers", priority=1),
        _column("Images", priority=1),
        _column("Selector", priority=1),
    ],
    "pods": [
        _column("Name", fmt="name"),
        _column("Ready"),
        _column("Status"),
        _column("Restarts", "string"),
        _column("Age"),
        _column("IP", priority=1),
        _column("Node", priority=1),
        _column("Nominated Node", priority=1),
        _column("Readiness Gates", priority=1),
    ],
}
ROWS = {"deployments": _deployment_row, "replicasets": _replicaset_row, "pods": _pod_row}


def table(resource: str, items: list[Obj], resource_version: str) -> Obj:
    rows = []
    for obj in items:
        partial = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
        rows.append({"cells": ROWS[resource](obj), "object": partial})
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": COLUMNS[resource],
        "rows": rows,
    }
