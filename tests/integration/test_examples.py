"""The README's first command: the quickstart runs as-is on localhost and its sweep completes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from tests.support.cli import compute, environment
from tests.support.waiting import poll_until

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_runs_as_is_and_its_sweep_completes(tmp_path: Path) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {"HOME": str(tmp_path / "home"), "TMUX_TMPDIR": str(tmp_path)}
    (tmp_path / "home").mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return compute(*args, cwd=tmp_path, env=env, timeout=60, entry="shim")

    def states() -> list[str]:
        return [job["state"] for job in json.loads(run("jobs", "--json").stdout)["jobs"]]

    try:
        proc = run("examples/quickstart.yaml")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "hello from compute on" in proc.stdout
        done = poll_until(states, lambda now: all(s == "COMPLETED" for s in now), 30, "the sweep", 0.2)
        assert done == ["COMPLETED"] * 4
        log = run("logs", "quick.3").stdout
        lines = log.splitlines()
        assert lines[0] == "CMD python3 examples/train.py --seed=$seed --lr=0.01 --layers=4"
        assert lines[1].startswith("lr=0.01 layers=4 seed=0 score=")
        assert "seed=1" in lines[2]
    finally:
        subprocess.run(["tmux", "kill-server"], env=environment(env), capture_output=True, timeout=10)
