"""The tmux launcher and host scripts against reference files, lane arithmetic, state decisions and
the task's validation.

The reference scripts live in tests/unit/golden/tmux/. After an intended change of the renderer,
regenerate them with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_tmux.py` and review the diff.
"""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.ledger import JobRecord, Ledger
from compute_platform.scheduling import tmux
from compute_platform.scheduling.backend import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, UNKNOWN
from compute_platform.scheduling.recovery import Policy
from compute_platform.scheduling.sweep import expand
from compute_platform.tasks import REGISTRY
from compute_platform.tasks.tmux import Tmux
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "tmux"

LAUNCHERS: dict[str, tmux.LauncherSpec] = {
    "sequential": tmux.LauncherSpec(
        task="train",
        cmd="python train.py",
        jobs=tuple(expand(["--epochs 3", "--epochs 5"], {}, [0, 1, 2])),
        init=("module load cuda/12.1", "source ~/venv/bin/activate"),
        env={"OMP_NUM_THREADS": "8"},
        cd="~/project",
    ),
    "parallel": tmux.LauncherSpec(
        task="lr sweep",
        cmd="python train.py",
        jobs=tuple(expand([], {"lr": [0.1, 0.01, 0.001], "fast": [True, False]})),
        seed_flag="--random-seed",
        lanes=tmux.max_lanes(True, 2, ()),
    ),
    "gpus": tmux.LauncherSpec(
        task="gpu sweep",
        cmd="python train.py",
        jobs=tuple(expand(["--model small", "--model large"], {"lr": [0.1, 0.01]}, [7])),
        seed_flag=None,
        lanes=tmux.max_lanes(True, None, ("0", "1")),
        gpus=("0", "1"),
    ),
    "ray": tmux.LauncherSpec(
        task="ray sweep",
        cmd="python3 tune.py",
        jobs=tuple(expand([], {"lr": [0.1, 0.01]}, [0, 1])),
        lanes=tmux.max_lanes(True, None, ()),
        ray=True,
    ),
    "unlimited": tmux.LauncherSpec(
        task="all at once", cmd="./run.sh", jobs=tuple(expand(["a", "b", "c"], {})), lanes=0
    ),
    "quoting": tmux.LauncherSpec(
        task="it's quoted",
        cmd="printf '%s\\n'",
        jobs=tuple(expand([["it's", "a b", "$HOME", "x;y", '"q"']], {"msg": ["hello world"]}, ["0", "a b"])),
        env={"GREETING": "hi $USER; `id`"},
        cd="/data/with space",
    ),
    "secrets": tmux.LauncherSpec(
        task="with a key",
        cmd="python upload.py",
        jobs=tuple(expand(["a", "b"], {})),
        lanes=0,
        secret_env=("WANDB_API_KEY", "HF_TOKEN"),
    ),
    "fail-on-log": tmux.LauncherSpec(
        task="watched",
        cmd="python train.py",
        jobs=tuple(expand(["a", "b"], {})),
        env={"COMPUTE_LOG_EVERY": "1"},
        policy=Policy(retries=False, fail_on_log=("NCCL watchdog", "it's (stuck|hung)")),
    ),
}


def record(job_id: str, status_file: str) -> JobRecord:
    return JobRecord(
        "2026-01-01T00:00:00+00:00", "book.yaml", "t", "h1", "tmux", job_id, "train", status_file=status_file
    )


RECORDS = [
    record("train.0", "/home/alice/compute/logs/train/0.status"),
    record("train.1", "/home/alice/compute/logs/train/1.status"),
    record("it's-2.12", "/home/alice/my logs/it's-2/12.status"),
]

SCRIPTS: dict[str, str] = {
    "launch": tmux.launch_script("~/compute/logs", "train", ["train", "train-2"]),
    "launch-subset": tmux.launch_script("/scratch/my logs", "it's", [], [3, 5]),
    "launch-secrets": tmux.launch_script("~/compute/logs", "train", [], [], "compute-secrets-0123abcd"),
    "states": tmux.states_script(),
    "cancel": tmux.cancel_script(),
}


def bash_syntax_ok(text: str) -> None:
    proc = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(LAUNCHERS))
def test_launcher_matches_reference(name: str) -> None:
    check_golden(GOLDEN / f"{name}.tmux", tmux.render_launcher(LAUNCHERS[name]))


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_host_script_matches_reference(name: str) -> None:
    check_golden(GOLDEN / f"{name}.sh", SCRIPTS[name])


@pytest.mark.parametrize("text", [*map(tmux.render_launcher, LAUNCHERS.values()), *SCRIPTS.values()])
def test_every_script_is_valid_bash(text: str) -> None:
    bash_syntax_ok(text)


def test_the_launcher_refuses_a_job_it_does_not_have(tmp_path: Path) -> None:
    launcher = tmp_path / "s" / tmux.LAUNCHER
    launcher.parent.mkdir()
    launcher.write_text(tmux.render_launcher(LAUNCHERS["parallel"]))
    proc = subprocess.run(["bash", str(launcher), "start", "99"], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 2
    assert "no job 99" in proc.stderr


def run_lane(tmp_path: Path, cmd: str, args: list[str] | None = None, timeout: float = 30) -> Path:
    """Lane 0 of a launcher whose jobs run `cmd` (one per `args` entry) under
    `fail_on_log: [NCCL watchdog]`, looked at every second, run by bash here (a lane needs no tmux);
    the launcher's path, once the lane has ended."""
    spec = tmux.LauncherSpec(
        task="watched",
        cmd=cmd,
        jobs=tuple(expand(args or [], {})),
        seed_flag=None,
        env={"COMPUTE_LOG_EVERY": "1"},
        policy=Policy(retries=False, fail_on_log=("NCCL watchdog",)),
    )
    launcher = tmp_path / tmux.LAUNCHER
    launcher.write_text(tmux.render_launcher(spec))
    (tmp_path / "queue").write_text("".join(f"{job.index}\n" for job in spec.jobs))
    subprocess.run(["bash", str(launcher), "lane", "0"], capture_output=True, timeout=timeout, check=True)
    return launcher


def test_a_lane_stops_a_job_whose_output_matches_fail_on_log(tmp_path: Path) -> None:
    """The lane's watcher: the job is stopped within its period, its status says `log`, nothing of
    it is left, and the next job of the queue runs."""
    cmd = 'echo starting; sleep 0.5; echo "NCCL watchdog timeout: rank 3"; sleep 59.37; echo'
    started = time.monotonic()
    run_lane(tmp_path, cmd, ["first", "second"], timeout=60)
    assert time.monotonic() - started < 10  # two jobs, each stopped within about a second
    for i in ("0", "1"):
        assert (tmp_path / f"{i}.status").read_text() == "143 log\n"
        assert "matches a fail_on_log pattern" in (tmp_path / f"{i}.log").read_text()
        state = tmux.decide(True, True, "143 log", False, False, False)
        assert (state.state, state.exit_code, state.reason) == (FAILED, 143, "fail_on_log")
    assert subprocess.run(["pgrep", "-f", "sleep 59.37"], capture_output=True).returncode == 1


@pytest.mark.slow
def test_a_job_that_ignores_sigterm_is_killed_10_s_after(tmp_path: Path) -> None:
    """A hung program may not end on SIGTERM: its lane kills its process group 10 s later, before
    the next job (on the same GPU) starts."""
    started = time.monotonic()
    run_lane(tmp_path, "bash -c \"trap '' TERM; echo 'NCCL watchdog timeout'; sleep 59.43\"", timeout=60)
    assert 9 < time.monotonic() - started < 20
    assert (tmp_path / "0.status").read_text() == "143 log\n"
    assert subprocess.run(["pgrep", "-f", "sleep 59.43"], capture_output=True).returncode == 1


def test_a_line_cut_by_a_look_is_looked_at_whole_and_the_cmd_line_is_not(tmp_path: Path) -> None:
    """A block-buffered program's line may end after a look: the next look reads all of it. The
    command, printed first as `CMD ...`, holds the pattern's words and stops nothing."""
    run_lane(
        tmp_path,
        "echo NCCL watchdog >/dev/null; printf 'NCCL watch'; sleep 1.6; printf 'dog timeout\\n'; sleep 59.47",
    )
    assert (tmp_path / "0.status").read_text() == "143 log\n"
    log = (tmp_path / "0.log").read_text()
    assert log.startswith("CMD echo NCCL watchdog") and "NCCL watchdog timeout\n" in log


def test_a_job_that_does_not_match_ends_as_it_would_and_its_watcher_goes(tmp_path: Path) -> None:
    launcher = run_lane(tmp_path, "echo fine; sleep 1.5; exit 4")
    assert (tmp_path / "0.status").read_text() == "4\n"
    assert not (tmp_path / "0.matched").exists()
    assert (
        subprocess.run(["pgrep", "-f", str(launcher)], capture_output=True).returncode == 1
    )  # lane, watcher


def test_lanes_one_without_parallel_else_the_smallest_limit() -> None:
    assert tmux.max_lanes(False, None, ()) == 1
    assert tmux.max_lanes(False, None, ("0", "1")) == 1
    assert tmux.max_lanes(True, None, ()) == 0  # no limit: one lane per job
    assert tmux.max_lanes(True, 2, ()) == 2
    assert tmux.max_lanes(True, None, ("0", "1", "2")) == 3
    assert tmux.max_lanes(True, 2, ("0", "1", "2")) == 2
    assert tmux.max_lanes(True, 8, ("0", "1")) == 2
    assert tmux.lane_count(0, 6) == 6
    assert tmux.lane_count(2, 6) == 2
    assert tmux.lane_count(4, 3) == 3


def test_session_names_are_what_tmux_keeps() -> None:
    assert tmux.session_base("exp.v1:a") == "exp_v1_a"
    assert tmux.session_base("lr+sweep-2") == "lr+sweep-2"
    assert tmux.job_id("train-2", 3) == "train-2.3"


def test_job_files_come_from_the_recorded_status_path() -> None:
    files = tmux.JobFiles.of(RECORDS[2])
    assert (files.folder, files.index, files.session) == ("/home/alice/my logs/it's-2", "12", "it's-2")
    assert files.path("log") == "/home/alice/my logs/it's-2/12.log"


@pytest.mark.parametrize(
    ("folder", "started", "status", "alive", "cancelled", "session", "expected"),
    [
        (True, True, "0", False, False, False, (COMPLETED, 0)),
        (True, True, "3", False, False, True, (FAILED, 3)),
        (True, True, "143", False, True, False, (CANCELLED, 143)),
        (True, True, "-", True, False, True, (RUNNING, None)),
        (True, True, "-", False, False, True, (RUNNING, None)),  # reaped, status about to be written
        (True, True, "-", False, False, False, (FAILED, None)),  # session killed, host rebooted
        (True, True, "-", False, True, False, (CANCELLED, None)),
        (True, False, "-", False, False, True, (PENDING, None)),
        (True, False, "-", False, True, True, (CANCELLED, None)),
        (True, False, "-", False, False, False, (FAILED, None)),
        (False, False, "-", False, False, False, (UNKNOWN, None)),
    ],
)
def test_state_decisions(
    folder: bool,
    started: bool,
    status: str,
    alive: bool,
    cancelled: bool,
    session: bool,
    expected: tuple[str, int | None],
) -> None:
    state = tmux.decide(folder, started, status, alive, cancelled, session)
    assert (state.state, state.exit_code) == expected


def test_parse_states_reads_the_script_lines() -> None:
    output = "train.0\t1\t1\t0\t0\t0\t0\ntrain.1\t1\t1\t-\t1\t0\t1\nnoise\n"
    states = tmux.parse_states(output)
    assert states["train.0"].state == COMPLETED
    assert states["train.1"].state == RUNNING
    assert len(states) == 2


# -- the task ------------------------------------------------------------------------------------

HOSTS = """\
localhost: {}
ws:
  host: ws.example.org
  gpu: 2
"""


def load(tmp_path: Path, task: str) -> playbook.Playbook:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    book = tmp_path / "book.yaml"
    book.write_text("inventory: {hosts: hosts.yaml}\ntasks:\n" + textwrap.indent(textwrap.dedent(task), "  "))
    return playbook.load(book)


def error(tmp_path: Path, task: str) -> str:
    with pytest.raises(InputError) as info:
        load(tmp_path, task)
    return str(info.value)


def test_tmux_is_a_registered_task_with_the_sweep_fields(tmp_path: Path) -> None:
    assert REGISTRY["tmux"] is Tmux
    book = load(
        tmp_path,
        """\
        - name: sweep
          hosts: [localhost, ws]
          tmux:
            cmd: python train.py
            args: ["--model a", "--model b"]
            sweep: {lr: [0.1, 0.2]}
            seeds: "0, 1"
            parallel: true
            max_parallel: 3
            gpus: [0, 1]
            env: {WANDB_MODE: offline}
            cd: ~/project
        """,
    )
    action = book.tasks[0].action
    assert isinstance(action, Tmux)
    assert len(action.jobs()) == 4 and action.jobs()[0].seeds == (0, 1)
    assert action.gpus == (0, 1) and action.lanes() == 2


def test_max_parallel_or_gpus_mean_parallel_unless_it_is_said_false(tmp_path: Path) -> None:
    def lanes(fields: str) -> int:
        action = (
            load(tmp_path, f"- {{name: t, hosts: localhost, tmux: {{cmd: x, {fields}}}}}\n").tasks[0].action
        )
        assert isinstance(action, Tmux)
        return action.lanes()

    assert lanes("args: [a, b]") == 1
    assert lanes("parallel: true") == 0
    assert lanes("max_parallel: 3") == 3
    assert lanes("gpus: [0, 1]") == 2
    assert lanes("parallel: false, gpus: [1]") == 1
    message = error(
        tmp_path, "- {name: t, hosts: localhost, tmux: {cmd: x, parallel: false, max_parallel: 2}}\n"
    )
    assert "book.yaml:" in message and "parallel is false" in message
    message = error(
        tmp_path, "- {name: t, hosts: localhost, tmux: {cmd: x, parallel: false, gpus: [0, 1]}}\n"
    )
    assert "list one GPU" in message


def test_a_slurm_sweep_task_loads_as_tmux_by_changing_its_key(tmp_path: Path) -> None:
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\ngpu: {cpus: 8, gpu: 1}\n")
    (tmp_path / "hosts.yaml").write_text("localhost: {}\n")
    task = """\
    - name: sweep
      hosts: localhost
      slurm:
        job_name: lr
        cmd: python train.py
        config: gpu
        args: ["--model small", "--model large"]
        sweep: {lr: [0.1, 0.01]}
        seeds: "0, 1"
        max_parallel: 2
    """
    book = tmp_path / "book.yaml"
    body = textwrap.indent(textwrap.dedent(task).replace("slurm:", "tmux:"), "  ")
    book.write_text("inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n" + body)
    action = playbook.load(book).tasks[0].action
    assert isinstance(action, Tmux) and action.config == "gpu" and action.lanes() == 2
    assert len(action.jobs()) == 4
    book.write_text(book.read_text().replace("config: gpu", "config: gpus"))
    with pytest.raises(InputError, match="unknown config 'gpus'"):
        playbook.load(book)


def test_gpus_must_be_distinct_and_exist_on_the_host(tmp_path: Path) -> None:
    assert "distinct" in error(tmp_path, "- {name: t, hosts: localhost, tmux: {cmd: x, gpus: [0, 0]}}\n")
    assert "one GPU per list item" in error(
        tmp_path, "- {name: t, hosts: localhost, tmux: {cmd: x, gpus: ['0,1']}}\n"
    )
    message = error(tmp_path, "- {name: t, hosts: ws, tmux: {cmd: x, parallel: true, gpus: [1, 2]}}\n")
    assert "gpus [2] do not exist on host 'ws'" in message


def test_unknown_field_names_the_choices(tmp_path: Path) -> None:
    message = error(tmp_path, "- {name: t, hosts: localhost, tmux: {cmd: x, paralel: true}}\n")
    assert "paralel" in message and "parallel" in message


def test_names_archived_for_a_host_are_taken(tmp_path: Path) -> None:
    folder = tmp_path / "h1"
    folder.mkdir()
    for name in ("lr", "lr-2", "lr-x", "lrx", "other", "lr-3"):
        (folder / f"{name}.tmux").write_text("")
    (folder / "lr-4.slurm").write_text("")
    assert tmux.archived_sessions(Ledger(tmp_path), "h1", "lr") == ["lr", "lr-2", "lr-3"]
    assert tmux.archived_sessions(Ledger(tmp_path), "h2", "lr") == []


@pytest.mark.parametrize(
    "name", ["tmux-runtime.sh", "tmux-state.sh", "tmux-cancel.sh", "log-look.sh", "recovery.sh"]
)
def test_the_shell_files_of_the_launcher_are_valid_bash(name: str) -> None:
    path = Path(tmux.__file__).parent / "scripts" / name
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_jobs_reach_the_state_script_on_stdin_whatever_their_names(tmp_path: Path) -> None:
    """Ids and folders with blanks and quotes arrive as they are, and 10,000 of them fit (the command
    line would not hold them)."""
    records = [*RECORDS, *(record(f"big.{i}", f"/nowhere/big/{i}.status") for i in range(10_000))]
    proc = subprocess.run(
        ["bash", "-c", tmux.states_script()], input=tmux.job_stdin(records), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    states = tmux.parse_states(proc.stdout.decode())
    assert set(states) == {r.job_id for r in records}
    assert states["it's-2.12"].reason == "its files on the host are gone"
