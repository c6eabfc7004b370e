"""The plots as inline SVG, for the report and `compute ui`: pure text, no dependency, so a page
needs neither matplotlib nor the network. The same figures as `compute plot`'s PNGs (report/figures.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from compute_platform.jobs.results import number
from compute_platform.report.figures import CurveFigure, ParamFigure, log_ticks, ticks

WIDTH, HEIGHT = 440, 290
LEFT, RIGHT, TOP, BOTTOM = 62, 16, 30, 46
# a qualitative palette (colour-blind safe, Okabe and Ito), the best point's always the first
PALETTE = ("#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f", "#f0e442")
MARK = "#0072b2"
BEST = "#d55e00"


@dataclass(frozen=True)
class Scale:
    """Data to pixels along one axis."""

    low: float
    high: float
    start: float  # pixel of low
    end: float  # pixel of high
    log: bool = False
    whole: bool = False  # ticks on whole numbers only (steps)

    def __call__(self, value: float) -> float:
        if self.log:
            low, high, value = math.log10(self.low), math.log10(self.high), math.log10(value)
        else:
            low, high = self.low, self.high
        share = (value - low) / (high - low) if high > low else 0.5
        return round(self.start + share * (self.end - self.start), 1)

    def ticks(self) -> list[float]:
        return log_ticks(self.low, self.high) if self.log else ticks(self.low, self.high, whole=self.whole)


def _padded(values: Sequence[float], log: bool = False) -> tuple[float, float]:
    low, high = min(values), max(values)
    if log:
        return low / 1.5, high * 1.5
    same = high - low <= 1e-9 * max(abs(low), abs(high))  # equal but for the last bits: a range around them
    pad = (abs(high) * 0.1 or 1.0) if same else (high - low) * 0.08
    return low - pad, high + pad


def _frame(title: str, x_title: str, y_title: str, x: Scale | None, y: Scale) -> list[str]:
    """The figure's box, title, y grid and ticks (and x ticks of a numeric axis)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{WIDTH / 2}" y="18" class="title" text-anchor="middle">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" class="box"/>',
    ]
    for value in y.ticks():
        py = y(value)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py}" y2="{py}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{py + 4}" text-anchor="end">{number(value)}</text>')
    if x is not None:
        for value in x.ticks():
            px = x(value)
            parts.append(
                f'<text x="{px}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{number(value)}</text>'
            )
    parts.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}" text-anchor="middle" class="axis">{escape(x_title)}</text>'
    )
    parts.append(
        f'<text transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" text-anchor="middle" '
        f'class="axis">{escape(y_title)}</text>'
    )
    return parts


def against_param(figure: ParamFigure) -> str:
    """Each point's final value (mean, a bar of one standard deviation) at its parameter's value."""
    ys = [v for m in figure.marks for v in (m.y.mean - m.y.std, m.y.mean + m.y.std)]
    y = Scale(*_padded(ys), HEIGHT - BOTTOM, TOP)
    plot_left, plot_right = LEFT + 14, WIDTH - RIGHT - 14
    categories = figure.categories
    x: Scale | None = None
    if figure.numeric:
        x = Scale(
            *_padded([float(m.x) for m in figure.marks], figure.log_x), plot_left, plot_right, figure.log_x
        )
    title = f"{figure.metric} by {figure.param}"
    parts = _frame(title, figure.param + (" (log)" if figure.log_x else ""), figure.metric, x, y)
    slot = (plot_right - plot_left) / max(len(categories), 1)
    if x is None:
        every = math.ceil(len(categories) / 16)  # past 16 labels, every n-th: the others would overlap
        for name, i in categories.items():
            if i % every == 0:
                px = round(plot_left + slot * (i + 0.5), 1)
                parts.append(
                    f'<text x="{px}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{escape(_short(name))}</text>'
                )
    for mark in sorted(figure.marks, key=lambda m: m.best):  # the best drawn last, on top
        px = (
            x(float(mark.x))
            if x is not None
            else round(plot_left + slot * (categories[str(mark.x)] + 0.5), 1)
        )
        colour = BEST if mark.best else MARK
        top, bottom, mid = y(mark.y.mean + mark.y.std), y(mark.y.mean - mark.y.std), y(mark.y.mean)
        tip = f"{mark.label}: {mark.y.text()} (n={mark.y.n})" + (" (best)" if mark.best else "")
        parts.append(f'<g class="mark{" best" if mark.best else ""}"><title>{escape(tip)}</title>')
        if mark.y.std > 0:
            parts.append(f'<line x1="{px}" x2="{px}" y1="{top}" y2="{bottom}" stroke="{colour}"/>')
        parts.append(f'<circle cx="{px}" cy="{mid}" r="{5 if mark.best else 3.5}" fill="{colour}"/></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def learning_curves(figure: CurveFigure) -> str:
    """Each curve's mean over seeds against step, with a band of one standard deviation."""
    steps = [s for c in figure.curves for s in c.steps]
    values = [v for c in figure.curves for m, s in zip(c.mean, c.std, strict=True) for v in (m - s, m + s)]
    x = Scale(min(steps), max(steps), LEFT, WIDTH - RIGHT, whole=all(s == int(s) for s in steps))
    y = Scale(*_padded(values), HEIGHT - BOTTOM, TOP)
    shown = (
        f" (best {len(figure.curves)} of {figure.shown_of})" if figure.shown_of > len(figure.curves) else ""
    )
    parts = _frame(f"{figure.metric} by step{shown}", "step", figure.metric, x, y)
    for i, curve in reversed(list(enumerate(figure.curves))):  # the best drawn last, on top
        colour = PALETTE[i % len(PALETTE)]
        upper = [f"{x(s)},{y(m + d)}" for s, m, d in zip(curve.steps, curve.mean, curve.std, strict=True)]
        lower = [f"{x(s)},{y(m - d)}" for s, m, d in zip(curve.steps, curve.mean, curve.std, strict=True)]
        line = " ".join(f"{x(s)},{y(m)}" for s, m in zip(curve.steps, curve.mean, strict=True))
        parts.append(f'<g class="curve{" best" if curve.best else ""}"><title>{escape(curve.label)}</title>')
        if any(curve.std):
            parts.append(
                f'<polygon points="{" ".join(upper + lower[::-1])}" fill="{colour}" opacity="0.18"/>'
            )
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.6"/></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def legend(figure: CurveFigure) -> str:
    """The curves' colours and points, as HTML (a legend inside a small SVG has no room)."""
    items = [
        f'<li><span class="swatch" style="background:{PALETTE[i % len(PALETTE)]}"></span>{escape(c.label)}'
        + (" <b>best</b>" if c.best else "")
        + "</li>"
        for i, c in enumerate(figure.curves)
    ]
    return f'<ul class="legend">{"".join(items)}</ul>'


def _short(text: str, size: int = 14) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
