"""What the plots show, worked out once for both of their renderers (report/png.py for `compute plot`,
report/svg.py for the pages): pure, from the points of `compute results` and each seed's series.

- A metric against each swept parameter: one mark per point at its value, the final value's mean over
  the seeds and their spread (the standard deviation), the best point marked.
- Learning curves: a metric against `step` per point, the mean over seeds and a band of one standard
  deviation, for the best points (a sweep of 1,000 curves is no picture).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compute_platform.jobs.results import Point, Series, Stat, ranked

CURVES = 8  # learning curves drawn per metric: the best points by it


@dataclass(frozen=True)
class Mark:
    """One point of a sweep on a parameter plot."""

    x: float | str  # the parameter's value (a number, or the text of one that is not)
    y: Stat  # the metric's final value over the point's seeds
    label: str  # the point, for a tooltip or a legend
    best: bool


@dataclass(frozen=True)
class ParamFigure:
    metric: str
    param: str  # a swept parameter, or "args"
    marks: tuple[Mark, ...]
    numeric: bool  # every x is a number: a numeric axis (else one slot per value, in the sweep's order)
    log_x: bool  # positive numbers spanning two decades or more (learning rates, weight decays)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(m.x) for m in self.marks))


@dataclass(frozen=True)
class Curve:
    """A metric against step for one point: the mean over its seeds at each step, and their spread."""

    label: str
    steps: tuple[float, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    best: bool


@dataclass(frozen=True)
class CurveFigure:
    metric: str
    curves: tuple[Curve, ...]
    shown_of: int  # how many points have the metric (only the best CURVES are drawn)


@dataclass(frozen=True)
class MetricFigures:
    """Every figure of one metric."""

    metric: str
    params: tuple[ParamFigure, ...]
    curves: CurveFigure | None


def label(point: Point) -> str:
    """`lr=0.01 wd=0`, or the `args` entry, or the job id."""
    params = _params(point)
    words = ([point.record.args] if point.record.args else []) + [f"{k}={v}" for k, v in params.items()]
    return " ".join(words) or point.record.job_id


def against_params(points: Sequence[Point], metric: str, higher: set[str]) -> list[ParamFigure]:
    """One figure per swept parameter (and `args`, when the sweep has several entries)."""
    with_metric = [p for p in points if metric in p.final]
    if not with_metric:
        return []
    best = ranked(with_metric, metric, higher)[0]
    names = list(dict.fromkeys(k for p in with_metric for k in _params(p)))
    if len({p.record.args for p in with_metric}) > 1:
        names.append("args")
    figures = []
    for name in names:
        marks = tuple(
            Mark(_x(p, name), p.final[metric], label(p), p is best)
            for p in with_metric
            if name == "args" or name in _params(p)
        )
        numeric = all(isinstance(m.x, float) for m in marks)
        xs = [float(m.x) for m in marks] if numeric else []
        log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 100
        figures.append(ParamFigure(metric, name, marks, numeric, log_x))
    return figures


def curves(
    points: Sequence[Point],
    series: Callable[[Point], Sequence[Series]],
    metric: str,
    higher: set[str],
    top: int = CURVES,
) -> CurveFigure | None:
    """`series`: a point's seeds' series, asked for the best points only (reading every file of a large
    sweep for 8 curves would be most of the cost). Values without a `step` are drawn against their order
    (1, 2, ...). None when no point has two values of the metric."""
    with_metric = ranked([p for p in points if metric in p.final], metric, higher)
    drawn: list[Curve] = []
    for point in with_metric:
        if len(drawn) == top:
            break
        curve = _curve(point, series(point), metric, point is with_metric[0])
        if curve is not None:
            drawn.append(curve)
    if not drawn:
        return None
    return CurveFigure(metric, tuple(drawn), len(with_metric))


def _curve(point: Point, seeds: Sequence[Series], metric: str, best: bool) -> Curve | None:
    by_step: dict[float, list[float]] = {}
    for seed in seeds:
        for order, (step, value) in enumerate(seed.get(metric, ()), start=1):
            by_step.setdefault(step if step is not None else float(order), []).append(value)
    if len(by_step) < 2:
        return None
    steps = sorted(by_step)
    stats = [stat for s in steps if (stat := Stat.of(by_step[s]))]
    return Curve(label(point), tuple(steps), tuple(s.mean for s in stats), tuple(s.std for s in stats), best)


def _params(point: Point) -> dict[str, object]:
    try:
        found = json.loads(point.record.sweep) if point.record.sweep else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _x(point: Point, name: str) -> float | str:
    value = point.record.args if name == "args" else _params(point).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return value if isinstance(value, str) else json.dumps(value)


def ticks(low: float, high: float, count: int = 5, whole: bool = False) -> list[float]:
    """Round values for an axis from low to high: 1, 2 or 5 times a power of ten apart (at least 1 for
    an axis of `whole` numbers, as steps are)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0) if whole else step
    first = math.ceil(low / step) * step
    found = []
    value = first
    while value <= high + step * 1e-9:
        found.append(round(value, 12))
        value += step
    return found


def log_ticks(low: float, high: float) -> list[float]:
    """The powers of ten from low to high (a log axis)."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [
        10.0**e
        for e in range(first, last + 1)
        if low <= 10.0**e * (1 + 1e-9) and 10.0**e <= high * (1 + 1e-9)
    ]
