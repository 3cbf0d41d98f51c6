"""Issue 20: the first screen of the HTML report, as an on-call engineer opens it.

The outcome comes first and largest, within the first 1280x800 screen; the decision shows only
when one was asked for; pytest-html's Environment table comes last. Baseline failures read
"measured before: failed" (pytest's xfailed stays in its data, JUnit XML and evidence.json), and
the timeline has one row per runbook step and phase in plain words. Checked in the layout
headless Chromium made of a real harness run's report, and in a real screenshot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from deployments import Deployment, read_evidence, run_dir
from report_support import Chromium, Element, parse_html, png_size, result_rows, table_rows

from rollback_harness.plugins.report_timeline import readable_line, rows

SCREEN = (1280, 800)
OUTCOME = "#rollback-headline"
# Everything the outcome must come before, in the order they appear on the page.
LATER = [
    "#rollback-comparison",
    "#rollback-timeline",
    ".summary__data > h2",  # pytest-html's "Summary": its counts and filters
    "#results-table",
    "#environment-header",
    "#environment",
]


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    return Chromium.find()


def rollback(pytester: pytest.Pytester, demo: Deployment, *extra: str) -> Path:
    """A real rollback of the demo (v1.3.0 -> v1.2.9); the run's folder."""
    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes", *extra)
    )
    assert result.ret == 0, result.stdout.str()
    return run_dir(pytester.path / "reports")


def check_first_screen(layout: dict[str, Any]) -> dict[str, Any]:
    """The outcome first (after the page's title), largest, on the first screen; environment last."""
    # The page flows by the window's width; headless Chromium's viewport is a little shorter than
    # its window, which moves nothing: every top below is where it is in a 1280x800 window.
    assert layout["viewport"][0] == SCREEN[0]
    boxes = layout["boxes"]
    outcome = boxes[OUTCOME]
    assert outcome is not None, "no outcome headline on the page"
    assert 0 <= outcome["top"] and outcome["bottom"] <= SCREEN[1], outcome
    assert boxes["#title"]["bottom"] <= outcome["top"], "the title is a line above the outcome"
    tops = [boxes[selector]["top"] for selector in LATER]
    assert outcome["bottom"] <= tops[0] and tops == sorted(tops), dict(zip(LATER, tops, strict=True))
    # pytest-html's environment comes after its results table, at the very end.
    assert boxes["#results-table"]["bottom"] <= boxes["#environment-header"]["top"]
    others = [h for h in layout["headings"] if h["text"] != outcome["text"]]
    assert others and all(h["fontSize"] < outcome["fontSize"] for h in others), (outcome, others)
    return boxes


def timeline_rows(dom: Element) -> list[list[str]]:
    return table_rows(dom.by_id("rollback-timeline"))[1:]


@pytest.mark.integration
def test_the_report_opens_with_the_outcome_and_ends_with_the_environment(
    pytester: pytest.Pytester, demo: Deployment, chromium: Chromium
) -> None:
    folder = rollback(pytester, demo)
    page = folder / "report.html"

    layout = chromium.layout(page, ["#title", OUTCOME, "#rollback-decision", *LATER])
    boxes = check_first_screen(layout)
    assert "rolled back from v1.3.0 to v1.2.9; verified" in boxes[OUTCOME]["text"]
    # No decision was asked for (no --severity / --data-impact): none is shown.
    assert boxes["#rollback-decision"] is None
    dom = parse_html(chromium.dump_dom(page, window=SCREEN))
    summary = dom.find_all("div", class_="additional-summary prefix")[0].text
    assert "not-assessed" not in summary and "Decision" not in summary

    # A real screenshot of the first screen: the page renders at the window's size.
    png = chromium.screenshot(page, pytester.path / "first-screen.png", window=SCREEN)
    assert png_size(png) == SCREEN


@pytest.mark.integration
def test_a_decision_asked_for_is_shown_below_the_outcome(
    pytester: pytest.Pytester, demo: Deployment, chromium: Chromium
) -> None:
    folder = rollback(
        pytester, demo, "--severity=critical", "--data-impact=none", "--time-to-fix=2h", "--incident-id=INC-7"
    )

    boxes = check_first_screen(
        chromium.layout(folder / "report.html", ["#title", OUTCOME, "#rollback-decision", *LATER])
    )
    decision = boxes["#rollback-decision"]
    assert decision is not None and decision["text"].startswith("Decision: rollback")
    assert boxes[OUTCOME]["bottom"] <= decision["top"] <= boxes["#rollback-comparison"]["top"]


@pytest.mark.integration
def test_baseline_failures_read_measured_before_and_keep_pytests_outcome(
    pytester: pytest.Pytester, demo: Deployment, chromium: Chromium
) -> None:
    folder = rollback(pytester, demo)
    page = folder / "report.html"

    dom = parse_html(chromium.dump_dom(page))
    rows = result_rows(dom)
    baseline = {test_id.rsplit("::", 1)[-1]: cells[0] for test_id, cells in rows.items() if cells[1] == "baseline"}
    assert baseline["baseline-endpoint[/api/orders]"] == "measured before: failed"
    assert baseline["baseline-latency[/]"] == "measured before: failed"
    assert baseline["baseline-version"] == "Passed"
    assert "XFailed" not in {cells[0] for cells in rows.values()}
    filters = " ".join(span.text for span in dom.find_all("span", class_="xfailed"))
    assert "2 measured before: failed" in filters and "Expected failures" not in filters

    # For tools, pytest's outcome is untouched: in pytest-html's data, JUnit XML and evidence.json.
    raw = page.read_text()
    blob = json.loads(raw.split('data-jsonblob="')[1].split('"></div>')[0].replace("&#34;", '"').replace("&amp;", "&"))
    results = {key.rsplit("::", 1)[-1]: [row["result"] for row in rows] for key, rows in blob["tests"].items()}
    assert results["baseline-endpoint[/api/orders]"] == ["XFailed"]
    junit = (folder / "junit.xml").read_text()
    case = junit[junit.index('name="baseline-endpoint[/api/orders]"') :]
    assert '<skipped type="pytest.xfail"' in case[: case.index("</testcase>")]
    outcomes = {
        t["nodeid"].rsplit("::", 1)[-1]: t["outcome"] for t in read_evidence(pytester.path / "reports")["tests"]
    }
    assert outcomes["baseline-endpoint[/api/orders]"] == "xfailed"


@pytest.mark.integration
def test_the_timeline_has_a_row_per_step_and_phase_in_plain_words(
    pytester: pytest.Pytester, demo: Deployment, chromium: Chromium
) -> None:
    folder = rollback(pytester, demo)
    evidence = read_evidence(pytester.path / "reports")

    dom = parse_html(chromium.dump_dom(folder / "report.html"))
    rows = timeline_rows(dom)
    steps = [row[1] for row in rows]
    assert steps == [
        "preflight",
        "baseline",
        "plan",
        "confirmation",
        "rollback",
        "switch-link",
        "restart",
        "wait-ready",
        "outcome",
        "verify",
    ]
    text = dom.by_id("rollback-timeline").text
    assert "rollback.toml::" not in text
    # Details are words, never Python's reprs of lists and dicts.
    assert not re.search(r"\[['{]|\{'|': |=\[|=\{|None\b|True\b|False\b", text), text
    by_step = {row[1]: row for row in rows}
    assert by_step["preflight"][2] == "passed" and by_step["preflight"][4] == "6 passed"
    assert by_step["baseline"][4].startswith("5 passed, 2 measured before: failed")
    assert (
        "baseline-endpoint[/api/orders]: measured before: failed: GET /api/orders answered 500"
        in by_step["baseline"][4]
    )
    assert by_step["verify"][2] == "passed" and by_step["verify"][4] == "7 passed"
    assert by_step["restart"][4].startswith("command: ") and "restart app" in by_step["restart"][4]
    assert "timeout: 30 s" in by_step["wait-ready"][4]
    # The rollback's steps carry their own durations. The rollback runs inside verify's first test
    # (its setup), yet verify's row comes after the outcome (rows are in time order): verify's time
    # starts once the rollback is done.
    journal = {e["what"]: e for e in evidence["timeline"] if e["what"] in ("switch-link", "restart", "wait-ready")}
    assert len(journal) == 3
    for step, event in journal.items():
        assert by_step[step][3] == f"{event['duration_s']:.3f} s"
    substeps = [tr for tr in dom.by_id("rollback-timeline").find_all("tr", class_="substep")]
    assert [tr.find_all("td")[1].text for tr in substeps] == ["switch-link", "restart", "wait-ready"]
    # The picture above the table draws the very same rows.
    picture = dom.by_id("rollback-timeline-picture")
    assert len(picture.find_all("rect", class_="bar")) == len(rows)


# -- the timeline's rows from evidence alone -------------------------------------------------------


def at(seconds: float) -> str:
    return f"2026-11-26T03:00:{seconds:06.3f}+00:00"


def entry(name: str, gate: str, start: float, stop: float, outcome: str = "passed", **more: Any) -> dict[str, Any]:
    return {
        "nodeid": f"rollback.toml::{name}",
        "gate": gate,
        "outcome": outcome,
        "message": "",
        "duration_s": round(stop - start, 3),
        "start": at(start),
        "stop": at(stop),
        **more,
    }


def test_the_rollback_inside_verifys_first_test_is_not_verifys_time() -> None:
    tests = [
        entry("preflight-target-version", "preflight", 1.0, 1.5),
        entry(
            "baseline-endpoint[/]",
            "baseline",
            2.0,
            3.0,
            "xfailed",
            message="baseline measured: failed: GET / answered 500",
            check={"status": "failed"},
        ),
        entry("baseline-version", "baseline", 3.0, 4.0),
        # The rollback (10 s to 40 s) runs in verify-version's setup.
        entry("verify-version", "verify", 9.0, 41.0),
        entry("verify-health", "verify", 41.0, 43.0, "failed", message="GET /health answered 503\nmore lines"),
    ]
    events = [
        {"at": t["start"], "what": t["nodeid"], "status": t["outcome"], "duration_s": 0.0, "detail": {}} for t in tests
    ]
    events += [
        {"at": at(10.0), "what": "rollback", "status": "done", "duration_s": 30.0, "detail": {"steps": ["restart"]}},
        {"at": at(11.0), "what": "restart", "status": "done", "duration_s": 29.0, "detail": {"command": ["a", "b"]}},
        {"at": at(40.0), "what": "outcome", "status": "rolled-back", "duration_s": 30.0, "detail": {"message": "ok"}},
    ]

    found = {row.what: row for row in rows(events, tests)}

    assert list(found) == ["preflight", "baseline", "rollback", "restart", "outcome", "verify"]
    assert [found[s].kind for s in ("rollback", "restart", "verify")] == ["step", "substep", "phase"]
    assert found["verify"].at == at(40.0) and found["verify"].duration_s == 3.0
    assert found["verify"].status == "failed"
    assert found["verify"].detail == ("1 passed, 1 failed", "verify-health: failed: GET /health answered 503")
    assert found["baseline"].status == "measured" and found["baseline"].duration_s == 2.0
    assert found["baseline"].detail == (
        "1 passed, 1 measured before: failed",
        "baseline-endpoint[/]: measured before: failed: GET / answered 500",
    )
    assert found["restart"].duration_s == 29.0 and found["restart"].detail == ("command: a b",)
    assert found["outcome"].duration_s is None  # journaled at the end: the rollback row has its time


def test_details_are_words_not_python_reprs() -> None:
    issues = [{"kind": "destructive", "line": 12, "what": "drop_column('orders', 'note')"}]

    assert readable_line("issues", issues) == "issues: kind: destructive, line: 12, what: drop_column('orders', 'note')"
    assert readable_line("timeout_s", 30.0) == "timeout: 30 s"
    assert readable_line("steps", ["switch-link", "restart"]) == "steps: switch-link, restart"
    assert readable_line("output", "app: stopped\napp: started\n") == "output: app: stopped / app: started"
    assert readable_line("verified", True) == "verified: yes"
    assert readable_line("resumed_from", None) == "" and readable_line("now", {}) == ""


def test_a_phase_names_its_first_twenty_items_that_did_not_pass() -> None:
    tests = [entry(f"verify-endpoint[/{n}]", "verify", n, n + 0.5, "failed", message="answered 500") for n in range(25)]

    (verify,) = rows([], tests)

    assert verify.detail[0] == "25 failed" and verify.detail[1] == "verify-endpoint[/0]: failed: answered 500"
    assert len(verify.detail) == 22 and verify.detail[-1] == "and 5 more: see the results table below"
