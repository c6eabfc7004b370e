"""A whole run as users whose login is like real ones: zsh, fish, tcsh as login shell, and a bashrc
that prints on both streams and sets `set -eu` (tests/support/testbed.py's LOGIN_USERS). The same
playbook must give the same results for each: a cmd's own exit code, tmux and Slurm jobs that run,
end with their own codes, are seen by `compute jobs`, and keep what the start-up files export."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.project import host_entry, write_hosts
from tests.support.waiting import wait_jobs

LOGINS = {"czsh": "zsh", "cfish": "fish", "ctcsh": "tcsh", "cnoisy": "noisy"}


def project(testbed: Any, folder: Path, user: str, tasks: list[dict[str, Any]]) -> Path:
    remote = f"~/compute/login-tests/{uuid.uuid4().hex[:6]}"
    hosts = {
        alias: {**host_entry(testbed, alias, save_path=remote), "user": user}
        for alias in ("h1", testbed.slurm_alias)
    }
    hosts[testbed.slurm_alias].update(platform="slurm", cpus_per_node=2)
    write_hosts(folder, hosts)
    (folder / "configs.yaml").write_text("default: {cpus: 1, time: '00:05:00'}\n")
    book = {"inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"}, "tasks": tasks}
    path = folder / "book.yaml"
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("user", list(LOGINS))
def test_a_run_gives_the_same_results_whatever_the_login(testbed: Any, tmp_path: Path, user: str) -> None:
    tbm.login_user(testbed, user)
    name = f"l{uuid.uuid4().hex[:6]}"
    sweep = {"cmd": 'echo "login=$COMPUTE_LOGIN"; exit', "args": ["0", "1"], "job_name": name}
    project(
        testbed,
        tmp_path,
        user,
        [
            {"name": "env", "hosts": "h1", "cmd": 'test "$COMPUTE_LOGIN" = ' + LOGINS[user]},
            {"name": "tmux", "hosts": "h1", "tmux": {**sweep, "parallel": True}},
            {"name": "slurm", "hosts": testbed.slurm_alias, "slurm": sweep},
            {"name": "fails", "hosts": "h1", "cmd": "echo before; exit 3"},
        ],
    )
    run = compute("run", "book.yaml", cwd=tmp_path, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "exit code 3" in run.stdout + run.stderr  # the command's own code, not the shell's
    rows = wait_jobs(tmp_path / "archive", timeout=60)
    states = {(row.record.scheduler, row.record.job_index): row.state for row in rows.values()}
    assert len(states) == 4, states
    for scheduler in ("tmux", "slurm"):
        ok, bad = states[(scheduler, "0")], states[(scheduler, "1")]
        assert (ok.state, ok.exit_code) == ("COMPLETED", 0), (scheduler, ok)
        assert (bad.state, bad.exit_code) == ("FAILED", 1), (scheduler, bad)
    for job_id, row in rows.items():
        logs = compute("logs", job_id, cwd=tmp_path)
        assert f"login={LOGINS[user]}" in logs.stdout, (row.record.scheduler, logs.stdout + logs.stderr)
    table = json.loads(compute("jobs", "--json", cwd=tmp_path).stdout)
    assert sorted(job["state"] for job in table["jobs"]) == ["COMPLETED", "COMPLETED", "FAILED", "FAILED"]
    done = next(
        job_id for job_id, row in rows.items() if row.record.scheduler == "tmux" and row.state.exit_code == 0
    )
    cancel = compute("cancel", done, cwd=tmp_path)
    assert "1 job(s) had already ended" in cancel.stdout and "cancelled 1" not in cancel.stdout, cancel.stdout
    again = compute("resubmit", "--failed", "--task", "tmux", cwd=tmp_path)
    assert again.returncode == 0 and "resubmitted 1 failed job(s)" in again.stdout, (
        again.stdout + again.stderr
    )
    wait_jobs(tmp_path / "archive", timeout=60)


@pytest.mark.slow
def test_tmux_jobs_get_the_login_environment_not_an_old_servers(testbed: Any, tmp_path: Path) -> None:
    """A tmux server the user started earlier, with another environment, is where a new session
    lives: its jobs must still see what the login exports (SLURM_CONF, modules, COMPUTE_LOGIN)."""
    user = tbm.login_user(testbed, "czsh")
    old_server = (
        f"env -i PATH=/usr/bin:/bin TMUX_TMPDIR={testbed.tmux_dir} tmux new-session -d -s old sleep 600"
    )
    subprocess.run(["runuser", "-u", user, "--", "sh", "-c", old_server], check=True, timeout=30)
    try:
        name = f"l{uuid.uuid4().hex[:6]}"
        sweep = {"cmd": 'echo "login=$COMPUTE_LOGIN conf=$SLURM_CONF"; exit', "args": ["0"], "job_name": name}
        project(testbed, tmp_path, user, [{"name": "tmux", "hosts": "h1", "tmux": sweep}])
        run = compute("run", "book.yaml", cwd=tmp_path, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        rows = wait_jobs(tmp_path / "archive", timeout=60)
        (job_id,) = rows
        logs = compute("logs", job_id, cwd=tmp_path).stdout
        assert f"login=zsh conf={testbed.slurm_conf}" in logs, logs
        sessions = subprocess.run(
            ["runuser", "-u", user, "--", "env", f"TMUX_TMPDIR={testbed.tmux_dir}", "tmux", "ls"],
            capture_output=True,
            text=True,
        ).stdout
        assert sessions.startswith("old:"), sessions  # the job ran in the old server, as sessions do
    finally:
        subprocess.run(
            ["runuser", "-u", user, "--", "env", f"TMUX_TMPDIR={testbed.tmux_dir}", "tmux", "kill-server"],
            timeout=30,
        )
