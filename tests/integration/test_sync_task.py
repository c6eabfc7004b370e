"""The `sync` task through the CLI on the test bed: error logs holding the lines W&B prints at the end
of an offline run, read on an SSH host and on the Slurm cluster, and a stand-in `wandb` first on the
host's PATH (through its `init`) that records the argv it receives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compute_platform.ledger import Ledger
from tests.integration.envtools import chown_tree, user_workspace
from tests.support.cli import compute
from tests.support.project import CONFIGS, bed_hosts, write_book, write_hosts
from tests.support.waiting import wait_jobs

# records one JSON line per call: its arguments and its working directory
FAKE_WANDB = """\
#!/usr/bin/env python3
import json, os, sys
with open({calls!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
print("Syncing:", len(sys.argv) - 2, "runs")
"""


@dataclass
class Bed:
    testbed: Any
    work: Path  # the test user's workspace: logs, the stand-in wandb, its record
    folder: Path  # the project (hosts.yaml, book.yaml, archive/)

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def run_dir(self, n: int, tag: str = "a1b2c3d4") -> str:
        return f"{self.testbed.home}/project/wandb/offline-run-20230512_1015{n:02d}-{tag}"

    def hosts(self, wandb: bool = True) -> None:
        hosts = bed_hosts(self.testbed)
        init = [f"export PATH={self.work}/bin:$PATH"] if wandb else []
        for alias in ("h1", self.testbed.slurm_alias):
            hosts[alias] = {**hosts[alias], "save_path": str(self.logs), "init": init}
        write_hosts(self.folder, hosts)
        (self.folder / "configs.yaml").write_text(CONFIGS)

    def write_log(self, name: str, *lines: str) -> None:
        (self.logs / name).write_text("".join(f"{line}\n" for line in lines))
        chown_tree(self.logs, self.testbed.user)

    def run(self, *tasks: dict[str, Any]) -> Any:
        write_book(self.folder, list(tasks))
        return compute("run", "book.yaml", cwd=self.folder)

    def calls(self) -> list[dict[str, Any]]:
        path = self.work / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def wait(self, timeout: float = 45) -> None:
        wait_jobs(self.folder / "archive", timeout=timeout)


@pytest.fixture
def bed(testbed: Any, tmp_path: Path) -> Iterator[Bed]:
    with user_workspace(testbed, "sync") as work:
        (work / "logs").mkdir()
        (work / "bin").mkdir()
        (work / "bin" / "wandb").write_text(FAKE_WANDB.format(calls=str(work / "calls.jsonl")))
        (work / "bin" / "wandb").chmod(0o755)
        chown_tree(work, testbed.user)
        made = Bed(testbed, work, tmp_path)
        made.hosts()
        yield made


def test_the_original_playbook_syncs_every_run_named_in_the_jobs_error_logs(bed: Bed) -> None:
    bed.write_log(
        "slurm.815735.err",
        "Traceback? no: a warning",
        "wandb: You can sync this run to the cloud by running:",
        f"wandb: wandb sync {bed.run_dir(1)}",
        f"wandb: Find logs at: {bed.run_dir(1)}/logs",
    )
    bed.write_log(
        "slurm.815775.err",
        f"wandb: wandb sync {bed.run_dir(2)}",
        f" 90%|#########  \rwandb: wandb sync {bed.run_dir(3)}",
        f"wandb: wandb sync {bed.run_dir(1)}",  # already named by 815735: synced once
    )
    bed.write_log("slurm.815776.err", "wandb: Run data is saved locally in ./wandb", "done")
    # 815777 has no log at all
    proc = bed.run(
        {
            "name": "Sync wandb",
            "hosts": ["h1"],
            "sync": {"jobs": [815735], "job_array": [815775, 815777]},
        }
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert bed.calls() == [
        {"argv": ["sync", bed.run_dir(1), bed.run_dir(2), bed.run_dir(3)], "cwd": str(bed.testbed.home)}
    ]
    out = proc.stdout
    assert f"h1: 815735: 1 run: {bed.run_dir(1)}" in out
    assert f"h1: 815775: 3 runs: {bed.run_dir(2)} {bed.run_dir(3)} {bed.run_dir(1)}" in out
    assert f"h1: 815776: no `wandb sync` line in {bed.logs}/slurm.815776.err" in out
    assert f"h1: 815777: no log {bed.logs}/slurm.815777.err" in out
    assert "h1 | Syncing: 3 runs" in out
    assert "changed: h1" in out and "synced 3 runs from 4 jobs (1 naming no run, 1 without a log)" in out


def test_hostile_log_lines_reach_wandb_as_literal_words(bed: Bed) -> None:
    victim = bed.work / "victim"
    victim.write_text("still here\n")
    chown_tree(bed.work, bed.testbed.user)
    home_relative = f"~/{bed.work.relative_to(bed.testbed.home)}"
    hostile = [
        f"{bed.run_dir(1)}$(touch {bed.work}/pwned)",
        f"{bed.run_dir(2)}; rm -rf {home_relative}/victim",
        f"{bed.testbed.home}/`touch {bed.work}/pwned2`/offline-run-20230512_101503-x && touch {bed.work}/pwned3",
        f'{bed.testbed.home}/it\'s "$HOME" ${{IFS}}/offline-run-20230512_101504-y',
    ]
    bed.write_log("slurm.7.err", *(f"wandb: wandb sync {path}" for path in hostile))
    proc = bed.run({"name": "s", "hosts": "h1", "sync": {"jobs": ["7"]}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [call["argv"] for call in bed.calls()] == [["sync", *hostile]]
    assert victim.read_text() == "still here\n"
    assert not any((bed.work / name).exists() for name in ("pwned", "pwned2", "pwned3"))


def test_no_wandb_on_the_host_fails_with_a_clear_message(bed: Bed) -> None:
    bed.hosts(wandb=False)
    bed.write_log("slurm.8.err", f"wandb: wandb sync {bed.run_dir(1)}")
    proc = bed.run({"name": "s", "hosts": "h1", "sync": {"jobs": [8]}})
    assert proc.returncode == 1
    assert (
        "failed: h1" in proc.stdout
        and "`wandb` was not found on the host (PATH after its init)" in proc.stdout
    )
    assert "Traceback" not in proc.stdout + proc.stderr and bed.calls() == []


def test_nothing_to_sync_is_ok_and_runs_no_wandb(bed: Bed) -> None:
    bed.write_log("slurm.9.err", "an ordinary log")
    proc = bed.run({"name": "s", "hosts": "h1", "sync": {"jobs": [9, 10]}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "ok: h1" in proc.stdout
        and "nothing to sync from 2 jobs (1 naming no run, 1 without a log)" in proc.stdout
    )
    assert bed.calls() == []


def test_ledger_jobs_of_a_slurm_array_by_id_element_host_and_task(bed: Bed) -> None:
    cluster = bed.testbed.slurm_alias
    # each element prints on stderr what W&B prints, its run named after its point
    job = (
        'f() { echo "wandb: wandb sync $HOME/project/wandb/offline-run-20230512_101500-x${1#--x=}" >&2; }; f'
    )
    proc = bed.run(
        {"name": "train", "hosts": cluster, "slurm": {"cmd": job, "sweep": {"x": [1, 2]}, "array": True}}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bed.wait()
    records = Ledger(bed.folder / "archive").records()
    array = records[0].job_id.split("_")[0]
    assert [r.job_id for r in records] == [f"{array}_0", f"{array}_1"]
    runs = [bed.run_dir(0, "x1"), bed.run_dir(0, "x2")]

    proc = bed.run(
        {"name": "by id", "hosts": cluster, "sync": {"jobs": [int(array)]}},
        {"name": "by element", "hosts": cluster, "sync": {"jobs": [f"{cluster}:{array}_1"]}},
        {"name": "by task", "hosts": cluster, "sync": {"task": "train"}},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [call["argv"] for call in bed.calls()] == [["sync", *runs], ["sync", runs[1]], ["sync", *runs]]
    assert f"{cluster}: {array}_0: 1 run: {runs[0]}" in proc.stdout

    proc = bed.run({"name": "typo", "hosts": cluster, "sync": {"task": "trian"}})
    assert proc.returncode == 1
    assert "no job of task 'trian' in" in proc.stdout and "(did you mean 'train'?)" in proc.stdout


def test_a_tmux_job_of_the_ledger_is_read_from_its_one_log(bed: Bed) -> None:
    job = f'echo "wandb: wandb sync {bed.run_dir(5)}"'
    proc = bed.run({"name": "ws", "hosts": "h1", "tmux": {"job_name": "ctsync", "cmd": job}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bed.wait()
    (record,) = Ledger(bed.folder / "archive").records()
    session = record.job_id.rpartition(".")[0]
    proc = bed.run(
        {"name": "job", "hosts": "h1", "sync": {"jobs": [record.job_id]}},
        {"name": "session", "hosts": "h1", "sync": {"jobs": [f"h1:{session}"]}},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [call["argv"] for call in bed.calls()] == [["sync", bed.run_dir(5)]] * 2
