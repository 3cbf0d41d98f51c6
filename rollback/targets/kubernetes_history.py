"""The kubernetes driver's reading of a deployment's past and present: which version each revision's
ReplicaSet runs, which revision a rollback to a version goes to, and the pods as they are now.

Kept apart from the writes: preflight, plan, the census and the rollback all read revisions the same way.
"""

from __future__ import annotations

from ..errors import RollbackFailed
from ..versions import version_problem
from .kubernetes_api import KubernetesApi
from .kubernetes_objects import CHANGE_CAUSE, REVISION, REVISION_PREFIX, Obj, image_tag, revision_of
from .kubernetes_settings import KubernetesSettings


class RevisionHistory:
    """The deployment's revisions (its ReplicaSets) and their versions, read through ``api``."""

    def __init__(self, settings: KubernetesSettings, api: KubernetesApi) -> None:
        self.settings = settings
        self.api = api
        # (revision, version) of ``--rollback-to revision:N``: a rollback to that version goes to exactly N.
        self.pinned: tuple[int, str] | None = None

    # --- versions and revisions ----------------------------------------------------------------

    def version_of(self, template: Obj) -> str:
        where = self.api.where
        if self.settings.version_from == "label":
            labels = (template.get("metadata") or {}).get("labels") or {}
            value = labels.get(self.settings.version_label)
            if not value:
                raise RollbackFailed(f"{where}: the pod template has no label {self.settings.version_label!r}")
            return str(value)
        containers = (template.get("spec") or {}).get("containers") or []
        names = [c.get("name") for c in containers]
        wanted = self.settings.container
        if wanted is None:
            if len(containers) != 1:
                raise RollbackFailed(
                    f"{where} has containers {', '.join(map(str, names))}: "
                    "set 'container' to the one whose image tag is the version"
                )
            return image_tag(containers[0].get("image", ""))
        for container in containers:
            if container.get("name") == wanted:
                return image_tag(container.get("image", ""))
        raise RollbackFailed(f"{where} has no container {wanted!r}; it has {', '.join(map(str, names))}")

    def revisions(self, deployment: Obj) -> dict[int, Obj]:
        """Revision -> ReplicaSet (a revision that is not an integer is skipped, as kubectl does)."""
        result: dict[int, Obj] = {}
        for rs in self.api.replicasets(deployment):
            revision = revision_of(rs)
            if revision is not None:
                result[revision] = rs
        return result

    def listing(self, revisions: dict[int, Obj]) -> str:
        """``1=v1.2.9, 2=v1.3.0``: every revision and its version, for a refusal that names them."""
        return ", ".join(f"{r}={self.version_of(rs['spec']['template'])}" for r, rs in sorted(revisions.items()))

    def revision_table(self, deployment: Obj) -> list[Obj]:
        """Oldest first: revision, version, change-cause, replicas."""
        rows = []
        for revision, rs in sorted(self.revisions(deployment).items()):
            annotations = rs["metadata"].get("annotations") or {}
            rows.append(
                {
                    "revision": revision,
                    "version": self.version_of(rs["spec"]["template"]),
                    "change_cause": annotations.get(CHANGE_CAUSE),
                    "replicaset": rs["metadata"]["name"],
                    "replicas": rs["spec"].get("replicas", 0),
                }
            )
        return rows

    def versions(self, deployment: Obj) -> list[str]:
        """Versions in revision order, oldest first; a version in several revisions at its newest."""
        versions = [
            row["version"] for row in self.revision_table(deployment) if version_problem(row["version"]) is None
        ]
        newest_first: list[str] = []
        for version in reversed(versions):
            if version not in newest_first:
                newest_first.append(version)
        return list(reversed(newest_first))

    def pin(self, revision: int, deployment: Obj) -> tuple[str, str]:
        """``revision:N`` asked for by number: its version, which from now on means exactly revision N."""
        revisions = self.revisions(deployment)
        if revision not in revisions:
            raise RollbackFailed(
                f"{self.api.where}: unable to find specified revision {revision} in history; "
                f"revisions: {self.listing(revisions) or 'none'}"
            )
        version = self.version_of(revisions[revision]["spec"]["template"])
        self.pinned = (revision, version)
        return version, f"requested {REVISION_PREFIX}{revision}, which runs {version}"

    def target_revision(self, version: str, deployment: Obj) -> tuple[int, Obj]:
        """``revision:N`` -> N; a version -> the newest revision whose template carries it."""
        revisions = self.revisions(deployment)
        if version.startswith(REVISION_PREFIX):
            text = version[len(REVISION_PREFIX) :]
            if not text.isdigit() or int(text) not in revisions:
                raise RollbackFailed(f"{self.api.where}: unable to find specified revision {text} in history")
            return int(text), revisions[int(text)]
        if self.pinned is not None and self.pinned[1] == version:
            return self.target_revision(f"{REVISION_PREFIX}{self.pinned[0]}", deployment)
        matching = [
            (revision, rs)
            for revision, rs in sorted(revisions.items())
            if self.version_of(rs["spec"]["template"]) == version
        ]
        if not matching:
            raise RollbackFailed(
                f"{self.api.where}: no revision runs {version}; revisions: {self.listing(revisions) or 'none'}"
            )
        return matching[-1]

    def running(self, deployment: Obj) -> str:
        """``v1.4.0 (revision 3)``: the template's version and the deployment's revision."""
        try:
            version = self.version_of(deployment["spec"]["template"])
        except RollbackFailed:
            version = "an unknown version"
        revision = (deployment["metadata"].get("annotations") or {}).get(REVISION, "?")
        return f"{version} (revision {revision})"

    # --- the pods, for the evidence ----------------------------------------------------------------

    def pods(self, deployment: Obj) -> list[Obj]:
        """The deployment's pods for the evidence: name, image, ready, restarts, node, waiting reason."""
        rows = []
        for pod in self.api.list_pods(deployment):
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            reasons = [((st.get("state") or {}).get("waiting") or {}).get("reason") for st in statuses]
            waiting = [str(reason) for reason in reasons if reason]
            rows.append(
                {
                    "name": pod["metadata"]["name"],
                    "images": [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []],
                    "ready": bool(statuses) and all(st.get("ready") for st in statuses),
                    "restarts": sum(st.get("restartCount", 0) for st in statuses),
                    "node": (pod.get("spec") or {}).get("nodeName"),
                    "waiting": ", ".join(waiting) or None,
                }
            )
        return rows

    def snapshot(self, deployment: Obj) -> Obj:
        """Revisions and pods as they are now, for the journal (a failed read is noted, not raised)."""
        try:
            return {"revisions": self.revision_table(deployment), "pods": self.pods(deployment)}
        except RollbackFailed as exc:
            return {"unreadable": str(exc)}

    def pod_reasons(self, deployment: Obj) -> str:
        """Why the deployment's pods are not ready (ImagePullBackOff, CrashLoopBackOff), one entry per pod."""
        try:
            pods = self.pods(deployment)
        except RollbackFailed as exc:
            return str(exc)
        waiting = [f"{pod['name']}: {pod['waiting']}" for pod in pods if pod["waiting"]]
        return "pods waiting: " + ", ".join(waiting) if waiting else "no pod reports a waiting reason"
