"""The emulator's object store: one resourceVersion counter, an event log for watches, one lock.

Objects are plain JSON dicts as the API server stores them. Every write bumps the global
resourceVersion, stamps it on the object and appends a watch event; waiters (the controller, open
watches) sleep on the store's condition and wake on any write.
"""

from __future__ import annotations

import copy
import datetime
import re
import threading
import uuid
from typing import Any

Obj = dict[str, Any]

# resource -> (apiVersion, kind)
KINDS: dict[str, tuple[str, str]] = {
    "deployments": ("apps/v1", "Deployment"),
    "replicasets": ("apps/v1", "ReplicaSet"),
    "pods": ("v1", "Pod"),
    "leases": ("coordination.k8s.io/v1", "Lease"),
}
GROUPS: dict[str, str] = {"deployments": "apps", "replicasets": "apps", "pods": "", "leases": "coordination.k8s.io"}
# Kinds whose metadata carries a generation (bumped when the spec changes).
GENERATED = ("deployments", "replicasets")
EVENT_LOG_LIMIT = 5000


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """Answered as a metav1.Status with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def group_resource(resource: str) -> str:
    group = GROUPS.get(resource, "")
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{group_resource(resource)} "{name}" not found',
        {"name": name, "group": GROUPS.get(resource, ""), "kind": resource},
    )


def conflict(resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {group_resource(resource)} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": name, "group": GROUPS.get(resource, ""), "kind": resource},
    )


class Store:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 0
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {r: {} for r in KINDS}
        self.events: list[tuple[int, str, str, Obj]] = []  # (rv, resource, type, object)
        self.first_event_rv = 1
        self.closed = False

    # Every method below is called with ``self.cond`` held (it is re-entrant: an RLock underneath).

    def _record(self, resource: str, kind: str, obj: Obj) -> None:
        self.events.append((self.rv, resource, kind, copy.deepcopy(obj)))
        if len(self.events) > EVENT_LOG_LIMIT:
            drop = len(self.events) - EVENT_LOG_LIMIT
            self.first_event_rv = self.events[drop][0]
            del self.events[:drop]
        self.cond.notify_all()

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        try:
            return copy.deepcopy(self.objects[resource][(namespace, name)])
        except KeyError:
            raise not_found(resource, name) from None

    def list(self, resource: str, namespace: str | None = None) -> list[Obj]:
        items = [
            copy.deepcopy(obj)
            for (ns, _), obj in sorted(self.objects[resource].items())
            if namespace is None or ns == namespace
        ]
        return items

    def create(self, resource: str, obj: Obj, dry_run: bool = False) -> Obj:
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace = meta.setdefault("namespace", "default")
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{KINDS[resource][1]} is invalid: metadata.name: Required value")
        if (namespace, name) in self.objects[resource]:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{group_resource(resource)} "{name}" already exists',
                {"name": name, "group": GROUPS.get(resource, ""), "kind": resource},
            )
        api_version, kind = KINDS[resource]
        obj["apiVersion"], obj["kind"] = api_version, kind
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if resource in GENERATED:
            meta["generation"] = 1
        if dry_run:
            meta["resourceVersion"] = str(self.rv)
            return obj
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[resource][(namespace, name)] = obj
        self._record(resource, "ADDED", obj)
        return copy.deepcopy(obj)

    def update(self, resource: str, obj: Obj, dry_run: bool = False, check_rv: bool = True) -> Obj:
        """Replaces the stored object; a resourceVersion that is set and differs is a 409 Conflict."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        current = self.objects[resource].get((namespace, name))
        if current is None:
            raise not_found(resource, name)
        given = meta.get("resourceVersion")
        if check_rv and given and given != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        for kept in ("uid", "creationTimestamp", "namespace", "generation"):
            if kept in current["metadata"]:
                meta[kept] = current["metadata"][kept]
        obj["apiVersion"], obj["kind"] = KINDS[resource]
        if resource in GENERATED and obj.get("spec") != current.get("spec"):
            meta["generation"] = current["metadata"].get("generation", 1) + 1
        if {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}} == current:
            return copy.deepcopy(current)  # nothing changed: no new resourceVersion, no event
        if dry_run:
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
            return obj
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self.objects[resource][(namespace, name)] = obj
        self._record(resource, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def delete(
        self, resource: str, namespace: str, name: str, dry_run: bool = False, resource_version: str | None = None
    ) -> Obj:
        """Removes the object; ``resource_version`` (DeleteOptions.preconditions) that differs is a 409."""
        current = self.objects[resource].get((namespace, name))
        if current is None:
            raise not_found(resource, name)
        if resource_version and resource_version != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        if dry_run:
            return copy.deepcopy(current)
        del self.objects[resource][(namespace, name)]
        self.rv += 1
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(resource, "DELETED", gone)
        return gone


# Label selectors: "a=b,c!=d,e in (x,y),f notin (z),g,!h".
_SET_EXPR = re.compile(r"^\s*([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in _split_selector(selector):
        match = _SET_EXPR.match(term)
        if match:
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            found = key in labels and labels[key] in values
            if found != (op == "in"):
                return False
            continue
        if "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def field_selector_matches(selector: str, obj: Obj) -> bool:
    for term in _split_selector(selector):
        negate = "!=" in term
        key, value = (s.strip() for s in term.replace("!=", "=").replace("==", "=").split("=", 1))
        node: Any = obj
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        actual = "" if node is None else str(node)
        if (actual == value) == negate:
            return False
    return True


def selector_to_string(selector: Obj) -> str:
    """A LabelSelector object (matchLabels / matchExpressions) as the query-string syntax."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], ",".join(expr.get("values") or [])
        terms.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(terms)
