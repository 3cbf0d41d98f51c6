"""moto's server as a real AWS endpoint on loopback (one per module), a misbehaving proxy in front
of it, and the AWS world of the demo (demo/aws.py) built fresh in it for every test."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3  # noqa: F401  (imported before any in-process pytester run: one copy of it)
import pytest
from aws_proxy import AwsProxy
from deployments import Deployment

import rollback_harness.rollback.actions.cdn
import rollback_harness.rollback.actions.load_balancer  # noqa: F401
from demo.aws import AwsWorld, MotoServer, build_world


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def secret_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Dummy credentials in the environment only (the usual chain); no profile or file is read."""
    secret = "test-secret-" + secrets.token_hex(12)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATESTHARNESS" + secrets.token_hex(3).upper())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return secret


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[AwsProxy]:
    with AwsProxy(moto_server.port) as server:
        yield server


@pytest.fixture
def world(moto_server: MotoServer, proxy: AwsProxy, secret_key: str) -> AwsWorld:
    """v1.3.0's instance registered in target group ``web``, v1.2.9's not, a distribution; the
    harness reaches them through ``proxy``."""
    moto_server.reset()
    made = build_world(moto_server.url)
    return AwsWorld(made.target_group_arn, made.instances, made.distribution_id, proxy.url)


@pytest.fixture
def aws_demo(demo: Deployment, world: AwsWorld) -> Deployment:
    """The demo deployment with [[load_balancer]] and [[cdn]] in its config."""
    demo.update_config(load_balancer=[world.load_balancer(timeout="3s")], cdn=[world.cdn(timeout="3s")])
    return demo
