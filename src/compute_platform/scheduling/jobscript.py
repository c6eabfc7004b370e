"""The body shared by Slurm and tmux jobs: run the command once per seed, in order, all of them,
and exit with the last failing code (0 when every seed succeeded)."""

from __future__ import annotations

from compute_platform import shell
from compute_platform.scheduling.sweep import Job


def seed_loop(job: Job, cmd: str, seed_flag: str | None = "--seed") -> list[str]:
    """Shell lines for one job. Each seed runs in a subshell, so a `cd` or an `export` in the user's
    command cannot leak into the next seed; SEED is exported whether or not a flag is appended."""
    lines = ["compute_rc=0"]
    for seed, line in job.commands(cmd, seed_flag):
        if seed is not None:
            lines.append(f"export SEED={shell.quote(seed)}")
        lines.append(f"(\n{line}\n)")
        lines.append('rc=$?; [ "$rc" -eq 0 ] || compute_rc=$rc')
    return lines
