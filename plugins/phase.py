"""Runs a phase's checks once, concurrently, and hands each item its own result.

The first item of a phase starts every selected check of that phase: the quick ones (version,
health, endpoints, database) together, then, once the quick ones are done (their traffic would
skew a latency sample), the latency checks: one at a time, or side by side within a connection
budget ([verify] latency_connections) where the machine running them has the cores for it,
then the checks that read what the others left behind (logs), so the lines the probes caused
are there to count. Each item then waits only for its own result. A phase of many endpoints
takes about as long as its slowest check instead of the sum of them all.

The same holds across the runs of one process (``TRAFFIC``): a fleet's targets run their phases
side by side, and a latency check waits until no other target's probes are in flight, and within
the connection budget for the other targets' latency checks; on a 2-core machine the probes of 19
other targets skewed a good release's p95 from about 10 ms past 250 ms.

The baseline's checks that only read the service's answers (version, health, endpoints) start
while preflight is still judging (plugins/items.py): both only read, and the rollback waits for
both. The rest of the baseline (the census, which shares the driver preflight is using, the
latency samples, which other traffic would skew, the database, a feature's checks) waits until
preflight is done.

In the verify phase, once every other check is done and at least ``service.settle`` after the
service came up on the target (this run's readiness wait; as Kubernetes' minReadySeconds counts
from ready), version, replicas and health are probed once more, in full: an app that dies right
after answering the first probes fails verify instead of passing it. With no readiness wait in
this run (a verify gate, a target already reached), the settle time counts from the end of the
first probes. Either way the time spent on the other checks (latency, a database downgrade)
counts towards it: never probe again sooner, never wait twice.

Checks run on daemon threads: after Ctrl-C nothing joins them, and the process exits promptly.
A check that raises becomes a failed result naming the exception, never a traceback (whose
locals and messages could carry the environment into the artifacts).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, TimeoutError, wait
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from ..rollback.results import CheckResult

if TYPE_CHECKING:
    from .specs import CheckSpec
    from .state import HarnessRun

MAX_PARALLEL_PROBES = 16
PROGRESS_EVERY = 5.0  # seconds between "still running" lines while an item waits
SETTLED_CHECKS = ("version", "replicas", "health")
# What verify's settle time counts from (plugins/phase.py's docstring).
SINCE_READY = "the service came up"
SINCE_FIRST_PROBES = "the first probes"
_MESSAGE_LIMIT = 160
_ENV_VALUE_MIN = 6  # shorter values ("1", "true", "C") are everywhere; longer ones are telling


def is_latency(spec: CheckSpec) -> bool:
    return spec.key.startswith("latency[")


def reads_answers_only(spec: CheckSpec) -> bool:
    """A check that only asks the service (no driver, no database): safe beside preflight."""
    return spec.key in ("version", "health") or spec.key.startswith("endpoint[")


class ProbeTraffic:
    """What this process has in flight against the services it checks: the other checks' probes,
    and latency samples, never both at once.

    One per process, shared by every run in it: a fleet's targets run their phases side by side,
    and one target's answers (hundreds of requests, threads and the GIL on the machine running the
    harness) would skew another target's latency samples as much as its own would. A latency check
    waits until no other probe is in flight and holds new ones back while it waits and runs (so a
    stream of probes cannot starve it); latency checks run side by side only within the connection
    budget ([verify] latency_connections; unset: one at a time), and a service never sees more
    samples at once.
    """

    def __init__(self) -> None:
        self._probing = 0  # checks other than latency, in flight
        self._sampling = 0  # latency connections in flight
        self._latency_waiting = 0
        self._changed = threading.Condition()

    @contextmanager
    def probes(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._sampling == 0 and self._latency_waiting == 0)
            self._probing += 1
        try:
            yield
        finally:
            with self._changed:
                self._probing -= 1
                self._changed.notify_all()

    @contextmanager
    def latency(self, connections: int, budget: int) -> Iterator[None]:
        wanted = max(1, min(connections, budget))  # a check wider than the budget runs alone
        with self._changed:
            self._latency_waiting += 1
            try:
                self._changed.wait_for(lambda: self._probing == 0 and self._sampling + wanted <= budget)
            finally:
                self._latency_waiting -= 1
            self._sampling += wanted
        try:
            yield
        finally:
            with self._changed:
                self._sampling -= wanted
                self._changed.notify_all()


TRAFFIC = ProbeTraffic()


def crashed(name: str, exc: BaseException) -> CheckResult:
    """A failed result for a check that raised: the exception's type and one short line.

    The message is left out when it quotes the value of an environment variable: the report
    must not become a copy of the environment (tokens live there).
    """
    text = " ".join(str(exc).split())
    if len(text) > _MESSAGE_LIMIT:
        text = text[: _MESSAGE_LIMIT - 3] + "..."
    if _quotes_the_environment(text):
        text = "(message withheld: it quotes the environment)"
    kind = type(exc).__name__
    summary = f"the check failed unexpectedly: {kind}: {text}" if text else f"the check failed unexpectedly: {kind}"
    return CheckResult(name, "failed", summary, {"error": kind})


def _quotes_the_environment(text: str) -> bool:
    try:
        values = list(os.environ.copy().values())
    except (KeyError, RuntimeError):  # changed while being read: assume the worst
        return True
    return any(len(value) >= _ENV_VALUE_MIN and value in text for value in values)


def run_safely(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        return check()
    except Exception as exc:  # any bug or surprise in a check is that check's failure
        return crashed(name, exc)


def with_settle(
    first: CheckResult, settle: CheckResult, seconds: float, since_what: str, started_after: float
) -> CheckResult:
    """``first`` judged again by the second look, taken at least ``seconds`` after ``since_what``
    (``started_after``: how long after it the second look began)."""
    measured = dict(first.measured)
    measured["settle"] = {
        "after_s": seconds,
        "status": settle.status,
        "summary": settle.summary,
        "counted_from": since_what,
        "started_after_s": round(started_after, 3),
    }
    if since_what == SINCE_READY:
        when = f"{started_after:.1f}s after {SINCE_READY}"
    else:
        when = f"{seconds:g}s after the other verify checks"
    if not first.passed:
        return CheckResult(first.name, first.status, first.summary, measured)  # failed already
    if not settle.passed:
        summary = f"{first.summary}, but {when}: {settle.summary}"
        return CheckResult(first.name, "failed", summary, measured)
    return CheckResult(first.name, "passed", first.summary, measured)


def _spawn(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=name, daemon=True).start()


class PhaseChecks:
    def __init__(self, run: HarnessRun, phase: str, specs: Sequence[CheckSpec]) -> None:
        self.run = run
        self.phase = phase
        self.specs = list(specs)
        self._futures: dict[str, Future[CheckResult]] = {}
        self._settled: list[str] = []
        self._started = threading.Lock()
        self.own_seconds: dict[str, float] = {}
        # Set when what must end first has ended (preflight, for an early baseline); None: nothing.
        self._after: threading.Event | None = None

    def start(self, after: threading.Event | None = None) -> None:
        """Start every check now, before any item asks (a fleet starts each target's phase at once).

        With ``after``, only the checks that read the service's answers start now; the others
        (and every latency sample) wait until ``after`` is set, which the caller must do.
        """
        with self._started:
            if not self._futures:
                self._after = after
                self._start()

    def result(self, key: str) -> CheckResult:
        with self._started:
            if not self._futures:
                self._start()
        if key not in self._futures:
            # Not among the selected checks when the phase started (cannot happen through
            # pytest; kept for direct callers): run it alone.
            spec = next(spec for spec in self.specs if spec.key == key)
            return run_safely(key, partial(spec.run, self.run, self.phase))
        return self._wait_for(key)

    def _wait_for(self, key: str) -> CheckResult:
        """The check's result; a long one (a big latency sample) says it is still going."""
        future = self._futures[key]
        started = time.monotonic()
        while True:
            try:
                return future.result(timeout=PROGRESS_EVERY)
            except TimeoutError:
                waited = time.monotonic() - started
                doing = "waiting for the other checks, then probing" if key in self._settled else "still running"
                self.run.progress(f"{self.phase}: {doing} {key} ({waited:.0f} s so far)")

    def _settle_seconds(self) -> float:
        if self.phase != "verify":
            return 0.0
        return self.run.config.settings.service.settle

    def _start(self) -> None:
        quick = [spec for spec in self.specs if not is_latency(spec) and not spec.after_others]
        slow = [spec for spec in self.specs if is_latency(spec)]
        # The observers (logs) last: the lines the other probes cause must be there to be counted.
        slow += [spec for spec in self.specs if spec.after_others]
        hook = getattr(self.run, "hook", None)  # None: a run made by hand, with no features
        if hook is not None:  # a feature's marks for the phase, before any probe runs
            hook.pytest_rollback_phase_starting(run=self.run, phase=self.phase)
        count = f"{len(self.specs)} check{'' if len(self.specs) == 1 else 's'}"
        beside = ", the service's answers beside preflight (they only read)" if self._after is not None else ""
        self.run.progress(f"{self.phase}: running {count} against {self.run.config.settings.service.base_url}{beside}")
        settle = self._settle_seconds()
        settled = [spec.key for spec in quick if spec.key in SETTLED_CHECKS] if settle > 0 else []
        self._settled = settled
        # Every item's future exists before any thread runs, so an item never misses its own.
        first: dict[str, Future[CheckResult]] = {spec.key: Future() for spec in self.specs}
        for key, future in first.items():
            self._futures[key] = Future() if key in settled else future
        slots = threading.BoundedSemaphore(MAX_PARALLEL_PROBES)
        for spec in quick:
            _spawn(partial(self._run_quick, spec, first[spec.key], slots), f"probe-{spec.key}")
        quick_first = [first[spec.key] for spec in quick]
        slow_first = [(spec, first[spec.key]) for spec in slow]
        _spawn(lambda: self._run_in_turn_safely(quick_first, slow_first, settled, first, settle), "latency")

    def _wait_after(self) -> None:
        if self._after is not None:
            self._after.wait()

    def _run_quick(self, spec: CheckSpec, future: Future[CheckResult], slots: threading.BoundedSemaphore) -> None:
        if not reads_answers_only(spec):
            self._wait_after()
        with slots, TRAFFIC.probes():
            self._fill(future, spec.key, partial(spec.run, self.run, self.phase))

    def _fill(self, future: Future[CheckResult], name: str, check: Callable[[], CheckResult]) -> None:
        if future.set_running_or_notify_cancel():
            started = time.monotonic()
            result = run_safely(name, check)
            # How long the check itself took (a settled check: both rounds): what its item reports,
            # not the time it waited for the phase's other checks.
            with self._started:
                self.own_seconds[name] = self.own_seconds.get(name, 0.0) + time.monotonic() - started
            future.set_result(result)

    def _run_in_turn_safely(self, *args: Any) -> None:
        """``_run_in_turn``; if it breaks, every check still waiting fails naming why, never hangs."""
        try:
            self._run_in_turn(*args)
        except Exception as exc:  # a bug here would leave every waiting item waiting forever
            for key, future in self._futures.items():
                if future.running() or future.done():  # its own thread fills it
                    continue
                if future.set_running_or_notify_cancel():
                    future.set_result(crashed(key, exc))

    def _run_in_turn(
        self,
        before: list[Future[CheckResult]],
        pending: list[tuple[CheckSpec, Future[CheckResult]]],
        settled: list[str],
        first: dict[str, Future[CheckResult]],
        settle: float,
    ) -> None:
        wait(before)
        self._wait_after()  # a latency sample beside preflight's own reads would be skewed
        first_done = time.monotonic()  # the settle pause counts from here when nothing came up in this run
        self._run_latency([(spec, future) for spec, future in pending if is_latency(spec)])
        for spec, future in pending:
            if not is_latency(spec):  # the observers, once every probe is done
                self._fill(future, spec.key, partial(spec.run, self.run, self.phase))
        if not settled:
            return
        since, since_what = self._settle_from(first_done)
        left = max(0.0, since + settle - time.monotonic())
        again = f"probing {' and '.join(settled)} once more"
        if left > 0:
            self.run.progress(f"{self.phase}: waiting {left:.1f}s, then {again} ({settle:g}s after {since_what})")
        else:
            self.run.progress(f"{self.phase}: {again}, over {settle:g}s after {since_what}")
        time.sleep(left)
        for key in settled:  # side by side, as in the first look
            look = partial(self._settled_result, key, first[key].result(), settle, since, since_what)
            _spawn(partial(self._fill, self._futures[key], key, look), f"settle-{key}")

    def _settle_from(self, first_done: float) -> tuple[float, str]:
        """Where the settle time counts from: the service coming up in this run, else the first probes."""
        ready_at = getattr(getattr(self.run, "runbook", None), "ready_at", None)
        if isinstance(ready_at, float) and ready_at <= first_done:
            return ready_at, SINCE_READY
        return first_done, SINCE_FIRST_PROBES

    def _run_latency(self, checks: list[tuple[CheckSpec, Future[CheckResult]]]) -> None:
        """The latency checks side by side within the connection budget; back when all are done."""
        # Unset: a budget of 1, which every check fills alone: one latency check at a time.
        budget = self.run.config.settings.verify.latency_connections or 1

        def run_one(spec: CheckSpec, future: Future[CheckResult]) -> None:
            with TRAFFIC.latency(spec.connections, budget):
                self._fill(future, spec.key, partial(spec.run, self.run, self.phase))

        for spec, future in checks:
            _spawn(partial(run_one, spec, future), f"latency-{spec.key}")
        wait([future for _, future in checks])

    def _settled_result(
        self, key: str, first: CheckResult, settle: float, since: float, since_what: str
    ) -> CheckResult:
        from .probes import settle_probe

        with TRAFFIC.probes():
            started_after = time.monotonic() - since
            again = run_safely(key, partial(settle_probe(key), self.run, self.phase))
        return with_settle(first, again, settle, since_what, started_after)
