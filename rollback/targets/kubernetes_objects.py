"""What Deployment, ReplicaSet and pod objects say, read without the API server.

kubectl's own rules (pkg/polymorphichelpers/rollback.go, rollout status), kept as plain functions of the
objects so the driver's parts share one reading of them.
"""

from __future__ import annotations

import copy
from typing import Any

REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
CHANGE_CAUSE = "kubernetes.io/change-cause"
# The deployment's own values of these are kept by an undo; every other annotation comes from the
# target ReplicaSet (kubectl, pkg/polymorphichelpers/rollback.go, annotationsToSkip).
ANNOTATIONS_TO_SKIP = (
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
)
REVISION_PREFIX = "revision:"

Obj = dict[str, Any]


def pruned(value: Any) -> Any:
    """``value`` without nulls, empty maps and empty lists: Go's semantic equality ignores them."""
    if isinstance(value, dict):
        items = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def template_without_hash(template: Obj) -> Obj:
    result = copy.deepcopy(template)
    labels = (result.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return result


def same_template(a: Obj, b: Obj) -> bool:
    """kubectl's equalIgnoreHash: equal once the pod-template-hash label is dropped."""
    return bool(pruned(template_without_hash(a)) == pruned(template_without_hash(b)))


def revision_of(rs: Obj) -> int | None:
    """The ReplicaSet's revision: missing is 0, not an integer is None (kubectl skips those)."""
    text = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(text)
    except ValueError:
        return None


def selector_string(selector: Obj) -> str:
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(terms)


def image_tag(image: str) -> str:
    """``registry:5000/app:v1.2.9@sha256:...`` -> ``v1.2.9``; no tag -> ``latest``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else "latest"


def undo_patch(deployment: Obj, rs: Obj, resource_version: str | None) -> list[Obj]:
    """kubectl's undo patch for ``rs``, led by a resourceVersion precondition when one is given."""
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: current[k] for k in ANNOTATIONS_TO_SKIP if k in current}
    for key, value in ((rs.get("metadata") or {}).get("annotations") or {}).items():
        if key not in ANNOTATIONS_TO_SKIP:
            annotations[key] = value
    operations: list[Obj] = []
    if resource_version is not None:
        operations.append({"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version})
    operations.append(
        {"op": "replace", "path": "/spec/template", "value": template_without_hash(rs["spec"]["template"])}
    )
    operations.append({"op": "replace", "path": "/metadata/annotations", "value": annotations})
    return operations


def not_ready_reason(pod: Obj) -> str:
    """Why a pod is not ready, in the kubelet's words: a container's waiting or terminated reason, else
    the Ready or PodScheduled condition's reason and message."""
    status = pod.get("status") or {}
    reasons = []
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        stopped = state.get("waiting") or state.get("terminated") or {}
        if stopped.get("reason"):
            reasons.append(f"{container.get('name')}: {stopped['reason']}")
        elif "running" in state and not container.get("ready"):
            reasons.append(f"{container.get('name')}: running, not ready")
    if reasons:
        return "; ".join(reasons)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    for kind in ("PodScheduled", "Ready"):
        condition = conditions.get(kind) or {}
        if condition.get("status") == "False":
            said = ": ".join(str(part) for part in (condition.get("reason"), condition.get("message")) if part)
            return f"{kind} is False" + (f" ({said})" if said else "")
    return f"phase {status.get('phase') or 'unknown'}, no reason given"


def observed_state(deployment: Obj) -> str:
    """The deployment's generation and revision: any spec change (set image, pause, undo) moves them."""
    annotations = deployment["metadata"].get("annotations") or {}
    return f"generation {deployment['metadata'].get('generation')}, revision {annotations.get(REVISION, '?')}"


def rollout_problem(deployment: Obj) -> str | None:
    """None when rolled out, else what kubectl rollout status would be waiting for."""
    spec, status = deployment["spec"], deployment.get("status") or {}
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return "waiting for the deployment spec update to be observed"
    replicas = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < replicas:
        return f"{updated} of {replicas} new replicas updated"
    if total > updated:
        return f"{total - updated} old replicas are pending termination"
    if available < updated:
        return f"{available} of {updated} updated replicas available"
    return None


def progress_line(deployment: Obj) -> str:
    """``2/3 updated, 1 old pod terminating``."""
    status = deployment.get("status") or {}
    replicas = deployment["spec"].get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    old = max(0, status.get("replicas", 0) - updated)
    line = f"{updated}/{replicas} updated"
    if old:
        line += f", {old} old pod{'s' if old != 1 else ''} terminating"
    return line
