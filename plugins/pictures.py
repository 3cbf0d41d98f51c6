"""Small inline SVG pictures for the HTML report: the timeline as bars on a time axis, and each
latency check's samples before and after the rollback. No script, no network, no fonts: plain SVG
elements, every text cleaned by the caller's redactor and escaped here."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from typing import Any

WIDTH = 760
LABEL_WIDTH = 280
ROW = 16
AXIS = 28
MAX_ROWS = 300  # a timeline longer than this is drawn up to here; the table below has every row
MAX_LABEL = 44
COLOURS = {
    "done": "#1a7f37",
    "passed": "#1a7f37",
    "failed": "#cf222e",
    "error": "#cf222e",
    "interrupted": "#cf222e",
    "started, never finished": "#bc4c00",
    "measured": "#0969da",  # a baseline that measured failures: evidence, not a failed step
    "rolled-back": "#1a7f37",
}
GREY = "#8c959f"
SAMPLE_ROWS = (("before", "before (baseline)", "#9a6700"), ("after", "after (verify)", "#0969da"))

Clean = Callable[[str], str]


def _text(value: object, clean: Clean) -> str:
    return escape(clean(str(value)), quote=True)


def _label(value: object, clean: Clean) -> str:
    text = clean(str(value))
    return escape(text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "\u2026", quote=True)


def _seconds(value: float) -> str:
    return f"{value:.3g} s" if value < 10 else f"{value:.0f} s"


def _tick_seconds(value: float) -> str:
    return f"{value:.6g} s"


def _parse(at: object) -> datetime | None:
    if not isinstance(at, str):
        return None
    try:
        return datetime.fromisoformat(at)
    except ValueError:
        return None


def _ticks(span: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) from 0 up to ``span``."""
    rough = span / count
    power = 10 ** math.floor(math.log10(rough))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return [i * step for i in range(int(span / step + 1e-9) + 1)]


def timeline_svg(events: Sequence[dict[str, Any]], clean: Clean = str) -> str:
    """One bar per timed step or phase, from its start for its duration, on one time axis; "" when none."""
    timed = [(start, event) for event in events if (start := _parse(event.get("at"))) is not None][:MAX_ROWS]
    if not timed:
        return ""
    origin = min(start for start, _ in timed)
    spans = [((start - origin).total_seconds(), float(event.get("duration_s") or 0.0), event) for start, event in timed]
    total = max(max(offset + length for offset, length, _ in spans), 0.001)
    chart = WIDTH - LABEL_WIDTH - 20
    scale = chart / total
    height = len(spans) * ROW + AXIS
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="rollback-timeline-picture" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>Timeline: {len(spans)} steps and phases over {_seconds(total)}</title>",
    ]
    for row, (offset, length, event) in enumerate(spans):
        y = row * ROW
        status = str(event.get("status", ""))
        colour = COLOURS.get(status, GREY)
        x = LABEL_WIDTH + offset * scale
        width = max(length * scale, 1.5)
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 12}" text-anchor="end">{_label(event.get("what"), clean)}</text>'
        )
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{ROW - 5}" fill="{colour}">'
            f"<title>{_text(event.get('what'), clean)}: {_text(status, clean)}, {_seconds(length)} "
            f"from +{_seconds(offset)}</title></rect>"
        )
    parts.extend(_axis(len(spans) * ROW, LABEL_WIDTH, scale, total, _ticks(total), _tick_seconds))
    parts.append("</svg>")
    return "".join(parts)


def _axis(
    y: int, left: float, scale: float, span: float, ticks: list[float], label: Callable[[float], str]
) -> list[str]:
    right = left + span * scale
    parts = [f'<line x1="{left}" y1="{y + 2}" x2="{right:.1f}" y2="{y + 2}" stroke="#57606a"/>']
    for tick in ticks:
        x = left + tick * scale
        parts.append(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{y + 6}" stroke="#57606a"/>')
        parts.append(f'<text x="{x:.1f}" y="{y + 18}" text-anchor="middle">{escape(label(tick))}</text>')
    return parts


def samples_svg(
    name: str,
    before: Sequence[float],
    after: Sequence[float],
    thresholds_ms: dict[str, float | None] | None = None,
    clean: Clean = str,
) -> str:
    """Each latency sample a dot on one millisecond axis, a row before and a row after; "" when none."""
    rows = {"before": [float(v) for v in before], "after": [float(v) for v in after]}
    limits = {label: float(v) for label, v in (thresholds_ms or {}).items() if isinstance(v, (int, float))}
    highest = max([*rows["before"], *rows["after"], *limits.values(), 0.0])
    if not rows["before"] and not rows["after"]:
        return ""
    highest = max(highest * 1.05, 1.0)
    left, band = 130, 34
    chart = WIDTH - left - 30
    scale = chart / highest
    height = 2 * band + AXIS + 6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rollback-latency-picture" data-check="{_text(name, clean)}" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" font-family="sans-serif" '
        'font-size="11">',
        f"<title>{_text(name, clean)}: {len(rows['before'])} samples before, {len(rows['after'])} after (ms)</title>",
    ]
    for index, (key, title, colour) in enumerate(SAMPLE_ROWS):
        top = index * band
        parts.append(f'<text x="{left - 8}" y="{top + band / 2 + 4:.0f}" text-anchor="end">{title}</text>')
        for n, value in enumerate(rows[key]):
            jitter = ((n * 7919) % 23) / 22 * (band - 12)  # deterministic spread, so equal values stay visible
            parts.append(
                f'<circle class="sample-{key}" cx="{left + value * scale:.1f}" cy="{top + 6 + jitter:.1f}" r="2.5" '
                f'fill="{colour}" fill-opacity="0.6"><title>{value:.1f} ms</title></circle>'
            )
    for label, limit in sorted(limits.items()):
        x = left + limit * scale
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{2 * band}" stroke="#cf222e" '
            f'stroke-dasharray="4 3"><title>{escape(label)} bound {limit:.1f} ms</title></line>'
        )
        parts.append(f'<text x="{x + 3:.1f}" y="10" fill="#cf222e">{escape(label)}</text>')
    parts.extend(_axis(2 * band, left, scale, highest, _ticks(highest), lambda ms: f"{ms:.6g} ms"))
    parts.append("</svg>")
    return "".join(parts)


def latency_pictures(comparisons: Sequence[dict[str, Any]], clean: Clean = str) -> list[str]:
    """A heading and one picture per latency check with samples; [] when there is none."""
    pictures = []
    for row in comparisons:
        before, after = _samples(row.get("before")), _samples(row.get("after"))
        if not str(row.get("check", "")).startswith("latency[") or not (before or after):
            continue
        thresholds = None
        for check in (row.get("after"), row.get("before")):
            if isinstance(check, dict) and isinstance(check.get("measured"), dict):
                thresholds = check["measured"].get("thresholds_ms")
                break
        pictures.append(samples_svg(str(row["check"]), before, after, thresholds, clean))
    return ["<h3>Latency samples</h3>", *pictures] if pictures else []


def _measured(check: object) -> bool:
    return isinstance(check, dict) and isinstance(check.get("measured"), dict)


def _samples(check: object) -> list[float]:
    if not _measured(check):
        return []
    assert isinstance(check, dict)
    values = check["measured"].get("samples_ms")
    return [float(v) for v in values if isinstance(v, (int, float))] if isinstance(values, list) else []
