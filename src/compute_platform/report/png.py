"""`compute plot`'s PNGs, drawn by matplotlib: the only module that imports it (an optional extra,
`pip install 'compute[plot]'`), and only when the command runs. The figures are report/figures.py's."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compute_platform.errors import InputError
from compute_platform.report.figures import CurveFigure, MetricFigures, ParamFigure
from compute_platform.report.svg import BEST, MARK, PALETTE


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "compute plot draws with matplotlib, which is not installed: pip install 'compute[plot]' "
            "(or pip install matplotlib); `compute report` needs no matplotlib"
        ) from None
    return plt


def check() -> None:
    """Fail now, with the way out, when matplotlib is missing."""
    _pyplot()


def file_name(*words: str) -> str:
    """`val_loss-by-lr.png`: the words made safe for a file name. A word that had to change gets a short
    hash of itself, so that `val/loss` and `val loss` do not write the same file."""
    safe = []
    for word in words:
        kept = re.sub(r"[^A-Za-z0-9_.=+]+", "_", word).strip("_.") or "_"
        if kept != word:
            kept += "~" + hashlib.sha256(word.encode()).hexdigest()[:6]
        safe.append(kept)
    return "-".join(safe) + ".png"


def write(drawn: Sequence[MetricFigures], folder: Path) -> list[Path]:
    """One PNG per figure in `folder`: `<metric>-by-<param>.png`, `<metric>-curves.png`; the paths."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in drawn:
        for figure in metric.params:
            path = folder / file_name(figure.metric, "by", figure.param)
            written.append(_save(plt, _against_param(plt, figure), path))
        if metric.curves is not None:
            path = folder / file_name(metric.metric, "curves")
            written.append(_save(plt, _curves(plt, metric.curves), path))
    return written


def _save(plt: Any, fig: Any, path: Path) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)  # a reader never sees half a picture
    return path


def _against_param(plt: Any, figure: ParamFigure) -> Any:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    categories = figure.categories
    for mark in sorted(figure.marks, key=lambda m: m.best):
        x = float(mark.x) if figure.numeric else categories[str(mark.x)]
        ax.errorbar(
            [x],
            [mark.y.mean],
            yerr=[mark.y.std] if mark.y.std else None,
            fmt="o",
            color=BEST if mark.best else MARK,
            markersize=7 if mark.best else 5,
            capsize=3,
            label="best" if mark.best else None,
        )
    if figure.log_x:
        ax.set_xscale("log")
    if not figure.numeric:
        ax.set_xticks(range(len(categories)), list(categories), rotation=30 if len(categories) > 4 else 0)
    ax.set_xlabel(figure.param)
    ax.set_ylabel(figure.metric)
    ax.set_title(f"{figure.metric} by {figure.param} (mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def _curves(plt: Any, figure: CurveFigure) -> Any:
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    for i, curve in enumerate(figure.curves):
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(
            curve.steps,
            curve.mean,
            color=colour,
            linewidth=1.6,
            label=curve.label + (" (best)" if curve.best else ""),
        )
        low = [m - s for m, s in zip(curve.mean, curve.std, strict=True)]
        high = [m + s for m, s in zip(curve.mean, curve.std, strict=True)]
        ax.fill_between(curve.steps, low, high, color=colour, alpha=0.18, linewidth=0)
    shown = (
        f", best {len(figure.curves)} of {figure.shown_of}" if figure.shown_of > len(figure.curves) else ""
    )
    ax.set_title(f"{figure.metric} by step (mean ± std over seeds{shown})", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(figure.metric)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    return fig
