"""Many answers from one endpoint, gathered so that every replica behind it gets asked.

A verdict on "every replica runs the target" from a service's answers needs enough answers
(rollback/sampling.py ``answers_needed``) and answers that land on different replicas:

- each request gets a connection of its own (``Connection: close``): a kept-alive connection
  stays pinned to one backend behind most balancers;
- a few workers ask at once, each pausing a random time before each request: two checks that
  poll at the same rhythm against a pool that alternates per request would otherwise fall into
  step and each see one side only.

Gathering stops early at the first answer that did not come back at all (a timeout, a reset):
the verdict is already decided, and more of them would only make the on-call engineer wait. A
request cut short by the gathering's own deadline is no answer at all (the service may have been
about to answer): it is left out, and too few answers make the verdict inconclusive.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import requests

from .http import Probe, clone_session, probe


@dataclass(frozen=True)
class Gathered:
    """The answers, in the order they arrived, and why gathering ended."""

    probes: list[Probe]
    wanted: int
    # True when the deadline ended gathering before ``wanted`` answers arrived.
    out_of_time: bool
    # True when an answer that did not come back at all (or a decisive one) ended it.
    stopped_early: bool
    elapsed: float


def gather(
    session: requests.Session,
    url: str,
    *,
    count: int,
    timeout: float,
    deadline: float,
    concurrency: int = 2,
    pause: float = 0.005,
    method: str = "GET",
    rng: random.Random | None = None,
    decisive: Callable[[Probe], bool] | None = None,
) -> Gathered:
    """Ask ``url`` ``count`` times with ``concurrency`` workers, each request on a new connection.

    ``deadline`` is a ``time.monotonic()`` instant no request outlives. Each worker waits a
    random time between 0 and ``pause`` before each request. Gathering stops at an answer that
    did not come back, and at one ``decisive`` says already decides the verdict.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = rng or random.Random()
    started = time.monotonic()
    lock = threading.Lock()
    probes: list[Probe] = []
    issued = 0
    stopped = False
    pauses = [[rng.uniform(0, pause) for _ in range(count)] for _ in range(concurrency)]

    def take() -> bool:
        nonlocal issued
        with lock:
            if stopped or issued >= count or time.monotonic() >= deadline:
                return False
            issued += 1
            return True

    def work(worker: int, own: requests.Session) -> None:
        nonlocal stopped
        for wait in pauses[worker]:
            if not take():
                return
            time.sleep(max(0.0, min(wait, deadline - time.monotonic())))
            cut_short = deadline - time.monotonic() < timeout
            seen = probe(own, url, method=method, timeout=timeout, deadline=deadline, new_connection=True)
            # Many servers (Python's http.server among them) close after "Connection: close" without
            # saying so in the response, and urllib3 would pool the connection: the next request could
            # go out on a socket the server is closing ("closed the connection without a response").
            # Close it here: every request gets a connection of its own.
            own.close()
            if cut_short and not seen.ok_transport and time.monotonic() >= deadline:
                return  # cut by the check's own deadline, not the service's fault: not an answer
            with lock:
                probes.append(seen)
                if not seen.ok_transport or (decisive is not None and decisive(seen)):
                    stopped = True

    workers = max(1, min(concurrency, count))
    sessions = [session] + [clone_session(session) for _ in range(workers - 1)]
    threads = [_worker(work, index, sessions[index]) for index in range(workers)]
    for thread in threads:
        thread.join()
    for extra in sessions[1:]:
        extra.close()
    return Gathered(
        probes=probes,
        wanted=count,
        out_of_time=not stopped and len(probes) < count,
        stopped_early=stopped and len(probes) < count,
        elapsed=time.monotonic() - started,
    )


def _worker(work: Callable[[int, requests.Session], None], index: int, session: requests.Session) -> threading.Thread:
    # Daemon threads: after Ctrl-C nothing waits for a probe (each is bounded by the deadline anyway).
    thread = threading.Thread(target=work, args=(index, session), name=f"answers-{index}", daemon=True)
    thread.start()
    return thread


def flaps(answers: Sequence[object]) -> int:
    """How many times an answer differed from the one before it."""
    return sum(1 for before, after in itertools.pairwise(answers) if before != after)
