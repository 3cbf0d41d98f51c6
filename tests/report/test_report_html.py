"""The HTML report after a real rollback: self-contained, with gates and before/after evidence.

pytest-html builds its results table in the browser from a JSON blob, so the rows are checked in
the DOM that headless Chromium produced, not only in the file.
"""

from __future__ import annotations

import json
import re

import pytest
from deployments import Deployment, read_evidence, run_dir
from report_support import Chromium, Element, parse_html, result_rows, table_rows

pytestmark = pytest.mark.integration

# Where a page pulls in something from outside itself.
ASSET_ATTRIBUTES = {
    "script": "src",
    "link": "href",
    "img": "src",
    "source": "src",
    "video": "src",
    "iframe": "src",
    "embed": "src",
    "object": "data",
    "audio": "src",
}


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    return Chromium.find()


def external_assets(dom: Element) -> list[str]:
    """Assets the page would load from a file or the network (data: URIs and empty src are inline)."""
    found = []
    for element in dom.iter():
        name = ASSET_ATTRIBUTES.get(element.tag)
        value = element.attrs.get(name) if name else None
        if value and not value.startswith("data:"):
            found.append(f"<{element.tag} {name}={value!r}>")
    for style in dom.find_all("style"):
        found += [f"css {m}" for m in re.findall(r"@import[^;]*|url\((?!['\"]?data:)[^)]*\)", style.text)]
    return found


def check_rendered_report(dom: Element, evidence: dict[str, object]) -> dict[str, list[str]]:
    """What both runs (in process and with -n 2) must show; returns the results table rows."""
    assert external_assets(dom) == []
    rows = result_rows(dom)
    tests = evidence["tests"]
    assert isinstance(tests, list)
    assert len(rows) == len(tests), sorted(rows)
    header = [th.text.strip() for th in dom.by_id("results-table-head").find_all("th")]
    assert header[:5] == ["Result", "Gate", "Test", "Measured", "Before (baseline)"]
    gates = [cells[1] for cells in rows.values()]
    assert {"preflight", "baseline", "verify"} <= set(gates)
    assert gates.count("verify") == 7 and gates.count("baseline") == 7 and gates.count("preflight") == 6

    def row(name: str) -> list[str]:
        # Under xdist's loadgroup the ids end in "@<group>".
        return next(cells for test_id, cells in rows.items() if re.search(rf"::{re.escape(name)}(@[\w-]+)?$", test_id))

    orders = row("verify-endpoint[/api/orders]")
    assert orders[0] == "Passed" and orders[3].startswith("passed: GET /api/orders answered 200")
    assert orders[4] == "failed: GET /api/orders answered 500, expected 200"
    latency = row("verify-latency[/]")
    # The baseline stops sampling the slow v1.3.0 once its p95 fails beyond doubt (a few of 20 samples).
    assert latency[3].startswith("passed: ") and re.fullmatch(
        r"failed: p95 \d+ ms > 250 ms: (\d+) of \1 samples over 250 ms, more than 5% at 95% confidence "
        r"\(stopped after \1 of 20 samples: the failure was beyond doubt\)",
        latency[4],
    )
    assert row("baseline-endpoint[/api/orders]")[3].startswith("failed: GET /api/orders answered 500")

    comparison = {r[0]: r for r in table_rows(dom.by_id("rollback-comparison"))}
    assert comparison["Check"] == ["Check", "Before (baseline)", "After (verify)"]
    assert comparison["endpoint[/api/orders]"][1].startswith("failed: GET /api/orders answered 500")
    assert comparison["endpoint[/api/orders]"][2].startswith("passed: GET /api/orders answered 200")
    assert comparison["latency[/]"][1].startswith("failed: p95")
    assert comparison["latency[/]"][2].startswith("passed: ")
    assert comparison["version"][1:] == [
        "passed: live version v1.3.0 on all 59 answers (rules out 1 wrong answer in 20 at 95% confidence)",
        "passed: live version v1.2.9 as expected on all 59 answers (rules out 1 wrong answer in 20 at 95% confidence)",
    ]
    assert comparison["replicas"][1:] == [
        "passed: every serving process runs v1.3.0: 1 of 1",
        "passed: every serving process runs v1.2.9: 1 of 1",
    ]

    steps = {r[1]: r[2] for r in table_rows(dom.by_id("rollback-timeline"))[1:]}
    assert {steps.get(s) for s in ("switch-link", "restart", "wait-ready", "rollback")} == {"done"}
    return rows


def test_report_after_a_rollback(pytester: pytest.Pytester, demo: Deployment, chromium: Chromium) -> None:
    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    page = folder / "report.html"
    raw = page.read_text()
    # Self-contained: styles and scripts are inline, nothing is linked.
    assert "<style" in raw and "<script>" in raw
    assert not re.search(r"<link\b|<script[^>]*\bsrc=", raw), "report.html links an external file"
    assert not (folder / "assets").exists()
    raw_dom = parse_html(raw)
    assert external_assets(raw_dom) == []
    evidence = read_evidence(pytester.path / "reports")

    dom = parse_html(chromium.dump_dom(page))
    check_rendered_report(dom, evidence)
    summary = dom.find_all("div", class_="additional-summary prefix")[0].text
    assert "rolled back from v1.3.0 to v1.2.9; verified" in summary
    plan = [li.text for li in dom.find_all("li")]
    assert any("releases/v1.2.9" in step for step in plan), plan


def test_report_with_xdist(pytester: pytest.Pytester, demo: Deployment, chromium: Chromium) -> None:
    result = pytester.runpytest_subprocess(
        *demo.harness_args(pytester.path / "reports", "-n", "2", "-v", "--rollback-to", "v1.2.9", "--rollback-yes")
    )

    assert result.ret == 0, result.stdout.str()
    assert demo.restarts() == 1
    # The runbook is a sequence: every gate on one worker, or the baseline races the rollback.
    workers = re.findall(r"^\[(gw\d+)\].*rollback\.toml::", result.stdout.str(), re.MULTILINE)
    assert len(workers) == 20 and len(set(workers)) == 1, workers
    page = run_dir(pytester.path / "reports") / "report.html"
    assert page.is_file()
    dom = parse_html(chromium.dump_dom(page))
    check_rendered_report(dom, read_evidence(pytester.path / "reports"))


def test_a_collection_error_still_gives_a_report(
    pytester: pytest.Pytester, demo: Deployment, chromium: Chromium
) -> None:
    """pytest-html shows a failed collection as a row; the Gate/Measured columns must cope."""
    pytester.makepyfile(test_broken="import a_module_that_does_not_exist\n")

    result = pytester.runpytest(
        *demo.harness_args(pytester.path / "reports", "--gate", "verify", "--expect-version", "v1.3.0")
    )

    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str(), result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    page = run_dir(pytester.path / "reports") / "report.html"
    rows = result_rows(parse_html(chromium.dump_dom(page)))
    broken = [cells for test_id, cells in rows.items() if "test_broken.py" in test_id]
    assert broken and broken[0][0] == "Error", rows
    evidence = json.loads((page.parent / "evidence.json").read_text())
    assert evidence["collection_errors"] == ["test_broken.py"]
    assert evidence["headline"] == "demo: collection failed (test_broken.py): nothing was run"
