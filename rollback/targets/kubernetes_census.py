"""The kubernetes driver's census: which pod runs which version, and what the deployment's own status
says is unfinished, as the API server says it. Reads only; kept apart from the rollback's writes.
"""

from __future__ import annotations

from ..census import Census, Replica
from ..errors import RollbackFailed
from .kubernetes_api import KubernetesApi
from .kubernetes_history import RevisionHistory
from .kubernetes_objects import REVISION, Obj, not_ready_reason, revision_of, same_template
from .kubernetes_settings import KubernetesSettings


class PodCensus:
    """One replica per pod the deployment's selector matches, judged as a Service would route to it."""

    def __init__(self, settings: KubernetesSettings, api: KubernetesApi, history: RevisionHistory) -> None:
        self.settings = settings
        self.api = api
        self.history = history

    def census(self) -> Census:
        """One replica per pod the deployment's selector matches, and the controller's own reasons the
        rollout is not complete (unobserved generation, counts short of spec.replicas, an old ReplicaSet
        with ready pods, ProgressDeadlineExceeded). Reads only: the deployment, its ReplicaSets, its pods."""
        deployment = self.api.read_deployment()
        replicasets = self.api.replicasets(deployment)
        pods = self.api.list_pods(deployment)
        template = deployment["spec"]["template"]
        current = next((rs for rs in replicasets if same_template(rs["spec"]["template"], template)), None)
        owners = {rs["metadata"]["uid"]: rs for rs in replicasets}
        replicas = tuple(self.pod_replica(pod, owners) for pod in sorted(pods, key=lambda p: p["metadata"]["name"]))
        return Census(
            unit="pod",
            replicas=replicas,
            problems=tuple(self.rollout_problems(deployment, replicasets, current)),
            facts=self.census_facts(deployment, current),
        )

    def pod_replica(self, pod: Obj, owners: dict[str, Obj]) -> Replica:
        """A pod as a replica: it serves when Running, Ready and not being deleted (what a Service routes to)."""
        metadata, status = pod["metadata"], pod.get("status") or {}
        phase = str(status.get("phase") or "Unknown")
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        deleted_at = metadata.get("deletionTimestamp")
        if deleted_at:
            state = "terminating"
        elif phase != "Running":
            state = phase.lower()
        else:
            state = "ready" if ready else "not ready"
        serving = phase == "Running" and ready and not deleted_at
        notes = [self.pod_owner(pod, owners)]
        try:
            version: str | None = self.history.version_of(pod)  # a pod has the template's shape: metadata and spec
        except RollbackFailed as exc:
            version = None
            notes.append(f"version unknown: {exc}")
        node = (pod.get("spec") or {}).get("nodeName")
        if deleted_at:
            notes.append(f"deleted at {deleted_at}")
        if serving:
            notes.append(f"node {node}" if node else "no node named")
        elif not deleted_at:
            notes.append(f"not ready: {not_ready_reason(pod)}")
        return Replica(
            name=f"pod {metadata['name']}", version=version, serving=bool(serving), state=state, detail=", ".join(notes)
        )

    @staticmethod
    def pod_owner(pod: Obj, owners: dict[str, Obj]) -> str:
        """``replicaset web-7c9f (revision 2)``, or what controls a pod that only matches the selector."""
        refs = [ref for ref in pod["metadata"].get("ownerReferences") or [] if ref.get("controller")]
        for ref in refs:
            rs = owners.get(str(ref.get("uid")))
            if rs is not None:
                revision = revision_of(rs)
                return f"replicaset {rs['metadata']['name']} (revision {revision if revision is not None else '?'})"
        owner = f"{refs[0].get('kind', '?')} {refs[0].get('name', '?')}" if refs else "no controller"
        return f"not a pod of this deployment's ReplicaSets (owner: {owner}), but its selector matches"

    def rollout_problems(self, deployment: Obj, replicasets: list[Obj], current: Obj | None) -> list[str]:
        """What the deployment's own status says is unfinished, whatever version the pods run."""
        metadata, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
        problems = []
        generation, observed = metadata.get("generation", 0), status.get("observedGeneration", 0)
        if generation > observed:
            problems.append(
                f"the controller has not observed generation {generation} yet (observedGeneration {observed})"
            )
        desired = spec.get("replicas", 1)
        counts = {key: status.get(key, 0) for key in ("updatedReplicas", "replicas", "availableReplicas")}
        if any(count != desired for count in counts.values()):
            listed = ", ".join(f"{key} {count}" for key, count in counts.items())
            problems.append(f"{listed} where spec.replicas is {desired}")
        if current is None:
            problems.append("no ReplicaSet has the deployment's template yet")
        for rs in sorted(replicasets, key=lambda rs: revision_of(rs) or 0):
            ready = (rs.get("status") or {}).get("readyReplicas", 0)
            if rs is current or not ready:
                continue
            try:
                version = self.history.version_of(rs["spec"]["template"])
            except RollbackFailed:
                version = "version unknown"
            problems.append(
                f"old replicaset {rs['metadata']['name']} (revision {revision_of(rs)}, {version}) "
                f"still has {ready} ready pod{'s' if ready != 1 else ''}"
            )
        progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
        # As kubectl rollout status: the condition counts only once the newest spec is observed.
        if generation <= observed and (progressing or {}).get("reason") == "ProgressDeadlineExceeded":
            message = (progressing or {}).get("message") or "no message"
            problems.append(
                f'deployment "{self.settings.deployment}" exceeded its progress deadline '
                f"(ProgressDeadlineExceeded: {message})"
            )
        return problems

    def census_facts(self, deployment: Obj, current: Obj | None) -> Obj:
        metadata, spec, status = deployment["metadata"], deployment["spec"], deployment.get("status") or {}
        revision = (metadata.get("annotations") or {}).get(REVISION)
        return {
            "deployment": self.api.where,
            "spec_replicas": spec.get("replicas", 1),
            "status_replicas": status.get("replicas", 0),
            "updated_replicas": status.get("updatedReplicas", 0),
            "ready_replicas": status.get("readyReplicas", 0),
            "available_replicas": status.get("availableReplicas", 0),
            "generation": metadata.get("generation", 0),
            "observed_generation": status.get("observedGeneration", 0),
            "revision": int(revision) if revision is not None and revision.isdigit() else revision,
            "replicaset": current["metadata"]["name"] if current is not None else None,
            "paused": bool(spec.get("paused")),
        }
