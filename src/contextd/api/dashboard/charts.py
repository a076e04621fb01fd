"""Inline SVG plots rendered on the server: line charts over time buckets and bar charts.

Small on purpose: a time axis, three grid lines, one polyline per series (broken where a
bucket has no data), a legend below the plot that wraps instead of overlapping, and a
``<title>`` per point so hovering shows the value. Charts scale to their container's width
(``viewBox``), so they fit a phone as well as a desktop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#2563eb", "#d97706", "#dc2626", "#059669", "#7c3aed")
Fmt = Callable[[float], str]


LEGEND_CHAR_PX = 6.2  # average glyph width of the 10 px legend font


def _legend(names: Sequence[str], *, left: float, top: float, width: float
            ) -> tuple[list[tuple[str, float, float]], float]:
    """(name, x, y) per legend entry, wrapped to ``width``; and the height it takes."""
    placed, x, y = [], left, top
    for name in names:
        need = 14 + len(name) * LEGEND_CHAR_PX + 14
        if x > left and x + need > left + width:
            x, y = left, y + 14
        placed.append((name, x, y))
        x += need
    return placed, (y - top + 14) if names else 0.0


def _scale(values: Sequence[float | None], y_max: float | None) -> float:
    present = [v for v in values if v is not None]
    top = y_max if y_max is not None else max(present, default=0.0)
    return top if top > 0 else 1.0


def line_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float | None]],
               *, fmt: Fmt, y_max: float | None = None, reference: float | None = None,
               reference_label: str = "", width: int = 520, height: int = 170) -> Markup:
    """One or more series over shared x ``labels`` (e.g. bucket starts)."""
    left, right, top, bottom = 70, 14, 22, 24
    legend, legend_h = _legend(list(series), left=left, top=height, width=width - left - right)
    plot_w, plot_h = width - left - right, height - top - bottom
    height += int(legend_h) + 4
    every = [v for values in series.values() for v in values]
    if reference is not None:
        every.append(reference)
    top_value = _scale(every, y_max)
    count = max(len(labels), 1)

    def x(i: int) -> float:
        return left + (plot_w * i / (count - 1) if count > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(v, top_value) / top_value

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}">',
             f'<text x="8" y="14" class="chart-title">{escape(title)}</text>']
    for fraction in (0.0, 0.5, 1.0):
        gy = top + plot_h - plot_h * fraction
        parts.append(f'<line x1="{left}" y1="{gy:.1f}" x2="{width - right}" y2="{gy:.1f}" '
                     'class="grid"/>')
        parts.append(f'<text x="{left - 4}" y="{gy + 4:.1f}" class="axis" text-anchor="end">'
                     f'{escape(fmt(top_value * fraction))}</text>')
    if labels:
        axis_y = top + plot_h + 14
        parts.append(f'<text x="{left}" y="{axis_y}" class="axis">'
                     f'{escape(labels[0])}</text>')
        if len(labels) > 1:
            parts.append(f'<text x="{width - right}" y="{axis_y}" class="axis" '
                         f'text-anchor="end">{escape(labels[-1])}</text>')
    if reference is not None:
        ry = y(reference)
        parts.append(f'<line x1="{left}" y1="{ry:.1f}" x2="{width - right}" y2="{ry:.1f}" '
                     'class="reference"/>')
        parts.append(f'<text x="{width - right}" y="{ry - 3:.1f}" class="axis" '
                     f'text-anchor="end">{escape(reference_label)}</text>')
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((x(i), y(value)))
            parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2.5" '
                         f'fill="{color}"><title>{escape(name)} {escape(labels[i])}: '
                         f'{escape(fmt(value))}</title></circle>')
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
                parts.append(f'<polyline points="{points}" fill="none" stroke="{color}" '
                             'stroke-width="1.5"/>')
        _, lx, ly = legend[index]
        parts.append(f'<rect x="{lx:.1f}" y="{ly + 2:.1f}" width="10" height="3" '
                     f'fill="{color}"/>')
        parts.append(f'<text x="{lx + 14:.1f}" y="{ly + 7:.1f}" class="legend">'
                     f'{escape(name)}</text>')
    if not any(v is not None for v in every):
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" class="axis" '
                     'text-anchor="middle">no data in this period</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(title: str, bars: Sequence[tuple[str, float, bool]], *, fmt: Fmt,
              reference: float | None = None, reference_label: str = "",
              width: int = 520) -> Markup:
    """Horizontal bars ``(label, value, ok)``; ``ok`` False draws the bar as a breach."""
    row_h, left, right, top = 22, 150, 70, 22
    height = top + row_h * max(len(bars), 1) + 8
    plot_w = width - left - right
    top_value = _scale([v for _, v, _ in bars] + ([reference] if reference else []), None)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
             f'preserveAspectRatio="xMinYMin meet" aria-label="{escape(title)}">',
             f'<text x="4" y="14" class="chart-title">{escape(title)}</text>']
    for i, (label, value, ok) in enumerate(bars):
        by = top + i * row_h
        bw = plot_w * min(value, top_value) / top_value
        parts.append(f'<text x="{left - 6}" y="{by + 14}" class="axis" text-anchor="end">'
                     f'{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{by + 3}" width="{bw:.1f}" height="14" '
                     f'class="{"bar-ok" if ok else "bar-bad"}"><title>{escape(label)}: '
                     f'{escape(fmt(value))}</title></rect>')
        parts.append(f'<text x="{left + bw + 4:.1f}" y="{by + 14}" class="axis">'
                     f'{escape(fmt(value))}</text>')
    if reference is not None:
        rx = left + plot_w * min(reference, top_value) / top_value
        parts.append(f'<line x1="{rx:.1f}" y1="{top}" x2="{rx:.1f}" y2="{height - 6}" '
                     'class="reference"/>')
        parts.append(f'<text x="{rx:.1f}" y="{top - 2}" class="axis" text-anchor="middle">'
                     f'{escape(reference_label)}</text>')
    if not bars:
        parts.append(f'<text x="{left}" y="{top + 14}" class="axis">no connectors yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
