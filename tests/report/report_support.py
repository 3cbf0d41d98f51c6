"""Helpers for the evidence-artifact tests: headless Chromium, a small DOM, harness runs, secrets.

Not a conftest: tests/conftest.py is imported as ``conftest`` by the other test folders, and a
second conftest.py without a package would replace it in ``sys.modules``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

CHROMIUM_PATHS = ("/usr/bin/chromium",)
INSTALL_HINT = "install Debian's Chromium: apt-get install -y chromium (CI does this in .ci/run)"
RENDER_TIMEOUT_S = 60.0


# -- the browser ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chromium:
    """Debian's headless Chromium: renders a local page and returns the DOM after its scripts ran."""

    binary: Path

    @classmethod
    def find(cls) -> Chromium:
        """The installed Chromium; fails the test (never skips) when there is none."""
        for candidate in CHROMIUM_PATHS:
            if os.access(candidate, os.X_OK):
                return cls(Path(candidate))
        found = shutil.which("chromium")
        if found:
            return cls(Path(found))
        pytest.fail(f"Chromium is needed to render the HTML report and was not found: {INSTALL_HINT}", pytrace=False)

    def dump_dom(self, page: Path, *, timeout: float = RENDER_TIMEOUT_S, window: tuple[int, int] | None = None) -> str:
        """The serialised DOM of ``page`` once its scripts ran (``--dump-dom``), laid out in
        ``window`` (width, height) when given."""
        size = [f"--window-size={window[0]},{window[1]}"] if window else []
        out = self._run(page, [*size, "--dump-dom"], timeout)
        if "<html" not in out:
            pytest.fail(f"chromium gave no DOM for {page}", pytrace=False)
        return out

    def screenshot(
        self, page: Path, png: Path, *, window: tuple[int, int] = (1280, 800), timeout: float = RENDER_TIMEOUT_S
    ) -> Path:
        """A PNG of the first ``window`` of ``page`` as the browser painted it (``--screenshot``)."""
        self._run(page, [f"--window-size={window[0]},{window[1]}", f"--screenshot={png}"], timeout)
        if not png.is_file():
            pytest.fail(f"chromium wrote no screenshot of {page} to {png}", pytrace=False)
        return png

    def layout(self, page: Path, selectors: list[str], *, window: tuple[int, int] = (1280, 800)) -> dict[str, Any]:
        """Where the first element of each selector was laid out, and every visible heading.

        A copy of ``page`` gets a script that, once the page (and pytest-html's own script) has
        loaded, writes the boxes (getBoundingClientRect) and computed font sizes into the DOM;
        ``--dump-dom`` brings them back. Boxes are null for selectors that matched nothing.
        """
        probe = page.with_name(f"{page.stem}-layout-probe.html")
        script = LAYOUT_PROBE % json.dumps(selectors)
        html = page.read_text(encoding="utf-8")
        assert "</body>" in html, f"{page} has no </body> to put the layout probe before"
        probe.write_text(html.replace("</body>", script + "</body>", 1), encoding="utf-8")
        try:
            dom = parse_html(self.dump_dom(probe, window=window))
        finally:
            probe.unlink()
        found = dom.find_all("pre", id="layout-probe")
        assert len(found) == 1, "the layout probe did not run: no measurements in the rendered page"
        measured: dict[str, Any] = json.loads(found[0].text)
        return measured

    def _run(self, page: Path, args: list[str], timeout: float) -> str:
        """Runs headless Chromium on ``page`` with ``args``; its stdout. Fails the test on a
        timeout or a non-zero exit."""
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            argv = [
                str(self.binary),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=5000",
                *args,
                page.resolve().as_uri(),
            ]
            # Its own process group: on a timeout the renderer and GPU children go too.
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                pytest.fail(f"chromium did not render {page} within {timeout:g}s", pytrace=False)
        if proc.returncode != 0:
            tail = "\n".join(err.splitlines()[-15:])
            pytest.fail(f"chromium exited {proc.returncode} rendering {page}:\n{tail}", pytrace=False)
        return out


# Runs after the page's own scripts ("load"); writes its measurements as JSON into <pre id=layout-probe>.
LAYOUT_PROBE = """<script>
window.addEventListener('load', function () {
  function box(element) {
    var r = element.getBoundingClientRect();
    return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height,
            fontSize: parseFloat(getComputedStyle(element).fontSize), text: element.textContent.trim().slice(0, 80)};
  }
  var boxes = {};
  %s.forEach(function (selector) {
    var element = document.querySelector(selector);
    boxes[selector] = element ? box(element) : null;
  });
  var headings = Array.prototype.filter.call(document.querySelectorAll('h1, h2, h3, h4'), function (h) {
    return h.getClientRects().length > 0;
  }).map(box);
  var out = document.createElement('pre');
  out.id = 'layout-probe';
  out.textContent = JSON.stringify({viewport: [window.innerWidth, window.innerHeight], boxes: boxes,
                                    headings: headings});
  document.body.appendChild(out);
});
</script>"""


def png_size(png: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk), checking that it is a PNG."""
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{png} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# -- a small DOM -------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass(eq=False)
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Element]:
        """Elements with this tag (any if None) whose attributes equal ``attrs`` (``class_`` for class)."""
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = self.find_all(id=element_id)
        assert len(found) == 1, f"expected one element with id {element_id!r}, found {len(found)}"
        return found[0]

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(text: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def result_rows(dom: Element) -> dict[str, list[str]]:
    """The results table pytest-html's script rendered: test id -> cell texts of its row."""
    rows = {}
    for row in dom.by_id("results-table").find_all("tr", class_="collapsible"):
        cells = [c for c in row.children if isinstance(c, Element) and c.tag == "td"]
        test_id = next(c.text for c in cells if c.attrs.get("class") == "col-testId")
        rows[test_id] = [c.text.strip() for c in cells]
    return rows


def table_rows(table: Element) -> list[list[str]]:
    """Cell texts of each row of a plain table, header row included."""
    return [[c.text.strip() for c in tr.find_all("td") + tr.find_all("th")] for tr in table.find_all("tr")]


# -- secrets -----------------------------------------------------------------------------------


def secret_forms(secret: str) -> dict[str, str]:
    """Every form of ``secret`` that must not appear: plain, URL-encoded, and base64 at any offset.

    Base64 of a longer text that contains the secret holds the encoding of the secret's whole
    3-byte groups, which depends on where the secret starts: one needle per alignment.
    """
    forms = {"plain": secret, "url-encoded": quote(secret, safe=""), "form-encoded": quote_plus(secret)}
    raw = secret.encode()
    for start in range(3):
        chunk = raw[start:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        forms[f"base64@{start}"] = base64.b64encode(chunk).decode()
        forms[f"urlsafe-base64@{start}"] = base64.urlsafe_b64encode(chunk).decode()
    return forms


def leaks(secret: str, texts: dict[str, str]) -> list[str]:
    """``where: form`` for each form of ``secret`` found in ``texts`` (name -> content)."""
    return [
        f"{where}: {form}"
        for where, content in texts.items()
        for form, needle in secret_forms(secret).items()
        if needle in content
    ]
