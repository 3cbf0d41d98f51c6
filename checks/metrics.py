"""The metrics check: thresholds on series of a Prometheus text-format endpoint.

The body is fetched under one total deadline (the watchdog of rollback/request_deadline.py cuts a server
that trickles), at most BODY_LIMIT bytes, and parsed with ``prometheus_client``'s own parser, so
escaping, label quoting, HELP/TYPE lines and histogram suffixes are read the way Prometheus
writes them. A selector (``http_requests_total{code=~"5.."}``) picks samples by name and label
matchers; the value judged is the sum of the samples it picks.

``prometheus_client`` is the optional extra ``metrics`` (in ``all``), imported only when a check
runs: without it the check fails, before any request, naming what to install (``parser_missing``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from ..rollback import request_deadline
from ..rollback.results import CheckResult
from .http import _REQUEST_ERRORS, ProbeSession, _chunks, describe_error, url_path

BODY_LIMIT = 16 * 1024 * 1024
REQUIREMENT = "'pytest-rollback-harness[metrics]'"


@dataclass(frozen=True)
class Threshold:
    select: str
    max: float | None = None
    min: float | None = None


Matcher = tuple[str, str, str]


def matches(labels: Mapping[str, str], matchers: Sequence[Matcher]) -> bool:
    """PromQL's label matching: a missing label is the empty string; regexes match whole values."""
    for label, op, value in matchers:
        actual = labels.get(label, "")
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "=~" and re.fullmatch(value, actual) is None:
            return False
        if op == "!~" and re.fullmatch(value, actual) is not None:
            return False
    return True


def fetch(session: requests.Session, url: str, *, timeout: float) -> tuple[str | None, str | None]:
    """(body, None) or (None, why not): the whole request within ``timeout``, body at most BODY_LIMIT."""
    start = time.monotonic()
    watch = request_deadline.start(start + timeout)
    try:
        with session.request(
            "GET",
            url,
            timeout=(timeout, timeout),
            stream=True,
            allow_redirects=False,
            verify=session.verify,
            proxies=session.environment.proxies_for(url) if isinstance(session, ProbeSession) else None,
        ) as response:
            kept = bytearray()
            # read1 returns what has arrived: a trickle is checked against the deadline as it comes
            # (a response that closes its connection has no socket left for the watchdog to cut).
            for chunk in _chunks(response):
                kept += chunk
                if len(kept) > BODY_LIMIT:
                    return None, f"the body is larger than {BODY_LIMIT} bytes"
                if time.monotonic() - start > timeout:
                    return None, f"timed out after {timeout:g}s reading the body"
            status = response.status_code
        if watch.expired:
            return None, f"timed out after {timeout:g}s"
    except _REQUEST_ERRORS as exc:
        if watch.expired:
            return None, f"timed out after {timeout:g}s"
        return None, describe_error(exc, timeout)
    finally:
        request_deadline.stop(watch)
    if status != 200:
        return None, f"HTTP {status}"
    return kept.decode("utf-8", errors="replace"), None


def parser_missing() -> str | None:
    """None when ``prometheus_client``'s parser imports; else why not and what to install (as the drivers say it)."""
    try:
        # The package first: when it is not installed at all, this import's error names it.
        import prometheus_client
        import prometheus_client.parser  # noqa: F401
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and exc.name == "prometheus_client":
            return (
                "the metrics check needs the Python module 'prometheus_client', which is not installed; "
                f"install it with: pip install {REQUIREMENT}"
            )
        # Installed but unusable (too old, broken): "cannot import name ... from ...".
        why = f"the metrics check cannot import its parser ({exc})"
        return f"{why}; install it with: pip install --upgrade {REQUIREMENT}"
    return None


def parse(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Every sample as (name, labels, value); ValueError for text that is not the exposition format."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.append((sample.name, dict(sample.labels), float(sample.value)))
    return samples


def check_metrics(
    session: requests.Session,
    url: str,
    *,
    thresholds: Sequence[Threshold],
    timeout: float,
    baseline: Mapping[str, float | None] | None = None,
    values_out: dict[str, float | None] | None = None,
    name: str = "metrics",
) -> CheckResult:
    """Fetch ``url``, judge each threshold; ``baseline`` (values from before) is shown beside."""
    from ..rollback.config import parse_selector

    shown = url_path(url)
    measured: dict[str, Any] = {"url": url}
    unavailable = parser_missing()
    if unavailable is not None:
        measured["error"] = unavailable
        return CheckResult(name, "failed", f"{shown}: {unavailable}", measured)
    text, problem = fetch(session, url, timeout=timeout)
    if text is None:
        measured["error"] = problem
        return CheckResult(name, "failed", f"{shown}: {problem}", measured)
    try:
        samples = parse(text)
    except (ValueError, IndexError, TypeError) as exc:
        measured["error"] = f"not Prometheus text format: {exc}"
        return CheckResult(name, "failed", f"{shown}: not Prometheus text format ({str(exc)[:120]})", measured)
    series: dict[str, Any] = {}
    breaches, missing, said = [], [], []
    for threshold in thresholds:
        metric, matchers = parse_selector(threshold.select)
        picked = [value for sample, labels, value in samples if sample == metric and matches(labels, matchers)]
        value = sum(picked) if picked else None
        before = baseline.get(threshold.select) if baseline is not None else None
        if values_out is not None:
            values_out[threshold.select] = value
        series[threshold.select] = {
            "value": value,
            "samples": len(picked),
            "max": threshold.max,
            "min": threshold.min,
            "before": before,
        }
        if value is None:
            missing.append(threshold.select)
            continue
        was = f" (before {before:g})" if before is not None else ""
        said.append(f"{threshold.select} = {value:g}{was}")
        if threshold.max is not None and value > threshold.max:
            breaches.append(f"{threshold.select} = {value:g} > {threshold.max:g}")
        if threshold.min is not None and value < threshold.min:
            breaches.append(f"{threshold.select} = {value:g} < {threshold.min:g}")
    measured["series"] = series
    measured["samples_read"] = len(samples)
    if breaches:
        return CheckResult(name, "failed", f"{shown}: over the limit: {'; '.join(breaches)}", measured)
    if missing:
        summary = f"{shown}: no sample matches {', '.join(missing)}: not judged"
        return CheckResult(name, "inconclusive", summary, measured)
    return CheckResult(name, "passed", f"{shown}: {'; '.join(said)}", measured)
