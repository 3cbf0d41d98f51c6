"""The HTTP side of the emulator: discovery, REST verbs on deployments / replicasets / pods, watch.

One thread per connection (``ThreadingHTTPServer``), HTTP/1.1 with keep-alive; a watch answers in
chunked encoding, one JSON event per chunk, until ``timeoutSeconds`` or the emulator stops.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from . import patches
from .controller import Controller
from .pods import PodProcesses
from .service import Service
from .store import KINDS, ApiError, Obj, Store, conflict, field_selector_matches, label_selector_matches
from .tables import table

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
PATCH_TYPES = {
    "application/json-patch+json": patches.json_patch,
    "application/merge-patch+json": patches.merge_patch,
    "application/strategic-merge-patch+json": patches.strategic_merge_patch,
}
PATH = re.compile(
    r"^/(?:api/v1|apis/apps/v1|apis/coordination\.k8s\.io/v1)(?:/namespaces/(?P<ns>[^/]+))?"
    r"/(?P<resource>deployments|replicasets|pods|leases)"
    r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|scale))?/?$"
)
FAULT_REASONS = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
API_PREFIX = {
    "deployments": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "pods": "/api/v1",
    "leases": "/apis/coordination.k8s.io/v1",
}


def _resource(name: str, kind: str, short: str, namespaced: bool = True) -> Obj:
    return {
        "name": name,
        "singularName": kind.lower(),
        "namespaced": namespaced,
        "kind": kind,
        "verbs": VERBS,
        "shortNames": [short],
        "categories": ["all"],
    }


def _subresource(name: str, kind: str, group: str = "") -> Obj:
    body: Obj = {
        "name": name,
        "singularName": "",
        "namespaced": True,
        "kind": kind,
        "verbs": ["get", "patch", "update"],
    }
    if group:
        body.update(group=group, version="v1")
    return body


DISCOVERY: dict[str, Obj] = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            },
            {
                "name": "authorization.k8s.io",
                "versions": [{"groupVersion": "authorization.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "authorization.k8s.io/v1", "version": "v1"},
            },
            {
                "name": "coordination.k8s.io",
                "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"},
            },
        ],
    },
    "/apis/coordination.k8s.io/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "coordination.k8s.io/v1",
        "resources": [
            {
                "name": "leases",
                "singularName": "lease",
                "namespaced": True,
                "kind": "Lease",
                "verbs": VERBS,
            }
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [_resource("pods", "Pod", "po"), _subresource("pods/status", "Pod")],
    },
    "/apis/authorization.k8s.io/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "authorization.k8s.io/v1",
        "resources": [
            {
                "name": "selfsubjectaccessreviews",
                "singularName": "selfsubjectaccessreview",
                "namespaced": False,
                "kind": "SelfSubjectAccessReview",
                "verbs": ["create"],
            }
        ],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "apps/v1",
        "resources": [
            _resource("deployments", "Deployment", "deploy"),
            _subresource("deployments/scale", "Scale", "autoscaling"),
            _subresource("deployments/status", "Deployment"),
            _resource("replicasets", "ReplicaSet", "rs"),
            _subresource("replicasets/scale", "Scale", "autoscaling"),
            _subresource("replicasets/status", "ReplicaSet"),
        ],
    },
}


@dataclass
class Fault:
    """A misbehaviour for the next ``times`` requests whose method and path match.

    ``kind``: "status" answers ``status`` (a metav1.Status) without doing anything; "delay" waits
    ``delay`` seconds, then answers normally; "lost-answer" does the write, then answers 504 as if
    the answer had been lost (the client cannot know whether it happened).
    """

    method: str
    path_contains: str
    kind: Literal["status", "delay", "lost-answer"] = "status"
    status: int = 500
    delay: float = 0.0
    times: int = 1


def default_pod_spec(spec: Obj) -> None:
    """The API server's defaulting of a pod spec (what makes server templates differ from manifests)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for container in spec.get("containers") or []:
        image = container.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
        container.setdefault("imagePullPolicy", "Always" if tag == "latest" else "IfNotPresent")
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")


def default_object(resource: str, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    if resource == "leases":
        return
    if resource == "pods":
        default_pod_spec(spec)
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    default_pod_spec(template.setdefault("spec", {}))
    if resource == "deployments":
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")


def validate(resource: str, obj: Obj) -> None:
    if resource == "leases":
        validate_lease(obj)
        return
    if resource == "pods":
        return
    kind = KINDS[resource][1]
    name = obj["metadata"].get("name", "")
    selector = obj["spec"].get("selector") or {}
    labels = (obj["spec"]["template"].get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if not wanted and not selector.get("matchExpressions"):
        raise ApiError(422, "Invalid", f'{kind}.apps "{name}" is invalid: spec.selector: Required value')
    if any(labels.get(k) != v for k, v in wanted.items()):
        raise ApiError(
            422,
            "Invalid",
            f'{kind}.apps "{name}" is invalid: spec.template.metadata.labels: Invalid value: '
            f"{json.dumps(labels)}: `selector` does not match template `labels`",
        )
    if not obj["spec"]["template"]["spec"].get("containers"):
        raise ApiError(
            422, "Invalid", f'{kind}.apps "{name}" is invalid: spec.template.spec.containers: Required value'
        )


LEASE_SPEC = {
    "holderIdentity": str,
    "leaseDurationSeconds": int,
    "acquireTime": str,
    "renewTime": str,
    "leaseTransitions": int,
    "strategy": str,
    "preferredHolder": str,
}


def validate_lease(obj: Obj) -> None:
    """The API server's checks of a Lease: known spec fields of the right types, times as MicroTime."""
    name = obj["metadata"].get("name", "")
    for key, value in (obj.get("spec") or {}).items():
        wanted = LEASE_SPEC.get(key)
        if wanted is None:
            raise ApiError(
                400, "BadRequest", f'Lease in version "v1" cannot be handled as a Lease: unknown field "spec.{key}"'
            )
        if value is not None and (not isinstance(value, wanted) or isinstance(value, bool)):
            raise ApiError(422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: spec.{key}: Invalid value')
        if (
            key.endswith("Time")
            and value is not None
            and not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
        ):
            raise ApiError(
                422,
                "Invalid",
                f'Lease.coordination.k8s.io "{name}" is invalid: spec.{key}: expected an RFC 3339 MicroTime',
            )
        if (
            key in ("leaseDurationSeconds", "leaseTransitions")
            and value is not None
            and value < (1 if key == "leaseDurationSeconds" else 0)
        ):
            raise ApiError(
                422, "Invalid", f'Lease.coordination.k8s.io "{name}" is invalid: spec.{key}: must be greater than 0'
            )


class Emulator:
    """A Kubernetes API server subset on 127.0.0.1 (a free port), with its controllers running.

    Use as a context manager, or ``start()`` / ``stop()``. ``url`` is what a kubeconfig's server is.
    Fault knobs: ``controller.ready_delay``, ``controller.unpullable`` (images that never pull),
    ``controller.crashing`` (images whose containers exit at once), ``controller.ready_limit`` (image ->
    how many of its pods may be ready; the rest stay not ready, so a rolling update stops with old pods
    serving), ``controller.stopped`` (set with the store locked: no reconcile runs after it).

    ``real_pods=True``: each pod's container is a real process of the demo app at the image tag's
    version (pods.py), ``service()`` is a real proxy over them, and ``stop()`` terminates them all;
    ``pod_processes.releases`` maps a version to its release.json fields (delay, failing paths).
    Otherwise pods are records and the Service answers from them.
    ``port``: the loopback port to listen on (0, the default: a free one; ``url`` names it).
    """

    def __init__(self, tick: float = 0.05, real_pods: bool = False, port: int = 0) -> None:
        self.store = Store()
        self.controller = Controller(self.store)
        self.pod_processes: PodProcesses | None = None
        if real_pods:
            self.pod_processes = PodProcesses(notify=self._wake_controller)
            self.pod_processes.crashing = self.controller.crashing  # one knob for both kinds of pod
            self.controller.pods = self.pod_processes
        self.tick = tick
        self.port = port  # 0: a free port, chosen when it starts
        self.requests: list[tuple[str, str, str]] = []  # (method, path with query, content type)
        self.patches: list[tuple[str, str, Any]] = []  # (path with query, content type, decoded body)
        self._stop = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._services: list[Service] = []
        self.faults: list[Fault] = []
        # (verb, group, resource) the current user may not do; "" is the core group.
        self.denied: set[tuple[str, str, str]] = set()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> Emulator:
        emulator = self

        class Handler(RequestHandler):
            pass

        Handler.emulator = emulator
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True),
            threading.Thread(target=self._run_controller, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def inject(self, method: str, path_contains: str, **fault: Any) -> Fault:
        """Adds a Fault (see there) for requests with this method whose path holds ``path_contains``."""
        added = Fault(method, path_contains, **fault)
        with self.store.cond:
            self.faults.append(added)
        return added

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.store.cond:
            for fault in self.faults:
                if fault.times > 0 and fault.method == method and fault.path_contains in path:
                    fault.times -= 1
                    return fault
        return None

    def service(self, selector: dict[str, str], namespace: str = "default") -> str:
        """The URL of a Service over the ready pods with these labels (stopped with the emulator)."""
        service = Service(self.store, selector, namespace, self.pod_processes).start()
        self._services.append(service)
        return service.url

    def stop(self) -> None:
        for service in self._services:
            service.stop()
        self._stop.set()
        with self.store.cond:
            self.store.closed = True
            self.store.cond.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.pod_processes is not None:
            self.pod_processes.stop()

    def _wake_controller(self) -> None:
        with self.store.cond:
            self.store.cond.notify_all()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_controller(self) -> None:
        seen = -1
        while not self._stop.is_set():
            self.controller.tick()
            with self.store.cond:
                if self.store.rv == seen:
                    self.store.cond.wait(self.tick)
                seen = self.store.rv

    # --- helpers for tests: direct access without HTTP -----------------------------------------

    def create(self, resource: str, obj: Obj) -> Obj:
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {}).setdefault("namespace", "default")
        default_object(resource, obj)
        validate(resource, obj)
        with self.store.cond:
            return self.store.create(resource, obj)

    def get(self, resource: str, name: str, namespace: str = "default") -> Obj:
        with self.store.cond:
            return self.store.get(resource, namespace, name)

    def list(self, resource: str, namespace: str = "default") -> list[Obj]:
        with self.store.cond:
            return self.store.list(resource, namespace)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Until ``predicate()`` (called with the store locked) is true; TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.store.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"emulator: condition not reached within {timeout} s")
                self.store.cond.wait(min(left, 0.2))


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    emulator: Emulator
    fault: Fault | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ------------------------------------------------------------------------------

    def send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_status(self, error: ApiError) -> None:
        self.send_json(error.code, error.status())

    def read_body_if_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

    def read_optional_body(self) -> Obj:
        """A DELETE's DeleteOptions, or {} when it sent none."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from None
        return body if isinstance(body, dict) else {}

    def read_body(self) -> Any:
        content_type = self.headers.get("Content-Type") or ""
        if "protobuf" in content_type:
            self.read_body_if_any()
            raise ApiError(
                415,
                "UnsupportedMediaType",
                'the body of the request was in an unknown format - accepted media types include: "application/json"',
            )
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            raise ApiError(400, "BadRequest", "the request body is empty")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {exc}") from None

    def dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.emulator.requests.append((method, self.path, self.headers.get("Content-Type", "")))
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        self.fault = self.emulator.take_fault(method, split.path)
        try:
            if self.fault is not None and self.fault.kind == "delay":
                time.sleep(self.fault.delay)
            elif self.fault is not None and self.fault.kind == "status":
                self.read_body_if_any()
                raise ApiError(
                    self.fault.status,
                    FAULT_REASONS.get(self.fault.status, "InternalError"),
                    "injected fault: the emulator was told to answer this request with an error",
                )
            if method == "GET" and split.path == "/version":
                self.send_json(200, SERVER_VERSION)
                return
            if method == "GET" and split.path.rstrip("/") in DISCOVERY:
                self.send_json(200, DISCOVERY[split.path.rstrip("/")])
                return
            if method == "POST" and split.path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
                self.access_review()
                return
            match = PATH.match(split.path)
            if match is None or not split.path.startswith(API_PREFIX[match["resource"]] + "/"):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self.handle_resource(method, match["resource"], match["ns"], match["name"], match["sub"], query)
        except ApiError as error:
            self.send_error_status(error)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    # --- resources -----------------------------------------------------------------------------

    def handle_resource(
        self, method: str, resource: str, ns: str | None, name: str | None, sub: str | None, query: dict[str, str]
    ) -> None:
        store = self.emulator.store
        dry_run = query.get("dryRun") == "All"
        if method == "GET" and name is None:
            if query.get("watch") in ("true", "1"):
                self.watch(resource, ns, query)
            else:
                self.list_objects(resource, ns, query)
            return
        if ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "POST" and name is None:
            obj = self.read_body()
            obj.setdefault("metadata", {})["namespace"] = ns
            default_object(resource, obj)
            validate(resource, obj)
            obj.pop("status", None)
            with store.cond:
                self.send_json(201, store.create(resource, obj, dry_run=dry_run))
            return
        if name is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if method == "GET":
            with store.cond:
                obj = store.get(resource, ns, name)
            self.send_json(200, self.scale_of(obj) if sub == "scale" else obj)
            return
        if method == "DELETE":
            options = self.read_optional_body()
            preconditions = options.get("preconditions") or {}
            with store.cond:
                store.delete(resource, ns, name, dry_run=dry_run, resource_version=preconditions.get("resourceVersion"))
            self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
            return
        if method in ("PUT", "PATCH"):
            self.write(method, resource, ns, name, sub, dry_run)
            return
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def scale_of(obj: Obj) -> Obj:
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion")},
            "spec": {"replicas": obj["spec"].get("replicas", 0)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)},
        }

    def write(self, method: str, resource: str, ns: str, name: str, sub: str | None, dry_run: bool) -> None:
        store = self.emulator.store
        body = self.read_body()
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if method == "PATCH":
            self.emulator.patches.append((self.path, content_type, body))
        with store.cond:
            current = store.get(resource, ns, name)
            base = self.scale_of(current) if sub == "scale" else current
            if method == "PUT":
                new = body
            else:
                apply = PATCH_TYPES.get(content_type)
                if apply is None:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown format - accepted media types include: "
                        + ", ".join(PATCH_TYPES),
                    )
                try:
                    new = apply(base, body)
                except patches.PatchError as exc:
                    raise ApiError(422, "Invalid", str(exc)) from None
            if not isinstance(new, dict):
                raise ApiError(400, "BadRequest", "the patched object is not a JSON object")
            given_rv = (new.get("metadata") or {}).get("resourceVersion")
            if given_rv and given_rv != current["metadata"]["resourceVersion"]:
                raise conflict(resource, name)
            if sub == "scale":
                merged = copy.deepcopy(current)
                merged["spec"]["replicas"] = int((new.get("spec") or {}).get("replicas", 0))
                store.update(resource, merged, dry_run=dry_run)
                self.send_json(200, self.scale_of(store.get(resource, ns, name)))
                return
            new.setdefault("metadata", {})
            new["metadata"]["name"], new["metadata"]["namespace"] = name, ns
            new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            if sub == "status":
                merged = copy.deepcopy(current)
                merged["status"] = new.get("status") or {}
            else:
                merged = new
                if resource != "leases":
                    merged["status"] = current.get("status") or {}
                default_object(resource, merged)
                validate(resource, merged)
            updated = store.update(resource, merged, dry_run=dry_run)
        if self.fault is not None and self.fault.kind == "lost-answer":
            raise ApiError(504, "Timeout", "Timeout: request did not complete within the allotted timeout")
        self.send_json(200, updated)

    def access_review(self) -> None:
        """SelfSubjectAccessReview: allowed unless (verb, group, resource) is in ``emulator.denied``."""
        review = self.read_body()
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        key = (attributes.get("verb", ""), attributes.get("group", ""), attributes.get("resource", ""))
        allowed = key not in self.emulator.denied
        review["status"] = {"allowed": allowed}
        if not allowed:
            review["status"]["reason"] = "no RBAC policy matched"
        review.update(apiVersion="authorization.k8s.io/v1", kind="SelfSubjectAccessReview")
        self.send_json(201, review)

    def list_objects(self, resource: str, ns: str | None, query: dict[str, str]) -> None:
        store = self.emulator.store
        with store.cond:
            items = [obj for obj in store.list(resource, ns) if self.selected(obj, query)]
            rv = str(store.rv)
        accept = self.headers.get("Accept") or ""
        if "as=Table" in accept:
            self.send_json(200, table(resource, items, rv))
            return
        api_version, kind = KINDS[resource]
        self.send_json(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            },
        )

    @staticmethod
    def selected(obj: Obj, query: dict[str, str]) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return label_selector_matches(query.get("labelSelector", ""), labels) and field_selector_matches(
            query.get("fieldSelector", ""), obj
        )

    def watch(self, resource: str, ns: str | None, query: dict[str, str]) -> None:
        store = self.emulator.store
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        since = query.get("resourceVersion") or "0"
        with store.cond:
            if since == "0":
                backlog = [("ADDED", obj) for obj in store.list(resource, ns) if self.selected(obj, query)]
                cursor = store.rv
            else:
                cursor = int(since)
                if cursor + 1 < store.first_event_rv:
                    raise ApiError(410, "Expired", f"too old resource version: {cursor} ({store.first_event_rv - 1})")
                backlog = []
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for kind, obj in backlog:
                self.send_event(kind, obj)
            while time.monotonic() < deadline:
                with store.cond:
                    if store.closed:
                        break
                    events = [e for e in store.events if e[0] > cursor and e[1] == resource]
                    if not events:
                        store.cond.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                        continue
                    cursor = events[-1][0]
                for _, _, kind, obj in events:
                    if (ns is None or obj["metadata"].get("namespace") == ns) and self.selected(obj, query):
                        self.send_event(kind, obj)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def send_event(self, kind: str, obj: Obj) -> None:
        data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
