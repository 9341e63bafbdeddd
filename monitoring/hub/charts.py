"""Server-side SVG line charts for the site page (no script, no inline style). Each chart is an
image with a title and a description that say what a sighted reader sees (range, latest value);
the page also gives the figures as text. Points are thinned to a bound, so a chatty sensor
cannot make a page heavy."""
from __future__ import annotations

import math

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28
MAX_POINTS = 240


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points, keeping each bucket's extreme values (a spike stays visible)."""
    points = [(t, v) for t, v in points if math.isfinite(t) and math.isfinite(v)]
    if len(points) <= limit:
        return points
    size = math.ceil(len(points) / (limit // 2))
    kept = []
    for start in range(0, len(points), size):
        bucket = points[start:start + size]
        low, high = min(bucket, key=lambda p: p[1]), max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    return kept


def line_svg(chart_id: str, points: list[tuple[float, float]], title: str, description: str,
             start: float, end: float, start_label: str, end_label: str) -> Markup:
    """A line over [start, end] seconds; y from 0 (or the lowest value, if negative) to the
    highest value. ``chart_id`` must be unique on the page (it names the title and description)."""
    points = thin(points)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for _, v in points]
    low = min([0.0, *values])
    high = max([1.0, *values])
    if high - low < 1e-9:
        high = low + 1
    span = max(end - start, 1.0)
    cid = escape(chart_id)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-labelledby="{cid}-title {cid}-desc" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{cid}-title">{escape(title)}</title><desc id="{cid}-desc">{escape(description)}</desc>']
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        label = low + (high - low) * fraction
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="chart-grid"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="chart-axis">{label:.4g}</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" class="chart-axis">{escape(start_label)}</text>'
                 f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" class="chart-axis">'
                 f'{escape(end_label)}</text>')
    coords = []
    for t, v in points:
        x = LEFT + plot_w * min(1.0, max(0.0, (t - start) / span))
        y = TOP + plot_h * (1 - (v - low) / (high - low))
        coords.append(f"{x:.1f},{y:.1f}")
    if len(coords) == 1:
        x, y = coords[0].split(",")
        parts.append(f'<circle cx="{x}" cy="{y}" r="3" class="chart-line-dot"/>')
    elif coords:
        parts.append(f'<polyline points="{" ".join(coords)}" class="chart-line"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
