"""Server-side SVG charts: no script, no inline style (the CSP forbids both), readable in print.
Each chart has a <title>/<desc> text alternative; the page shows the same numbers in a table."""
from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 20, 56


def trend_svg(points: list[tuple[str, float | None, int]], title: str, description: str,
              axis_label: str) -> Markup:
    """Bars of a percentage (0–100) per period with the answer count written above each bar.
    ``points``: (period label, value or None, count)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title chart-desc" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="chart-title">{escape(title)}</title><desc id="chart-desc">{escape(description)}</desc>']
    for pct in (0, 25, 50, 75, 100):
        y = TOP + plot_h * (1 - pct / 100)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="chart-grid"/>'
                     f'<text x="{LEFT - 8}" y="{y + 5:.1f}" text-anchor="end" class="chart-axis">{pct}</text>')
    parts.append(f'<text x="14" y="{TOP + plot_h / 2:.1f}" class="chart-axis" text-anchor="middle" '
                 f'transform="rotate(-90 14 {TOP + plot_h / 2:.1f})">{escape(axis_label)}</text>')
    if points:
        slot = plot_w / len(points)
        bar = max(2.0, min(48.0, slot * 0.7))
        every = max(1, len(points) // 12)  # keep period labels from overlapping
        for i, (label, value, count) in enumerate(points):
            x = LEFT + slot * i + (slot - bar) / 2
            if value is not None:
                h = plot_h * value / 100
                parts.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'class="chart-bar"/>')
                if len(points) <= 31:
                    parts.append(f'<text x="{x + bar / 2:.1f}" y="{TOP + plot_h - h - 4:.1f}" text-anchor="middle" '
                                 f'class="chart-value">{value:.0f}</text>')
            if i % every == 0:
                lx, ly = x + bar / 2, HEIGHT - BOTTOM + 16
                parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="end" class="chart-axis" '
                             f'transform="rotate(-40 {lx:.1f} {ly:.1f})">{escape(label)}</text>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}" class="chart-axis-line"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def distribution_svg(counts: list[int], labels: list[str], title: str, description: str) -> Markup:
    """Horizontal bars: how many answers each face got."""
    rows = len(labels)
    height = 20 + rows * 40
    total = max(counts[:rows]) if rows and max(counts[:rows]) else 1
    left, width = 190, 760
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="dist-title dist-desc" '
             f'xmlns="http://www.w3.org/2000/svg">',
             f'<title id="dist-title">{escape(title)}</title><desc id="dist-desc">{escape(description)}</desc>']
    for i, label in enumerate(labels):
        y = 10 + i * 40
        w = (width - left - 80) * counts[i] / total
        parts.append(f'<text x="{left - 10}" y="{y + 22}" text-anchor="end" class="chart-axis">{escape(label)}</text>'
                     f'<rect x="{left}" y="{y + 4}" width="{w:.1f}" height="26" class="chart-bar"/>'
                     f'<text x="{left + w + 8:.1f}" y="{y + 22}" class="chart-value">{counts[i]}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
