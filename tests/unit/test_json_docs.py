"""docs/json.md cannot drift from the code: the documented `compute jobs --json` and
`compute jobs --summary --json` examples have exactly the keys the code prints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from compute_platform.jobs import query, views
from compute_platform.jobs.query import Row
from compute_platform.ledger import JobRecord
from compute_platform.scheduling.backend import JobState

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"


def documented(heading: str) -> Any:
    """The JSON block under `## <heading>`, its `// comments` removed."""
    text = DOC.read_text()
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, f"no JSON example under '{heading}' in {DOC}"
    return json.loads(re.sub(r"\s+// .*", "", block.group(1)))


def shape(value: Any) -> Any:
    """Keys all the way down (lists by their first item), types of the leaves."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return (
        "null-or-int"
        if value is None or (isinstance(value, int) and not isinstance(value, bool))
        else type(value).__name__
    )


ROW = Row(
    JobRecord(
        "2026-11-24T23:33:16+00:00", "/p/b.yaml", "train", "pando", "slurm", "3217", "train", seeds="0,1"
    ),
    JobState("COMPLETED", 0),
)


def test_jobs_json_is_documented() -> None:
    assert shape(json.loads(query.as_json([ROW]))) == shape(documented("`compute jobs --json`"))


def test_jobs_summary_json_is_documented() -> None:
    printed = json.loads(views.summary_json(views.counts([ROW])))
    assert shape(printed) == shape(documented("`compute jobs --summary --json`"))


def test_results_json_is_documented() -> None:
    import dataclasses

    from compute_platform.jobs import results

    record = dataclasses.replace(ROW.record, args="--model small", sweep='{"lr": 0.01}', seeds="0,1,2")
    series: list[results.Series] = [{"loss": [(None, 0.31)]}, {"loss": [(None, 0.29)]}, {}]
    point = results.aggregate(record, "COMPLETED", [results.summarize(s) for s in series], set())
    printed = json.loads(results.as_json([point], "loss", set()))
    assert shape(printed) == shape(documented("`compute results --json`"))
