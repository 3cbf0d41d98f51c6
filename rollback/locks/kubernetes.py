"""The ``kubernetes`` lock backend: a coordination.k8s.io/v1 Lease in the target's namespace.

The Lease ``rollback-harness-SERVICE-TARGET`` says who holds the target: ``holderIdentity`` (run id
@ host), ``acquireTime``, ``renewTime`` and ``leaseDurationSeconds``, and an annotation with the
holder's host, user, pid, run id and since when. The holder renews it in the background every
third of its duration; a holder that dies stops renewing and the Lease expires: the next run takes
it over (``leaseTransitions`` + 1) and records from whom. Every write carries the resourceVersion
read just before it, so two runs racing for one Lease cannot both win: the loser gets a 409 and is
refused naming the winner. ``--rollback-break-lock RUN_ID`` takes a live Lease held by that run.

Expiry is judged on this machine's clock against the holder's ``renewTime``: clocks more than a
few seconds apart shorten or lengthen the wait for an expired Lease by that much.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from ..errors import ConfigError
from ..lock import HOLDER_FIELDS, holder_facts, refusal

if TYPE_CHECKING:
    from ..config import HarnessConfig, TargetSpec

HOLDER_ANNOTATION = "rollback-harness.io/holder"
PREFIX = "rollback-harness-"
Obj = dict[str, Any]


class LeaseError(Exception):
    """The API server could not be asked (its words, or the connection's)."""


def lease_name(service: str, target: str) -> str:
    """A valid Lease name (DNS-1123 subdomain) for the pair; a hash keeps shortened names apart."""
    raw = f"{service}-{target}".lower()
    clean = re.sub(r"[^a-z0-9.-]+", "-", raw).strip("-.") or "target"
    if clean != raw or len(PREFIX + clean) > 63:
        digest = hashlib.sha256(f"{service}\0{target}".encode()).hexdigest()[:8]
        clean = f"{clean[: 63 - len(PREFIX) - 9].rstrip('-.')}-{digest}"
    return PREFIX + clean


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API server writes it: ``2026-11-26T16:40:00.123456Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if match is None:
        return None
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}")


def expires_at(spec: Obj) -> datetime | None:
    """When a Lease nobody renews stops being held; None when it says nothing usable."""
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if renewed is None or not isinstance(duration, int):
        return None
    return renewed + timedelta(seconds=duration)


class LeaseLock:
    def __init__(
        self,
        *,
        kubeconfig: str | None,
        context: str | None,
        namespace: str,
        service: str,
        target: str,
        path: Path,
        run_id: str,
        lease_duration: float = 30.0,
        timeout: float = 10.0,
        break_run: str | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace
        self.name = lease_name(service, target)
        self.path = path
        self.run_id = run_id
        self.identity = f"{run_id}@{socket.gethostname()}"
        self.duration = max(1, round(lease_duration))
        self.timeout = timeout
        self.break_run = break_run
        self.taken_over: dict[str, Any] | None = None
        self.broken: dict[str, Any] | None = None
        self._api: k8s_client.CoordinationV1Api | None = None
        self._lease: Obj | None = None  # as last written by this run
        self._renewed = 0.0  # monotonic time of the last successful write
        self._lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @classmethod
    def from_config(
        cls, config: HarnessConfig, spec: TargetSpec, path: Path, run_id: str, *, break_run: str | None = None
    ) -> LeaseLock:
        settings = spec.lock if spec.lock is not None else config.settings.lock
        target: Any = spec.settings if spec.kind == "kubernetes" else None
        kubeconfig = settings.kubeconfig or (target.kubeconfig if target is not None else None)
        namespace = settings.namespace or (target.namespace if target is not None else None)
        if namespace is None:  # load_config refuses this; a config built by hand may not
            raise ConfigError("lock.backend = 'kubernetes' needs lock.namespace on a target that is not kubernetes")
        return cls(
            kubeconfig=str(config.base_dir / kubeconfig) if kubeconfig is not None else None,
            context=settings.context or (target.context if target is not None else None),
            namespace=namespace,
            service=config.settings.service.name,
            target=spec.name,
            path=path,
            run_id=run_id,
            lease_duration=settings.lease_duration,
            timeout=settings.timeout,
            break_run=break_run,
        )

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    # -- the API ----------------------------------------------------------------------------------

    def api(self) -> k8s_client.CoordinationV1Api:
        if self._api is None:
            configuration = k8s_client.Configuration()
            configuration.retries = False
            try:
                api_client = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
                    config_file=self.kubeconfig,
                    context=self.context,
                    persist_config=False,
                    client_configuration=configuration,
                )
            except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
                raise LeaseError(f"cannot load the kubeconfig {self.kubeconfig or '(default lookup)'}: {exc}") from None
            self._api = k8s_client.CoordinationV1Api(api_client)
        return self._api

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Obj | None:
        """One request; its JSON answer, None for a 404; LeaseError for any other failure but 409."""
        try:
            response = call(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise
            raise LeaseError(f"cannot {what} {self.where}: {_api_words(exc)}") from None
        except (Urllib3Error, OSError) as exc:
            raise LeaseError(f"cannot {what} {self.where}: the API server did not answer ({exc})") from None
        data: Obj = json.loads(response.data)
        return data

    def _read(self) -> Obj | None:
        return self._call("read", self.api().read_namespaced_lease, self.name, self.namespace)

    def _create(self, body: Obj) -> Obj:
        created = self._call("create", self.api().create_namespaced_lease, self.namespace, body)
        assert created is not None
        return created

    def _replace(self, body: Obj) -> Obj:
        replaced = self._call("write", self.api().replace_namespaced_lease, self.name, self.namespace, body)
        if replaced is None:
            raise LeaseError(f"{self.where} was deleted while this run wrote it")
        return replaced

    # -- taking it --------------------------------------------------------------------------------

    def _ours(self, previous: Obj | None, transitions: int) -> Obj:
        now = micro_time(datetime.now(timezone.utc))
        metadata: Obj = {
            "name": self.name,
            "namespace": self.namespace,
            "labels": {"app.kubernetes.io/managed-by": "rollback-harness"},
            "annotations": {HOLDER_ANNOTATION: json.dumps(holder_facts(self.run_id))},
        }
        if previous is not None:
            metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": self.duration,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": transitions,
            },
        }

    def acquire(self) -> str | None:
        try:
            return self._acquire()
        except LeaseError as exc:
            return f"cannot take the lock {self.where}: {exc}"

    def _acquire(self) -> str | None:
        for _ in range(2):  # a second look only after losing a race to another run's write
            lease = self._read()
            try:
                if lease is None:
                    written = self._create(self._ours(None, 0))
                    self._hold(written)
                    return None
                spec = lease.get("spec") or {}
                holder = self._holder(lease)
                transitions = int(spec.get("leaseTransitions") or 0)
                if not spec.get("holderIdentity"):  # released
                    self._hold(self._replace(self._ours(lease, transitions + 1)))
                    return None
                expiry = expires_at(spec)
                if expiry is None or expiry < datetime.now(timezone.utc):
                    written = self._replace(self._ours(lease, transitions + 1))
                    self.taken_over = {**holder, "pid_alive": None, "expired": micro_time(expiry) if expiry else None}
                    self._hold(written)
                    return None
                if self.break_run is None or holder.get("run_id") != self.break_run:
                    return refusal(self.where, holder, self.break_run)
                written = self._replace(self._ours(lease, transitions + 1))
                self.broken = {k: holder.get(k) for k in HOLDER_FIELDS}
                self._hold(written)
                return None
            except ApiException as exc:  # 409: another run wrote it between our read and our write
                if exc.status != 409:
                    raise
                self.taken_over = self.broken = None
        lease = self._read()
        return refusal(self.where, self._holder(lease) if lease else None, self.break_run)

    def _holder(self, lease: Obj) -> dict[str, Any]:
        """Who the Lease names: the harness's note, else what the Lease itself says."""
        spec = lease.get("spec") or {}
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        try:
            note = json.loads(annotations.get(HOLDER_ANNOTATION, ""))
        except ValueError:
            note = None
        identity = str(spec.get("holderIdentity") or "")
        if isinstance(note, dict) and identity.startswith(f"{note.get('run_id')}@"):
            return {k: note.get(k) for k in HOLDER_FIELDS}
        return {
            "run_id": identity,
            "pid": "unknown",
            "host": "unknown (not a harness run)",
            "user": "unknown",
            "since": spec.get("acquireTime"),
        }

    def _hold(self, written: Obj) -> None:
        with self._mutex:
            self._lease = written
            self._renewed = time.monotonic()
            self._lost = None
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="rollback-lease-renewer", daemon=True)
        self._renewer.start()

    # -- holding it -------------------------------------------------------------------------------

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.duration / 3):
            if self._renew() is not None:
                return

    def _renew(self) -> str | None:
        with self._mutex:
            if self._lease is None or self._lost is not None:
                return self._lost
            body = json.loads(json.dumps(self._lease))
            body["spec"]["renewTime"] = micro_time(datetime.now(timezone.utc))
            try:
                self._lease = self._replace(body)
                self._renewed = time.monotonic()
            except ApiException:  # 409: someone else wrote it; whose is it now?
                self._lost = self._check_holder()
            except LeaseError as exc:
                if time.monotonic() - self._renewed > self.duration:
                    self._lost = f"{self.where} was not renewed for longer than its {self.duration} s: {exc}"
            return self._lost

    def _check_holder(self) -> str | None:
        try:
            lease = self._read()
        except LeaseError as exc:
            return f"cannot tell who holds {self.where} after a conflicting write: {exc}"
        if lease is None:
            return f"{self.where} was deleted by someone else"
        identity = (lease.get("spec") or {}).get("holderIdentity")
        if identity != self.identity:
            holder = self._holder(lease)
            return f"run {holder.get('run_id')} took over {self.where} (host {holder.get('host')})"
        self._lease = lease  # ours still (an annotation edited by hand): renew from here
        return None

    def lost(self) -> str | None:
        """Asks the API server now: the Lease still names this run."""
        with self._mutex:
            if self._lease is None or self._lost is not None:
                return self._lost
            try:
                lease = self._read()
            except LeaseError:
                lease = self._lease  # unknown: the renewer decides once the duration has passed
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                self._lost = self._check_holder() or None
            return self._lost

    @property
    def held(self) -> bool:
        return self._lease is not None and self._lost is None

    def describe_takeover(self) -> str:
        held = self.taken_over
        if held is None:
            return ""
        return (
            f"taken over from run {held.get('run_id')} (pid {held.get('pid')} on {held.get('host')}, "
            f"its Lease expired at {held.get('expired')})"
        )

    def release(self) -> None:
        """Stop renewing and empty ``holderIdentity`` (client-go's release); the Lease object stays."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=self.timeout + 1)
        with self._mutex:
            lease, self._lease = self._lease, None
            if lease is None or self._lost is not None:
                return
            body = json.loads(json.dumps(lease))
            body["spec"].update(holderIdentity="", leaseDurationSeconds=1)
            body["metadata"].setdefault("annotations", {}).pop(HOLDER_ANNOTATION, None)
            try:
                self._replace(body)
            except (ApiException, LeaseError):
                pass  # it expires on its own within its duration


def _api_words(exc: ApiException) -> str:
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return f"{exc.status} {exc.reason}: {message}" if message else f"{exc.status} {exc.reason}"
