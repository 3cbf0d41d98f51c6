"""The [[metrics]] check against real loopback HTTP servers."""

from __future__ import annotations

import time

import pytest
from incident_servers import metrics_server

from rollback_harness.checks.http import make_session
from rollback_harness.checks.metrics import Threshold, check_metrics
from rollback_harness.rollback.config import parse_selector

TEXT = """\
# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{code="200",path="/"} 1027
http_requests_total{code="500",path="/"} 3
http_requests_total{code="503",path="/api"} 2
# HELP queue_depth Jobs waiting.
# TYPE queue_depth gauge
queue_depth 12.5
# HELP latency_seconds Request latency.
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 90
latency_seconds_bucket{le="+Inf"} 100
latency_seconds_sum 4.2
latency_seconds_count 100
"""


def check(url: str, *thresholds: Threshold, timeout: float = 5.0, **kwargs: object):  # type: ignore[no-untyped-def]
    with make_session() as session:
        return check_metrics(session, url, thresholds=list(thresholds), timeout=timeout, **kwargs)  # type: ignore[arg-type]


def test_thresholds_on_series_picked_by_label_matchers() -> None:
    with metrics_server(lambda: TEXT) as base:
        result = check(
            base + "/metrics",
            Threshold('http_requests_total{code=~"5.."}', max=10),
            Threshold("queue_depth", max=20, min=1),
            Threshold('latency_seconds_count{le!="x"}', min=50),
        )
    assert result.status == "passed", result.summary
    series = result.measured["series"]
    assert series['http_requests_total{code=~"5.."}']["value"] == 5
    assert series['http_requests_total{code=~"5.."}']["samples"] == 2
    assert series["queue_depth"]["value"] == 12.5


def test_a_series_over_its_bound_fails_and_names_it() -> None:
    with metrics_server(lambda: TEXT) as base:
        result = check(
            base + "/metrics",
            Threshold('http_requests_total{code="500",path!~"/api.*"}', max=0),
            baseline={'http_requests_total{code="500",path!~"/api.*"}': 40.0},
        )
    assert result.status == "failed"
    assert 'http_requests_total{code="500",path!~"/api.*"} = 3 > 0' in result.summary
    assert result.measured["series"]['http_requests_total{code="500",path!~"/api.*"}']["before"] == 40.0


def test_no_matching_series_is_inconclusive_not_passed() -> None:
    with metrics_server(lambda: TEXT) as base:
        result = check(base + "/metrics", Threshold('http_requests_total{code="418"}', max=0))
    assert result.status == "inconclusive"
    assert "no sample matches" in result.summary


def test_not_the_exposition_format_fails_clearly() -> None:
    with metrics_server(lambda: "<html>hello</html>\n") as base:
        result = check(base + "/metrics", Threshold("up", min=1))
    assert result.status == "failed"
    assert "not Prometheus text format" in result.summary


def test_http_error_and_refused_connection_fail_without_a_traceback() -> None:
    with metrics_server(lambda: TEXT) as base:
        broken = check(base + "/broken", Threshold("up", min=1))
    assert broken.status == "failed" and "HTTP 500" in broken.summary
    refused = check(base + "/metrics", Threshold("up", min=1))  # the server is gone now
    assert refused.status == "failed" and "connection refused" in refused.summary


def test_a_trickling_body_is_cut_at_the_total_deadline() -> None:
    with metrics_server(lambda: TEXT) as base:
        started = time.monotonic()
        result = check(base + "/drip", Threshold("up", min=1), timeout=1.0)
        took = time.monotonic() - started
    assert result.status == "failed"
    assert "timed out after 1s" in result.summary
    assert took < 10  # did not hang for the 200 s the body would take


@pytest.mark.parametrize(
    ("text", "name", "matchers"),
    [
        ("up", "up", []),
        ('a_b:c{x="1", y=~"a|b"}', "a_b:c", [("x", "=", "1"), ("y", "=~", "a|b")]),
        ('m{q="say \\"hi\\""}', "m", [("q", "=", 'say "hi"')]),
    ],
)
def test_selectors(text: str, name: str, matchers: list[tuple[str, str, str]]) -> None:
    assert parse_selector(text) == (name, matchers)


@pytest.mark.parametrize("text", ["", "9up", 'm{x="1"', "m{x=1}", 'm{x="1" y="2"}', 'm{x=~"("}'])
def test_bad_selectors_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_selector(text)
