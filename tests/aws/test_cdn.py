"""[[cdn]] on moto's server: the CloudFront cache is invalidated once verify passed, and only then;
the invalidation id is in the evidence; one that stays in progress is waited for, boundedly."""

from __future__ import annotations

from typing import Any

import pytest
from aws_proxy import AwsProxy
from deployments import Deployment, read_evidence

from demo.aws import AwsWorld, MotoServer, clients

pytestmark = pytest.mark.integration


def harness(pytester: pytest.Pytester, demo: Deployment) -> pytest.RunResult:
    return pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )


def steps(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """The last timeline entry of every step."""
    return {e["what"]: e for e in read_evidence(pytester.path / "reports")["timeline"]}


def invalidations(moto: MotoServer, world: AwsWorld) -> list[str]:
    answer = clients(moto.url)["cloudfront"].list_invalidations(DistributionId=world.distribution_id)
    return [item["Id"] for item in answer["InvalidationList"].get("Items", [])]


def test_after_verify_the_cache_is_invalidated_and_its_id_is_in_the_evidence(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    demo.update_config(cdn=[world.cdn(paths=["/", "/api/*"])])

    result = harness(pytester, demo)

    assert result.ret == 0, result.stdout.str()
    found = steps(pytester)
    created = found["cdn:invalidate-shop-cdn"]
    assert created["status"] == "done"
    assert created["detail"]["paths"] == ["/", "/api/*"]
    assert invalidations(moto_server, world) == [created["detail"]["invalidation_id"]]
    completed = found["cdn:completed-shop-cdn"]
    assert completed["status"] == "done"
    assert completed["detail"]["invalidation_id"] == created["detail"]["invalidation_id"]
    assert completed["detail"]["invalidation_status"].lower() == "completed"
    call = next(c for c in created["detail"]["aws_calls"] if c["call"] == "cloudfront.create_invalidation")
    assert call["params"]["InvalidationBatch"]["Paths"] == {"Quantity": 2, "Items": ["/", "/api/*"]}
    # After verify: the cache is refilled from the release that passed it.
    timeline = [e["what"] for e in read_evidence(pytester.path / "reports")["timeline"]]
    last_verify = max(i for i, what in enumerate(timeline) if "verify-" in what)
    assert timeline.index("cdn:invalidate-shop-cdn") > last_verify


def test_an_invalidation_that_stays_in_progress_is_a_bounded_wait_that_fails_clearly(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, proxy: AwsProxy
) -> None:
    demo.update_config(cdn=[world.cdn(timeout="1s")])
    proxy.invalidation_stuck = True

    result = harness(pytester, demo)

    assert result.ret == 23, result.stdout.str()  # rolled back and verified, but the CDN is not done
    found = steps(pytester)
    invalidation = found["cdn:invalidate-shop-cdn"]["detail"]["invalidation_id"]
    completed = found["cdn:completed-shop-cdn"]
    assert completed["status"] == "failed"
    assert completed["detail"]["error"] == (
        f"cdn[0] (shop-cdn): invalidation {invalidation} still InProgress after 1 s; the cache may serve the bad "
        f"release until it completes (aws cloudfront get-invalidation --distribution-id {world.distribution_id} "
        f"--id {invalidation})"
    )
    assert [c["answer"]["Invalidation"]["Status"] for c in completed["detail"]["aws_calls"]][-1] == "InProgress"
    result.stdout.fnmatch_lines(
        [f"*cdn: could not finish after verify: *invalidation {invalidation} still InProgress*", "exit code 23: *"]
    )


def test_a_failed_verify_invalidates_nothing(
    pytester: pytest.Pytester, demo: Deployment, world: AwsWorld, moto_server: MotoServer
) -> None:
    data = demo.config()
    data["endpoints"].append({"path": "/no-such-page"})  # answers 404 on every release: verify fails
    data["cdn"] = [world.cdn()]
    demo.write_config(data)

    result = harness(pytester, demo)

    assert result.ret == 13, result.stdout.str()
    skipped = steps(pytester)["cdn:invalidate-shop-cdn"]
    assert skipped["status"] == "skipped"
    assert "verify did not pass" in skipped["detail"]["reason"]
    assert invalidations(moto_server, world) == []
