"""Harness runs with the lock backends: refused before any change, naming the holder; broken on request."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from deployments import Deployment, read_evidence
from lock_support import Holder

pytestmark = pytest.mark.integration


def with_lock(demo: Deployment, lock: dict[str, object], *, per_target: bool = False) -> str:
    """Writes the lock table into the demo config; the service gets a name of this test alone."""
    data = demo.config()
    service = f"demo-{uuid.uuid4().hex[:8]}"
    data["service"]["name"] = service
    if per_target:
        data["targets"]["app"]["lock"] = lock
    else:
        data["lock"] = lock
    demo.write_config(data)
    return service


def test_a_postgres_locked_target_refuses_a_second_run_and_a_named_break_goes_ahead(
    pytester: pytest.Pytester, demo: Deployment, pg_url: str, holder: Holder
) -> None:
    service = with_lock(demo, {"backend": "postgres", "url": pg_url})
    # The other machine's run, holding the target's advisory lock.
    other = holder("postgres", pg_url, service, "app", "run-elsewhere")

    refused = pytester.runpytest(
        *demo.harness_args(pytester.path / "refused", "--rollback-to", "v1.2.9", "--rollback-yes")
    )
    assert refused.ret == 10, refused.stdout.str()
    refused.stdout.fnmatch_lines(
        [
            f"*another run holds the lock postgres advisory lock * ({service}/app) on 127.0.0.1:5432/harness: "
            f"run run-elsewhere (pid {other.pid} on *, user *, since *",
        ]
    )
    assert "harness-test-pw" not in refused.stdout.str()
    assert demo.restarts() == 0 and demo.linked_version() == "v1.3.0"

    broke = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "broke",
            "--rollback-to",
            "v1.2.9",
            "--rollback-yes",
            "--rollback-break-lock",
            "run-elsewhere",
        )
    )
    assert broke.ret == 0, broke.stdout.str()
    assert demo.linked_version() == "v1.2.9"
    evidence = read_evidence(pytester.path / "broke")
    [broken] = [event for event in evidence["timeline"] if event["what"] == "lock-broken"]
    [journal] = (pytester.path / "broke").glob("*/journal.jsonl")
    [entry] = [json.loads(line) for line in journal.read_text().splitlines() if '"lock-broken"' in line]
    assert (entry["run_id"], entry["pid"]) == ("run-elsewhere", other.pid)
    [lock_check] = [t["check"] for t in evidence["tests"] if t["nodeid"].endswith("preflight-target-lock")]
    assert "broke the lock of run run-elsewhere (--rollback-break-lock)" in lock_check["summary"]
    assert broken is not None


def test_break_lock_naming_another_run_changes_nothing(
    pytester: pytest.Pytester, demo: Deployment, tmp_path: Path, holder: Holder
) -> None:
    with_lock(demo, {"backend": "file"}, per_target=True)
    lock_path = demo.layout.root / ".current.rollback.lock"
    holder("file", str(lock_path), "run-held")
    result = pytester.runpytest(
        *demo.harness_args(
            pytester.path / "r", "--rollback-to", "v1.2.9", "--rollback-yes", "--rollback-break-lock", "run-other"
        )
    )
    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*--rollback-break-lock run-other names another run, so nothing was broken*"])
    assert demo.restarts() == 0 and demo.linked_version() == "v1.3.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--rollback-gate", "verify", "--rollback-break-lock", "run-1"],
            "*--rollback-break-lock needs a rollback*",
        ),
        (
            ["--rollback-to", "v1.2.9", "--rollback-gate", "preflight", "--rollback-break-lock", "run-1"],
            "*--rollback-break-lock needs a rollback (--rollback-to VERSION without --rollback-gate)*",
        ),
        (
            ["--rollback-to", "v1.2.9", "--rollback-dry-run", "--rollback-break-lock", "run-1"],
            "*--rollback-dry-run changes nothing: drop one of them",
        ),
        (["--rollback-to", "v1.2.9", "--rollback-break-lock", "run 1;rm"], "*is not a run id*"),
    ],
    ids=["without-rollback-to", "with-a-gate", "with-dry-run", "not-a-run-id"],
)
def test_break_lock_usage_errors(pytester: pytest.Pytester, demo: Deployment, args: list[str], message: str) -> None:
    result = pytester.runpytest(*demo.harness_args(pytester.path / "r", *args))
    assert result.ret == 4
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


@pytest.mark.parametrize(
    ("lock", "per_target", "message"),
    [
        (
            {"backend": "postgres"},
            False,
            "*lock.backend = 'postgres' needs a PostgreSQL URL (postgresql://...), but the [[]database] url is sqlite://...*",
        ),
        ({"backend": "etcd"}, True, "*targets.app.lock.backend = 'etcd': *'file', 'postgres' or 'kubernetes'*"),
        ({"backend": "kubernetes"}, False, "*lock.backend = 'kubernetes' on a 'symlink' target needs lock.namespace*"),
        ({"lease_duration": "0s"}, True, "*targets.app.lock.lease_duration = '0s': expected a duration above 0*"),
        (
            {"colour": 1},
            False,
            "*lock.colour: unknown key; accepted keys here: "
            "backend, context, kubeconfig, lease_duration, namespace, timeout, url*",
        ),
    ],
    ids=[
        "postgres-without-a-postgres-url",
        "unknown-backend",
        "kubernetes-without-namespace",
        "bad-duration",
        "unknown-key",
    ],
)
def test_lock_config_errors_name_the_key(
    pytester: pytest.Pytester, demo: Deployment, lock: dict[str, object], per_target: bool, message: str
) -> None:
    with_lock(demo, lock, per_target=per_target)
    result = pytester.runpytest(*demo.harness_args(pytester.path / "r", "--rollback-to", "v1.2.9"))
    assert result.ret == 4, result.stdout.str()
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
