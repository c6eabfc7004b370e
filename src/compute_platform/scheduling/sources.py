"""Where a task's metrics come from besides COMPUTE_METRICS (its `metrics:`), as its scripts carry it
(`# compute: metrics {...}`): the renderers write it, `compute results` reads it back."""

from __future__ import annotations

import json
from dataclasses import dataclass

METRICS_MARK = "# compute: metrics "


@dataclass(frozen=True)
class MetricSources:
    """Where a task's metrics come from besides COMPUTE_METRICS (its `metrics:`): patterns of its
    output (name -> a regular expression whose first group is the value) and a file it writes anyway."""

    from_log: tuple[tuple[str, str], ...] = ()
    file: str = ""  # `{seed}` is the seed; relative to the job's directory

    def to_json(self) -> str:
        return json.dumps(
            {"from_log": dict(self.from_log), "file": self.file}, separators=(",", ":"), sort_keys=True
        )

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
            )
        except (ValueError, AttributeError):
            return None
