"""The report's pictures (issue 10): the timeline as bars on a time axis and each latency check's
samples before and after, as inline SVG without script or network, escaped, and rendered by
headless Chromium after a real rollback of the demo."""

from __future__ import annotations

import pytest
from deployments import Deployment, read_evidence, run_dir
from report_support import Chromium, Element, parse_html

from rollback_harness.plugins.pictures import latency_pictures, samples_svg, timeline_svg

MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def svgs(dom: Element) -> list[Element]:
    return dom.find_all("svg")


def test_the_timeline_has_one_bar_per_timed_event_and_escapes_every_text() -> None:
    events = [
        {"at": "2026-11-26T10:00:00.000+00:00", "what": "rollback", "status": "done", "duration_s": 4.0},
        {"at": "2026-11-26T10:00:01.000+00:00", "what": MARKUP, "status": "failed", "duration_s": 0.5},
        {"at": "2026-11-26T10:00:03.500+00:00", "what": "wait-ready", "status": "done", "duration_s": None},
        {"at": None, "what": "never started", "status": "not run", "duration_s": None},
    ]

    svg = timeline_svg(events, clean=lambda text: text.replace("alert", "[redacted]"))

    dom = parse_html(svg)
    bars = dom.find_all("rect", class_="bar")
    assert len(bars) == 3
    assert [b.attrs["fill"] for b in bars] == ["#1a7f37", "#cf222e", "#1a7f37"]
    assert float(bars[1].attrs["x"] or 0) > float(bars[0].attrs["x"] or 0)  # later start, further right
    assert "<script" not in svg and "<img" not in svg and "alert" not in svg
    assert "&lt;script&gt;" in svg
    assert timeline_svg([]) == ""


def test_the_samples_picture_has_one_dot_per_sample_and_the_bounds() -> None:
    svg = samples_svg("latency[/<b>]", [400.1, 402.0, 399.5], [10.0, 12.5], {"p95": 250.0, "p50": None})

    dom = parse_html(svg)
    assert len(dom.find_all("circle", class_="sample-before")) == 3
    assert len(dom.find_all("circle", class_="sample-after")) == 2
    assert len(dom.find_all("line", class_="threshold")) == 1
    assert "<b>" not in svg and 'data-check="latency[/&lt;b&gt;]"' in svg
    assert samples_svg("latency[/]", [], []) == ""


def test_only_latency_checks_with_samples_get_a_picture() -> None:
    def check(samples: list[float] | None) -> dict[str, object]:
        measured = {"thresholds_ms": {"p95": 100.0}} | ({} if samples is None else {"samples_ms": samples})
        return {"status": "passed", "summary": "", "measured": measured}

    comparisons = [
        {"check": "version", "before": check([1.0]), "after": check([1.0])},
        {"check": "latency[/a]", "before": check([5.0, 6.0]), "after": None},
        {"check": "latency[/b]", "before": check(None), "after": check(None)},
    ]

    parts = latency_pictures(comparisons)

    assert parts[0] == "<h3>Latency samples</h3>" and len(parts) == 2
    assert 'data-check="latency[/a]"' in parts[1]
    assert latency_pictures(comparisons[2:]) == []


@pytest.mark.integration
def test_the_report_of_a_rollback_shows_both_pictures_in_chromium(pytester: pytest.Pytester, demo: Deployment) -> None:
    chromium = Chromium.find()
    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )
    assert result.ret == 0, result.stdout.str()
    page = run_dir(pytester.path / "reports") / "report.html"
    evidence = read_evidence(pytester.path / "reports")
    (latency,) = [c for c in evidence["comparisons"] if c["check"] == "latency[/]"]
    before, after = latency["before"]["measured"]["samples_ms"], latency["after"]["measured"]["samples_ms"]
    assert before and after

    raw = page.read_text()
    dom = parse_html(chromium.dump_dom(page))

    # One bar per row of the timeline's table (every row here has a time).
    rows = len(dom.by_id("rollback-timeline").find_all("tr")) - 1
    assert rows < len(evidence["timeline"])  # a row per phase, not per test
    for found in (parse_html(raw), dom):  # in the file, and in the page the browser built
        timeline = found.by_id("rollback-timeline-picture")
        assert len(timeline.find_all("rect", class_="bar")) == rows
        (picture,) = found.find_all("svg", class_="rollback-latency-picture")
        assert picture.attrs["data-check"] == "latency[/]"
        assert len(picture.find_all("circle", class_="sample-before")) == len(before)
        assert len(picture.find_all("circle", class_="sample-after")) == len(after)
        assert len(picture.find_all("line", class_="threshold")) == 1  # p95 = 250ms
    for svg in svgs(dom):
        assert not svg.find_all("script") and not svg.find_all("image") and not svg.find_all("a")
