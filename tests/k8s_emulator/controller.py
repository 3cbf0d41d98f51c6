"""The deployment and replica set controllers, as kube-controller-manager runs them (the subset we need).

Deployment: a ReplicaSet per distinct template (named ``<deployment>-<pod-template-hash>``), revisions
in the ``deployment.kubernetes.io/revision`` annotation (a template that matches an old ReplicaSet gets
max + 1 and the old number goes to ``revision-history``), rolling update with maxSurge / maxUnavailable
or Recreate, old ReplicaSets beyond ``revisionHistoryLimit`` deleted, status and the Available /
Progressing conditions (``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds`` without progress).
ReplicaSet: creates and deletes pods to match ``spec.replicas``. Pods are stuck in ``ImagePullBackOff``
when their image is ``unpullable``. Otherwise, with ``pods`` set (``Emulator(real_pods=True)``), each
container is a real process of the demo app (pods.py): Running once started, ready once it answers its
readiness probe, ``CrashLoopBackOff`` (restart count rising) after it exits, terminated when its pod
goes. Without it pods are records: Running and ready after ``ready_delay`` seconds, or in
``CrashLoopBackOff`` when their image is ``crashing``. Either way an image in ``ready_limit`` has at
most that many ready pods: the others run but stay not ready (Ready False, ContainersNotReady).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import math
import time
import uuid
from typing import Any

from .pods import PodProcesses
from .store import Obj, Store, now_rfc3339

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
# Deployment annotations the controller does not copy to its ReplicaSets (deployment_util.go).
SKIP_COPY = {
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
}
HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
NODE_NAME = "emulator-node"
CRASH_EVERY = 0.5  # seconds between the restarts of a crash-looping container


def parse_time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


def pruned(value: Any) -> Any:
    """``value`` without empty maps, empty lists and nulls: Go's semantic equality ignores them."""
    if isinstance(value, dict):
        result = {k: pruned(v) for k, v in value.items()}
        return {k: v for k, v in result.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def template_without_hash(template: Obj) -> Obj:
    result = copy.deepcopy(template)
    labels = result.get("metadata", {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return result


def templates_equal(a: Obj, b: Obj) -> bool:
    """EqualIgnoreHash: equal templates once the pod-template-hash label is dropped."""
    return bool(pruned(template_without_hash(a)) == pruned(template_without_hash(b)))


def template_hash(template: Obj, collisions: int = 0) -> str:
    import json

    digest = hashlib.sha256(
        (json.dumps(pruned(template_without_hash(template)), sort_keys=True) + str(collisions)).encode()
    ).digest()
    return "".join(HASH_ALPHABET[b % len(HASH_ALPHABET)] for b in digest[:10])


def revision_of(obj: Obj) -> int:
    try:
        return int((obj["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def resolve(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def owned_by(obj: Obj, owner: Obj) -> bool:
    return any(
        ref.get("controller") and ref.get("uid") == owner["metadata"]["uid"]
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def owner_reference(owner: Obj) -> Obj:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def set_condition(status: Obj, type_: str, value: str, reason: str, message: str, progressed: bool = False) -> None:
    """Updates or adds a condition; lastTransitionTime moves when the status changes."""
    stamp = now_rfc3339()
    conditions = status.setdefault("conditions", [])
    old = next((c for c in conditions if c["type"] == type_), None)
    if old is None:
        conditions.append(
            {
                "type": type_,
                "status": value,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }
        )
        return
    if old["status"] != value:
        old["lastTransitionTime"] = stamp
    if old["status"] != value or old["reason"] != reason or progressed:
        old["lastUpdateTime"] = stamp
    old.update(status=value, reason=reason, message=message)


class Controller:
    """Reconciles every deployment, replica set and pod once per ``tick()``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ready_delay = 0.0  # seconds from a pod's creation until it is Running and ready
        self.unpullable: set[str] = set()  # images whose pods stay in ImagePullBackOff
        self.crashing: set[str] = set()  # images whose containers exit at once: CrashLoopBackOff
        # Image -> how many of its pods may be ready at once; the others keep failing their readiness
        # probe (as pods on a bad node do), so a rolling update stops with old pods still serving.
        self.ready_limit: dict[str, int] = {}
        self.stopped = False  # True: the controllers do nothing (a controller-manager that is down)
        self.pod_born: dict[str, float] = {}  # pod uid -> time.monotonic() at creation
        self.pods: PodProcesses | None = None  # real pod processes (None: pods are records)

    def tick(self) -> None:
        with self.store.cond:
            if self.stopped:
                return
            for deployment in self.store.list("deployments"):
                self.sync_deployment(deployment)
            for rs in self.store.list("replicasets"):
                self.sync_replicaset(rs)
            pods = self.store.list("pods")
            for pod in pods:
                self.sync_pod(pod)
            if self.pods is not None:  # pods deleted through the API: their processes go too
                self.pods.forget_all_but({pod["metadata"]["uid"] for pod in pods})
            for rs in self.store.list("replicasets"):
                self.sync_replicaset_status(rs)
            for deployment in self.store.list("deployments"):
                self.sync_deployment_status(deployment)

    # --- deployments -----------------------------------------------------------------------------

    def owned_replicasets(self, deployment: Obj) -> list[Obj]:
        namespace = deployment["metadata"]["namespace"]
        return [rs for rs in self.store.list("replicasets", namespace) if owned_by(rs, deployment)]

    def sync_deployment(self, d: Obj) -> None:
        if d["metadata"].get("deletionTimestamp"):
            return
        spec = d["spec"]
        rss = self.owned_replicasets(d)
        new = next((rs for rs in rss if templates_equal(rs["spec"]["template"], spec["template"])), None)
        if spec.get("paused"):
            return
        max_revision = max((revision_of(rs) for rs in rss if rs is not new), default=0)
        if new is None:
            new = self.create_replicaset(d, max_revision + 1)
        else:
            new = self.adopt_as_new(d, new, max_revision)
        d = self.store.get("deployments", d["metadata"]["namespace"], d["metadata"]["name"])
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get(REVISION) != str(revision_of(new)):
            annotations[REVISION] = str(revision_of(new))
            d = self.store.update("deployments", d, check_rv=False)
        olds = [rs for rs in rss if rs["metadata"]["uid"] != new["metadata"]["uid"]]
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            self.recreate(d, new, olds)
        else:
            self.rolling_update(d, new, olds)
        self.cleanup(d, [rs for rs in self.owned_replicasets(d) if rs["metadata"]["uid"] != new["metadata"]["uid"]])

    def create_replicaset(self, d: Obj, revision: int) -> Obj:
        template = copy.deepcopy(d["spec"]["template"])
        pod_hash = template_hash(template)
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        selector = copy.deepcopy(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items() if k not in SKIP_COPY}
        replicas = d["spec"]["replicas"]
        surge = self.max_surge(d)
        annotations.update(
            {REVISION: str(revision), DESIRED_REPLICAS: str(replicas), MAX_REPLICAS: str(replicas + surge)}
        )
        rs = {
            "metadata": {
                "name": f"{d['metadata']['name']}-{pod_hash}",
                "namespace": d["metadata"]["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": annotations,
                "ownerReferences": [owner_reference(d)],
            },
            "spec": {"replicas": 0, "minReadySeconds": d["spec"].get("minReadySeconds", 0), "selector": selector},
        }
        rs["spec"]["template"] = template
        rs["status"] = {"replicas": 0, "observedGeneration": 0}
        created = self.store.create("replicasets", rs)
        self.progress(d, "NewReplicaSetCreated", f'Created new replica set "{created["metadata"]["name"]}"')
        return created

    def adopt_as_new(self, d: Obj, rs: Obj, max_old_revision: int) -> Obj:
        """The existing ReplicaSet for the current template: newest revision, deployment's annotations."""
        annotations = rs["metadata"].setdefault("annotations", {})
        before = dict(annotations)
        for key, value in (d["metadata"].get("annotations") or {}).items():
            if key not in SKIP_COPY:
                annotations[key] = value
        old = revision_of(rs)
        if old <= max_old_revision:
            annotations[REVISION] = str(max_old_revision + 1)
            if REVISION in before:
                history = annotations.get(REVISION_HISTORY, "")
                annotations[REVISION_HISTORY] = f"{history},{old}" if history else str(old)
        if annotations != before:
            rs = self.store.update("replicasets", rs, check_rv=False)
            if old <= max_old_revision:
                self.progress(d, "FoundNewReplicaSet", f'Found new replica set "{rs["metadata"]["name"]}"')
        return rs

    def progress(self, d: Obj, reason: str, message: str) -> None:
        current = self.store.get("deployments", d["metadata"]["namespace"], d["metadata"]["name"])
        set_condition(current.setdefault("status", {}), "Progressing", "True", reason, message, progressed=True)
        self.store.update("deployments", current, check_rv=False)

    def max_surge(self, d: Obj) -> int:
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return 0
        rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        return resolve(rolling.get("maxSurge", "25%"), d["spec"]["replicas"], round_up=True)

    def max_unavailable(self, d: Obj) -> int:
        replicas = d["spec"]["replicas"]
        if (d["spec"].get("strategy") or {}).get("type") == "Recreate":
            return replicas
        rolling = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        unavailable = resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        if unavailable == 0 and self.max_surge(d) == 0:
            unavailable = 1
        return min(unavailable, replicas)

    def scale(self, d: Obj, rs: Obj, replicas: int) -> Obj:
        if rs["spec"]["replicas"] == replicas:
            return rs
        rs["spec"]["replicas"] = replicas
        annotations = rs["metadata"].setdefault("annotations", {})
        annotations[DESIRED_REPLICAS] = str(d["spec"]["replicas"])
        annotations[MAX_REPLICAS] = str(d["spec"]["replicas"] + self.max_surge(d))
        updated = self.store.update("replicasets", rs, check_rv=False)
        self.progress(d, "ReplicaSetUpdated", f'ReplicaSet "{updated["metadata"]["name"]}" is progressing.')
        return updated

    def rolling_update(self, d: Obj, new: Obj, olds: list[Obj]) -> None:
        desired = d["spec"]["replicas"]
        total = new["spec"]["replicas"] + sum(rs["spec"]["replicas"] for rs in olds)
        if new["spec"]["replicas"] < desired:
            allowed = desired + self.max_surge(d) - total
            if allowed > 0:
                new = self.scale(d, new, new["spec"]["replicas"] + min(allowed, desired - new["spec"]["replicas"]))
        elif new["spec"]["replicas"] > desired:
            new = self.scale(d, new, desired)
        olds = [rs for rs in olds if rs["spec"]["replicas"] > 0]
        if not olds:
            return
        all_pods = new["spec"]["replicas"] + sum(rs["spec"]["replicas"] for rs in olds)
        min_available = desired - self.max_unavailable(d)
        new_unavailable = new["spec"]["replicas"] - (new.get("status") or {}).get("availableReplicas", 0)
        budget = all_pods - min_available - new_unavailable
        olds.sort(key=revision_of)
        for index, rs in enumerate(olds):  # unhealthy old pods go first
            if budget <= 0:
                return
            unhealthy = rs["spec"]["replicas"] - (rs.get("status") or {}).get("availableReplicas", 0)
            cut = min(unhealthy, budget)
            if cut > 0:
                olds[index] = self.scale(d, rs, rs["spec"]["replicas"] - cut)
                budget -= cut
        available = (new.get("status") or {}).get("availableReplicas", 0) + sum(
            min(rs["spec"]["replicas"], (rs.get("status") or {}).get("availableReplicas", 0)) for rs in olds
        )
        budget = available - min_available
        for rs in olds:
            if budget <= 0:
                return
            cut = min(rs["spec"]["replicas"], budget)
            if cut > 0:
                self.scale(d, rs, rs["spec"]["replicas"] - cut)
                budget -= cut

    def recreate(self, d: Obj, new: Obj, olds: list[Obj]) -> None:
        running = [rs for rs in olds if rs["spec"]["replicas"] > 0 or (rs.get("status") or {}).get("replicas", 0)]
        for rs in running:
            self.scale(d, rs, 0)
        if not running:
            self.scale(d, new, d["spec"]["replicas"])

    def cleanup(self, d: Obj, olds: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = sorted(
            (rs for rs in olds if rs["spec"]["replicas"] == 0 and not (rs.get("status") or {}).get("replicas")),
            key=revision_of,
        )
        for rs in idle[: max(0, len(olds) - limit)]:
            self.store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])

    def sync_deployment_status(self, d: Obj) -> None:
        rss = self.owned_replicasets(d)
        spec = d["spec"]
        new = next((rs for rs in rss if templates_equal(rs["spec"]["template"], spec["template"])), None)
        desired = spec["replicas"]

        def count(rs_list: list[Obj], field: str) -> int:
            return sum((rs.get("status") or {}).get(field, 0) for rs in rs_list)

        status = copy.deepcopy(d.get("status") or {})
        before = copy.deepcopy(status)
        status["observedGeneration"] = d["metadata"]["generation"]
        status["replicas"] = count(rss, "replicas")
        status["updatedReplicas"] = count([new], "replicas") if new else 0
        status["readyReplicas"] = count(rss, "readyReplicas")
        status["availableReplicas"] = count(rss, "availableReplicas")
        total = sum(rs["spec"]["replicas"] for rs in rss)
        status["unavailableReplicas"] = max(0, total - status["availableReplicas"])
        for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not status[key]:
                del status[key]
        if status.get("availableReplicas", 0) >= desired - self.max_unavailable(d):
            set_condition(
                status, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            set_condition(
                status,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        progressing = next((c for c in status.get("conditions", []) if c["type"] == "Progressing"), None)
        if spec.get("paused"):
            set_condition(status, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif progressing is not None and progressing["reason"] == "DeploymentPaused":
            set_condition(
                status, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", progressed=True
            )
        elif new is not None:
            name = new["metadata"]["name"]
            complete = (
                status.get("updatedReplicas", 0) == desired
                and status.get("replicas", 0) == desired
                and status.get("availableReplicas", 0) == desired
            )
            old_status = d.get("status") or {}
            moved = status.get("updatedReplicas", 0) > old_status.get("updatedReplicas", 0) or status.get(
                "availableReplicas", 0
            ) > old_status.get("availableReplicas", 0)
            if complete:
                set_condition(
                    status,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{name}" has successfully progressed.',
                )
            elif moved or progressing is None:
                set_condition(
                    status,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{name}" is progressing.',
                    progressed=True,
                )
            elif progressing["reason"] != "ProgressDeadlineExceeded":
                deadline = spec.get("progressDeadlineSeconds", 600)
                if time.time() - parse_time(progressing["lastUpdateTime"]) > deadline:
                    set_condition(
                        status,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{name}" has timed out progressing.',
                    )
        if status != before:
            d["status"] = status
            self.store.update("deployments", d, check_rv=False)

    # --- replica sets and pods -------------------------------------------------------------------

    def sync_replicaset(self, rs: Obj) -> None:
        namespace = rs["metadata"]["namespace"]
        pods = [p for p in self.store.list("pods", namespace) if owned_by(p, rs)]
        want = rs["spec"]["replicas"]
        for _ in range(want - len(pods)):
            self.create_pod(rs)
        if len(pods) > want:
            # Not-ready pods go first, then the newest (as the ReplicaSet controller ranks them).
            pods.sort(key=lambda p: (self.is_ready(p), p["metadata"]["creationTimestamp"]), reverse=False)
            for pod in pods[: len(pods) - want]:
                self.store.delete("pods", namespace, pod["metadata"]["name"])
                self.pod_born.pop(pod["metadata"]["uid"], None)
                if self.pods is not None:
                    self.pods.forget(pod["metadata"]["uid"])

    def create_pod(self, rs: Obj) -> None:
        template = copy.deepcopy(rs["spec"]["template"])
        spec = template["spec"]
        spec["nodeName"] = NODE_NAME
        pod = {
            "metadata": {
                "name": f"{rs['metadata']['name']}-{uuid.uuid4().hex[:5]}",
                "namespace": rs["metadata"]["namespace"],
                "labels": dict(template.get("metadata", {}).get("labels") or {}),
                "ownerReferences": [owner_reference(rs)],
            },
            "spec": spec,
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
        }
        created = self.store.create("pods", pod)
        self.pod_born[created["metadata"]["uid"]] = time.monotonic()

    @staticmethod
    def is_ready(pod: Obj) -> bool:
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", [])
        )

    def sync_pod(self, pod: Obj) -> None:
        containers = pod["spec"].get("containers") or []
        born = self.pod_born.get(pod["metadata"]["uid"], 0.0)
        stamp = now_rfc3339()
        status = copy.deepcopy(pod.get("status") or {})
        stuck = [c for c in containers if c.get("image") in self.unpullable]
        statuses = []
        for c in containers:
            entry: Obj = {"name": c["name"], "image": c.get("image", ""), "imageID": "", "restartCount": 0}
            if c in stuck:
                entry.update(
                    ready=False,
                    started=False,
                    state={
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": f'Back-off pulling image "{c.get("image", "")}"',
                        }
                    },
                )
            elif self.pods is not None and time.monotonic() - born >= self.ready_delay:
                entry.update(self.real_container(pod["metadata"]["uid"], c))
            elif self.pods is None and c.get("image") in self.crashing:
                old = next((s for s in status.get("containerStatuses", []) if s["name"] == c["name"]), None)
                restarts = (old or {}).get("restartCount", 0)
                if time.monotonic() - born >= CRASH_EVERY * (restarts + 1):
                    restarts += 1  # it started, exited 1, and the kubelet backs off before the next start
                entry.update(
                    ready=False,
                    started=False,
                    restartCount=restarts,
                    state={
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off restarting failed container {c['name']}",
                        }
                    },
                    lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
                )
            elif time.monotonic() - born >= self.ready_delay:
                old = next((s for s in status.get("containerStatuses", []) if s["name"] == c["name"]), None)
                started = (old or {}).get("state", {}).get("running", {}).get("startedAt", stamp)
                entry.update(ready=True, started=True, state={"running": {"startedAt": started}})
            else:
                entry.update(ready=False, started=False, state={"waiting": {"reason": "ContainerCreating"}})
            statuses.append(entry)
        ready = bool(statuses) and all(s["ready"] for s in statuses)
        if ready and not self.is_ready(pod) and self.over_ready_limit(pod):
            for entry in statuses:
                entry["ready"] = False
            ready = False
        status["phase"] = "Running" if any("running" in s["state"] for s in statuses) else "Pending"
        status["containerStatuses"] = statuses
        status["hostIP"] = "127.0.0.1"
        status["podIP"] = "127.0.0.1"
        status.setdefault("startTime", pod["metadata"]["creationTimestamp"])
        old_ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        if old_ready.get("status") != ("True" if ready else "False"):
            condition: Obj = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp}
            if not ready and statuses:
                unready = ", ".join(s["name"] for s in statuses if not s["ready"])
                condition.update(reason="ContainersNotReady", message=f"containers with unready status: [{unready}]")
            status["conditions"] = [condition]
        if status != pod.get("status"):
            pod["status"] = status
            self.store.update("pods", pod, check_rv=False)

    def over_ready_limit(self, pod: Obj) -> bool:
        """True when ``ready_limit`` caps a container image of this pod and that many of its pods are ready."""
        for container in pod["spec"].get("containers") or []:
            limit = self.ready_limit.get(container.get("image", ""))
            if limit is None:
                continue
            ready = sum(
                1
                for other in self.store.list("pods", pod["metadata"]["namespace"])
                if self.is_ready(other)
                and any(c.get("image") == container.get("image") for c in other["spec"].get("containers") or [])
            )
            if ready >= limit:
                return True
        return False

    def real_container(self, uid: str, container: Obj) -> Obj:
        """The container status of a real process: running (ready once probed), or backing off after an exit."""
        assert self.pods is not None
        box = self.pods.observe(uid, container["name"], container.get("image", ""))
        entry: Obj = {"restartCount": box.restarts}
        if box.last_exit is not None:
            reason = "Completed" if box.last_exit == 0 else "Error"
            entry["lastState"] = {"terminated": {"exitCode": box.last_exit, "reason": reason}}
        if box.process is None:
            message = f"back-off restarting failed container {container['name']}"
            entry.update(
                ready=False, started=False, state={"waiting": {"reason": "CrashLoopBackOff", "message": message}}
            )
        else:
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(box.started_at))
            entry.update(ready=box.ready, started=True, state={"running": {"startedAt": started}})
        return entry

    def sync_replicaset_status(self, rs: Obj) -> None:
        pods = [p for p in self.store.list("pods", rs["metadata"]["namespace"]) if owned_by(p, rs)]
        ready = sum(1 for p in pods if self.is_ready(p))
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        status = {k: v for k, v in status.items() if v or k in ("replicas", "observedGeneration")}
        if status != rs.get("status"):
            rs["status"] = status
            self.store.update("replicasets", rs, check_rv=False)
