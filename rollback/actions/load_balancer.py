"""AWS load balancer target groups around the platform step ([[load_balancer]]; docs/aws.md).

before:  deregister the bad release's targets, wait (bounded) until they finished draining
after:   register the target release's targets, wait (bounded) until the group says ``healthy``
         (before the verify gate: verify then sees the service as users reach it)
undo:    a failed rollback: in reverse, deregister what was registered, register back what was drained

mode = "weights" (``WeightedRule``): before the platform step, once the target release's group is
healthy, a listener rule forwards all its traffic to that group; undo puts the weights back.

Conflicts: preflight reads which targets are registered; before each change the group is read
again and a change by someone else refuses the run (``Conflict``) instead of being overwritten.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..aws import AwsCalls, poll
from ..config import HarnessConfig, LoadBalancerConfig, TargetSpec
from ..errors import Conflict, HarnessError
from ..journal import Journal
from ..targets.base import Finding, TargetContext
from ..versions import same_version
from .base import Action

FINDING = "load-balancer-ready"
GONE = ("unused",)  # a deregistered target, drained (AWS: Target.NotRegistered)


def _sections(config: HarnessConfig, spec: TargetSpec) -> list[tuple[int, LoadBalancerConfig]]:
    return [(i, s) for i, s in enumerate(config.settings.load_balancer) if s.for_target in (None, spec.name)]


def _shown(keys: set[str] | list[str]) -> str:
    return ", ".join(sorted(keys)) or "none"


class TargetGroup:
    """One [[load_balancer]] target group: what is registered, and changes to it, each recorded."""

    def __init__(self, settings: LoadBalancerConfig, index: int, context: TargetContext) -> None:
        self.settings = settings
        assert settings.target_group_arn is not None  # mode = "targets" (the config says so)
        self.arn = settings.target_group_arn
        self.name = settings.name or self.arn.split("/")[-2]
        self.where = f"load_balancer[{index}] ({self.name})"
        self.progress = context.progress
        self.aws = AwsCalls("elbv2", settings, self.where)
        self.port: int | None = None
        self.expected: set[str] = set()  # registered targets as this run last saw or left them
        self.old: set[str] = set()
        self.new: set[str] = set()
        self.removed: set[str] = set()  # what this run deregistered, and registered
        self.added: set[str] = set()

    def key(self, target: str) -> str:
        """``i-0abc`` -> ``i-0abc:80`` (the group's port); ``10.0.0.5:8080`` stays."""
        head, _, port = target.rpartition(":")
        return target if head and port.isdigit() else f"{target}:{self.port}"

    def choose(self, from_version: str | None, to_version: str, registered: set[str]) -> str:
        """Which targets leave and which join, and why, in words."""
        targets = self.settings.targets
        assert targets is not None
        if isinstance(targets, list):
            self.old = self.new = {self.key(t) for t in targets}
            return "the same targets, changed in place"
        named = {version: {self.key(t) for t in listed} for version, listed in targets.items()}
        new = next((keys for version, keys in named.items() if same_version(version, to_version)), None)
        if new is None:
            raise HarnessError(
                f"{self.where}: targets names no {to_version!r} (it names {', '.join(targets)}); "
                f"add the targets that serve {to_version}"
            )
        self.new = new
        old = next((keys for version, keys in named.items() if same_version(version, from_version)), None)
        self.old = old if old is not None else registered - new
        why = f"those of {from_version}" if old is not None else f"every registered target not serving {to_version}"
        return why

    def _target(self, key: str) -> dict[str, Any]:
        target, _, port = key.rpartition(":")
        return {"Id": target, "Port": int(port)}

    def health(self, keys: set[str] | None = None) -> dict[str, tuple[str, str]]:
        """target -> (state, reason) as the group reports it; every registered one when ``keys`` is None."""
        params: dict[str, Any] = {"TargetGroupArn": self.arn}
        if keys is not None:
            params["Targets"] = [self._target(k) for k in sorted(keys)]
        answer = self.aws.call("describe_target_health", **params)
        found = {}
        for item in answer.get("TargetHealthDescriptions", []):
            target, health = item["Target"], item.get("TargetHealth", {})
            reason = ": ".join(x for x in (health.get("Reason"), health.get("Description")) if x)
            found[f"{target['Id']}:{target.get('Port', self.port)}"] = (health.get("State", "unknown"), reason)
        return found

    def registered(self) -> set[str]:
        """Targets in service or on their way in (draining and unused ones are on their way out)."""
        return {k for k, (state, _) in self.health().items() if state not in ("draining", "unused")}

    def read_group(self) -> None:
        answer = self.aws.call("describe_target_groups", TargetGroupArns=[self.arn])
        groups = answer.get("TargetGroups", [])
        if not groups:
            raise HarnessError(f"{self.where}: no target group {self.arn}")
        self.port = groups[0].get("Port")

    def check_unchanged(self) -> None:
        live = self.registered()
        if live != self.expected:
            raise Conflict(
                f"{self.where}: the target group changed since this run read it (another change is under way?): "
                f"registered now {_shown(live)}; expected {_shown(self.expected)} "
                f"(added by someone else: {_shown(live - self.expected)}; removed: {_shown(self.expected - live)}); "
                "nothing more was changed"
            )

    def change(self, operation: str, keys: set[str]) -> None:
        self.aws.call(operation, TargetGroupArn=self.arn, Targets=[self._target(k) for k in sorted(keys)])

    def wait(self, keys: set[str], done: tuple[str, ...], what: str) -> dict[str, tuple[str, str]]:
        """Poll until every target in ``keys`` is in a ``done`` state; HarnessError at the deadline."""
        found: dict[str, tuple[str, str]] = {}

        def read() -> str | None:
            found.clear()
            found.update(self.health(keys))
            waiting = {k: s for k, s in found.items() if s[0] not in done}
            waiting.update({k: ("missing", "not in the answer") for k in keys - set(found)})
            return ", ".join(f"{k} {s[0]}" + (f" ({s[1]})" if s[1] else "") for k, s in sorted(waiting.items())) or None

        def say(seen: str, elapsed: float) -> None:
            timeout = self.settings.timeout
            self.progress(f"load balancer {self.name}: waiting until {what}: {seen} ({elapsed:.0f} s of {timeout:g} s)")

        poll(
            read,
            self.settings,
            say,
            lambda seen: f"{self.where}: {seen}: not {what} within {self.settings.timeout:g} s",
        )
        return found


class WeightedRule:
    """One [[load_balancer]] with mode = "weights": a listener rule's forward weights, moved whole
    to the target release's group once its targets are healthy; put back on failure."""

    def __init__(self, settings: LoadBalancerConfig, index: int, context: TargetContext) -> None:
        assert settings.listener_rule_arn is not None and settings.target_groups is not None
        self.settings = settings
        self.groups = settings.target_groups
        self.arn = settings.listener_rule_arn
        self.name = settings.name or self.arn.split("/")[2]
        self.where = f"load_balancer[{index}] ({self.name})"
        self.progress = context.progress
        self.aws = AwsCalls("elbv2", settings, self.where)
        self.weights: dict[str, int] = {}  # as preflight read them, then as this run left them
        self.original: dict[str, int] | None = None  # set once this run changed them
        self.to_group = ""

    def read(self) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The rule's actions, and its forward action's weights by target group."""
        rules = self.aws.call("describe_rules", RuleArns=[self.arn]).get("Rules", [])
        actions: list[dict[str, Any]] = rules[0].get("Actions", []) if rules else []
        forward = next((a for a in actions if a.get("Type") == "forward"), {})
        groups = forward.get("ForwardConfig", {}).get("TargetGroups", [])
        if not groups:
            raise HarnessError(f"{self.where}: listener rule {self.arn} has no forward action with target groups")
        return actions, {g["TargetGroupArn"]: int(g.get("Weight", 1)) for g in groups}

    def choose(self, to_version: str) -> str:
        _, self.weights = self.read()
        group = next((arn for version, arn in self.groups.items() if same_version(version, to_version)), None)
        if group is None:
            raise HarnessError(
                f"{self.where}: target_groups names no {to_version!r} (it names {', '.join(self.groups)}); "
                f"add the target group that serves {to_version}"
            )
        if group not in self.weights:
            raise HarnessError(
                f"{self.where}: the rule does not forward to {group} ({to_version}); add it to the rule with weight 0"
            )
        self.to_group = group
        return self.shown(self.weights)

    def shown(self, weights: dict[str, int]) -> str:
        return ", ".join(f"{arn.split('/')[-2]} {weight}" for arn, weight in weights.items())

    def target_weights(self) -> dict[str, int]:
        """Every bit of weight on the target release's group (the same total, at least 1)."""
        total = max(1, sum(self.weights.values()))
        return {arn: total if arn == self.to_group else 0 for arn in self.weights}

    def check_unchanged(self) -> list[dict[str, Any]]:
        actions, live = self.read()
        if live != self.weights:
            raise Conflict(
                f"{self.where}: the listener rule changed since this run read it (another change is under way?): "
                f"weights now {self.shown(live)}; expected {self.shown(self.weights)}; nothing more was changed"
            )
        return actions

    def set(self, actions: list[dict[str, Any]], weights: dict[str, int]) -> None:
        """The rule's actions as they are, with only the forward weights changed."""
        changed = []
        for action in actions:
            if action.get("Type") == "forward":
                config = dict(action.get("ForwardConfig", {}))
                config["TargetGroups"] = [{"TargetGroupArn": arn, "Weight": w} for arn, w in weights.items()]
                action = {k: v for k, v in action.items() if k != "TargetGroupArn"} | {"ForwardConfig": config}
            changed.append(action)
        self.aws.call("modify_rule", RuleArn=self.arn, Actions=changed)
        self.weights = dict(weights)

    def wait_healthy(self) -> None:
        """Every target registered in the target release's group healthy, and at least one."""

        def read() -> str | None:
            answer = self.aws.call("describe_target_health", TargetGroupArn=self.to_group)
            states = {
                f"{d['Target']['Id']}:{d['Target'].get('Port')}": d.get("TargetHealth", {}).get("State", "unknown")
                for d in answer.get("TargetHealthDescriptions", [])
            }
            if not states:
                return "no targets registered"
            waiting = {k: v for k, v in states.items() if v != "healthy"}
            return ", ".join(f"{k} {v}" for k, v in sorted(waiting.items())) or None

        group = self.to_group.split("/")[-2]

        def say(seen: str, elapsed: float) -> None:
            self.progress(f"load balancer {self.name}: waiting until {group} is healthy: {seen} ({elapsed:.0f} s)")

        poll(read, self.settings, say, lambda seen: f"{self.where}: target group {group}: {seen}: not healthy "
             f"within {self.settings.timeout:g} s")  # fmt: skip

    def fact(self, to_version: str) -> str:
        weights = self.choose(to_version)
        group = self.to_group.split("/")[-2]
        return f"listener rule {self.name}: forwards {weights}; all of it to {group} ({to_version}) once healthy"

    def switch(self, journal: Journal, action: str) -> None:
        """Wait until the target release's group is healthy, then forward everything to it."""
        with journal.step(f"{action}:healthy-{self.name}", target_group=self.to_group) as handle:
            try:
                self.wait_healthy()
            finally:
                handle.detail["aws_calls"] = self.aws.drain()
        target = self.target_weights()
        step = f"{action}:weights-{self.name}"
        with journal.step(step, rule=self.arn, weights=self.shown(target)) as handle:
            try:
                actions = self.check_unchanged()
                if target != self.weights:
                    before = dict(self.weights)
                    self.set(actions, target)
                    self.original = before
                    handle.detail["was"] = self.shown(before)
            finally:
                handle.detail["aws_calls"] = self.aws.drain()
        self.progress(f"load balancer {self.name}: forwards {self.shown(target)}")

    def undo(self, journal: Journal, action: str) -> None:
        if self.original is None:
            return
        original = self.original
        try:
            with journal.step(f"{action}:undo-{self.name}", weights=self.shown(original)) as handle:
                try:
                    actions, _ = self.read()
                    self.set(actions, original)
                    self.original = None
                finally:
                    handle.detail["aws_calls"] = self.aws.drain()
        except HarnessError as exc:
            raise HarnessError(
                f"{exc}; by hand: set the weights of rule {self.arn} back to {self.shown(original)}"
            ) from None
        self.progress(f"load balancer {self.name}: weights put back ({self.shown(original)})")


class LoadBalancerAction(Action):
    name: ClassVar[str] = "load_balancer"
    # The outermost action: the edge stops sending users to the bad release before anything
    # beneath it changes, and (after() runs in descending order) takes the release back last,
    # once maintenance is off: its health checks would otherwise see the maintenance page's 503.
    order: ClassVar[int] = 5

    def __init__(self, config: HarnessConfig, spec: TargetSpec, context: TargetContext) -> None:
        super().__init__(config, spec, context)
        sections = _sections(config, spec)
        self.groups = [TargetGroup(settings, i, context) for i, settings in sections if settings.mode == "targets"]
        self.rules = [WeightedRule(settings, i, context) for i, settings in sections if settings.mode == "weights"]
        self.left: list[str] = []

    @classmethod
    def applies(cls, config: HarnessConfig, spec: TargetSpec) -> bool:
        return bool(_sections(config, spec))

    @classmethod
    def finding_names(cls, config: HarnessConfig, spec: TargetSpec) -> tuple[str, ...]:
        return (FINDING,)

    def preflight(self, from_version: str | None, to_version: str) -> list[Finding]:
        problems, facts = [], []
        for group in self.groups:
            try:
                group.read_group()
                health = group.health()
                group.expected = {k for k, (state, _) in health.items() if state not in ("draining", "unused")}
                why = group.choose(from_version, to_version, group.expected)
            except HarnessError as exc:
                problems.append(str(exc))
                continue
            states = ", ".join(f"{k} {s}" for k, (s, _) in sorted(health.items())) or "no targets"
            facts.append(
                f"target group {group.name}: {states}; deregister {_shown(group.old & group.expected)} ({why}), "
                f"then register {_shown(group.new)}"
            )
            if group.new - group.expected:
                self.left.append(f"target group {group.name}: {_shown(group.new - group.expected)} not registered")
        for rule in self.rules:
            try:
                facts.append(rule.fact(to_version))
            except HarnessError as exc:
                problems.append(str(exc))
        if problems:
            return [Finding(FINDING, False, "; ".join(problems))]
        return [Finding(FINDING, True, "; ".join(facts))]

    def left_over(self) -> str | None:
        return "; ".join(self.left) or None

    def preflight_detail(self) -> dict[str, Any]:
        sources = [group.aws for group in self.groups] + [rule.aws for rule in self.rules]
        calls = [call for aws in sources for call in aws.drain()]
        return {"aws_calls": calls} if calls else {}

    def plan(self, from_version: str | None, to_version: str) -> tuple[list[str], list[str]]:
        before, after = [], []
        for group in self.groups:
            wait = f"(at most {group.settings.timeout:g} s)"
            old = _shown(group.old) if group.old else f"the targets serving {from_version}"
            new = _shown(group.new) if group.new else f"the targets serving {to_version}"
            before.append(f"target group {group.name}: deregister {old}, wait until drained {wait}")
            after.append(f"target group {group.name}: register {new}, wait until healthy {wait}")
        for rule in self.rules:
            before.append(
                f"listener rule {rule.name}: wait until the target group of {to_version} is healthy "
                f"(at most {rule.settings.timeout:g} s), then forward all traffic to it"
            )
        return before, after

    def before(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        for rule in self.rules:
            rule.switch(journal, self.name)
        for group in self.groups:
            leaving = group.old & group.expected
            step = f"{self.name}:deregister-{group.name}"
            with journal.step(step, target_group=group.arn, targets=sorted(leaving)) as handle:
                try:
                    group.check_unchanged()
                    if leaving:
                        group.change("deregister_targets", leaving)
                        group.removed |= leaving
                        group.expected -= leaving
                finally:
                    handle.detail["aws_calls"] = group.aws.drain()
            if leaving:
                self.context.progress(f"load balancer {group.name}: deregistered {_shown(leaving)}")
            self._wait(journal, group, group.old, GONE, "drained")

    def after(self, from_version: str | None, to_version: str, journal: Journal) -> None:
        for group in reversed(self.groups):
            joining = group.new - group.expected
            step = f"{self.name}:register-{group.name}"
            with journal.step(step, target_group=group.arn, targets=sorted(joining)) as handle:
                try:
                    group.check_unchanged()
                    if joining:
                        group.change("register_targets", joining)
                        group.added |= joining - group.removed
                        group.removed -= joining
                        group.expected |= joining
                finally:
                    handle.detail["aws_calls"] = group.aws.drain()
            if joining:
                self.context.progress(f"load balancer {group.name}: registered {_shown(joining)}")
            self._wait(journal, group, group.new, ("healthy",), "healthy")

    def _wait(self, journal: Journal, group: TargetGroup, keys: set[str], done: tuple[str, ...], what: str) -> None:
        if not keys:
            return
        with journal.step(f"{self.name}:{what}-{group.name}", targets=sorted(keys)) as handle:
            try:
                states = group.wait(keys, done, what)
                handle.detail["states"] = {k: s[0] for k, s in states.items()}
            finally:
                handle.detail["aws_calls"] = group.aws.drain()
        self.context.progress(f"load balancer {group.name}: {_shown(keys)} {what}")

    def undo(self, journal: Journal) -> None:
        problems = []
        for group in self.groups:
            if not (group.added or group.removed):
                continue
            added, removed = sorted(group.added), sorted(group.removed)
            try:
                with journal.step(f"{self.name}:undo-{group.name}", added=added, removed=removed) as handle:
                    try:
                        self._undo_group(group)
                    finally:
                        handle.detail["aws_calls"] = group.aws.drain()
            except HarnessError as exc:
                problems.append(
                    f"{exc}; by hand: register {_shown(removed)} and deregister {_shown(added)} in {group.arn}"
                )
        for rule in reversed(self.rules):  # in reverse: before() moved the weights first
            try:
                rule.undo(journal, self.name)
            except HarnessError as exc:
                problems.append(str(exc))
        if problems:
            raise HarnessError("; ".join(problems))

    def _undo_group(self, group: TargetGroup) -> None:
        """In reverse: what this run registered leaves, then what it deregistered comes back."""
        live = group.registered()
        if group.added & live:
            group.change("deregister_targets", group.added & live)
        if group.removed - live:
            group.change("register_targets", group.removed - live)
        self.context.progress(
            f"load balancer {group.name}: put back as before the rollback (deregistered {_shown(group.added & live)}, "
            f"registered {_shown(group.removed - live)})"
        )
        group.added, group.removed = set(), set()

    def describe(self) -> dict[str, Any]:
        return {
            "action": self.name,
            "target_groups": [
                {"name": g.name, "arn": g.arn, "region": g.settings.region, "timeout_s": g.settings.timeout}
                for g in self.groups
            ],
            "listener_rules": [
                {"name": r.name, "arn": r.arn, "target_groups": dict(r.groups), "region": r.settings.region}
                for r in self.rules
            ],
        }
