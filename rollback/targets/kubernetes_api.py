"""The kubernetes driver's connection to the API server: the kubeconfig and its context, reads retried
with backoff, the one write (a JSON patch of the deployment), and the preflight on what the user may do.

Kept apart so the rest of the driver deals in plain objects (dicts as the server sends them) and never in
the client's retries, timeouts and errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import RollbackFailed
from .base import Finding
from .kubernetes_objects import Obj, selector_string
from .kubernetes_settings import KubernetesSettings

JSON_PATCH = "application/json-patch+json"
# (verb, API group, resource) a rollback uses: read and patch the deployment, list its ReplicaSets and pods.
PERMISSIONS = (
    ("get", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("list", "apps", "replicasets"),
    ("list", "", "pods"),
)
READ_ATTEMPTS = 3
READ_BACKOFF = (0.2, 0.5)  # seconds before the 2nd and 3rd attempt of a read

T = TypeVar("T")


def api_message(exc: ApiException) -> str:
    """The Status message of an API error, else its HTTP reason."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return f"{exc.status} {body.get('reason', '')}: {body['message']}".replace("  ", " ")
    return f"{exc.status} {exc.reason}"


def as_json(response: Any) -> Obj:
    """The body of a response read with ``_preload_content=False``: the object as the server sent it."""
    data: Obj = json.loads(response.data)
    return data


class KubernetesApi:
    """The API server as the configured kubeconfig, context and namespace reach it, for one deployment."""

    def __init__(self, settings: KubernetesSettings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir
        self._api_client: k8s_client.ApiClient | None = None

    @property
    def where(self) -> str:
        return f"deployment {self.settings.namespace}/{self.settings.deployment}"

    # --- the kubeconfig ------------------------------------------------------------------------

    def kubeconfig_file(self) -> str | None:
        path = self.settings.kubeconfig
        return str(self.base_dir / path) if path is not None else None

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

    # --- preflight: the context and the permissions ---------------------------------------------

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

    def permission_findings(self) -> list[Finding]:
        """SelfSubjectAccessReview for every call a rollback makes: a missing one is named before any change."""
        missing, unknown = [], []
        for verb, group, resource in PERMISSIONS:
            name = f"{verb} {resource}{'.' + group if group else ''}"
            try:
                answer = self.access_review(verb, group, resource)
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

    def access_review(self, verb: str, group: str, resource: str) -> Obj:
        """The server's SelfSubjectAccessReview answer for one call in the target's namespace (not retried)."""
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
        return as_json(
            k8s_client.AuthorizationV1Api(self.api_client()).create_self_subject_access_review(
                body, _preload_content=False, _request_timeout=self.settings.request_timeout
            )
        )

    # --- reads and the patch ---------------------------------------------------------------------

    def read(self, what: str, call: Callable[[], T]) -> T:
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

    def read_deployment(self, timeout: float | None = None) -> Obj:
        s = self.settings
        return self.read(
            self.where,
            lambda: as_json(
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
                return as_json(self.apps().list_namespaced_replica_set(s.namespace, **kwargs))

            page = self.read(f"the replicasets of {self.where}", one_page)
            for rs in page.get("items") or []:
                refs = rs["metadata"].get("ownerReferences") or []
                if any(ref.get("controller") and ref.get("uid") == uid for ref in refs):
                    owned.append(rs)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return owned

    def list_pods(self, deployment: Obj) -> list[Obj]:
        """The pods the deployment's selector matches, as the API server returns them."""
        s = self.settings
        selector = selector_string(deployment["spec"].get("selector") or {})
        listing = self.read(
            f"the pods of {self.where}",
            lambda: as_json(
                k8s_client.CoreV1Api(self.api_client()).list_namespaced_pod(
                    s.namespace, label_selector=selector, _preload_content=False, _request_timeout=s.request_timeout
                )
            ),
        )
        items: list[Obj] = listing.get("items") or []
        return items

    def patch_deployment(self, operations: list[Obj], dry_run: bool = False) -> Obj:
        """The JSON patch, sent once: never retried, its errors are the caller's to judge."""
        s = self.settings
        kwargs: Obj = {"_content_type": JSON_PATCH, "_preload_content": False, "_request_timeout": s.request_timeout}
        if dry_run:
            kwargs["dry_run"] = "All"
        return as_json(self.apps().patch_namespaced_deployment(s.deployment, s.namespace, operations, **kwargs))
