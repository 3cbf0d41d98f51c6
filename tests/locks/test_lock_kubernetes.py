"""The kubernetes lock backend: a coordination.k8s.io/v1 Lease on the API emulator, two runs at once."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from k8s_emulator import Emulator
from lock_support import Holder, write_kubeconfig

from rollback_harness.rollback.locks.kubernetes import LeaseLock, expires_at, lease_name, parse_time

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator() as api:
        yield api


@pytest.fixture
def kubeconfig(emulator: Emulator, tmp_path: Path) -> str:
    return write_kubeconfig(tmp_path / "kubeconfig", emulator.url)


def lease_lock(kubeconfig: str, run_id: str, tmp_path: Path, **options: Any) -> LeaseLock:
    settings: dict[str, Any] = {"lease_duration": 30.0, "timeout": 5.0, **options}
    return LeaseLock(
        kubeconfig=kubeconfig,
        context=None,
        namespace="default",
        service="shop",
        target="app",
        path=tmp_path / f"{run_id}.lock",
        run_id=run_id,
        **settings,
    )


def the_lease(emulator: Emulator) -> dict[str, Any]:
    return emulator.get("leases", lease_name("shop", "app"))


def test_lease_names_are_valid_and_distinct() -> None:
    assert lease_name("shop", "app") == "rollback-harness-shop-app"
    odd = lease_name("Shop Front", "app_1")
    assert odd.startswith("rollback-harness-shop-front-app-1-") and len(odd) <= 63
    assert lease_name("a" * 80, "x") != lease_name("a" * 80, "y")
    assert all(len(lease_name("s" * n, "t")) <= 63 for n in (1, 40, 60, 200))


def test_the_emulator_keeps_leases_with_resource_version_conflicts(emulator: Emulator) -> None:
    url = emulator.url + LEASES
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l1"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 10, "renewTime": "2026-11-26T10:00:00.000000Z"},
    }
    created = requests.post(url, json=body, timeout=5)
    assert created.status_code == 201, created.text
    assert requests.post(url, json=body, timeout=5).json()["reason"] == "AlreadyExists"
    first_rv = created.json()["metadata"]["resourceVersion"]

    changed = created.json()
    changed["spec"]["holderIdentity"] = "b"
    replaced = requests.put(f"{url}/l1", json=changed, timeout=5)
    assert replaced.status_code == 200 and replaced.json()["spec"]["holderIdentity"] == "b"
    assert "status" not in replaced.json()
    stale = requests.put(f"{url}/l1", json=changed, timeout=5)  # still carries first_rv
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    assert 'leases.coordination.k8s.io "l1"' in stale.json()["message"]

    bad = dict(changed, metadata={"name": "l1"}, spec={"leaseDurationSeconds": "ten"})
    assert requests.put(f"{url}/l1", json=bad, timeout=5).status_code == 422
    unknown = dict(changed, metadata={"name": "l1"}, spec={"holder": "x"})
    assert requests.put(f"{url}/l1", json=unknown, timeout=5).status_code == 400

    delete_stale = requests.delete(f"{url}/l1", json={"preconditions": {"resourceVersion": first_rv}}, timeout=5)
    assert delete_stale.status_code == 409
    current_rv = replaced.json()["metadata"]["resourceVersion"]
    gone = requests.delete(f"{url}/l1", json={"preconditions": {"resourceVersion": current_rv}}, timeout=5)
    assert gone.status_code == 200
    assert requests.get(f"{url}/l1", timeout=5).status_code == 404
    groups = requests.get(emulator.url + "/apis", timeout=5).json()["groups"]
    assert "coordination.k8s.io" in [g["name"] for g in groups]


def test_a_second_run_is_refused_and_told_who_holds_the_lease(
    emulator: Emulator, kubeconfig: str, tmp_path: Path
) -> None:
    first = lease_lock(kubeconfig, "run-first", tmp_path)
    assert first.acquire() is None and first.held
    try:
        lease = the_lease(emulator)
        spec = lease["spec"]
        assert spec["holderIdentity"] == f"run-first@{socket.gethostname()}"
        assert spec["leaseDurationSeconds"] == 30 and spec["leaseTransitions"] == 0
        assert parse_time(spec["acquireTime"]) is not None and parse_time(spec["renewTime"]) is not None

        second = lease_lock(kubeconfig, "run-second", tmp_path)
        refusal = second.acquire()
        assert refusal is not None and not second.held
        assert refusal.startswith("another run holds the lock Lease default/rollback-harness-shop-app: ")
        assert f"run run-first (pid {os.getpid()} on {socket.gethostname()}, user " in refusal
        assert "--rollback-break-lock run-first" in refusal
        assert the_lease(emulator)["spec"]["holderIdentity"] == spec["holderIdentity"]  # untouched
    finally:
        first.release()
    assert not first.held and the_lease(emulator)["spec"]["holderIdentity"] == ""
    third = lease_lock(kubeconfig, "run-third", tmp_path)
    assert third.acquire() is None and third.taken_over is None  # released: nobody to take over from
    assert the_lease(emulator)["spec"]["leaseTransitions"] == 1
    third.release()


def test_the_holder_renews_and_a_killed_holder_is_taken_over_after_expiry(
    emulator: Emulator, kubeconfig: str, tmp_path: Path, holder: Holder
) -> None:
    process = holder("kubernetes", kubeconfig, "default", "shop", "app", "run-killed", "3")
    first_renew = the_lease(emulator)["spec"]["renewTime"]
    emulator.wait_for(lambda: the_lease(emulator)["spec"]["renewTime"] != first_renew, timeout=20)

    process.kill()  # SIGKILL: it stops renewing, nothing releases the Lease
    process.wait(timeout=30)
    last = the_lease(emulator)["spec"]
    after = lease_lock(kubeconfig, "run-after", tmp_path)
    deadline = time.monotonic() + 30
    while (refusal := after.acquire()) is not None:
        assert "run run-killed" in refusal
        assert time.monotonic() < deadline, refusal
        time.sleep(0.2)
    try:
        taken = the_lease(emulator)["spec"]
        assert taken["holderIdentity"].startswith("run-after@")
        assert taken["leaseTransitions"] == last["leaseTransitions"] + 1
        expiry = expires_at(last)
        assert expiry is not None and parse_time(taken["acquireTime"]) >= expiry  # type: ignore[operator]
        assert after.taken_over is not None
        assert (after.taken_over["run_id"], after.taken_over["pid"]) == ("run-killed", process.pid)
        assert after.describe_takeover().startswith(f"taken over from run run-killed (pid {process.pid} on ")
    finally:
        after.release()


def test_breaking_a_live_lease_needs_the_holders_run_id_and_the_holder_learns_it(
    emulator: Emulator, kubeconfig: str, tmp_path: Path
) -> None:
    first = lease_lock(kubeconfig, "run-first", tmp_path)
    assert first.acquire() is None
    wrong = lease_lock(kubeconfig, "run-wrong", tmp_path, break_run="run-other")
    refusal = wrong.acquire()
    assert refusal is not None and "names another run, so nothing was broken" in refusal

    breaker = lease_lock(kubeconfig, "run-breaker", tmp_path, break_run="run-first")
    assert breaker.acquire() is None
    try:
        assert breaker.broken is not None and breaker.broken["run_id"] == "run-first"
        assert breaker.taken_over is None
        lost = first.lost()
        assert lost is not None and "run run-breaker took over Lease default/rollback-harness-shop-app" in lost
        assert not first.held
        first.release()  # never clears the breaker's Lease
        assert the_lease(emulator)["spec"]["holderIdentity"].startswith("run-breaker@")
    finally:
        breaker.release()


def test_an_unreachable_api_server_is_a_refusal_within_the_timeout(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts into the backlog, never answers
    try:
        config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{server.getsockname()[1]}")
        started = time.monotonic()
        refusal = lease_lock(config, "run-1", tmp_path, timeout=1.0).acquire()
        assert time.monotonic() - started < 15  # did not hang
        assert refusal is not None and refusal.startswith("cannot take the lock Lease default/rollback-harness")
    finally:
        server.close()
