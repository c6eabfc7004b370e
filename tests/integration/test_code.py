"""Code snapshots (`code:`) on the test bed's Slurm cluster and on localhost: jobs run the code they
were submitted with, whatever is edited while they wait; a resubmission runs it too; an unchanged
second run sends nothing, a changed one only what changed."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import testbed as tbm
from tests.support.cli import compute, job_output
from tests.support.projects import SlurmProject as Project


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Iterator[Project]:
    made = Project(testbed, tmp_path, code_dir=f"~/{'compute/code-' + tmp_path.name}")
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("archive/\n*.ckpt\n")
    (tmp_path / "train.py").write_text('print("v1")\n')
    (tmp_path / "weights.ckpt").write_bytes(b"\0" * 4096)  # ignored by git: never sent
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "v1")
    yield made
    shutil.rmtree(made.logs, ignore_errors=True)
    shutil.rmtree(testbed.home / f"compute/code-{tmp_path.name}", ignore_errors=True)


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True, timeout=30)


def _sent(output: str) -> tuple[int, int]:
    """(files, bytes) the run says it sent; (0, 0) for 'nothing sent'."""
    found = re.search(r"code \w+: sent (\d+) file\(s\), (\d+) bytes", output)
    if found:
        return int(found.group(1)), int(found.group(2))
    assert "already on the host, nothing sent" in output, output
    return 0, 0


TRAIN = {
    "name": "train",
    "hosts": "cluster",
    "slurm": {"cmd": "python3 train.py; ls; exit 3", "array": False},
}


@pytest.mark.slow
def test_jobs_run_the_code_they_were_submitted_with(project: Project) -> None:
    waiting = {**TRAIN, "slurm": {**TRAIN["slurm"], "sbatch": {"begin": "now+3"}}}
    book = project.folder / "book.yaml"
    book.write_text(_book({**waiting["slurm"]}))
    proc = compute("run", "book.yaml", cwd=project.folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files, full = _sent(proc.stdout)
    assert files == 5  # .gitignore, train.py, hosts.yaml, configs.yaml and book.yaml; not weights.ckpt
    (project.folder / "train.py").write_text('print("v2")\n')  # edited while the job waits
    rows = project.wait(timeout=60)
    [first] = rows
    out = job_output(project.cli("logs", first).stdout)
    assert "v1" in out and "v2" not in out and "weights.ckpt" not in out
    shown = project.cli("code", first).stdout
    assert "commit" in shown and "book.yaml" in shown  # the uncommitted files are in its diff
    assert '-print("v1")' in project.cli("code", first, "--diff").stdout  # against the files now
    resubmitted = project.cli("resubmit", "--failed")
    assert resubmitted.returncode == 0, resubmitted.stdout + resubmitted.stderr
    rows = project.wait(timeout=60)
    [again] = [job for job in rows if job != first]
    assert "v1" in job_output(project.cli("logs", again).stdout)  # the same snapshot
    book.write_text(_book(TRAIN["slurm"]))  # the edited code, and the book changed: two files
    proc = compute("run", "book.yaml", cwd=project.folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files, changed = _sent(proc.stdout)
    assert files == 2 and 0 < changed < full
    rows = project.wait(timeout=60)
    [third] = [job for job in rows if job not in (first, again)]
    assert "v2" in job_output(project.cli("logs", third).stdout)
    proc = compute("run", "book.yaml", cwd=project.folder)
    assert _sent(proc.stdout) == (0, 0)  # unchanged: one round trip, no byte of code


def _book(slurm: dict[str, object]) -> str:
    import json

    task = {"name": "train", "hosts": "cluster", "slurm": slurm}
    return json.dumps(
        {"inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"}, "code": "git", "tasks": [task]}
    )


@pytest.fixture
def local_tmux(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import tempfile

    folder = tempfile.mkdtemp(prefix="ctmux-", dir="/tmp")
    monkeypatch.setenv("TMUX_TMPDIR", folder)
    yield
    subprocess.run(["tmux", "kill-server"], capture_output=True, timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_folder_snapshot_leaves_out_what_exclude_names(tmp_path: Path, local_tmux: None) -> None:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "run.sh").write_text("echo run\n")
    (src / "data" / "big.bin").write_bytes(b"x" * 1000)
    (src / "model.ckpt").write_text("w")
    (tmp_path / "hosts.yaml").write_text(
        f"localhost: {{save_path: {tmp_path}/logs, code_dir: {tmp_path}/code}}\n"
    )
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\n")
    task = {
        "cmd": "bash run.sh; find . -type f | sort",
        "code": {"path": "src", "exclude": ["data/", "*.ckpt"]},
    }
    import json

    (tmp_path / "book.yaml").write_text(
        json.dumps(
            {
                "inventory": {"hosts": "hosts.yaml"},
                "tasks": [{"name": "t", "hosts": "localhost", "tmux": task}],
            }
        )
    )
    proc = compute("run", "book.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _sent(proc.stdout)[0] == 1
    from tests.support.waiting import wait_jobs

    wait_jobs(tmp_path / "archive", timeout=30)
    out = job_output(compute("logs", "t.0", cwd=tmp_path).stdout)
    assert out.splitlines()[-2:] == ["./.compute-complete", "./run.sh"] and "run" in out


def test_cleaning_keeps_what_open_jobs_run_and_a_resubmission_gets_its_snapshot_back(
    tmp_path: Path, local_tmux: None
) -> None:
    """`compute code --clean` removes the snapshot of a failed job, not the one a running job runs;
    `compute resubmit --failed` then sends the failed job's snapshot again from the archive."""
    import json

    for name, text in (
        ("old", "echo old-code; exit 3\n"),
        ("new", f"until [ -e {tmp_path}/go ]; do sleep 0.1; done\n"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.sh").write_text(text)
    code_dir = tmp_path / "code"
    (tmp_path / "hosts.yaml").write_text(f"localhost: {{save_path: {tmp_path}/logs, code_dir: {code_dir}}}\n")
    tasks = [
        {"name": name, "hosts": "localhost", "tmux": {"cmd": "bash run.sh", "code": {"path": name}}}
        for name in ("old", "new")
    ]
    book = {"inventory": {"hosts": "hosts.yaml"}, "tasks": tasks}
    (tmp_path / "book.yaml").write_text(json.dumps(book))
    from tests.support.waiting import wait_jobs

    try:
        assert compute("run", "book.yaml", cwd=tmp_path).returncode == 0
        rows = wait_jobs(tmp_path / "archive", done=lambda rows: rows["old.0"].state.state == "FAILED")
        assert rows["new.0"].state.state == "RUNNING"
        old, new = rows["old.0"].record.code, rows["new.0"].record.code
        assert old and new and old != new

        said = compute("code", "--clean", "-n", cwd=tmp_path)
        assert said.stdout == f"localhost: would remove the snapshots of {code_dir} but {new}\n", said.stdout
        assert (code_dir / old).is_dir()
        said = compute("code", "--clean", cwd=tmp_path)
        assert said.stdout == f"localhost: removed 1 snapshot(s) from {code_dir}: {old}\n", said.stdout
        assert not (code_dir / old).exists() and (code_dir / new / "run.sh").is_file()

        again = compute("resubmit", "--failed", cwd=tmp_path)
        assert again.returncode == 0 and "old.0 resubmitted as" in again.stdout, again.stdout + again.stderr
        assert re.search(
            r"^localhost: code [0-9a-f]{12} sent again to \S+ \(it had been cleaned\)$", again.stdout, re.M
        )
        assert (code_dir / old / "run.sh").read_text() == "echo old-code; exit 3\n"
        resubmitted = again.stdout.split("resubmitted as ")[1].split()[0]
        rows = wait_jobs(tmp_path / "archive", done=lambda rows: rows[resubmitted].state.state == "FAILED")
        assert "old-code" in job_output(compute("logs", resubmitted, cwd=tmp_path).stdout)
    finally:
        (tmp_path / "go").write_text("")
    wait_jobs(tmp_path / "archive", timeout=30)
