"""`python -m demo --platform aws`: the demo's story behind an AWS load balancer and a CloudFront cache.

moto's server (an AWS API emulator) runs on loopback for the demo's length. In it: a VPC, one EC2
instance per release (v1.3.0's registered in the target group ``web``, v1.2.9's not) and a CloudFront
distribution. The symlink demo deployment rolls back from v1.3.0 to v1.2.9 with [[load_balancer]] and
[[cdn]] in its config: v1.3.0's instance is deregistered and drained before the switch, v1.2.9's
registered and healthy after it, and once verify passes the CDN's cache is invalidated. The
credentials are moto's dummies, from the environment (never from the config file).
Everything started here is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo import signing
from demo.deployment import free_port, lay_out, live_version, start, stop
from rollback_harness.plugins.exit_codes import MEANINGS as EXIT_MEANINGS

TARGET = "v1.2.9"
REGION = "eu-west-1"
AMI = "ami-12c6146b"  # one of moto's example images
START_TIMEOUT = 30.0
# moto's dummies: moto accepts any; they stand for what the usual AWS chain would give.
DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "demo-access-key", "AWS_SECRET_ACCESS_KEY": "demo-secret-key"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoServer:
    """moto's server on a free loopback port, started and stopped; ``url`` is its endpoint."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"moto's server did not answer at {self.url} (log: {self.log})")
            time.sleep(0.1)
        return self

    def answers(self) -> bool:
        try:
            with _NO_PROXY.open(f"{self.url}/moto-api/", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def reset(self) -> None:
        """Forget every resource (between tests)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with _NO_PROXY.open(request, timeout=10):
            pass

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass(frozen=True)
class AwsWorld:
    target_group_arn: str
    instances: dict[str, str]  # version -> the EC2 instance serving it
    distribution_id: str
    endpoint: str

    def load_balancer(self, **extra: Any) -> dict[str, Any]:
        """A [[load_balancer]] table for the harness config."""
        return {
            "kind": "aws-target-group", "name": "web", "target_group_arn": self.target_group_arn,
            "region": REGION, "endpoint_url": self.endpoint, "timeout": "20s", "poll_interval": "0.2s",
            "targets": {version: [instance] for version, instance in self.instances.items()}, **extra,
        }  # fmt: skip

    def cdn(self, **extra: Any) -> dict[str, Any]:
        """A [[cdn]] table for the harness config."""
        return {
            "kind": "cloudfront", "name": "shop-cdn", "distribution_id": self.distribution_id,
            "endpoint_url": self.endpoint, "paths": ["/*"], "timeout": "20s", "poll_interval": "0.2s", **extra,
        }  # fmt: skip


def clients(endpoint: str) -> dict[str, Any]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    return {name: session.client(name, endpoint_url=endpoint) for name in ("ec2", "elbv2", "cloudfront")}


def build_world(endpoint: str, live: str = "v1.3.0", versions: tuple[str, ...] = ("v1.3.0", TARGET)) -> AwsWorld:
    """A VPC, an instance per version, the target group ``web`` with ``live``'s instance, a distribution."""
    aws = clients(endpoint)
    vpc = aws["ec2"].create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = aws["ec2"].create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    instances = {}
    for version in versions:
        made = aws["ec2"].run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet)
        instances[version] = made["Instances"][0]["InstanceId"]
    group = aws["elbv2"].create_target_group(Name="web", Protocol="HTTP", Port=8080, VpcId=vpc)
    arn = group["TargetGroups"][0]["TargetGroupArn"]
    aws["elbv2"].register_targets(TargetGroupArn=arn, Targets=[{"Id": instances[live]}])
    distribution = aws["cloudfront"].create_distribution(DistributionConfig=_distribution_config())
    return AwsWorld(arn, instances, distribution["Distribution"]["Id"], endpoint)


def add_weighted_rule(world: AwsWorld, live: str = "v1.3.0") -> tuple[str, dict[str, str]]:
    """An ALB ``shop`` whose listener rule forwards by weight: all to ``web`` (``live``'s instance),
    none to ``blue``, where the other release's instance is registered. (rule ARN, version -> group ARN)"""
    aws = clients(world.endpoint)
    group = aws["elbv2"].describe_target_groups(TargetGroupArns=[world.target_group_arn])["TargetGroups"][0]
    vpc = group["VpcId"]
    subnets = [
        aws["ec2"].create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"]
        for n, zone in ((10, "a"), (11, "b"))
    ]
    balancer = aws["elbv2"].create_load_balancer(Name="shop", Subnets=[s["SubnetId"] for s in subnets])
    blue = aws["elbv2"].create_target_group(Name="blue", Protocol="HTTP", Port=8080, VpcId=vpc)
    blue_arn = blue["TargetGroups"][0]["TargetGroupArn"]
    other = next(version for version in world.instances if version != live)
    aws["elbv2"].register_targets(TargetGroupArn=blue_arn, Targets=[{"Id": world.instances[other]}])
    forward = {"TargetGroups": [{"TargetGroupArn": world.target_group_arn, "Weight": 100},
                                {"TargetGroupArn": blue_arn, "Weight": 0}]}  # fmt: skip
    listener = aws["elbv2"].create_listener(
        LoadBalancerArn=balancer["LoadBalancers"][0]["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}],
    )  # fmt: skip
    rule = aws["elbv2"].create_rule(
        ListenerArn=listener["Listeners"][0]["ListenerArn"], Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
        Actions=[{"Type": "forward", "ForwardConfig": forward}],
    )  # fmt: skip
    return rule["Rules"][0]["RuleArn"], {live: world.target_group_arn, other: blue_arn}


def rule_weights(endpoint: str, rule_arn: str) -> dict[str, int]:
    """The rule's forward weights by target group name."""
    rules = clients(endpoint)["elbv2"].describe_rules(RuleArns=[rule_arn])["Rules"]
    groups = rules[0]["Actions"][0]["ForwardConfig"]["TargetGroups"]
    return {g["TargetGroupArn"].split("/")[-2]: g["Weight"] for g in groups}


def _distribution_config() -> dict[str, Any]:
    origin = {
        "Id": "web",
        "DomainName": "web.example.internal",
        "CustomOriginConfig": {"HTTPPort": 80, "HTTPSPort": 443, "OriginProtocolPolicy": "http-only"},
    }
    return {
        "CallerReference": "rollback-demo",
        "Comment": "the demo's shop",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {
            "TargetOriginId": "web",
            "ViewerProtocolPolicy": "allow-all",
            "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}},
            "MinTTL": 0,
        },
    }


def registered(world: AwsWorld) -> str:
    answer = clients(world.endpoint)["elbv2"].describe_target_health(TargetGroupArn=world.target_group_arn)
    names = {instance: version for version, instance in world.instances.items()}
    found = [
        f"{d['Target']['Id']} ({names.get(d['Target']['Id'], '?')}) {d['TargetHealth']['State']}"
        for d in answer["TargetHealthDescriptions"]
    ]
    return ", ".join(found) or "none"


def aws_toml(world: AwsWorld) -> str:
    """The [[load_balancer]] and [[cdn]] tables, in TOML (JSON strings are TOML strings)."""
    lines = ["", "# The AWS steps around the platform step (docs/aws.md)."]
    for table, data in (("load_balancer", world.load_balancer()), ("cdn", world.cdn())):
        lines.append(f"[[{table}]]")
        nested = {k: v for k, v in data.items() if isinstance(v, dict)}
        lines += [f"{k} = {json.dumps(v)}" for k, v in data.items() if k not in nested]
        for key, value in nested.items():
            lines.append(f"[{table}.{key}]")
            lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def run(root: Path, port: int, report_dir: Path, key_folder: Path) -> int:
    from importlib.util import find_spec

    for module, install in (("boto3", "'pytest-rollback-harness[aws]'"), ("moto", "'moto[server]>=5'")):
        if find_spec(module) is None:
            raise SystemExit(f"the aws demo needs the Python module {module!r}; install it with: pip install {install}")
    if root.exists() and any(root.iterdir()):
        if not (root / "moto.log").is_file():
            raise SystemExit(f"{root} exists and is not an aws demo folder (no moto.log); remove it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    with MotoServer(root / "moto.log") as moto:
        os.environ.update(DUMMY_CREDENTIALS)
        world = build_world(moto.url)
        layout = lay_out(root / "deployment", port=port)
        public_key = signing.kept_key(key_folder)
        with layout.config_path.open("a", encoding="utf-8") as config:
            config.write(aws_toml(world))
            config.write(signing.signing_toml(str(key_folder / signing.KEY)))
        (layout.root / "pytest.ini").write_text("[pytest]\naddopts = --strict-markers\n")
        try:
            start(layout)
            return _roll_back(layout, world, moto, report_dir, public_key)
        finally:
            stop(layout)
            print("stopped the demo deployment and moto's server")


def _roll_back(layout: Any, world: AwsWorld, moto: MotoServer, report_dir: Path, public_key: Path) -> int:
    print(f"moto's AWS API emulator at {moto.url} (region {REGION})")
    print(f"demo is serving {live_version(layout)} at {layout.base_url}")
    print(f"  target group web: {registered(world)}")
    print(f"  CloudFront distribution {world.distribution_id} caches it")
    print(f"rolling back with: pytest --rollback-to {TARGET} --rollback-yes  ([[load_balancer]] and [[cdn]])")
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rollback-config={layout.config_path}",
        "--rollback-to", TARGET, "--rollback-yes", f"--report-dir={report_dir}", "--rootdir", str(layout.root),
        str(layout.root),
    ]  # fmt: skip
    started = time.time()
    code = subprocess.run(command, cwd=layout.root, check=False).returncode
    print()
    print(f"pytest exited {code}: {EXIT_MEANINGS.get(code, 'see the report')}")
    print(f"live now: {live_version(layout)} at {layout.base_url}")
    print(f"target group web now: {registered(world)}")
    print("\n".join(signing.report_lines(report_dir, started, public_key)))
    return code
