"""Figures out of timings: medians, ratios, the targets' verdicts, the printed table, the plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suite.scenarios import COMPUTE, FLOOR, Group, Target


@dataclass
class Timing:
    """The timed runs of one contender (seconds, already scaled when extrapolated)."""

    name: str
    role: str
    runs: list[float] = field(default_factory=list)
    timed_out: float | None = None  # the time limit, when a run hit it (then `runs` may be empty)
    peak_rss_mb: float | None = None
    note: str = ""
    counts: dict[str, list[float]] = field(default_factory=dict)  # the Counter's figures, per run

    @property
    def median(self) -> float:
        if self.timed_out is not None:
            return self.timed_out
        return statistics.median(self.runs)

    @property
    def low(self) -> float:
        return min(self.runs) if self.runs else self.median

    @property
    def high(self) -> float:
        return max(self.runs) if self.runs else self.median

    def shown(self) -> str:
        prefix = "> " if self.timed_out is not None else ""
        return f"{prefix}{self.median:.3f}"


@dataclass
class Result:
    group: Group
    timings: list[Timing]

    def role(self, role: str) -> Timing | None:
        return next((t for t in self.timings if t.role == role), None)

    def named(self, name: str) -> Timing | None:
        return next((t for t in self.timings if t.name == name), None)


def verdict(target: Target, result: Result, others: dict[str, Result]) -> tuple[str, float | None, bool]:
    """(what was measured, the figure, whether it meets the target)."""
    mine = result.role(COMPUTE)
    if mine is None:
        return "compute did not run", None, False
    if target.kind == "floor":
        floor = result.role(FLOOR)
        if floor is None:
            return "no floor", None, False
        ratio = mine.median / floor.median
        return f"{ratio:.2f}x the floor", ratio, ratio <= target.limit
    if target.kind == "faster":
        peer = result.named(target.who)
        if peer is None:
            return f"{target.who} did not run", None, False
        ratio = peer.median / mine.median
        return f"{ratio:.1f}x faster than {target.who}", ratio, ratio >= target.limit
    if target.kind == "scaling":
        base = others.get(target.who)
        base_mine = base.role(COMPUTE) if base else None
        if base_mine is None:
            return f"scenario {target.who} did not run", None, False
        ratio = mine.median / base_mine.median
        return f"{ratio:.2f}x the time of {target.who}", ratio, ratio <= target.limit
    if target.kind == "round trips":
        base = result.named(target.who)
        rtt = result.group.rtt
        if base is None or not rtt:
            return f"{target.who} did not run", None, False
        trips = (mine.median - base.median) / rtt
        return f"{trips:.1f} round trips beyond {target.who}", trips, trips <= target.limit
    return f"{mine.median:.3f} s", mine.median, mine.median < target.limit


def table(results: list[Result]) -> str:
    """The text table: one block per comparison, then the targets with their verdicts."""
    by_key = {r.group.key: r for r in results}
    out: list[str] = []
    for result in results:
        mine = result.role(COMPUTE)
        floor = result.role(FLOOR)
        out.append(f"\n{result.group.title}")
        out.append(f"  {'tool':<32} {'median s':>9} {'min–max s':>15} {'x floor':>8} {'compute is':>12}")
        for t in result.timings:
            span = f"{t.low:.3f}–{t.high:.3f}"
            vs_floor = f"{t.median / floor.median:.2f}x" if floor else ""
            faster = ""
            if mine is not None and t is not mine:
                faster = (
                    f"{t.median / mine.median:.1f}x faster"
                    if t.median >= mine.median
                    else (f"{mine.median / t.median:.1f}x slower")
                )
            mem = f"  {t.peak_rss_mb:.0f} MB" if t.peak_rss_mb is not None else ""
            label = f"{t.name} ({t.role})" if t.role != "peer" else t.name
            note = f"  [{t.note}]" if t.note else ""
            trips = round_trips(t, result.group.rtt)
            out.append(
                f"  {label:<32} {t.shown():>9} {span:>15} {vs_floor:>8} {faster:>12}{trips}{mem}{note}"
            )
        for target in result.group.targets:
            measured, _, ok = verdict(target, result, by_key)
            out.append(f"  target {target.describe():<34} {measured:<36} {'MET' if ok else 'MISSED'}")
        if result.group.key == "F" and "A" in by_key:
            out.append(
                "  memory per extra host (peak of F - peak of A) / 24: "
                + per_host_memory(by_key["A"], result)
            )
    return "\n".join(out)


def round_trips(t: Timing, rtt: float | None) -> str:
    """G: the time in round trips of the hosts' link, and the medians of what the relays counted."""
    if not rtt:
        return ""
    counted = "".join(f", {statistics.median(v):g} {k}" for k, v in t.counts.items() if v)
    return f"  {t.median / rtt:5.1f} RTT{counted}"


def per_host_memory(small: Result, large: Result) -> str:
    """MB of peak memory each host beyond the 8 of A adds, per tool (32 hosts in F)."""
    parts = []
    for t in large.timings:
        other = small.named(t.name)
        if t.peak_rss_mb is not None and other is not None and other.peak_rss_mb is not None:
            parts.append(f"{t.name} {(t.peak_rss_mb - other.peak_rss_mb) / 24:.2f} MB")
    return ", ".join(parts)


def as_json(results: list[Result]) -> list[dict[str, Any]]:
    by_key = {r.group.key: r for r in results}
    rows = []
    for result in results:
        rows.append(
            {
                "key": result.group.key,
                "title": result.group.title,
                "rtt": result.group.rtt,
                "tools": [
                    {
                        "name": t.name,
                        "role": t.role,
                        "runs": [round(x, 4) for x in t.runs],
                        "median": round(t.median, 4),
                        "min": round(t.low, 4),
                        "max": round(t.high, 4),
                        "timed_out": t.timed_out,
                        "peak_rss_mb": t.peak_rss_mb,
                        "note": t.note,
                        **({"counts": t.counts} if t.counts else {}),
                    }
                    for t in result.timings
                ],
                "targets": [
                    dict(
                        zip(
                            ("target", "measured", "value", "met"),
                            (target.describe(), *verdict(target, result, by_key)),
                            strict=False,
                        ),
                        kind=target.kind,
                        limit=target.limit,
                        who=target.who,
                    )
                    for target in result.group.targets
                ],
            }
        )
    return rows


def from_json(rows: list[dict[str, Any]]) -> list[Result]:
    """Results back from the "scenarios" of a saved document (to plot or print it again)."""
    results = []
    for row in rows:
        targets = [Target(t["kind"], t["limit"], t["who"]) for t in row["targets"] if "kind" in t]
        timings = [
            Timing(
                t["name"],
                t["role"],
                t["runs"],
                t["timed_out"],
                t["peak_rss_mb"],
                t["note"],
                t.get("counts", {}),
            )
            for t in row["tools"]
        ]
        group = Group(row["key"], row["title"], [], targets, rtt=row.get("rtt"))
        results.append(Result(group, timings))
    return results


COLORS = {COMPUTE: "#1f77b4", FLOOR: "#7f7f7f", "peer": "#ff7f0e"}


def plot(results: list[Result], path: Path, caption: str) -> None:
    """One horizontal bar chart per comparison: medians with min–max whiskers, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    heights = [len(r.timings) * 0.32 + 0.6 for r in results]
    fig, axes = plt.subplots(
        len(results), 1, figsize=(8, sum(heights) + 0.6), gridspec_kw={"height_ratios": heights}
    )
    axes = [axes] if len(results) == 1 else list(axes)
    for ax, result in zip(axes, results, strict=False):
        timings = list(reversed(result.timings))
        medians = [t.median for t in timings]
        lows = [t.median - t.low for t in timings]
        highs = [t.high - t.median for t in timings]
        ys = range(len(timings))
        ax.barh(
            ys, medians, xerr=[lows, highs], color=[COLORS[t.role] for t in timings], height=0.6, capsize=2
        )
        ax.set_yticks(list(ys), [f"{t.name} ({t.note})" if t.note else t.name for t in timings], fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        ax.set_title(result.group.title, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
        for y, t in zip(ys, timings, strict=False):
            ax.text(t.high * 1.05, y, f"{t.shown()} s", va="center", fontsize=7)
        ax.set_xlim(min(t.low for t in timings) * 0.7, max(t.high for t in timings) * 3)
    axes[-1].set_xlabel("wall time, seconds (log scale): median, min–max", fontsize=8)
    fig.suptitle(caption, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
