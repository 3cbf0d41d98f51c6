"""Kubernetes Deployments, through the official ``kubernetes`` client.

A rollback to a version is kubectl's ``rollout undo --to-revision=N`` where N is the newest revision
whose template carries that version: the same JSON patch (the ReplicaSet's template without its
``pod-template-hash`` label, and the deployment's annotations rebuilt from the ReplicaSet's), skipped
when the template already matches, refused when the deployment is paused. Unlike kubectl it carries a
``resourceVersion`` precondition, so a change that lands between our read and our write is a 409 and a
``Conflict``, never overwritten. Plain undo (the revision before the newest) toggles between the last
two revisions and is never used.

The driver composes its parts: ``kubernetes_api`` (the connection, retried reads, the patch, the
preflight on context and permissions), ``kubernetes_history`` (revisions, their versions, the pods for
the evidence), ``kubernetes_census`` (which pod runs which version) and ``kubernetes_undo`` (the undo
patch and the waits after it); ``kubernetes_objects`` holds kubectl's rules as plain functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from ..census import Census, Replica
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from .base import Finding, Target, TargetContext
from .kubernetes_api import KubernetesApi
from .kubernetes_census import PodCensus
from .kubernetes_history import RevisionHistory
from .kubernetes_objects import Obj, observed_state, rollout_problem, same_template
from .kubernetes_settings import KubernetesSettings
from .kubernetes_undo import STEP_PATCH, STEP_WAIT, DeploymentUndo


class KubernetesTarget(Target):
    """The Target interface for one Deployment, driving the parts that read, count and undo it."""

    kind = "kubernetes"
    settings_model = KubernetesSettings
    settings: KubernetesSettings
    accepts_revisions = True

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        super().__init__(settings, context)
        self.api = KubernetesApi(self.settings, context.base_dir)
        self.revision_history = RevisionHistory(self.settings, self.api)
        self.pod_census = PodCensus(self.settings, self.api, self.revision_history)
        self.undo = DeploymentUndo(self.settings, context, self.api, self.revision_history)

    @property
    def where(self) -> str:
        return self.api.where

    def read_deployment(self, timeout: float | None = None) -> Obj:
        return self.api.read_deployment(timeout)

    # --- the Target interface ------------------------------------------------------------------

    def resolve_revision(self, revision: int) -> tuple[str, str]:
        return self.revision_history.pin(revision, self.read_deployment())

    def live_version(self) -> str:
        return self.revision_history.version_of(self.read_deployment()["spec"]["template"])

    def history(self) -> list[str]:
        """Versions in revision order, oldest first; a version in several revisions at its newest.

        So ``previous`` (the one before the live version) is the revision plain ``kubectl rollout undo``
        goes to, whatever its version number; only when that revision runs the live version too (a
        change of something else) does it go on to the newest revision with another version.
        """
        return self.revision_history.versions(self.read_deployment())

    def observe(self) -> str:
        """The deployment's generation and revision: any spec change (set image, pause, undo) moves them."""
        return observed_state(self.read_deployment())

    def deployable(self, version: str) -> list[Finding]:
        deployment = self.read_deployment()
        findings = self.api.context_findings() + self.api.permission_findings()
        try:
            revision, _ = self.revision_history.target_revision(version, deployment)
        except RollbackFailed as exc:
            return [Finding("target-deployable", False, str(exc))]
        findings.append(Finding("target-revision", True, f"{version} is revision {revision} of {self.where}"))
        if deployment["spec"].get("paused"):
            findings.append(
                Finding(
                    "target-deployable",
                    False,
                    f"{self.where} is paused: a rollback is refused until it is resumed "
                    f"(kubectl rollout resume deployment/{self.settings.deployment} -n {self.settings.namespace})",
                )
            )
        return findings + self.rollout_findings(deployment)

    def rollout_findings(self, deployment: Obj) -> list[Finding]:
        """Preflight on a rollout under way: a stalled one is what a rollback replaces, a live one is waited for."""
        in_progress = rollout_problem(deployment)
        conditions = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
        stalled = (conditions.get("Progressing") or {}).get("reason") == "ProgressDeadlineExceeded"
        if in_progress is not None and stalled:
            # The classic reason to roll back: the new revision never became available.
            return [
                Finding(
                    "target-deployable",
                    True,
                    f"{self.where}: the current rollout is stalled (ProgressDeadlineExceeded, {in_progress}); "
                    "rolling back replaces it",
                )
            ]
        if in_progress is not None:
            return [
                Finding(
                    "target-deployable",
                    False,
                    f"{self.where}: a rollout is in progress ({in_progress}); wait until it finishes or stalls "
                    f"(kubectl rollout status deployment/{self.settings.deployment} -n {self.settings.namespace}), "
                    "then run again",
                )
            ]
        return []

    def steps(self) -> list[str]:
        return [STEP_PATCH, STEP_WAIT]

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        deployment = self.read_deployment()
        revision, rs = self.revision_history.target_revision(version, deployment)
        if STEP_PATCH in steps:
            if same_template(rs["spec"]["template"], deployment["spec"]["template"]):
                lines.append(f"nothing to patch: the template of {self.where} already matches revision {revision}")
            else:
                lines.append(
                    f"JSON-patch {self.where}: template and annotations of revision {revision} ({version}), "
                    f"precondition resourceVersion {deployment['metadata']['resourceVersion']}; "
                    f"server dry run (dryRun=All): {self.undo.server_dry_run(deployment, rs)}"
                )
        if STEP_WAIT in steps:
            lines.append(
                f"wait until {self.where} has rolled out (as kubectl rollout status, "
                f"up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def rollback(
        self,
        version: str,
        journal: Journal,
        expected_state: str | None = None,
        steps: Sequence[str] | None = None,
    ) -> None:
        steps = self.steps() if steps is None else steps
        if STEP_PATCH not in steps:
            return
        deployment = self.read_deployment()
        if expected_state is not None:
            now = observed_state(deployment)
            if now != expected_state:
                raise Conflict(
                    f"{self.where} changed after this run read it: it was {expected_state}, it is now {now} "
                    "(another deploy or run changed it); this run stopped before writing"
                )
        revision, rs = self.revision_history.target_revision(version, deployment)
        if deployment["spec"].get("paused"):
            raise RollbackFailed(
                f"{self.where} is paused: you cannot roll back a paused deployment; resume it first "
                f"(kubectl rollout resume deployment/{self.settings.deployment} -n {self.settings.namespace})"
            )
        self.undo.patch(version, journal, deployment, revision, rs)

    def wait_ready(self, version: str, journal: Journal) -> None:
        self.undo.wait_ready(version, journal)

    def census(self) -> Census:
        return self.pod_census.census()

    def pod_replica(self, pod: Obj, owners: dict[str, Obj]) -> Replica:
        """One pod as the census counts it (see ``PodCensus.pod_replica``)."""
        return self.pod_census.pod_replica(pod, owners)

    def way_back(self, version: str) -> str | None:
        return (
            f"kubectl rollout undo deployment/{self.settings.deployment} -n {self.settings.namespace} "
            f"--to-revision=<the revision running {version}, see kubectl rollout history>"
        )

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "namespace": self.settings.namespace,
            "deployment": self.settings.deployment,
            "context": self.settings.context,
        }
