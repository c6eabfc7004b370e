"""`compute jobs JOB`: one job in full. Its row (what ran, where, with which code), its state, what
accounting says it used ("asked 64G, used 3.1G") and the final values of its metrics: one round trip
to its host, the one `compute results` makes (jobs/results.py), none once it has ended and been fetched."""

from __future__ import annotations

import dataclasses

from compute_platform.jobs import results
from compute_platform.jobs.query import FINAL, Jobs, Row, point_text, state_text, time_text
from compute_platform.ledger import JobRecord
from compute_platform.scheduling import slurm


def describe(view: Jobs, record: JobRecord) -> tuple[list[str], list[str]]:
    """The lines that tell of one job, and the problems met while asking its host."""
    rows, problems = results.gather(view, [record])
    said = results.sources_of(view, record)  # the task's `metrics: {max}`: which best is the greatest
    higher = set(said.higher) if said else set()
    return lines(rows[0], results.point_of(view, rows[0], higher)), problems


def lines(row: Row, point: results.Point) -> list[str]:
    """Pure: label, then value; a value of several lines is indented under its first."""
    r = row.record
    fields: list[tuple[str, str]] = [
        ("job", f"{r.job_id} on {r.host} ({r.scheduler}), task '{r.task}', name {r.job_name}"),
        ("state", state_text(row)),
        ("submitted", time_text(r.submitted_at) + f", run {r.run_id}"),
        ("point", point_text(dataclasses.replace(r, seeds="")) or "-"),
        ("seeds", r.seeds.replace(",", " ") or "-"),
        ("config", r.config or "-"),
        ("code", _code(r)),
        ("command", r.command or "-"),
        ("script", f"archive/{r.script}" if r.script else "-"),
        ("output", r.log_out or "-"),
        ("errors", r.log_err or "-"),
    ]
    if r.replaces:
        fields.append(("replaces", r.replaces))
    if row.replaced_by:
        fields.append(("replaced by", f"{row.replaced_by} (compute jobs {row.replaced_by})"))
    if r.scheduler == "slurm":
        fields.append(("used", _used(row, point.usage)))
    fields.append(("metrics", _metrics(point)))
    width = max(len(label) for label, _ in fields)
    out = []
    for label, value in fields:
        first, *rest = value.splitlines() or [""]
        out.append(f"{label:<{width}}  {first}")
        out += [f"{'':<{width}}  {line}" for line in rest]
    return out


def _code(r: JobRecord) -> str:
    parts = [f"snapshot {r.code} (compute code {r.job_id})"] if r.code else []
    if r.git_commit:
        parts.append(f"git {r.git_commit[:12]}" + (" with uncommitted changes" if r.git_dirty == "1" else ""))
    return ", ".join(parts) or "-"


def _used(row: Row, usage: slurm.Usage | None) -> str:
    if usage is not None:
        return results.usage_line(usage)
    if row.state.state not in FINAL:
        return "known once it has ended (sacct)"
    return "accounting (sacct) has not told yet"


def _metrics(point: results.Point) -> str:
    shown = results.names([point], None)
    if not shown:
        return "none written (COMPUTE_METRICS, metrics: in the task)"
    found = [
        f"{name}: {point.final[name].text()} (best {results.number(point.best[name].mean)})" for name in shown
    ]
    if point.missing and point.seeds != ("",):
        found.append(f"no value from seed(s) {' '.join(point.missing)}")
    return "\n".join(found)
