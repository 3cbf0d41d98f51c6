"""[[load_balancer]] and [[cdn]] in the config: credentials refused (and never shown), each bad
value named with what is accepted, and a missing boto3 named with the extra that installs it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rollback_harness.rollback.config import CdnConfig, LoadBalancerConfig, load_config
from rollback_harness.rollback.errors import ConfigError

BASE = """
[service]
name = "shop"
base_url = "http://127.0.0.1:9"

[targets.app]
kind = "command"
live_version = ["echo", "v1.3.0"]
history = ["echo", "v1.2.9"]
rollback = ["true"]
"""
ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef"
GROUP = f'[[load_balancer]]\nkind = "aws-target-group"\nregion = "eu-west-1"\ntarget_group_arn = "{ARN}"\n'


def config_error(tmp_path: Path, extra: str) -> str:
    path = tmp_path / "rollback.toml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    return str(raised.value)


def test_both_forms_of_targets_are_read(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(
        BASE + GROUP + 'targets = ["i-0abc", "10.0.0.5:8080"]\n'
        '[[cdn]]\nkind = "cloudfront"\ndistribution_id = "E2QWRUHAPOMQZL"\n'
        + GROUP.replace("web/", "api/")
        + '[load_balancer.targets]\n"v1.3.0" = ["i-1"]\n"v1.2.9" = ["i-2:9000"]\n'
    )

    settings = load_config(path).settings

    first, second = settings.load_balancer
    assert isinstance(first, LoadBalancerConfig) and first.targets == ["i-0abc", "10.0.0.5:8080"]
    assert second.targets == {"v1.3.0": ["i-1"], "v1.2.9": ["i-2:9000"]}
    assert first.timeout == 600.0 and first.max_attempts == 5 and first.endpoint_url is None
    cdn = settings.cdn[0]
    assert isinstance(cdn, CdnConfig) and cdn.paths == ["/*"] and cdn.region == "us-east-1"


@pytest.mark.parametrize(
    "section", [GROUP + 'targets = ["i-1"]\n', '[[cdn]]\nkind = "cloudfront"\ndistribution_id = "E1"\n']
)
def test_credentials_in_the_file_are_refused_and_never_shown(tmp_path: Path, section: str) -> None:
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    message = config_error(tmp_path, section + f'secret_access_key = "{secret}"\naws_access_key_id = "AKIAEXAMPLE"\n')

    assert secret not in message and "AKIAEXAMPLE" not in message
    assert "AWS credentials (aws_access_key_id, secret_access_key) are never read from the config file" in message
    assert "use the usual AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE" in message
    assert str(tmp_path / "rollback.toml") in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (GROUP.replace(ARN, "web") + 'targets = ["i-1"]\n',
         "load_balancer[0].target_group_arn = 'web': expected a target group ARN: "
         "arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID"),
        (GROUP + "targets = []\n",
         'load_balancer[0].targets = []: expected targets such as ["i-0abc", "10.0.0.5:8080"], '
         'or a table "v1.2.9" = ["i-0abc"]'),
        (GROUP + 'targets = ["i 1"]\n',
         "load_balancer[0].targets = ['i 1']: 'i 1' is not a target: expected an instance id or IP address"),
        (GROUP.replace("eu-west-1", "Ireland") + 'targets = ["i-1"]\n',
         "load_balancer[0].region = 'Ireland': expected an AWS region such as eu-west-1"),
        (GROUP.replace("aws-target-group", "alb") + 'targets = ["i-1"]\n',
         "load_balancer[0].kind = 'alb': Input should be 'aws-target-group'"),
        (GROUP + 'targets = ["i-1"]\ntimeout = "0s"\n', "load_balancer[0].timeout = '0s'"),
        (GROUP.replace(f'target_group_arn = "{ARN}"', 'mode = "weights"'),
         "load_balancer[0].listener_rule_arn is required but missing\n  "
         "load_balancer[0].target_groups is required but missing"),
        (GROUP + 'targets = ["i-1"]\n[load_balancer.target_groups]\n"v1.2.9" = "' + ARN + '"\n',
         "load_balancer[0].target_groups = {'v1.2.9': '" + ARN + "'}: only with mode = 'weights'; "
         "mode = 'targets' takes target_group_arn, targets"),
        ('[[cdn]]\nkind = "cloudfront"\ndistribution_id = "E1"\npaths = ["index.html"]\n',
         "cdn[0].paths[0] = 'index.html': expected a path starting with '/', e.g. '/*' or '/index.html'"),
        ('[[cdn]]\nkind = "cloudfront"\ndistribution_id = "E1"\nsecret = 1\n',
         "cdn[0].secret: unknown key; accepted keys here: distribution_id, endpoint_url, for_target, kind, "
         "max_attempts, name, paths, poll_interval, region, timeout"),
    ],
)  # fmt: skip
def test_a_bad_value_is_named_with_what_is_accepted(tmp_path: Path, extra: str, expected: str) -> None:
    assert expected in config_error(tmp_path, extra)


def test_without_boto3_the_error_says_which_extra_installs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules is how Python marks a module as not importable: find_spec says None.
    monkeypatch.setitem(sys.modules, "boto3", None)

    message = config_error(tmp_path, GROUP + 'targets = ["i-1"]\n')

    assert message.endswith(
        "load_balancer[0].kind = 'aws-target-group': the aws-target-group driver needs the Python module 'boto3', "
        "which is not installed; install it with: pip install 'pytest-rollback-harness[aws]'"
    )
