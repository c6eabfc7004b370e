"""The body shared by Slurm and tmux jobs: run the command once per seed, in order, all of them,
and exit with the last failing code (0 when every seed succeeded)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from compute_platform.hosts import shell
from compute_platform.scheduling.sources import MetricSources

if TYPE_CHECKING:  # sweep.py holds pydantic models: `compute jobs` reaches here without them
    from compute_platform.scheduling.sweep import Job


def seed_loop(
    job: Job,
    cmd: str,
    seed_flag: str | None = None,
    launch: Callable[[str], str] | None = None,
    sources: MetricSources | None = None,
) -> list[str]:
    """Shell lines for one job. The job's output starts with `CMD <command line>`, as the original
    tool's jobs did (its users grep logs for it). Each seed runs in a subshell, so a `cd` or an
    `export` in the user's command cannot leak into the next seed; each sets `seed` (what the
    original's `for seed in ...` loop set: commands read `$seed`) and exports SEED, and
    COMPUTE_METRICS (from `$compute_metrics`, which the scheduler's script sets). `launch` starts
    each seed's command line (scheduling/launchers.py)."""
    runs = job.commands(cmd, seed_flag)
    lines = [f"printf '%s\\n' {shell.quote('CMD ' + runs[0][1])}", "compute_rc=0"]
    for position, (seed, line) in enumerate(runs):
        if seed is not None:
            lines.append(f'seed={shell.quote(seed)}; export SEED="$seed"')
        # where the program may append JSON lines of metrics (JobPaths.metrics: by the seed's position)
        suffix = f".{position}.jsonl" if seed is not None else ".jsonl"
        lines.append(f'export COMPUTE_METRICS="$compute_metrics"{suffix}')
        lines += _sources_before(sources)
        lines.append(f"(\n{launch(line) if launch else line}\n)")
        lines.append('rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc')
        if sources and sources.from_log:  # where this seed's output ends (the next one's starts)
            lines.append('stat -c %s -- "$compute_output" > "$COMPUTE_METRICS.to" 2>/dev/null')
    return lines


def _sources_before(sources: MetricSources | None) -> list[str]:
    """Before a seed runs: where its output starts (from_log), a link to the file it will write."""
    if sources is None:
        return []
    lines = []
    if sources.from_log:
        lines.append(
            'stat -c %s -- "$compute_output" > "$COMPUTE_METRICS.from" 2>/dev/null || echo 0 > "$COMPUTE_METRICS.from"'
        )
    if sources.file:
        lines += [
            f"compute_file={shell.quote(sources.file)}; compute_file=${{compute_file//\\{{seed\\}}/$SEED}}",
            'case "$compute_file" in /*) ;; *) compute_file="$PWD/$compute_file" ;; esac',
            'ln -sfn -- "$compute_file" "$COMPUTE_METRICS.file"',
        ]
    return lines
