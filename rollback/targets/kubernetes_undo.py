"""The kubernetes driver's one change: kubectl's undo patch to a revision, what to conclude when the
server's answer to it is unclear, and the bounded wait until the rollout is done and the service answers.

Kept apart from the reads: here are the only write, its journal step and the waits after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import same_version
from .base import TargetContext
from .kubernetes_api import KubernetesApi, api_message
from .kubernetes_history import RevisionHistory
from .kubernetes_objects import REVISION, Obj, progress_line, rollout_problem, same_template, undo_patch
from .kubernetes_settings import KubernetesSettings

STEP_PATCH, STEP_WAIT = "patch-deployment", "wait-ready"
POLL_INTERVAL = 0.2
PROGRESS_EVERY = 2.0


@dataclass(frozen=True)
class Unanswered:
    """A write without a clear answer: what came back, and whether the server is done with it."""

    error: str
    settled: bool


class DeploymentUndo:
    """The undo patch of the deployment to one revision, and the wait for its rollout."""

    def __init__(
        self, settings: KubernetesSettings, context: TargetContext, api: KubernetesApi, history: RevisionHistory
    ) -> None:
        self.settings = settings
        self.context = context
        self.api = api
        self.history = history

    @property
    def where(self) -> str:
        return self.api.where

    # --- the patch -----------------------------------------------------------------------------

    def server_dry_run(self, deployment: Obj, rs: Obj) -> str:
        try:
            answer = self.api.patch_deployment(
                undo_patch(deployment, rs, deployment["metadata"]["resourceVersion"]), dry_run=True
            )
        except ApiException as exc:
            return f"refused: {api_message(exc)}"
        except Urllib3Error as exc:
            return f"no answer ({exc})"
        return f"accepted, the template would run {self.history.version_of(answer['spec']['template'])}"

    def patch(self, version: str, journal: Journal, deployment: Obj, revision: int, rs: Obj) -> None:
        """The journaled undo of ``deployment`` to ``revision`` (its ReplicaSet ``rs``): sent at most once."""
        with journal.step(STEP_PATCH, deployment=self.where, revision=revision, version=version) as step:
            step.detail["from_revision"] = (deployment["metadata"].get("annotations") or {}).get(REVISION)
            step.detail["before"] = self.history.snapshot(deployment)
            if same_template(rs["spec"]["template"], deployment["spec"]["template"]):
                step.detail["note"] = f"skipped rollback (current template already matches revision {revision})"
                return
            operations = undo_patch(deployment, rs, deployment["metadata"]["resourceVersion"])
            step.detail["patch"] = operations
            try:
                answer = self.api.patch_deployment(operations)
            except ApiException as exc:
                if exc.status == 409:
                    raise Conflict(
                        f"{self.where} changed between this run's read (resourceVersion "
                        f"{deployment['metadata']['resourceVersion']}) and its write; nothing was changed: "
                        f"{api_message(exc)}"
                    ) from None
                if exc.status is not None and exc.status < 500:
                    raise RollbackFailed(
                        f"the API server refused the patch of {self.where}: {api_message(exc)}"
                    ) from None
                # A 504 is a gateway giving up while the server may still be at work; any other
                # answer comes once the server is done with the request.
                sent = Unanswered(api_message(exc), settled=exc.status != 504)
                answer = self._reread_after_unknown_write(rs, revision, deployment, sent, step.detail)
            except ConnectTimeoutError as exc:  # no connection, so nothing was sent
                step.detail["write"] = "not sent"
                raise RollbackFailed(
                    f"the patch of {self.where} was not sent: the API server could not be reached ({exc}); "
                    "nothing was changed by it"
                ) from None
            except Urllib3Error as exc:  # a timeout or a lost connection after the request went out
                sent = Unanswered(f"no answer: {exc}", settled=False)
                answer = self._reread_after_unknown_write(rs, revision, deployment, sent, step.detail)
            step.detail["resource_version"] = answer["metadata"].get("resourceVersion")

    def _reread_after_unknown_write(self, rs: Obj, revision: int, before: Obj, sent: Unanswered, detail: Obj) -> Obj:
        """A write whose outcome is unknown: read again until it is known, and never send it twice.

        Applied: the template is revision ``revision``'s. Not applied: the server answered (so it is
        done with the request), or the resourceVersion the patch is preconditioned on has moved on, so
        it can never apply. Otherwise it stays unknown: re-read for up to ``request_timeout``, then say so.
        """
        patch = f"the patch of {self.where} to revision {revision} ({self.history.version_of(rs['spec']['template'])})"
        was = before["metadata"].get("resourceVersion")
        check = (
            f"check `kubectl rollout history deployment/{self.settings.deployment} -n {self.settings.namespace}` "
            "before running again"
        )
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            try:
                now = self.api.read_deployment(timeout=max(0.1, deadline - time.monotonic()))
            except RollbackFailed as exc:
                detail["write"] = "unknown"
                raise RollbackFailed(
                    f"{patch} got no clear answer ({sent.error}); whether it was applied is unknown: reading "
                    f"the deployment again failed too ({exc}); it was not sent again; {check}"
                ) from None
            if same_template(rs["spec"]["template"], now["spec"]["template"]):
                detail["write"] = "applied (seen by reading the deployment again)"
                return now
            running = self.history.running(now)
            moved = now["metadata"].get("resourceVersion") != was
            if sent.settled or moved:
                detail["write"] = "not applied"
                why = (
                    f"the deployment moved on from resourceVersion {was} without it, and the patch is "
                    f"preconditioned on {was}"
                    if moved
                    else "the API server answered, so it is done with the request"
                )
                raise RollbackFailed(
                    f"{patch} got no clear answer ({sent.error}); it was not applied: {why}; the deployment "
                    f"runs {running}; it was not sent again"
                )
            left = deadline - time.monotonic()
            if left <= 0:
                detail["write"] = "unknown"
                raise RollbackFailed(
                    f"{patch} got no clear answer ({sent.error}); whether it was applied is unknown: read again "
                    f"for {format_duration(self.settings.request_timeout)}, the deployment is unchanged "
                    f"(resourceVersion {was}, running {running}), and the API server may still apply it; "
                    f"it was not sent again; {check}"
                )
            time.sleep(min(POLL_INTERVAL, left))

    # --- the waits -----------------------------------------------------------------------------

    def wait_ready(self, version: str, journal: Journal) -> None:
        """As kubectl rollout status, then until the service answers ``version``: one bounded, journaled wait."""
        timeout = self.settings.ready_timeout
        with journal.step(STEP_WAIT, deployment=self.where, version=version, timeout_s=timeout) as step:
            started = time.monotonic()
            deadline = started + timeout
            next_report = started + PROGRESS_EVERY
            while True:
                deployment = self.api.read_deployment(timeout=max(0.1, deadline - time.monotonic()))
                conditions = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
                progressing = conditions.get("Progressing") or {}
                problem = rollout_problem(deployment)
                if problem is None:
                    step.detail["after"] = self.history.snapshot(deployment)
                    step.detail["rolled_out_s"] = round(time.monotonic() - started, 3)
                    self._wait_for_answers(version, deadline, step.detail)
                    step.detail["waited_s"] = round(time.monotonic() - started, 3)
                    return
                observed = (deployment.get("status") or {}).get("observedGeneration", 0)
                current = observed >= deployment["metadata"].get("generation", 0)
                # As kubectl: a condition counts only once the controller has seen the newest spec
                # (right after our patch it still describes the rollout we are replacing).
                if current and progressing.get("reason") == "ProgressDeadlineExceeded":
                    step.detail["conditions"] = list(conditions.values())
                    step.detail["after"] = self.history.snapshot(deployment)
                    raise RollbackFailed(
                        f'deployment "{self.settings.deployment}" exceeded its progress deadline ({problem}); '
                        f"{self.history.pod_reasons(deployment)}"
                    )
                now = time.monotonic()
                if now >= deadline:
                    step.detail["conditions"] = list(conditions.values())
                    step.detail["after"] = self.history.snapshot(deployment)
                    raise RollbackFailed(
                        f"{self.where} did not roll out within {format_duration(timeout)} ({problem}); "
                        f"{self.history.pod_reasons(deployment)}"
                    )
                if now >= next_report:
                    self.context.progress(f"{self.where}: {progress_line(deployment)}")
                    next_report = now + PROGRESS_EVERY
                time.sleep(min(POLL_INTERVAL, max(0.0, deadline - now)))

    def _wait_for_answers(self, version: str, deadline: float, detail: Obj) -> None:
        """Until the service answers ``version`` ``ready_consecutive`` times in a row, or the deadline."""
        needed = self.settings.ready_consecutive
        in_a_row = answers = 0
        seen: str | None = None
        while in_a_row < needed:
            left = deadline - time.monotonic()
            if left <= 0:
                last = seen or self.context.last_answer() or "none"
                raise RollbackFailed(
                    f"{self.where} rolled out, but the service did not answer {version} within "
                    f"{format_duration(self.settings.ready_timeout)}; last answer: {last}"
                )
            seen = self.context.service_version(timeout=left)
            answers += 1
            in_a_row = in_a_row + 1 if same_version(seen, version) else 0
            if in_a_row < needed:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        detail["answers"] = answers
