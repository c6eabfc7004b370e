"""Where a task's metrics come from besides COMPUTE_METRICS (its `metrics:`), as its scripts carry it
(`# compute: metrics {...}`): the renderers write it, `compute results` reads it back."""

from __future__ import annotations

import json
from dataclasses import dataclass

METRICS_MARK = "# compute: metrics "


@dataclass(frozen=True)
class MetricSources:
    """Where a task's metrics come from besides COMPUTE_METRICS (its `metrics:`): patterns of its
    output (name -> a regular expression whose first group is the value) and a file it writes anyway;
    and how its points are ranked, so that every view of the results ranks them alike without flags."""

    from_log: tuple[tuple[str, str], ...] = ()
    file: str = ""  # `{seed}` is the seed; relative to the job's directory
    sort: str = ""  # the metric that picks the best point, unless the command line says
    higher: tuple[str, ...] = ()  # the metrics for which higher is better

    def to_json(self) -> str:
        data: dict[str, object] = {"from_log": dict(self.from_log), "file": self.file}
        if self.sort:
            data["sort"] = self.sort
        if self.higher:
            data["max"] = list(self.higher)
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def in_script(cls, script: str) -> MetricSources | None:
        """The sources an archived script carries (None: only COMPUTE_METRICS)."""
        start = script.find("\n" + METRICS_MARK)
        if start < 0:
            return None
        try:
            data = json.loads(script[start + 1 + len(METRICS_MARK) :].split("\n", 1)[0])
            return cls(
                tuple((str(k), str(v)) for k, v in data.get("from_log", {}).items()),
                str(data.get("file", "")),
                str(data.get("sort", "")),
                tuple(str(name) for name in data.get("max", [])),
            )
        except (ValueError, AttributeError):
            return None
