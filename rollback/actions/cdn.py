"""CloudFront cache invalidation once the rollback is verified ([[cdn]]; docs/aws.md).

finish:  after a passed verify only, invalidate the configured paths and wait (bounded) until the
         invalidation is Completed; its id goes into the journal and the evidence.
         A failed verify invalidates nothing: the cache keeps what it has rather than refilling
         from an origin that did not pass.

Idempotent: the caller reference is the run's, so a repeated request returns the same invalidation.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..aws import AwsCalls, poll
from ..config import CdnConfig, HarnessConfig, TargetSpec
from ..errors import HarnessError
from ..journal import Journal, utc_now
from ..targets.base import Finding, TargetContext
from .base import Action

FINDING = "cdn-ready"


def _sections(config: HarnessConfig, spec: TargetSpec) -> list[tuple[int, CdnConfig]]:
    return [(i, s) for i, s in enumerate(config.settings.cdn) if s.for_target in (None, spec.name)]


class Distribution:
    def __init__(self, settings: CdnConfig, index: int, context: TargetContext) -> None:
        self.settings = settings
        self.id = settings.distribution_id
        self.name = settings.name or self.id
        self.where = f"cdn[{index}] ({self.name})"
        self.progress = context.progress
        self.aws = AwsCalls("cloudfront", settings, self.where)

    def read(self) -> str:
        answer = self.aws.call("get_distribution", Id=self.id)
        distribution = answer.get("Distribution", {})
        domain = distribution.get("DomainName", "?")
        return f"distribution {self.id} ({domain}) is {distribution.get('Status', 'of unknown status')}"

    def invalidate(self, reference: str) -> str:
        paths = self.settings.paths
        answer = self.aws.call(
            "create_invalidation",
            DistributionId=self.id,
            InvalidationBatch={"Paths": {"Quantity": len(paths), "Items": list(paths)}, "CallerReference": reference},
        )
        return str(answer["Invalidation"]["Id"])

    def wait(self, invalidation: str) -> str:
        """Poll until the invalidation is Completed; HarnessError at the deadline."""
        status = "unknown"

        def read() -> str | None:
            nonlocal status
            answer = self.aws.call("get_invalidation", DistributionId=self.id, Id=invalidation)
            status = str(answer.get("Invalidation", {}).get("Status", "unknown"))
            return None if status.lower() == "completed" else status

        def say(seen: str, elapsed: float) -> None:
            timeout = self.settings.timeout
            self.progress(f"cdn {self.name}: invalidation {invalidation} {seen} ({elapsed:.0f} s of {timeout:g} s)")

        def failed(seen: str) -> str:
            return (
                f"{self.where}: invalidation {invalidation} still {seen} after {self.settings.timeout:g} s; "
                f"the cache may serve the bad release until it completes "
                f"(aws cloudfront get-invalidation --distribution-id {self.id} --id {invalidation})"
            )

        poll(read, self.settings, say, failed)
        return status


class CdnAction(Action):
    name: ClassVar[str] = "cdn"
    # The outermost layer: finish() runs in descending order, so the cache is invalidated last,
    # once every layer beneath it (load balancer, traffic) serves the verified release again.
    order: ClassVar[int] = 1

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        super().__init__(config, spec, context)
        self.distributions = [Distribution(settings, i, context) for i, settings in _sections(config, spec)]
        self.reference = f"rollback-{spec.name}-{utc_now()}"

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        return bool(_sections(config, spec))

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return (FINDING,)

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        problems, facts = [], []
        for distribution in self.distributions:
            try:
                facts.append(distribution.read())
            except HarnessError as exc:
                problems.append(str(exc))
        if problems:
            return [Finding(FINDING, False, "; ".join(problems))]
        return [Finding(FINDING, True, "; ".join(facts))]

    def preflight_detail(self) -> dict[str, Any]:
        calls = [call for distribution in self.distributions for call in distribution.aws.drain()]
        return {"aws_calls": calls} if calls else {}

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        after = [
            f"after verify passes: invalidate {', '.join(d.settings.paths)} on CloudFront distribution {d.id}, "
            f"wait until Completed (at most {d.settings.timeout:g} s)"
            for d in self.distributions
        ]
        return [], after

    def finish(self, journal: Journal, verified: bool) -> None:
        if not verified:
            for distribution in self.distributions:
                journal.record(
                    f"{self.name}:invalidate-{distribution.name}",
                    "skipped",
                    reason="verify did not pass: the cache is not refilled from an origin that failed it",
                )
            return
        problems = []
        for distribution in self.distributions:
            try:
                self._invalidate(journal, distribution)
            except HarnessError as exc:
                problems.append(str(exc))
        if problems:
            raise HarnessError("; ".join(problems))

    def _invalidate(self, journal: Journal, distribution: Distribution) -> None:
        paths = list(distribution.settings.paths)
        with journal.step(
            f"{self.name}:invalidate-{distribution.name}", distribution=distribution.id, paths=paths
        ) as handle:
            try:
                invalidation = distribution.invalidate(f"{self.reference}-{distribution.id}")
                handle.detail["invalidation_id"] = invalidation
            finally:
                handle.detail["aws_calls"] = distribution.aws.drain()
        self.context.progress(f"cdn {distribution.name}: invalidation {invalidation} of {', '.join(paths)} created")
        with journal.step(
            f"{self.name}:completed-{distribution.name}", distribution=distribution.id, invalidation_id=invalidation
        ) as handle:
            try:
                handle.detail["invalidation_status"] = distribution.wait(invalidation)
            finally:
                handle.detail["aws_calls"] = distribution.aws.drain()
        self.context.progress(f"cdn {distribution.name}: invalidation {invalidation} completed")

    def describe(self) -> dict[str, Any]:
        return {
            "action": self.name,
            "distributions": [
                {"name": d.name, "id": d.id, "paths": list(d.settings.paths), "timeout_s": d.settings.timeout}
                for d in self.distributions
            ],
        }
