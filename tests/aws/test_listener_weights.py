"""[[load_balancer]] with mode = "weights" on moto's server: a listener rule's forward weights move
to the target release's group once it is healthy, before the platform step; a failed rollback
puts them back; a group that never becomes healthy keeps the weights where they were."""

from __future__ import annotations

from typing import Any

import pytest
from aws_proxy import AwsProxy
from deployments import Deployment, read_evidence

from demo.aws import AwsWorld, MotoServer, add_weighted_rule, rule_weights

pytestmark = pytest.mark.integration


@pytest.fixture
def rule(demo: Deployment, world: AwsWorld, moto_server: MotoServer) -> str:
    """The demo config with a weighted rule: all to ``web`` (v1.3.0), none to ``blue`` (v1.2.9)."""
    rule_arn, groups = add_weighted_rule(AwsWorld(world.target_group_arn, world.instances, world.distribution_id,
                                                  moto_server.url))  # fmt: skip
    table = {
        "kind": "aws-target-group", "mode": "weights", "name": "shop", "listener_rule_arn": rule_arn,
        "target_groups": groups, "region": "eu-west-1", "endpoint_url": world.endpoint, "timeout": "3s",
        "poll_interval": "0.2s",
    }  # fmt: skip
    demo.update_config(load_balancer=[table])
    return rule_arn


def harness(pytester: pytest.Pytester, demo: Deployment) -> pytest.RunResult:
    reports = pytester.path / "reports"
    return pytester.runpytest(*demo.harness_args(reports, "--rollback-to", "v1.2.9", "--rollback-yes"))


def timeline(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    return {e["what"]: e for e in read_evidence(pytester.path / "reports")["timeline"]}


def test_the_weights_move_to_the_target_release_before_the_platform_step(
    pytester: pytest.Pytester, demo: Deployment, rule: str, moto_server: MotoServer
) -> None:
    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    done = [e["what"] for e in read_evidence(pytester.path / "reports")["timeline"] if e["status"] == "done"]
    assert (
        done.index("load_balancer:healthy-shop") < done.index("load_balancer:weights-shop") < done.index("switch-link")
    )
    assert rule_weights(moto_server.url, rule) == {"web": 0, "blue": 100}
    weights = timeline(pytester)["load_balancer:weights-shop"]["detail"]
    assert weights["was"] == "web 100, blue 0" and weights["weights"] == "web 0, blue 100"
    modify = next(c for c in weights["aws_calls"] if c["call"] == "elbv2.modify_rule")
    assert modify["params"]["RuleArn"] == rule and modify["http_status"] == 200


def test_a_failed_rollback_puts_the_weights_back(
    pytester: pytest.Pytester, demo: Deployment, rule: str, moto_server: MotoServer
) -> None:
    data = demo.config()
    data["targets"]["app"]["restart"] = ["false"]
    demo.write_config(data)

    result = harness(pytester, demo)

    assert result.ret == 12, result.stdout.str()
    steps = timeline(pytester)
    assert steps["load_balancer:weights-shop"]["status"] == "done"
    assert steps["restart"]["status"] == "failed"
    assert steps["load_balancer:undo-shop"]["status"] == "done"
    assert rule_weights(moto_server.url, rule) == {"web": 100, "blue": 0}


def test_a_target_group_that_never_becomes_healthy_keeps_the_weights(
    pytester: pytest.Pytester, demo: Deployment, rule: str, moto_server: MotoServer, proxy: AwsProxy
) -> None:
    proxy.unhealthy = True

    result = harness(pytester, demo)

    assert result.ret == 12, result.stdout.str()
    wait = timeline(pytester)["load_balancer:healthy-shop"]
    assert wait["status"] == "failed"
    assert "target group blue: " in wait["detail"]["error"] and "not healthy within 3 s" in wait["detail"]["error"]
    assert "load_balancer:weights-shop" not in timeline(pytester)
    assert rule_weights(moto_server.url, rule) == {"web": 100, "blue": 0}
    assert demo.linked_version() == "v1.3.0"
