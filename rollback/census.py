"""The platform's census: which replica runs which version, and the verdict on it.

A rollback is done only when the platform itself says every replica that serves runs the
target: the service's answers are a sample, the census is the count. Each driver that can
count answers ``Target.census()`` with a ``Census``; ``judge_census`` turns it into the
``verify-replicas`` result (and, before the rollback, ``baseline-replicas``).

A replica is whatever the platform schedules and routes to: a Kubernetes pod, a Swarm task, a
blue/green colour, an SSH host, the process behind a release link. Only serving replicas are
judged (a pod that is not ready gets no traffic); the others are listed in the evidence.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .results import CheckResult
from .versions import same_version

CHECK_NAME = "replicas"


@dataclass(frozen=True)
class Replica:
    """One replica as the platform reports it."""

    # What it is and its name, as a person would look it up: "pod demo-7c9f-abc", "task 3xk2", "host web-2".
    name: str
    # The version it runs, read from the platform (image tag, release folder); None: cannot tell.
    version: str | None
    # True when it takes traffic now (a ready pod, a running task, the live colour, a serving host).
    serving: bool
    # The platform's own word for its state: "ready", "running", "not ready", "shutdown", "idle".
    state: str
    # Anything else a person needs to find or judge it (node, started at, the reason it is not ready).
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "serving": self.serving,
            "state": self.state,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Census:
    """Every replica of one target, and what the platform says beyond them.

    ``problems`` are the platform's own reasons the rollout is not complete whatever the replicas
    run (Kubernetes: ``updatedReplicas 2 of 3``; Swarm: ``update state rollback_paused``);
    ``facts`` are plain builtins for the evidence (counts, revisions, the live colour).
    """

    # What a replica is called here, for headlines: "pod", "task", "host", "colour", "process".
    unit: str
    replicas: tuple[Replica, ...]
    problems: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)

    def serving(self) -> list[Replica]:
        return [replica for replica in self.replicas if replica.serving]

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "replicas": [replica.to_dict() for replica in self.replicas],
            "problems": list(self.problems),
            "facts": dict(self.facts),
        }


def _plural(count: int, word: str) -> str:
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}es" if word.endswith(("s", "sh", "ch", "x")) else f"{count} {word}s"


def _names(replicas: Sequence[Replica], limit: int = 5) -> str:
    shown = [f"{replica.name} ({replica.version or 'version unknown'})" for replica in replicas[:limit]]
    more = f" and {len(replicas) - limit} more" if len(replicas) > limit else ""
    return ", ".join(shown) + more


def judge_census(census: Census, expected: str | None, name: str = CHECK_NAME) -> CheckResult:
    """Passed when every serving replica runs ``expected`` and the platform names no problem.

    Without ``expected`` (a baseline, or a gate that has nothing to compare with) every serving
    replica must run one and the same version. No serving replica at all is a failure: nothing
    serves the target.
    """
    serving = census.serving()
    versions = Counter(replica.version or "unknown" for replica in serving)
    measured: dict[str, Any] = {
        **census.to_dict(),
        "expected": expected,
        "serving": len(serving),
        "versions": dict(versions),
    }
    tally = ", ".join(f"{version} on {count}" for version, count in versions.most_common())
    if not serving:
        return CheckResult(name, "failed", _no_serving(census), measured)
    if expected is not None:
        off = [replica for replica in serving if not same_version(replica.version, expected)]
    else:
        (common, _), *_ = versions.most_common()
        off = [replica for replica in serving if (replica.version or "unknown") != common]
    problems = list(census.problems)
    if off:
        what = "still on another version" if expected is not None else "on another version than the rest"
        lead = f"{_plural(len(off), census.unit)} of {len(serving)} serving {what}: {_names(off)}"
        return CheckResult(name, "failed", "; ".join([lead, *problems]) + f" (serving: {tally})", measured)
    if problems:
        version = " / ".join(versions)
        summary = f"every serving {census.unit} runs {version}, but " + "; ".join(problems)
        return CheckResult(name, "failed", summary, measured)
    version = " / ".join(versions)
    idle = len(census.replicas) - len(serving)
    rest = f" ({idle} not serving)" if idle else ""
    summary = f"every serving {census.unit} runs {version}: {len(serving)} of {len(serving)}{rest}"
    return CheckResult(name, "passed", summary, measured)


def _no_serving(census: Census) -> str:
    listed = f": {_names(list(census.replicas))}" if census.replicas else ""
    problems = "; " + "; ".join(census.problems) if census.problems else ""
    return f"no {census.unit} is serving ({_plural(len(census.replicas), census.unit)} found{listed}){problems}"
