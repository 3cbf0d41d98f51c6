"""[[load_balancer]] on moto's server as a real AWS endpoint: the bad release's instance deregistered
and drained before the switch, the target's registered and healthy after it; throttling survived;
a target that never becomes healthy fails the rollback and the group is put back; a change by
someone else since preflight is refused; every call is in the evidence, no credential anywhere."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aws_proxy import AwsProxy
from deployments import Deployment, read_evidence, run_dir

from demo.aws import AwsWorld, MotoServer, clients
from demo.deployment import switch_release
from rollback_harness.rollback.config import load_config
from rollback_harness.rollback.journal import Journal
from rollback_harness.rollback.runbook import STATUS_CONFLICT, Runbook

pytestmark = pytest.mark.integration


def harness(pytester: pytest.Pytester, demo: Deployment, *extra: str) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", *extra)
    )


def timeline(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    return list(read_evidence(pytester.path / "reports")["timeline"])


def done_steps(pytester: pytest.Pytester) -> list[str]:
    return [e["what"] for e in timeline(pytester) if e["status"] == "done"]


def step(pytester: pytest.Pytester, name: str) -> dict[str, Any]:
    return next(e for e in timeline(pytester) if e["what"] == name and e["status"] in ("done", "failed"))


def preflight_calls(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """What preflight asked AWS, journaled whether the run went on or was refused."""
    (read,) = [e for e in timeline(pytester) if e["what"] == "load_balancer:preflight"]
    calls: list[dict[str, Any]] = read["detail"]["aws_calls"]
    return calls


def registered(moto: MotoServer, world: AwsWorld) -> dict[str, str]:
    answer = clients(moto.url)["elbv2"].describe_target_health(TargetGroupArn=world.target_group_arn)
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in answer["TargetHealthDescriptions"]}


def serving(demo: Deployment) -> str | None:
    try:
        return demo.live_version()
    except OSError:
        return None  # restarting


def test_rollback_deregisters_drains_registers_and_waits_healthy(
    pytester: pytest.Pytester, aws_demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    result = harness(pytester, aws_demo, "-v")

    assert result.ret == 0, result.stdout.str()
    done = done_steps(pytester)
    order = ["load_balancer:deregister-web", "load_balancer:drained-web", "switch-link", "wait-ready",
             "load_balancer:register-web", "load_balancer:healthy-web"]  # fmt: skip
    assert [s for s in done if s in order] == order
    assert registered(moto_server, world) == {world.instances["v1.2.9"]: "healthy"}
    # Every call and its answer, in the step that made it.
    calls = step(pytester, "load_balancer:deregister-web")["detail"]["aws_calls"]
    deregister = next(c for c in calls if c["call"] == "elbv2.deregister_targets")
    assert deregister["params"]["Targets"] == [{"Id": world.instances["v1.3.0"], "Port": 8080}]
    assert deregister["http_status"] == 200 and deregister["request_id"]
    healthy = step(pytester, "load_balancer:healthy-web")["detail"]
    assert healthy["states"] == {f"{world.instances['v1.2.9']}:8080": "healthy"}
    assert healthy["aws_calls"][-1]["answer"]["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy"
    result.stdout.fnmatch_lines(["*preflight-load-balancer-ready PASSED*"])


def test_no_credential_reaches_any_artifact_or_the_terminal(
    pytester: pytest.Pytester, aws_demo: Deployment, secret_key: str
) -> None:
    result = harness(pytester, aws_demo)

    assert result.ret == 0, result.stdout.str()
    access_key = os.environ["AWS_ACCESS_KEY_ID"]
    assert secret_key not in result.stdout.str() + result.stderr.str()
    files = [p for p in (pytester.path / "reports").rglob("*") if p.is_file()]
    assert any(p.name == "evidence.json" for p in files)
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        assert secret_key not in text, path
        assert access_key not in text, path  # no Authorization header was recorded
        assert "Signature=" not in text, path


def test_throttling_is_retried_and_recorded(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, proxy: AwsProxy
) -> None:
    demo.update_config(load_balancer=[world.load_balancer()])
    proxy.throttle(2)  # the first two calls (preflight's) answer ThrottlingException

    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    assert proxy.throttled == 2
    calls = preflight_calls(pytester)
    first = calls[0]
    assert first["call"] == "elbv2.describe_target_groups" and first["retries"] == 2
    assert [a.get("error", "").split(":")[0] for a in first["attempts"]] == ["ThrottlingException"] * 2 + [""]


def test_a_wait_rides_out_polls_that_stay_throttled(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, proxy: AwsProxy
) -> None:
    """No retries left in a poll (max_attempts = 1): the wait polls again, until its deadline."""
    demo.update_config(load_balancer=[world.load_balancer(max_attempts=1)])
    proxy.throttle(2, after="RegisterTargets")  # the first two polls of the healthy wait

    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    assert proxy.throttled == 2
    result.stdout.fnmatch_lines(["*load balancer web: waiting until healthy: throttled (*ThrottlingException*"])
    polls = step(pytester, "load_balancer:healthy-web")["detail"]["aws_calls"]
    assert [c.get("error", "").split(":")[0] for c in polls] == ["ThrottlingException"] * 2 + [""]


def test_throttling_beyond_the_attempts_refuses_with_the_reason(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, proxy: AwsProxy
) -> None:
    demo.update_config(load_balancer=[world.load_balancer(max_attempts=2)])
    proxy.throttle(100)

    result = harness(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*load_balancer[[]0[]] (web): elbv2.describe_target_groups failed: "
                                 "ThrottlingException: Rate exceeded (after 2 attempts)*"])  # fmt: skip
    assert demo.linked_version() == "v1.3.0"


def test_a_target_that_never_becomes_healthy_fails_and_the_group_is_put_back(
    pytester: pytest.Pytester, aws_demo: Deployment, world: AwsWorld, proxy: AwsProxy, moto_server: MotoServer
) -> None:
    proxy.unhealthy = True  # every registered target fails its health checks

    result = harness(pytester, aws_demo)

    assert result.ret == 12, result.stdout.str()
    wait = step(pytester, "load_balancer:healthy-web")
    assert wait["status"] == "failed"
    assert wait["detail"]["error"] == (
        f"load_balancer[0] (web): {world.instances['v1.2.9']}:8080 unhealthy "
        "(Target.FailedHealthChecks: Health checks failed): not healthy within 3 s"
    )
    undo = step(pytester, "load_balancer:undo-web")
    assert undo["status"] == "done"
    # In reverse: what was registered leaves, then what was drained comes back.
    changes = [c["call"] for c in undo["detail"]["aws_calls"] if "describe" not in c["call"]]
    assert changes == ["elbv2.deregister_targets", "elbv2.register_targets"]
    assert set(registered(moto_server, world)) == {world.instances["v1.3.0"]}
    # Not verified: the CDN's cache is left alone.
    assert not [e for e in timeline(pytester) if e["what"].startswith("cdn:invalidate")]
    assert (
        clients(moto_server.url)["cloudfront"]
        .list_invalidations(DistributionId=world.distribution_id)["InvalidationList"]
        .get("Quantity", 0)
        == 0
    )


def test_a_change_to_the_group_since_preflight_is_refused(
    tmp_path: Path, aws_demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    config = load_config(aws_demo.config_path)
    runbook = Runbook(
        config, config.target(None), "v1.2.9", Journal(tmp_path / "journal.jsonl"),
        progress=lambda text: None, service_version=lambda timeout=None: aws_demo.live_version(), run_id="test-run",
    )  # fmt: skip
    try:
        assert not runbook.refusals(), runbook.refusals()
        # Someone else puts v1.2.9's instance in rotation between preflight and the first change.
        elbv2 = clients(moto_server.url)["elbv2"]
        elbv2.register_targets(TargetGroupArn=world.target_group_arn, Targets=[{"Id": world.instances["v1.2.9"]}])

        outcome = runbook.execute()
    finally:
        runbook.close()

    assert outcome.status == STATUS_CONFLICT, outcome.message
    assert f"added by someone else: {world.instances['v1.2.9']}:8080" in outcome.message
    assert runbook.journal.step_states()["load_balancer:deregister-web"] == "failed"
    assert set(registered(moto_server, world)) == set(world.instances.values())  # nothing deregistered
    assert aws_demo.linked_version() == "v1.3.0"


def test_the_evidence_names_the_target_group_and_the_plan(
    pytester: pytest.Pytester, aws_demo: Deployment, world: AwsWorld
) -> None:
    reports = pytester.path / "reports"
    result = pytester.runpytest(*aws_demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-dry-run"))

    assert result.ret == 0, result.stdout.str()
    evidence = read_evidence(pytester.path / "reports")
    plan = " | ".join(evidence["plan"])
    assert f"target group web: deregister {world.instances['v1.3.0']}:8080, wait until drained" in plan
    assert f"target group web: register {world.instances['v1.2.9']}:8080, wait until healthy" in plan
    assert (run_dir(pytester.path / "reports") / "journal.jsonl").is_file()


def test_a_release_the_targets_table_does_not_name_refuses_the_run(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    group = world.load_balancer()
    group["targets"] = {"v1.3.0": [world.instances["v1.3.0"]], "v1.2.8": [world.instances["v1.2.9"]]}
    demo.update_config(load_balancer=[group])

    result = harness(pytester, demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(["*load_balancer[[]0[]] (web): targets names no 'v1.2.9' (it names v1.3.0, v1.2.8); "
                                 "add the targets that serve v1.2.9*"])  # fmt: skip
    assert set(registered(moto_server, world)) == {world.instances["v1.3.0"]}
    # The refused run's evidence still holds what preflight asked AWS and what it answered.
    assert [c["call"] for c in preflight_calls(pytester)] == [
        "elbv2.describe_target_groups",
        "elbv2.describe_target_health",
    ]


def test_targets_changed_in_place_leave_and_come_back(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    """A list: the platform step changes these targets in place (the symlink demo's one host)."""
    demo.update_config(load_balancer=[world.load_balancer(targets=[f"{world.instances['v1.3.0']}:8080"])])

    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    done = done_steps(pytester)
    assert done.index("load_balancer:drained-web") < done.index("switch-link") < done.index("load_balancer:healthy-web")
    assert registered(moto_server, world) == {world.instances["v1.3.0"]: "healthy"}


def test_a_run_killed_before_registering_is_finished_by_the_next(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    """The platform is on v1.2.9 already, v1.3.0's instance drained, v1.2.9's never registered."""
    switch_release(demo.layout, "v1.2.9")
    subprocess.run(demo.layout.restart_command, check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while serving(demo) != "v1.2.9":
        assert time.monotonic() < deadline, "the demo never served v1.2.9"
        time.sleep(0.05)
    elbv2 = clients(moto_server.url)["elbv2"]
    elbv2.deregister_targets(TargetGroupArn=world.target_group_arn, Targets=[{"Id": world.instances["v1.3.0"]}])
    demo.update_config(load_balancer=[world.load_balancer()])

    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    done = done_steps(pytester)
    assert "switch-link" not in done
    assert done.index("load_balancer:register-web") < done.index("load_balancer:healthy-web")
    assert registered(moto_server, world) == {world.instances["v1.2.9"]: "healthy"}


def test_without_credentials_in_the_chain_the_run_is_refused_naming_it(
    pytester: pytest.Pytester, aws_demo: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    result = harness(pytester, aws_demo)

    assert result.ret == 10, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*load_balancer[[]0[]] (web): elbv2.describe_target_groups failed: no usable AWS credentials "
            "(Unable to locate credentials); they come only from the usual AWS chain*"
        ]
    )
    assert aws_demo.linked_version() == "v1.3.0"
