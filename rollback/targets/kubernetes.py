"""Kubernetes Deployments, through the official ``kubernetes`` client.

A rollback to a version is kubectl's ``rollout undo --to-revision=N`` where N is the newest revision
whose template carries that version: the same JSON patch (the ReplicaSet's template without its
``pod-template-hash`` label, and the deployment's annotations rebuilt from the ReplicaSet's), skipped
when the template already matches, refused when the deployment is paused. Unlike kubectl it carries a
``resourceVersion`` precondition, so a change that lands between our read and our write is a 409 and a
``Conflict``, never overwritten. Plain undo (the revision before the newest) toggles between the last
two revisions and is never used.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from pydantic import AfterValidator, Field
from urllib3.exceptions import ConnectTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error

from ..census import Census, Replica
from ..config import Duration, Section
from ..durations import format_duration
from ..errors import Conflict, RollbackFailed
from ..journal import Journal
from ..versions import same_version, version_problem
from .base import Finding, Target

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
JSON_PATCH = "application/json-patch+json"
# (verb, API group, resource) a rollback uses: read and patch the deployment, list its ReplicaSets and pods.
PERMISSIONS = (
    ("get", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("list", "apps", "replicasets"),
    ("list", "", "pods"),
)
REVISION_PREFIX = "revision:"
STEP_PATCH, STEP_WAIT = "patch-deployment", "wait-ready"
READ_ATTEMPTS = 3
READ_BACKOFF = (0.2, 0.5)  # seconds before the 2nd and 3rd attempt of a read
POLL_INTERVAL = 0.2
PROGRESS_EVERY = 2.0
MAX_WAIT = 24 * 3600.0

Obj = dict[str, Any]
T = TypeVar("T")


def _bounded_wait(value: float) -> float:
    if not 0 < value <= MAX_WAIT:
        raise ValueError("expected a duration above 0 and at most 24h, e.g. '30s', '5m' or '1h'")
    return value


BoundedDuration = Annotated[Duration, AfterValidator(_bounded_wait)]


class KubernetesSettings(Section):
    deployment: str = Field(min_length=1)
    namespace: str = Field(default="default", min_length=1)
    # None: the usual lookup ($KUBECONFIG, else ~/.kube/config) and its current context.
    kubeconfig: Path | None = None
    context: str | None = None
    # None: the pod template's only container (a template with several must name one).
    container: str | None = None
    # How a template's version is read: the container's image tag, or a pod template label.
    version_from: Literal["image-tag", "label"] = "image-tag"
    version_label: str = "app.kubernetes.io/version"
    ready_timeout: BoundedDuration = 300.0
    # After the rollout, the service must answer the target this many times in a row (pods of the
    # old version stop answering only when they are gone).
    ready_consecutive: int = Field(default=3, ge=1, le=100)
    request_timeout: BoundedDuration = 10.0


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


def api_message(exc: ApiException) -> str:
    """The Status message of an API error, else its HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{exc.status} {body.get('reason', '')}: {body['message']}".replace("  ", " ")
    return f"{exc.status} {exc.reason}"


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


@dataclass(frozen=True)
class Unanswered:
    """A write without a clear answer: what came back, and whether the server is done with it."""

    error: str
    settled: bool


class KubernetesTarget(Target):
    kind = "kubernetes"
    settings_model = KubernetesSettings
    settings: KubernetesSettings
    accepts_revisions = True

    _api_client: k8s_client.ApiClient | None = None
    # (revision, version) of ``--rollback-to revision:N``: a rollback to that version goes to exactly N.
    _pinned: tuple[int, str] | None = None

    # --- talking to the API server -------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"deployment {self.settings.namespace}/{self.settings.deployment}"

    def kubeconfig_file(self) -> str | None:
        path = self.settings.kubeconfig
        return str(self.context.base_dir / path) if path is not None else None

    def kube_context(self) -> tuple[str, str | None]:
        """(the context this run uses, the namespace that context selects or None), from the kubeconfig.

        A configured context the kubeconfig does not have is refused naming both.
        """
        config_file = self.kubeconfig_file()
        shown = config_file or str(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)
        try:
            contexts, current = k8s_config.list_kube_config_contexts(config_file)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError, ValueError, TypeError, AttributeError) as exc:
            raise RollbackFailed(f"cannot load the kubeconfig {shown}: {exc}") from None
        names = [c.get("name") for c in contexts or []]
        wanted = self.settings.context
        if wanted is not None and wanted not in names:
            listing = ", ".join(str(n) for n in names) or "none"
            raise RollbackFailed(
                f"the configured context {wanted!r} is not in the kubeconfig {shown} "
                f"(its current context: {(current or {}).get('name')!r}; its contexts: {listing})"
            )
        chosen = next((c for c in contexts or [] if c.get("name") == wanted), None) if wanted else current
        if not chosen:
            raise RollbackFailed(f"the kubeconfig {shown} has no current context and the config names none (context)")
        namespace = (chosen.get("context") or {}).get("namespace")
        return str(chosen.get("name")), str(namespace) if namespace else None

    def context_findings(self) -> list[Finding]:
        """Preflight: the kubeconfig's selected context and namespace are the configured ones."""
        name, namespace = self.kube_context()
        configured = self.settings.namespace
        how = "configured" if "namespace" in self.settings.model_fields_set else "the default"
        if namespace is not None and namespace != configured:
            return [
                Finding(
                    "target-context",
                    False,
                    f"the kubeconfig's context {name!r} selects namespace {namespace!r}, but this target's "
                    f"namespace is {configured!r} ({how}): set namespace = {namespace!r} in the config, or use a "
                    f"context for {configured!r}",
                )
            ]
        return [Finding("target-context", True, f"context {name!r}, namespace {configured!r}, as configured")]

    def api_client(self) -> k8s_client.ApiClient:
        if self._api_client is None:
            self.kube_context()  # a configured context the kubeconfig lacks is named, not a client traceback
            config_file = self.kubeconfig_file()
            configuration = k8s_client.Configuration()
            # No hidden retries in urllib3's pool: reads are retried here (bounded, with backoff) and
            # writes never, so one timeout costs request_timeout and not four of it.
            configuration.retries = False
            try:
                self._api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=config_file,
                    context=self.settings.context,
                    persist_config=False,
                    client_configuration=configuration,
                )
            except (k8s_config.ConfigException, OSError, ValueError) as exc:
                raise RollbackFailed(f"cannot load the kubeconfig {config_file or '(default lookup)'}: {exc}") from None
        return self._api_client

    def apps(self) -> k8s_client.AppsV1Api:
        return k8s_client.AppsV1Api(self.api_client())

    def _read(self, what: str, call: Callable[[], T]) -> T:
        """A read, retried with backoff on server errors and lost connections (never on 4xx)."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return call()
            except ApiException as exc:
                if (exc.status is not None and exc.status < 500) or attempt == READ_ATTEMPTS - 1:
                    raise RollbackFailed(f"cannot read {what}: {api_message(exc)}") from None
            except Urllib3Error as exc:
                if attempt == READ_ATTEMPTS - 1:
                    raise RollbackFailed(f"cannot read {what}: the API server did not answer ({exc})") from None
            time.sleep(READ_BACKOFF[min(attempt, len(READ_BACKOFF) - 1)])
        raise AssertionError("unreachable")

    def _json(self, response: Any) -> Obj:
        data: Obj = json.loads(response.data)
        return data

    def read_deployment(self, timeout: float | None = None) -> Obj:
        s = self.settings
        return self._read(
            self.where,
            lambda: self._json(
                self.apps().read_namespaced_deployment(
                    s.deployment,
                    s.namespace,
                    _preload_content=False,
                    _request_timeout=min(timeout or s.request_timeout, s.request_timeout),
                )
            ),
        )

    def replicasets(self, deployment: Obj) -> list[Obj]:
        """The ReplicaSets the deployment controls (ownerReference controller + uid), all pages."""
        s = self.settings
        selector = selector_string(deployment["spec"].get("selector") or {})
        uid = deployment["metadata"]["uid"]
        owned: list[Obj] = []
        token: str | None = None
        while True:
            kwargs: Obj = {"label_selector": selector, "_preload_content": False, "_request_timeout": s.request_timeout}
            if token:
                kwargs["_continue"] = token

            def one_page(kwargs: Obj = kwargs) -> Obj:
                return self._json(self.apps().list_namespaced_replica_set(s.namespace, **kwargs))

            page = self._read(f"the replicasets of {self.where}", one_page)
            for rs in page.get("items") or []:
                refs = rs["metadata"].get("ownerReferences") or []
                if any(ref.get("controller") and ref.get("uid") == uid for ref in refs):
                    owned.append(rs)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return owned

    # --- versions and revisions ----------------------------------------------------------------

    def version_of(self, template: Obj) -> str:
        if self.settings.version_from == "label":
            labels = (template.get("metadata") or {}).get("labels") or {}
            value = labels.get(self.settings.version_label)
            if not value:
                raise RollbackFailed(f"{self.where}: the pod template has no label {self.settings.version_label!r}")
            return str(value)
        containers = (template.get("spec") or {}).get("containers") or []
        names = [c.get("name") for c in containers]
        wanted = self.settings.container
        if wanted is None:
            if len(containers) != 1:
                raise RollbackFailed(
                    f"{self.where} has containers {', '.join(map(str, names))}: "
                    "set 'container' to the one whose image tag is the version"
                )
            return image_tag(containers[0].get("image", ""))
        for container in containers:
            if container.get("name") == wanted:
                return image_tag(container.get("image", ""))
        raise RollbackFailed(f"{self.where} has no container {wanted!r}; it has {', '.join(map(str, names))}")

    def revisions(self, deployment: Obj) -> dict[int, Obj]:
        """Revision -> ReplicaSet (a revision that is not an integer is skipped, as kubectl does)."""
        result: dict[int, Obj] = {}
        for rs in self.replicasets(deployment):
            revision = revision_of(rs)
            if revision is not None:
                result[revision] = rs
        return result

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

    def target_revision(self, version: str, deployment: Obj) -> tuple[int, Obj]:
        """``revision:N`` -> N; a version -> the newest revision whose template carries it."""
        revisions = self.revisions(deployment)
        if version.startswith(REVISION_PREFIX):
            text = version[len(REVISION_PREFIX) :]
            if not text.isdigit() or int(text) not in revisions:
                raise RollbackFailed(f"{self.where}: unable to find specified revision {text} in history")
            return int(text), revisions[int(text)]
        if self._pinned is not None and self._pinned[1] == version:
            return self.target_revision(f"{REVISION_PREFIX}{self._pinned[0]}", deployment)
        matching = [
            (revision, rs)
            for revision, rs in sorted(revisions.items())
            if self.version_of(rs["spec"]["template"]) == version
        ]
        if not matching:
            known = ", ".join(f"{r}={self.version_of(rs['spec']['template'])}" for r, rs in sorted(revisions.items()))
            raise RollbackFailed(f"{self.where}: no revision runs {version}; revisions: {known or 'none'}")
        return matching[-1]

    # --- the Target interface ------------------------------------------------------------------

    def resolve_revision(self, revision: int) -> tuple[str, str]:
        revisions = self.revisions(self.read_deployment())
        if revision not in revisions:
            known = ", ".join(f"{r}={self.version_of(rs['spec']['template'])}" for r, rs in sorted(revisions.items()))
            raise RollbackFailed(
                f"{self.where}: unable to find specified revision {revision} in history; revisions: {known or 'none'}"
            )
        version = self.version_of(revisions[revision]["spec"]["template"])
        self._pinned = (revision, version)
        return version, f"requested {REVISION_PREFIX}{revision}, which runs {version}"

    def live_version(self) -> str:
        return self.version_of(self.read_deployment()["spec"]["template"])

    def history(self) -> list[str]:
        """Versions in revision order, oldest first; a version in several revisions at its newest.

        So ``previous`` (the one before the live version) is the revision plain ``kubectl rollout undo``
        goes to, whatever its version number; only when that revision runs the live version too (a
        change of something else) does it go on to the newest revision with another version.
        """
        versions = [
            row["version"]
            for row in self.revision_table(self.read_deployment())
            if version_problem(row["version"]) is None
        ]
        newest_first: list[str] = []
        for version in reversed(versions):
            if version not in newest_first:
                newest_first.append(version)
        return list(reversed(newest_first))

    def observe(self) -> str:
        """The deployment's generation and revision: any spec change (set image, pause, undo) moves them."""
        deployment = self.read_deployment()
        annotations = deployment["metadata"].get("annotations") or {}
        return f"generation {deployment['metadata'].get('generation')}, revision {annotations.get(REVISION, '?')}"

    def permission_findings(self) -> list[Finding]:
        """SelfSubjectAccessReview for every call a rollback makes: a missing one is named before any change."""
        missing, unknown = [], []
        for verb, group, resource in PERMISSIONS:
            body: Any = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": self.settings.namespace,
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                    }
                },
            }
            name = f"{verb} {resource}{'.' + group if group else ''}"
            try:
                answer = self._json(
                    k8s_client.AuthorizationV1Api(self.api_client()).create_self_subject_access_review(
                        body, _preload_content=False, _request_timeout=self.settings.request_timeout
                    )
                )
            except (ApiException, Urllib3Error) as exc:
                reason = api_message(exc) if isinstance(exc, ApiException) else str(exc)
                unknown.append(f"{name} ({reason})")
                continue
            if not (answer.get("status") or {}).get("allowed"):
                missing.append(name)
        if missing:
            return [
                Finding(
                    "target-permissions",
                    False,
                    f"the current user may not {', '.join(missing)} in namespace {self.settings.namespace} "
                    "(SelfSubjectAccessReview); a rollback needs them: ask for a Role that grants them",
                )
            ]
        if unknown:
            return [
                Finding(
                    "target-permissions",
                    False,
                    f"could not check the permissions {', '.join(unknown)} (SelfSubjectAccessReview)",
                )
            ]
        granted = ", ".join(f"{verb} {resource}" for verb, _, resource in PERMISSIONS)
        return [Finding("target-permissions", True, f"allowed in namespace {self.settings.namespace}: {granted}")]

    def deployable(self, version: str) -> list[Finding]:
        deployment = self.read_deployment()
        findings = self.context_findings() + self.permission_findings()
        try:
            revision, _ = self.target_revision(version, deployment)
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
        in_progress = self.rollout_problem(deployment)
        conditions = {c.get("type"): c for c in (deployment.get("status") or {}).get("conditions") or []}
        stalled = (conditions.get("Progressing") or {}).get("reason") == "ProgressDeadlineExceeded"
        if in_progress is not None and stalled:
            # The classic reason to roll back: the new revision never became available.
            findings.append(
                Finding(
                    "target-deployable",
                    True,
                    f"{self.where}: the current rollout is stalled (ProgressDeadlineExceeded, {in_progress}); "
                    "rolling back replaces it",
                )
            )
        elif in_progress is not None:
            findings.append(
                Finding(
                    "target-deployable",
                    False,
                    f"{self.where}: a rollout is in progress ({in_progress}); wait until it finishes or stalls "
                    f"(kubectl rollout status deployment/{self.settings.deployment} -n {self.settings.namespace}), "
                    "then run again",
                )
            )
        return findings

    def steps(self) -> list[str]:
        return [STEP_PATCH, STEP_WAIT]

    def plan(self, version: str, steps: Sequence[str] | None = None) -> list[str]:
        steps = self.steps() if steps is None else steps
        lines = []
        deployment = self.read_deployment()
        revision, rs = self.target_revision(version, deployment)
        if STEP_PATCH in steps:
            if same_template(rs["spec"]["template"], deployment["spec"]["template"]):
                lines.append(f"nothing to patch: the template of {self.where} already matches revision {revision}")
            else:
                lines.append(
                    f"JSON-patch {self.where}: template and annotations of revision {revision} ({version}), "
                    f"precondition resourceVersion {deployment['metadata']['resourceVersion']}; "
                    f"server dry run (dryRun=All): {self.server_dry_run(deployment, rs)}"
                )
        if STEP_WAIT in steps:
            lines.append(
                f"wait until {self.where} has rolled out (as kubectl rollout status, "
                f"up to {format_duration(self.settings.ready_timeout)})"
            )
        return lines

    def server_dry_run(self, deployment: Obj, rs: Obj) -> str:
        try:
            answer = self._patch(undo_patch(deployment, rs, deployment["metadata"]["resourceVersion"]), dry_run=True)
        except ApiException as exc:
            return f"refused: {api_message(exc)}"
        except Urllib3Error as exc:
            return f"no answer ({exc})"
        return f"accepted, the template would run {self.version_of(answer['spec']['template'])}"

    def _patch(self, operations: list[Obj], dry_run: bool = False) -> Obj:
        s = self.settings
        kwargs: Obj = {"_content_type": JSON_PATCH, "_preload_content": False, "_request_timeout": s.request_timeout}
        if dry_run:
            kwargs["dry_run"] = "All"
        return self._json(self.apps().patch_namespaced_deployment(s.deployment, s.namespace, operations, **kwargs))

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
            annotations = deployment["metadata"].get("annotations") or {}
            now = f"generation {deployment['metadata'].get('generation')}, revision {annotations.get(REVISION, '?')}"
            if now != expected_state:
                raise Conflict(
                    f"{self.where} changed after this run read it: it was {expected_state}, it is now {now} "
                    "(another deploy or run changed it); this run stopped before writing"
                )
        revision, rs = self.target_revision(version, deployment)
        if deployment["spec"].get("paused"):
            raise RollbackFailed(
                f"{self.where} is paused: you cannot roll back a paused deployment; resume it first "
                f"(kubectl rollout resume deployment/{self.settings.deployment} -n {self.settings.namespace})"
            )
        with journal.step(STEP_PATCH, deployment=self.where, revision=revision, version=version) as step:
            step.detail["from_revision"] = (deployment["metadata"].get("annotations") or {}).get(REVISION)
            step.detail["before"] = self.snapshot(deployment)
            if same_template(rs["spec"]["template"], deployment["spec"]["template"]):
                step.detail["note"] = f"skipped rollback (current template already matches revision {revision})"
                return
            operations = undo_patch(deployment, rs, deployment["metadata"]["resourceVersion"])
            step.detail["patch"] = operations
            try:
                answer = self._patch(operations)
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
        patch = f"the patch of {self.where} to revision {revision} ({self.version_of(rs['spec']['template'])})"
        was = before["metadata"].get("resourceVersion")
        check = (
            f"check `kubectl rollout history deployment/{self.settings.deployment} -n {self.settings.namespace}` "
            "before running again"
        )
        deadline = time.monotonic() + self.settings.request_timeout
        while True:
            try:
                now = self.read_deployment(timeout=max(0.1, deadline - time.monotonic()))
            except RollbackFailed as exc:
                detail["write"] = "unknown"
                raise RollbackFailed(
                    f"{patch} got no clear answer ({sent.error}); whether it was applied is unknown: reading "
                    f"the deployment again failed too ({exc}); it was not sent again; {check}"
                ) from None
            if same_template(rs["spec"]["template"], now["spec"]["template"]):
                detail["write"] = "applied (seen by reading the deployment again)"
                return now
            running = self._running(now)
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

    def _running(self, deployment: Obj) -> str:
        """``v1.4.0 (revision 3)``: the template's version and the deployment's revision."""
        try:
            version = self.version_of(deployment["spec"]["template"])
        except RollbackFailed:
            version = "an unknown version"
        revision = (deployment["metadata"].get("annotations") or {}).get(REVISION, "?")
        return f"{version} (revision {revision})"

    def rollout_problem(self, deployment: Obj) -> str | None:
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

    def wait_ready(self, version: str, journal: Journal) -> None:
        timeout = self.settings.ready_timeout
        with journal.step(STEP_WAIT, deployment=self.where, version=version, timeout_s=timeout) as step:
            started = time.monotonic()
            deadline = started + timeout
            next_report = started + PROGRESS_EVERY
            while True:
                deployment = self.read_deployment(timeout=max(0.1, deadline - time.monotonic()))
                conditions = {c["type"]: c for c in (deployment.get("status") or {}).get("conditions") or []}
                progressing = conditions.get("Progressing") or {}
                problem = self.rollout_problem(deployment)
                if problem is None:
                    step.detail["after"] = self.snapshot(deployment)
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
                    step.detail["after"] = self.snapshot(deployment)
                    raise RollbackFailed(
                        f'deployment "{self.settings.deployment}" exceeded its progress deadline ({problem}); '
                        f"{self.pod_reasons(deployment)}"
                    )
                now = time.monotonic()
                if now >= deadline:
                    step.detail["conditions"] = list(conditions.values())
                    step.detail["after"] = self.snapshot(deployment)
                    raise RollbackFailed(
                        f"{self.where} did not roll out within {format_duration(timeout)} ({problem}); "
                        f"{self.pod_reasons(deployment)}"
                    )
                if now >= next_report:
                    self.context.progress(f"{self.where}: {self.progress_line(deployment)}")
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

    @staticmethod
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

    def list_pods(self, deployment: Obj) -> list[Obj]:
        """The pods the deployment's selector matches, as the API server returns them."""
        s = self.settings
        selector = selector_string(deployment["spec"].get("selector") or {})
        listing = self._read(
            f"the pods of {self.where}",
            lambda: self._json(
                k8s_client.CoreV1Api(self.api_client()).list_namespaced_pod(
                    s.namespace, label_selector=selector, _preload_content=False, _request_timeout=s.request_timeout
                )
            ),
        )
        items: list[Obj] = listing.get("items") or []
        return items

    def pods(self, deployment: Obj) -> list[Obj]:
        """The deployment's pods for the evidence: name, image, ready, restarts, node, waiting reason."""
        rows = []
        for pod in self.list_pods(deployment):
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

    # --- the census: which pod runs which version, as the API server says -----------------------

    def census(self) -> Census:
        """One replica per pod the deployment's selector matches, and the controller's own reasons the
        rollout is not complete (unobserved generation, counts short of spec.replicas, an old ReplicaSet
        with ready pods, ProgressDeadlineExceeded). Reads only: the deployment, its ReplicaSets, its pods."""
        deployment = self.read_deployment()
        replicasets = self.replicasets(deployment)
        pods = self.list_pods(deployment)
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
            version: str | None = self.version_of(pod)  # a pod has the template's shape: metadata and spec
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
                version = self.version_of(rs["spec"]["template"])
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
            "deployment": self.where,
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
