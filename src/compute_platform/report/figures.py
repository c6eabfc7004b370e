"""What the plots show, worked out once for both of their renderers (report/png.py for `compute plot`,
report/svg.py for the pages): pure, from the points of `compute results` and each seed's series.

- A metric against each swept parameter: one mark per point at its value, the final value's mean over
  the seeds and their spread (the standard deviation), the best point marked.
- Learning curves: a metric against `step` per point, the mean over seeds and a band of one standard
  deviation, for the best points (a sweep of 1,000 curves is no picture).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compute_platform.jobs.query import point_text
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
    def categories(self) -> dict[str, int]:
        """Each value that is not a number -> its slot, in the sweep's order."""
        return {c: i for i, c in enumerate(dict.fromkeys(str(m.x) for m in self.marks))}


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
    return point_text(dataclasses.replace(point.record, seeds="")) or point.record.job_id


def against_params(
    points: Sequence[Point], metric: str, rank_by: str | None, higher: set[str]
) -> list[ParamFigure]:
    """One figure per swept parameter (and `args`, when the sweep has several entries); the best point
    by `rank_by` marked (none without it: which way is better is the user's to say)."""
    with_metric = [p for p in points if metric in p.final]
    if not with_metric:
        return []
    best = _best(points, rank_by, higher)
    names = list(dict.fromkeys(k for p in with_metric for k in p.record.point))
    if len({p.record.args for p in with_metric}) > 1:
        names.append("args")
    figures = []
    for name in names:
        marks = tuple(
            Mark(_x(p, name), p.final[metric], label(p), p is best)
            for p in with_metric
            if name == "args" or name in p.record.point
        )
        numeric = all(isinstance(m.x, float) for m in marks)
        xs = [float(m.x) for m in marks] if numeric else []
        log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 100
        figures.append(ParamFigure(metric, name, marks, numeric, log_x))
    return figures


def _best(points: Sequence[Point], rank_by: str | None, higher: set[str]) -> Point | None:
    if not rank_by:
        return None
    first = next(iter(ranked(points, rank_by, higher)), None)
    return first if first is not None and rank_by in first.final else None


def curves(
    points: Sequence[Point],
    series: Callable[[Point], Sequence[Series]],
    metric: str,
    rank_by: str | None,
    higher: set[str],
    top: int = CURVES,
) -> CurveFigure | None:
    """The curves of the best `top` points by `rank_by` (without it: the first ones). `series`: a point's
    seeds' series, asked for those points only, and for at most 3 x `top` (a metric written once per seed,
    a final test score, has no curve: looking through every point of a large sweep for one would read
    every file). None when no point has a curve."""
    with_metric = [p for p in points if metric in p.final]
    order = ranked(with_metric, rank_by, higher) if rank_by else with_metric
    best = _best(points, rank_by, higher)
    drawn: list[Curve] = []
    for point in order[: 3 * top]:
        curve = _curve(point, series(point), metric, point is best)
        if curve is not None:
            drawn.append(curve)
        if len(drawn) == top:
            break
    if not drawn:
        return None
    return CurveFigure(metric, tuple(drawn), len(with_metric))


def _curve(point: Point, seeds: Sequence[Series], metric: str, best: bool) -> Curve | None:
    """The mean and spread at each step every seed (that wrote the metric) has reached: a step only some
    seeds reached would average fewer seeds and draw a false cliff. A seed's values with a step count
    by their step, the last one of a step kept (an attempt after a requeue writes it again); a seed that
    gives no step is counted by order."""
    per_seed: list[dict[float, float]] = []
    for seed in seeds:
        values = seed.get(metric, [])
        stepped = [(step, value) for step, value in values if step is not None]
        found = dict(stepped) if stepped else {float(i): v for i, (_, v) in enumerate(values, start=1)}
        if found:
            per_seed.append(found)
    if not per_seed:
        return None
    steps = sorted(set.intersection(*(set(found) for found in per_seed)))
    if len(steps) < 2:
        return None
    stats = [stat for s in steps if (stat := Stat.of([found[s] for found in per_seed]))]
    return Curve(label(point), tuple(steps), tuple(s.mean for s in stats), tuple(s.std for s in stats), best)


def _x(point: Point, name: str) -> float | str:
    value = point.record.args if name == "args" else point.record.point.get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return value if isinstance(value, str) else json.dumps(value)


def ticks(low: float, high: float, count: int = 5, whole: bool = False) -> list[float]:
    """Round values for an axis from low to high: 1, 2 or 5 times a power of ten apart (at least 1 for
    an axis of `whole` numbers, as steps are). A range too small to tell from its ends (seeds that all
    wrote 0.7, give or take the last bit) is one value."""
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high - low <= 1e-9 * max(abs(low), abs(high), 1e-300):
        return [low]
    raw = (high - low) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(step, 1.0) if whole else step
    first = math.ceil(low / step)
    # by count, not by adding steps: a sum that stops growing would never reach `high`
    found = [(first + k) * step for k in range(int((high - low) / step) + 2)]
    return [float(f"{v:.12g}") for v in found if v <= high + step * 1e-9]


def log_ticks(low: float, high: float) -> list[float]:
    """The powers of ten from low to high (a log axis)."""
    if not (0 < low <= high and math.isfinite(high)):
        return []
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [
        10.0**e
        for e in range(first, last + 1)
        if low <= 10.0**e * (1 + 1e-9) and 10.0**e <= high * (1 + 1e-9)
    ]
