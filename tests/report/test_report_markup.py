"""RELIABILITY 28: markup that came from the target is shown as text in the HTML report, never run.

The live service answers a version that is an XSS payload, and an endpoint path carries markup;
the report is rendered in headless Chromium, so pytest-html's own script (which builds the results
table with innerHTML) has run before the DOM is inspected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployments import Deployment, make_deployment, read_evidence, run_dir
from report_support import Chromium, Element, parse_html, result_rows, table_rows

from demo import deployment

pytestmark = pytest.mark.integration

PAYLOAD = """<img src=x onerror="document.title='pwned'"><script>document.title='pwned'</script>"""
MARKUP_PATH = "/api/orders?q=<b>bold</b>"


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    return Chromium.find()


@pytest.fixture
def markup_demo(tmp_path: Path) -> Iterator[Deployment]:
    """The demo with v1.3.0 live, answering PAYLOAD as its version, and an endpoint path with markup."""
    demo = make_deployment(tmp_path / "deploy")
    release = demo.layout.releases_dir / "v1.3.0" / "release.json"
    data = json.loads(release.read_text())
    release.write_text(json.dumps({**data, "version": PAYLOAD}))
    config = demo.config()
    config["endpoints"].append({"path": MARKUP_PATH})
    demo.write_config(config)
    deployment.start(demo.layout)
    try:
        yield demo
    finally:
        deployment.stop(demo.layout)


def assert_nothing_injected(dom: Element) -> None:
    """No element, attribute or title that the payloads would create if they ran as HTML."""
    titles = [t.text for t in dom.find_all("title")]
    assert titles and all("pwned" not in t for t in titles), titles
    assert not dom.find_all("img", src="x"), "the <img src=x> payload became an element"
    assert not [e for e in dom.iter() if "onerror" in e.attrs], "an onerror handler reached the DOM"
    scripts = [s.text for s in dom.find_all("script")]
    assert not [s for s in scripts if "pwned" in s], "the <script> payload became an element"
    assert not [b for b in dom.find_all("b") if b.text == "bold"], "the <b> in the path became an element"


def test_the_browser_check_sees_injected_markup(tmp_path: Path, chromium: Chromium) -> None:
    """The check below could fail: on a page that puts the payload in with innerHTML, it does."""
    page = tmp_path / "unsafe.html"
    # "<\/" keeps the payload's </script> from closing the page's own script element.
    payload = json.dumps(PAYLOAD + "<b>bold</b>").replace("</", "<\\/")
    page.write_text(
        "<html><head><title>report</title></head><body><div id=cell></div><script>"
        f"document.getElementById('cell').innerHTML = {payload};"
        "</script></body></html>"
    )
    dom = parse_html(chromium.dump_dom(page))
    with pytest.raises(AssertionError, match=r"pwned|img|onerror"):
        assert_nothing_injected(dom)
    assert [t.text for t in dom.find_all("title")] == ["pwned"]


def test_markup_from_the_target_is_text_in_the_report(
    pytester: pytest.Pytester, markup_demo: Deployment, chromium: Chromium
) -> None:
    result = pytester.runpytest(
        *markup_demo.harness_args(pytester.path / "reports", "--gate", "verify", "--expect-version", "v1.3.0")
    )

    assert result.ret == 13, result.stdout.str()
    folder = run_dir(pytester.path / "reports")
    evidence = read_evidence(pytester.path / "reports")
    # JSON is data: the evidence keeps what the service said, byte for byte.
    version = next(c for c in evidence["comparisons"] if c["check"] == "version")
    assert version["after"]["measured"]["version"] == PAYLOAD
    assert f"endpoint[{MARKUP_PATH}]" in {c["check"] for c in evidence["comparisons"]}

    raw = (folder / "report.html").read_text()
    assert PAYLOAD not in raw and "<b>bold</b>" not in raw

    dom = parse_html(chromium.dump_dom(folder / "report.html"))
    assert_nothing_injected(dom)
    assert dom.find_all("title")[0].text.startswith("Rollback evidence: demo")

    # Shown as text: in the results table that pytest-html's script built...
    rows = result_rows(dom)
    version_row = next(cells for test_id, cells in rows.items() if test_id.endswith("::verify-version"))
    assert f"failed: live version {PAYLOAD}, expected v1.3.0" in version_row
    markup_row = next(cells for test_id, cells in rows.items() if test_id.endswith(f"::verify-endpoint[{MARKUP_PATH}]"))
    assert any(cell.startswith(f"failed: GET {MARKUP_PATH} answered 500") for cell in markup_row), markup_row
    logs = [log.text for log in dom.find_all("div", class_="log")]
    assert any(PAYLOAD in log for log in logs), "the failure message lost the payload text"
    # ...in the before/after table of the summary...
    comparison = {row[0]: row for row in table_rows(dom.by_id("rollback-comparison"))}
    assert comparison["version"][2] == f"failed: live version {PAYLOAD}, expected v1.3.0"
    assert f"endpoint[{MARKUP_PATH}]" in comparison
    # ...and in the timeline.
    timeline = dom.by_id("rollback-timeline").text
    assert PAYLOAD in timeline and f"verify-endpoint[{MARKUP_PATH}]" in timeline
