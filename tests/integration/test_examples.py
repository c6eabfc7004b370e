"""The README's first command: the quickstart runs as-is on localhost and its sweep completes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_runs_as_is_and_its_sweep_completes(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {**os.environ, "HOME": str(tmp_path / "home"), "TMUX_TMPDIR": str(tmp_path)}
    (tmp_path / "home").mkdir()

    def compute(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "compute.py"), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        run = compute("examples/quickstart.yaml")
        assert run.returncode == 0, run.stdout + run.stderr
        assert "hello from compute on" in run.stdout
        deadline = time.monotonic() + 30
        while True:
            jobs = json.loads(compute("jobs", "--json").stdout)
            states = [job["state"] for job in jobs["jobs"]]
            if all(s == "COMPLETED" for s in states) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert states == ["COMPLETED"] * 4
        log = compute("logs", "quick.3").stdout
        lines = log.splitlines()
        assert lines[0] == "CMD python3 examples/train.py --seed=$seed --lr=0.01 --layers=4"
        assert lines[1].startswith("lr=0.01 layers=4 seed=0 score=")
        assert "seed=1" in lines[2]
    finally:
        subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, timeout=10)
